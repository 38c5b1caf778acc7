"""SIGTERM and Ctrl-C before a trainer has taken them over: one line and a clean exit status.

Until ``CheckpointOnSigterm`` (``callbacks/preemption.py``) runs, a cluster's SIGTERM would end
``convnetlab-train`` with a bare status 143 and Ctrl-C with a ``KeyboardInterrupt`` traceback, while it
imports torch, reads the data, builds the model or probes the memory format. Nothing has been trained then,
so there is nothing to save: say so and exit 0 (SIGTERM) or 130 (Ctrl-C). The console script installs this
before its imports (standard library only here). Lightning keeps the SIGTERM handler it finds and calls it
too, so while a trainer runs this one leaves the stop to the callback; after one has run (the work is
saved), SIGTERM exits at once with 143 and Ctrl-C interrupts as Python does.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

EXIT_STATUS = {"SIGTERM": 0, "SIGINT": 130}  # 130 = 128 + SIGINT, what a shell reports for Ctrl-C
_trainer = "not started"  # -> "running" -> "done" (CheckpointOnSigterm's setup and teardown)


def trainer_took_over(running: bool = True) -> None:
    global _trainer
    _trainer = "running" if running else "done"


def _stop(signum: int, frame: Any) -> None:
    if signum == signal.SIGINT and _trainer != "not started":
        raise KeyboardInterrupt
    if _trainer == "running":
        return  # Lightning's own handler, which calls this one too, has set its flag
    if _trainer == "done":
        raise SystemExit(128 + signum)
    name = signal.Signals(signum).name
    print(f"{name} before training started: nothing was trained or saved; run the command again to start",
          file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STATUS[name])


def stop_cleanly_until_training() -> None:
    """Install the handlers (idempotent; they stay for the process)."""
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stop)
