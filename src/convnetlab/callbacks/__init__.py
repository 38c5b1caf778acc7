"""Lightning callbacks, one per file."""

from convnetlab.callbacks.aux_heads import AuxiliaryClassifiers
from convnetlab.callbacks.gradient_flow import GradientFlow
from convnetlab.callbacks.progress import EpochLinePrinter, progress_bar
from convnetlab.callbacks.throughput import TrainThroughput

__all__ = ["AuxiliaryClassifiers", "EpochLinePrinter", "GradientFlow", "TrainThroughput", "progress_bar"]
