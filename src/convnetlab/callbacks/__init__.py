"""Lightning callbacks, one per file."""

from convnetlab.callbacks.progress import EpochLinePrinter, progress_bar
from convnetlab.callbacks.throughput import TrainThroughput

__all__ = ["EpochLinePrinter", "TrainThroughput", "progress_bar"]
