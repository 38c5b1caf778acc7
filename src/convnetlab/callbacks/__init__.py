"""Lightning callbacks, one per file."""

from convnetlab.callbacks.aux_heads import AuxiliaryClassifiers
from convnetlab.callbacks.finetuning import FeatureExtraction, FinetuningSchedule
from convnetlab.callbacks.finite_loss import NonFiniteLossError, StopOnNonFiniteLoss
from convnetlab.callbacks.gradient_flow import GradientFlow
from convnetlab.callbacks.preemption import CheckpointOnSigterm
from convnetlab.callbacks.progress import EpochLinePrinter, progress_bar
from convnetlab.callbacks.rng_state import RNGState
from convnetlab.callbacks.throughput import TrainThroughput
from convnetlab.callbacks.time_to_accuracy import TimeToAccuracy
from convnetlab.callbacks.visual_logging import VisualLogging

__all__ = ["AuxiliaryClassifiers", "CheckpointOnSigterm", "EpochLinePrinter", "FeatureExtraction", "FinetuningSchedule",
           "GradientFlow", "NonFiniteLossError", "RNGState", "StopOnNonFiniteLoss", "TimeToAccuracy", "TrainThroughput", "VisualLogging",
           "progress_bar"]
