"""LightningModules."""

from convnetlab.lit.classifier import ImageClassifier

__all__ = ["ImageClassifier"]
