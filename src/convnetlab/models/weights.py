"""Pretrained weights for ``build_model``: torchvision weights from the local torch cache, or a file.

``weights`` is either a torchvision weights name (``DEFAULT``, ``IMAGENET1K_V1``, ...; ``pretrained=True``
is the old spelling of ``DEFAULT``) or the path of a convnetlab ``.ckpt`` / a plain state dict (ours or
torchvision's). Nothing is ever downloaded: torchvision files must already sit in
``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), and the error says which file
to put where.

Transfer always starts a new task, so the classifier that produces logits (the last ``nn.Linear``, and
GoogLeNet's ``aux*.fc2``) keeps its fresh initialisation for the target ``num_classes``; every other
tensor must load, or the error names the file, the architecture and the first mismatch.

Architectures with their own named weights (``timm``: ``Architecture.named_weights``) answer the same
questions -- which file in which local cache, which mean/std and crop -- themselves; files work alike.

Input conventions travel with the weights: torchvision's were trained on ImageNet-normalised 224 px crops
of 256 px resizes (``weights.transforms()``), and GoogLeNet's expect ``transform_input=True``.
:func:`input_normalization` gives the mean/std to normalise with (the weights' own, else the data's;
the entry point resolves it once for module and data) and :func:`eval_transform_mismatch` says when the data's crop/resize differ.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import WeightsEnum, get_model_weights

from convnetlab.errors import InputError, MissingFileError
from convnetlab.models import registry

WEIGHT_FILE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors")


def resolve_weights(weights: str | None, pretrained: bool = False) -> str | None:
    """``weights`` with the ``pretrained=True`` alias folded in (it means ``DEFAULT``)."""
    if pretrained and weights not in (None, "DEFAULT"):
        raise InputError(f"pretrained=true and weights={weights} disagree; give only weights=...")
    return "DEFAULT" if pretrained else (str(weights) if weights is not None else None)


def is_weights_file(weights: str) -> bool:
    """A path (to a checkpoint or state dict) rather than a torchvision weights name."""
    return os.sep in weights or weights.lower().endswith(WEIGHT_FILE_SUFFIXES) or Path(weights).is_file()


def torchvision_weights(arch: str, name: str) -> WeightsEnum:
    """The torchvision weights enum member ``name`` for ``arch`` (``DEFAULT`` is an alias)."""
    tv_name = registry.get(arch).torchvision_name
    if tv_name is None:
        raise InputError(
            f"{arch} has no torchvision weights; give model.weights=<path to a convnetlab .ckpt or state dict>"
        )
    members = get_model_weights(tv_name)
    if name not in members.__members__:
        raise InputError(f"{arch} has no torchvision weights {name!r}; choose one of {', '.join(members.__members__)}")
    return members[name]


def cached_weights_file(weights: WeightsEnum) -> Path:
    """Where torch.hub keeps the file of ``weights``: ``torch.hub.get_dir()/checkpoints/<url file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def read_weights_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(backbone state dict, the checkpoint's hyperparameters or None) of a .ckpt or a plain state dict."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"model.weights={path} does not exist; give a torchvision weights name (DEFAULT, IMAGENET1K_V1, ...) "
            "or the path of a convnetlab .ckpt or a state-dict file"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded = load_file(path, device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise InputError(f"{path} is not a PyTorch checkpoint or state dict ({type(e).__name__}: {e})") from e
    hparams = None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        hparams, loaded = loaded.get("hyper_parameters"), loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise InputError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    if any(k.startswith("backbone.") for k in loaded):  # a LightningModule's state: keep the network only
        loaded = {k.removeprefix("backbone."): v for k, v in loaded.items() if k.startswith("backbone.")}
    return loaded, hparams


def logit_layers(model: nn.Module) -> list[str]:
    """Names of the layers that output class logits: the last ``nn.Linear`` and GoogLeNet's ``aux*.fc2``."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    aux = [name for name in linears if name.startswith("aux") and name.endswith(".fc2")]
    return [linears[-1], *aux] if linears else []


def load_backbone_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str, arch: str) -> None:
    """Load ``state`` into ``model`` except its logit layers; any other difference is a one-line error."""
    heads = tuple(f"{name}." for name in logit_layers(model))
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(heads)}
    # Weights trained with aux heads (torchvision GoogLeNet) also fit a model built without them.
    given = {k: v for k, v in state.items() if not k.startswith(heads) and getattr(model, k.split(".")[0], 0) is not None}
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    mismatched = [f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                  if k in given and given[k].shape != v.shape]
    if missing or unexpected or mismatched:
        problems = [f"{len(items)} {what} (e.g. {items[0]})" for what, items in
                    (("missing", missing), ("unexpected", unexpected), ("with another shape (file vs model)", mismatched))
                    if items]
        raise InputError(f"{source} does not hold weights for this {arch}: {'; '.join(problems)}; "
                         "build the model with the architecture settings the weights were trained with")
    model.load_state_dict(given, strict=False)


def named_weights(arch: str, weights: str | None, options: Mapping[str, Any] | None) -> Any:
    """The arch's own weights object for the name ``weights`` (``Architecture.named_weights``), or None
    for no weights, a file, or an arch whose weights are torchvision's."""
    spec = registry.get(arch) if arch in registry.names() else None
    if not weights or is_weights_file(weights) or spec is None or spec.named_weights is None:
        return None
    return spec.named_weights(dict(options or {}), weights)


def load_pretrained(model: nn.Module, spec: registry.Architecture, weights: str,
                    options: Mapping[str, Any] | None = None) -> None:
    """Fill ``model`` (already built for the target classes from build ``options``) from torchvision
    weights, the arch's own named weights, or a file."""
    arch = spec.name
    if is_weights_file(weights):
        state, hparams = read_weights_file(weights)
        trained_as = (hparams or {}).get("backbone", {})
        source = f"{weights}" + (f" (a {trained_as.get('arch')} with width {trained_as.get('width', 1.0)})"
                                 if trained_as.get("arch") else "")
        load_backbone_weights(model, state, source, arch)
        return
    if (own := named_weights(arch, weights, options)) is not None:
        own.load(model, dict(options or {}))
        return
    enum = torchvision_weights(arch, weights)
    path = cached_weights_file(enum)
    if not path.is_file():
        raise MissingFileError(
            f"torchvision weights {arch} {enum.name} are not in the local torch cache: put {path.name} "
            f"({enum.url}) into {path.parent} (torch.hub.get_dir()/checkpoints; set TORCH_HOME to move it); "
            "nothing is downloaded"
        )
    state, _ = read_weights_file(path)
    load_backbone_weights(model, state, str(path), arch)


def build_kwargs_for_weights(
    spec: registry.Architecture, weights: str, small_input: bool | str, arch_kwargs: dict
) -> tuple[bool | str, dict]:
    """``small_input`` and family options that torchvision weights need (their stem, GoogLeNet's transform_input)."""
    if is_weights_file(weights):
        return small_input, arch_kwargs
    arch = spec.name
    if named_weights(arch, weights, arch_kwargs) is not None:  # fails early on an unknown name
        return small_input, arch_kwargs
    torchvision_weights(arch, weights)  # fail early on an unknown name or an arch without weights
    if small_input is True:
        raise InputError(f"torchvision {arch} weights have the ImageNet stem; set model.small_input=false (or auto)")
    return False, {**spec.weights_options, **arch_kwargs}


def pretrained_normalization(arch: str, weights: str | None, options: Mapping[str, Any] | None = None
                             ) -> tuple[list[float], list[float]] | None:
    """(mean, std) in [0, 1] units that ``weights`` were trained with, or None if unknown (plain state dict);
    ``options`` (the model config) name the network for archs with their own weights (``timm``)."""
    if not weights:
        return None
    if is_weights_file(weights):
        _, hparams = read_weights_file(weights)
        return (list(hparams["mean"]), list(hparams["std"])) if hparams and "mean" in hparams else None
    if (own := named_weights(arch, weights, options)) is not None:
        return list(own.mean), list(own.std)
    transforms = torchvision_weights(arch, weights).transforms()
    return list(transforms.mean), list(transforms.std)


def eval_transform_mismatch(arch: str, weights: str | None, image_size: int, resize_size: int,
                            options: Mapping[str, Any] | None = None) -> str | None:
    """A hint when the data's eval Resize/CenterCrop differ from those torchvision ``weights`` were measured with."""
    if not weights or is_weights_file(weights):
        return None
    if (own := named_weights(arch, weights, options)) is not None:
        crop, resize = own.crop_size, own.resize_size
    else:
        transforms = torchvision_weights(arch, weights).transforms()
        crop, resize = transforms.crop_size[0], transforms.resize_size[0]
    if (image_size, resize_size) == (crop, resize):
        return None
    return (f"{arch} {weights} weights were evaluated with Resize({resize}) + CenterCrop({crop}), the data uses "
            f"Resize({resize_size}) + CenterCrop({image_size}); set data.image_size={crop} data.resize_size={resize} "
            "to reproduce their accuracy")


def input_normalization(
    arch: str, weights: str | None, mean: Sequence[float], std: Sequence[float],
    options: Mapping[str, Any] | None = None,
) -> tuple[list[float], list[float]]:
    """The (mean, std) to normalise inputs with: the pretrained weights' own when known (features are only
    reusable on inputs scaled the way they were learned), else the data's ``mean``/``std``."""
    stats = pretrained_normalization(arch, weights, options)
    return stats if stats is not None else (list(mean), list(std))
