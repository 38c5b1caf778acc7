"""Classic image-classification CNNs: torchvision families plus LeNet-5, built by name."""

from convnetlab.models.lenet import LeNet5
from convnetlab.models.zoo import ARCHS, build_model, classifier_name

__all__ = ["ARCHS", "LeNet5", "build_model", "classifier_name"]
