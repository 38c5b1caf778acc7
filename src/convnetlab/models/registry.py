"""The architecture registry: every network convnetlab can build is declared here once, by name.

An :class:`Architecture` says how to build the network and what other code needs to know about it:
where its classifier sits (fine-tuning swaps or trains it, embeddings read its input), its stages from
input to output (fine-tuning unfreezes them last-first, auxiliary heads attach to them), which
torchvision weights exist for it (published parameter counts, GFLOPs and accuracies come from their
``meta``), and which generic options (an MLP head, dropout, a small-input stem) it has layers for.
Nothing outside this package switches on architecture names: it asks :func:`get`.

Adding an architecture is one :func:`register` call (the families are registered in
:mod:`convnetlab.models.architectures`) plus one YAML file in ``conf/model/``. An entry may stand for a
whole library of networks chosen by one build option (``timm``: ``model.name``); it then reads its
classifier and stages from the built network and is labelled ``<arch>:<option value>`` (``timm:convnext_atto``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from convnetlab.errors import InputError

Stage = tuple[str, list[str]]  # (label, names of the backbone modules it covers in named_modules())


@dataclass(frozen=True)
class Architecture:
    """What the rest of convnetlab needs to know about one network.

    Attributes:
        name: the ``model.arch`` value.
        build: ``build(num_classes, **options) -> nn.Module`` with the generic options already resolved
            (``in_channels``, ``input_size``, ``width``, and the ones its flags below allow).
        classifier: attribute path of the module that outputs the logits (``fc``, ``classifier``), or
            ``classifier(backbone) -> path`` when it depends on the built network; None for a network that
            is only a head (nothing to fine-tune or read embeddings from).
        stages: ``stages(backbone) -> [(label, module names), ...]`` from the input to the classifier;
            None when the family has no stage preset.
        torchvision_name: the name torchvision's weights registry knows it by (``get_model_weights``),
            or None when torchvision has no weights for it.
        mlp_head: has a hidden fully connected head (``classifier_hidden`` applies).
        default_dropout: its dropout probability; None when it has no dropout layer.
        small_input_stem: has a CPU-sized stem variant (``small_input``).
        builtin_aux: training-only auxiliary heads the network itself can carry: module name -> index of
            its logits in the tuple the network returns in train mode (torchvision's GoogLeNetOutputs).
        aux_option: the build option that adds ``builtin_aux`` (e.g. ``{"aux_logits": True}``).
        weights_options: build options that torchvision's weights for it need.
        reference_input: (channels, side, classes) of its published setting, for tables that count
            parameters and FLOPs as the paper did.
        variant_option: the build option that picks the network inside this entry (``timm``: ``name``);
            runs and tables then call it ``<name>:<value>`` (:meth:`label`, :func:`parse_label`).
        named_weights: pretrained weights by name that are not torchvision's:
            ``named_weights(build options, weights) -> object`` with ``mean``, ``std``, ``crop_size``,
            ``resize_size`` and ``load(model, build options)`` (:mod:`convnetlab.models.weights` asks it).
    """

    name: str
    build: Callable[..., nn.Module]
    classifier: str | Callable[[nn.Module], str] | None
    stages: Callable[[nn.Module], list[Stage]] | None = None
    torchvision_name: str | None = None
    mlp_head: bool = False
    default_dropout: float | None = None
    small_input_stem: bool = False
    builtin_aux: dict[str, int] = field(default_factory=dict)
    aux_option: dict[str, Any] = field(default_factory=dict)
    weights_options: dict[str, Any] = field(default_factory=dict)
    reference_input: tuple[int, int, int] = (3, 224, 1000)
    variant_option: str | None = None
    named_weights: Callable[[Mapping[str, Any], str], Any] | None = None

    def stages_last_first(self, backbone: nn.Module) -> list[Stage]:
        """The stages from the classifier back to the input: the order fine-tuning unfreezes them."""
        if self.stages is None:
            raise InputError(f"no stage preset for arch {self.name!r}; give FinetuningSchedule explicit phases")
        return self.stages(backbone)[::-1]

    def classifier_path(self, backbone: nn.Module | None = None) -> str:
        """``classifier`` (read from ``backbone`` when it depends on the built network), or a one-line error
        for a network that is only a head."""
        if self.classifier is None:
            raise InputError(f"{self.name} is a classifier head itself; it has no backbone and head to tell apart")
        if callable(self.classifier):
            if backbone is None:
                raise InputError(f"{self.name}'s classifier depends on the built network; pass the backbone")
            return self.classifier(backbone)
        return self.classifier

    def head_modules(self, backbone: nn.Module) -> list[str]:
        """The classifier plus the built-in auxiliary heads present in ``backbone``."""
        return [self.classifier_path(backbone),
                *(n for n in self.builtin_aux if getattr(backbone, n, None) is not None)]

    def label(self, options: Mapping[str, Any] | None = None) -> str:
        """How runs and tables name the network built with ``options``: the arch, or ``<arch>:<variant>``."""
        if self.variant_option is None:
            return self.name
        return f"{self.name}:{(options or {}).get(self.variant_option)}"

    def published(self, weights: str = "IMAGENET1K_V1") -> dict[str, float] | None:
        """torchvision's ``meta`` for ``weights``: num_params, GFLOPS, acc@1, acc@5 (ImageNet-1k), or None."""
        if self.torchvision_name is None:
            return None
        from torchvision.models import get_model_weights

        members = get_model_weights(self.torchvision_name).__members__
        if weights not in members:
            return None
        meta = members[weights].meta
        metrics = meta["_metrics"]["ImageNet-1K"]
        return {"num_params": meta["num_params"], "gflops": meta["_ops"],
                "acc1": metrics["acc@1"], "acc5": metrics["acc@5"]}


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Declare ``arch``; a second declaration of the same name is a bug, not an override."""
    if arch.name in _REGISTRY:
        raise ValueError(f"architecture {arch.name!r} is registered twice")
    _REGISTRY[arch.name] = arch
    return arch


def _ensure_loaded() -> None:
    if not _REGISTRY:
        import convnetlab.models.architectures  # noqa: F401  (registers the families)


def names() -> tuple[str, ...]:
    """Every registered architecture name, in declaration order."""
    _ensure_loaded()
    return tuple(_REGISTRY)


def get(name: str) -> Architecture:
    """The architecture called ``name``; an unknown name is a one-line error listing the valid ones."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise InputError(f"unknown arch {name!r}; valid: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def parse_label(text: str) -> tuple[str, dict[str, Any]]:
    """``(arch, build options)`` of a :meth:`Architecture.label`: ``timm:convnext_tiny`` ->
    ``("timm", {"name": "convnext_tiny"})``, ``resnet50`` -> ``("resnet50", {})``."""
    arch, sep, variant = str(text).partition(":")
    spec = get(arch)
    if not sep:
        return arch, {}
    if spec.variant_option is None or not variant:
        raise InputError(f"{text!r}: {arch} has no variants; write {arch}"
                         + "".join(f", or {a}:<{s.variant_option}>" for a in names() if (s := get(a)).variant_option))
    return arch, {spec.variant_option: variant}


def published_errors(name: str) -> dict[str, float] | None:
    """Top-1/top-5 error (%) of torchvision's IMAGENET1K_V1 weights for ``name``, or None without weights."""
    meta = get(name).published() if name in names() else None
    if meta is None:
        return None
    return {"top1_err": 100.0 - meta["acc1"], "top5_err": 100.0 - meta["acc5"]}
