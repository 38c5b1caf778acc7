"""SIGTERM and Ctrl-C before a trainer has taken them over: one line and a clean exit status.

Until ``CheckpointOnSigterm`` (``callbacks/preemption.py``) runs, a cluster's SIGTERM would end
``convnetlab-train`` with a bare status 143 and Ctrl-C with a ``KeyboardInterrupt`` traceback, while it
imports torch, reads the data, builds the model or probes the memory format. Nothing has been trained then,
so there is nothing to save: say so and exit 0 (SIGTERM) or 130 (Ctrl-C). The console script installs this
before its imports (standard library only here). Once a trainer has installed its own SIGTERM handler
(Lightning does so just before the first step, and keeps and calls the handler it finds), this one leaves
the stop to the trainer: which handler is in place, not a hook, says whether a trainer has taken over, so
no signal falls between the two. Between training and the evaluation's trainer (``training_finished``) a
signal stops at once, saying the checkpoints are saved.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

EXIT_STATUS = {"SIGTERM": 0, "SIGINT": 130}  # 130 = 128 + SIGINT, what a shell reports for Ctrl-C
_training_done = False


def training_finished() -> None:
    """After this, a signal that reaches the handler below stops at once and says the work is saved."""
    global _training_done
    _training_done = True


def _stop(signum: int, frame: Any) -> None:
    if signal.getsignal(signal.SIGTERM) is not _stop:  # a trainer's handler, which calls this one too, is in place
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        return
    name = signal.Signals(signum).name
    if _training_done:
        print(f"{name} after training: the checkpoints are saved; resume from the run's checkpoints/last.ckpt "
              "to finish the evaluation", file=sys.stderr, flush=True)
    else:
        print(f"{name} before training started: nothing was trained or saved; run the command again to start",
              file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STATUS[name])


def stop_cleanly_until_training() -> None:
    """Install the handlers (idempotent; they stay for the process)."""
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stop)
