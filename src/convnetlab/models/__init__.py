"""Classic image-classification CNNs, built by name through the architecture registry."""

from convnetlab.models.build import build_model, classifier_name
from convnetlab.models.lenet import LeNet5
from convnetlab.models.registry import Architecture, get, names, register

__all__ = ["ARCHS", "Architecture", "LeNet5", "build_model", "classifier_name", "get", "names", "register"]


def __getattr__(attr: str):
    if attr == "ARCHS":  # every registered architecture, read when asked (registrations may be added)
        return names()
    raise AttributeError(attr)
