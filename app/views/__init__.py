"""One file per app page; Streamlit runs each as a script (see app/main.py)."""
