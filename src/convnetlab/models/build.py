"""``build_model(arch, num_classes, ...)``: any registered architecture, with the generic options resolved.

With the defaults (num_classes=1000, in_channels=3, input_size=224, width=1, "auto" options) each
torchvision family is structurally identical to ``torchvision.models.<arch>(weights=None)`` (GoogLeNet
with ``aux_logits=False``), so torchvision state dicts load with ``strict=True``.

Options for small inputs and CPUs:

- ``small_input`` ("auto" means ``input_size < 112``), for families with a small-input stem: ResNet
  gets the CIFAR stem (3x3 stride-1 ``conv1``, ``maxpool`` -> Identity); GoogLeNet a 3x3 stride-1
  ``conv1`` with ``maxpool1`` and ``maxpool2`` -> Identity; AlexNet a 3x3 stride-1 first conv (its
  three pools then leave 3x3 maps at 32 px); VGG keeps its features (five pools take 32 px to 1x1).
  AlexNet/VGG also replace the 6x6/7x7 ``avgpool`` with a global one, so the classifier is
  C*1*1 -> hidden -> hidden -> classes. LeNet-5 and DesignNet have one stem and ignore it.
- ``classifier_hidden`` (families with an MLP head): AlexNet/VGG "auto" is 4096, or
  ``max(64, round(512 * width))`` with small_input; an int overrides.
- ``width`` scales every conv channel count to ``max(8, round(c * width))`` (ResNet stage widths,
  GoogLeNet inception branches, ...); LeNet-5 uses a floor of 1. width=1 is exact.
- ``in_channels`` sets the first conv's input channels (e.g. 1 for grayscale digits).
- ``dropout`` (families with a dropout layer): None keeps the family default (AlexNet/VGG 0.5,
  GoogLeNet 0.2).
- ``arch_kwargs``: resnet ``zero_init_residual``; googlenet ``aux_logits`` (default False; if
  True, train mode returns torchvision's ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``
  instead of a tensor) and ``transform_input`` (default False: inputs are normalised by the data
  pipeline); designnet ``widths``, ``block``, ``kernel``, ``depth``, ``norm``, ``activation``, ``head``
  (:mod:`convnetlab.models.design_net`); lenet5 ``variant`` and ``c3_table`` (:mod:`convnetlab.models.lenet`).

Options that a family has no layer for (e.g. ``dropout`` for ResNet) raise instead of being
silently ignored.

``weights`` (``pretrained=True`` is its old alias for ``DEFAULT``) starts from torchvision weights in
the local torch cache (timm's from the local torch / Hugging Face caches) or from a checkpoint / state-dict
file, with a fresh classifier for ``num_classes``; see :mod:`convnetlab.models.weights`.

``arch="timm"`` builds any timm network, ``name`` choosing it (:mod:`convnetlab.models.timm_models`);
``dropout`` is its ``drop_rate``, other ``arch_kwargs`` go to ``timm.create_model``, ``width`` stays 1.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from convnetlab.errors import InputError
from convnetlab.models import registry
from convnetlab.models import weights as pretrained_weights


def build_model(
    arch: str,
    num_classes: int = 1000,
    *,
    in_channels: int = 3,
    input_size: int = 224,
    width: float = 1.0,
    small_input: bool | str = "auto",
    classifier_hidden: int | str = "auto",
    dropout: float | None = None,
    weights: str | None = None,
    pretrained: bool = False,
    **arch_kwargs: Any,
) -> nn.Module:
    """Build ``arch`` mapping (N, in_channels, input_size, input_size) to (N, num_classes) logits."""
    spec = registry.get(arch)
    weights = pretrained_weights.resolve_weights(weights, pretrained)
    if weights is not None:
        small_input, arch_kwargs = pretrained_weights.build_kwargs_for_weights(spec, weights, small_input, arch_kwargs)
        model = build_model(arch, num_classes, in_channels=in_channels, input_size=input_size, width=width,
                            small_input=small_input, classifier_hidden=classifier_hidden, dropout=dropout, **arch_kwargs)
        options = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size, "width": width,
                   "dropout": dropout, **arch_kwargs}
        pretrained_weights.load_pretrained(model, spec, weights, options)
        return model
    if width <= 0:
        raise InputError(f"width must be positive, got {width}")
    options: dict[str, Any] = {"in_channels": in_channels, "input_size": input_size, "width": width}
    if spec.mlp_head:
        options["classifier_hidden"] = classifier_hidden
    elif classifier_hidden != "auto":
        raise InputError(f"classifier_hidden applies to architectures with an MLP head, not {arch}")
    if spec.default_dropout is not None:
        options["dropout"] = spec.default_dropout if dropout is None else dropout
    elif dropout is not None:
        raise InputError(f"{arch} has no dropout layer; leave dropout=None")
    if spec.small_input_stem:
        options["small"] = _small_stem(small_input, input_size)
    return spec.build(num_classes, **options, **arch_kwargs)


def _small_stem(small_input: bool | str, input_size: int) -> bool:
    if small_input == "auto":
        return input_size < 112
    if isinstance(small_input, bool):
        return small_input
    raise InputError(f"small_input must be a bool or 'auto', got {small_input!r}")


def classifier_name(arch: str, backbone: nn.Module | None = None) -> str:
    """Attribute path of ``arch``'s final classifier module, e.g. to swap the head for fine-tuning
    (``backbone``, the built network, is needed when it depends on it: ``timm``)."""
    return registry.get(arch).classifier_path(backbone)
