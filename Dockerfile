# ShiftLens app image: CPU torch, the demo models and runs, Streamlit on port 8501.
# It listens on 0.0.0.0, so it serves only with a sign-in secret (else every page says how
# to set it):  docker run -p 8501:8501 -e SHIFTLENS_PASSWORD=<secret> shiftlens
# Opened by another name than localhost / 127.0.0.1: -e SHIFTLENS_ALLOWED_HOSTS=name[,name].
# Local model folders for "Add a pair": only under SHIFTLENS_MODEL_ROOTS (default
# /shiftlens/uploads/models and /shiftlens/assets). See README "Sharing a server".
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
RUN apt-get update && apt-get install -y --no-install-recommends chromium \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /shiftlens
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN pip install --no-deps -e .
RUN python -m core demo-runs ensure
EXPOSE 8501
CMD ["python", "-m", "streamlit", "run", "app/serve.py", \
     "--server.address=0.0.0.0", "--server.port=8501", "--browser.gatherUsageStats=false"]
