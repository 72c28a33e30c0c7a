"""The defaults of the run options, in one place.

`RunSettings` (run/command.py) and the modules behind it take their defaults from here,
and so does the command line (cli.py), whose `--help` shows them; a test checks that the
two agree. This module imports nothing heavy, so `retention --help` stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

AUDIT_LOG: Final = Path("retention-audit.jsonl")  # --audit-log
GRACE_PERIOD_SECONDS: Final = 20.0  # --grace-period: in-flight requests after SIGTERM
PROGRESS_INTERVAL_SECONDS: Final = 10.0  # --progress-interval
TIMEOUT_SECONDS: Final = 30.0  # --timeout: per request, read and write
SURGE_FLOOR: Final = 1000  # --surge-floor: the surge guard never stops a run below it
SURGE_FACTOR: Final = 3.0  # --surge-factor: times the median of recent execute runs
HORIZON_DAYS: Final = 30  # --horizon: the forecast's window
HORIZON: Final = f"{HORIZON_DAYS}d"
MAX_PLAN_AGE: Final = "7d"  # apply --max-plan-age
# Commands that only read calls (explain --ids, audit verify --api, audit certificate
# --api) keep a fixed pace: a run finds the API's limit instead (api/limiter.py).
READ_CONCURRENCY: Final = 32
READ_RATE: Final = 400.0
