"""`python -m core.jobs <job folder>`: the process of one background job (see core.jobs.queue)."""

import sys
from pathlib import Path

from core.jobs.queue import work

sys.exit(work(Path(sys.argv[1])))
