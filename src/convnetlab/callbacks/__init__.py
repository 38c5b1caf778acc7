"""Lightning callbacks, one per file."""

from convnetlab.callbacks.aux_heads import AuxiliaryClassifiers
from convnetlab.callbacks.finetuning import FeatureExtraction, FinetuningSchedule
from convnetlab.callbacks.gradient_flow import GradientFlow
from convnetlab.callbacks.progress import EpochLinePrinter, progress_bar
from convnetlab.callbacks.throughput import TrainThroughput
from convnetlab.callbacks.visual_logging import VisualLogging

__all__ = ["AuxiliaryClassifiers", "EpochLinePrinter", "FeatureExtraction", "FinetuningSchedule", "GradientFlow",
           "TrainThroughput", "VisualLogging", "progress_bar"]
