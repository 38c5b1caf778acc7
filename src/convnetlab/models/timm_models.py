"""Modern backbones from timm (``model=timm model.name=<any timm architecture>``) in the same harness.

One registry entry, ``timm``, builds any ``timm.list_models()`` name with ``timm.create_model(name,
num_classes=..., in_chans=..., drop_rate=..., pretrained=False)``; the network itself is timm's, unchanged.
What the rest of convnetlab asks the registry is read from the built model:

- the classifier: ``pretrained_cfg["classifier"]`` (``fc``, ``head.fc``, ``classifier``), checked against
  ``get_classifier()``;
- the stages: timm's ``feature_info`` (one module per reduction stage: ``layer1``..``layer4``, ``blocks.3``,
  ``stages.2``). Every module with parameters belongs to exactly one stage: stage k runs from after stage
  k-1's feature module up to and including its own (so the stem joins the first stage), and what follows
  the last one before the classifier (``conv_head``, ``head.norm``) joins the last. Labels are the feature
  module names with ``.`` -> ``_`` (``blocks_3``), the optimizer group names of fine-tuning phases.
  Auxiliary heads attach to the feature module names (``layer2``, ``stages.1``).

Pretrained weights (``model.weights``) never download: ``DEFAULT`` (the name's default tag, or the tag in
``name`` such as ``resnet18.a1_in1k``) or a tag (``a1_in1k``) is read from the local caches only:

- ``$TORCH_HOME/hub/checkpoints/<name>.<tag>.safetensors`` (or ``.pth``/``.bin``; a file you put there);
- the Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)
  where ``timm.create_model(pretrained=True)`` or ``hf download timm/<name>.<tag>`` left it;
- for weights timm still serves from a URL, ``$TORCH_HOME/hub/checkpoints/<file name of the URL>``.

Otherwise the run stops with one line naming the file and the folder. The file is loaded by timm itself
(``pretrained_cfg_overlay={"file": ...}``: its checkpoint filters and ``in_chans`` adaptation apply), and
the classifier keeps its fresh initialisation, as for every transfer in convnetlab.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from convnetlab.errors import InputError, MissingFileError
from convnetlab.models.registry import Stage

# Files put by hand into the torch cache as <model>.<tag><suffix>.
_LOCAL_SUFFIXES = (".safetensors", ".pth", ".bin")


def _timm():
    try:
        import timm
    except ImportError as e:  # pragma: no cover - timm is a dependency
        raise InputError("model=timm needs the timm package: pip install timm==1.0.31") from e
    return timm


def check_name(name: str | None) -> str:
    """``name`` if timm knows it (with or without a pretrained tag), else a one-line error."""
    timm = _timm()
    if not name:
        raise InputError("model=timm needs model.name=<a timm architecture>, e.g. model.name=resnet18")
    base, _ = timm.models.split_model_name_tag(str(name))
    if not timm.models.is_model(base):
        close = timm.list_models(f"*{base[:6]}*")[:8]
        raise InputError(f"timm has no model {name!r}" + (f"; similar: {', '.join(close)}" if close else "")
                         + "; see timm.list_models()")
    return str(name)


def build_timm(num_classes: int, *, in_channels: int, input_size: int, width: float, dropout: float,
               name: str | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, num_classes, in_chans, drop_rate, pretrained=False, **kwargs)``.

    ``width`` must stay 1 (timm families scale with their own names: ``mobilenetv3_small_050``). Models
    with a fixed input size (ViTs) get ``img_size=input_size``; options set to None are not passed.
    """
    if width != 1.0:
        raise InputError(f"timm models do not take model.width (got {width}); choose a smaller timm variant instead")
    return _create(check_name(name), num_classes, in_channels, input_size, dropout, kwargs)


def _create(name: str, num_classes: int, in_channels: int, input_size: int, dropout: float | None,
            kwargs: Mapping[str, Any], weights_file: Path | None = None) -> nn.Module:
    options = {k: v for k, v in kwargs.items() if v is not None}
    if _fixed_input_size(name):
        options.setdefault("img_size", input_size)
    if weights_file is not None:
        options["pretrained_cfg_overlay"] = {"file": str(weights_file)}
    try:
        return _timm().create_model(name, pretrained=weights_file is not None, num_classes=num_classes,
                                    in_chans=in_channels, drop_rate=dropout or 0.0, **options)
    except TypeError as e:
        raise InputError(f"timm {name} does not take these options {sorted(options)}: {e}") from e


def _fixed_input_size(name: str) -> bool:
    try:
        cfg = _timm().models.get_pretrained_cfg(name)
    except RuntimeError:
        return False
    return bool(cfg is not None and cfg.fixed_input_size)


def timm_classifier(backbone: nn.Module) -> str:
    """Attribute path of the logits layer: ``pretrained_cfg["classifier"]``, the module ``get_classifier()`` returns."""
    path = (getattr(backbone, "pretrained_cfg", None) or {}).get("classifier")
    modules = dict(backbone.named_modules())
    get_classifier = getattr(backbone, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else None
    if path in modules and (head is None or modules[path] is head):
        return path
    for name, module in modules.items():  # a cfg without it (or pointing elsewhere): find get_classifier()'s module
        if head is not None and module is head and name:
            return name
    raise InputError(f"timm {type(backbone).__name__} names no classifier module (pretrained_cfg['classifier'])")


def feature_modules(backbone: nn.Module) -> list[str]:
    """The modules of timm's ``feature_info``, one per reduction stage, input first."""
    info = getattr(backbone, "feature_info", None)
    names = [f["module"] for f in info] if info else []
    if not names:
        raise InputError(f"timm {type(backbone).__name__} has no feature_info (no stages); "
                         "give FinetuningSchedule explicit phases and AuxiliaryClassifiers module names")
    return names


def timm_stages(backbone: nn.Module) -> list[Stage]:
    """Contiguous stages ending at each ``feature_info`` module (see the module docstring)."""
    features = feature_modules(backbone)
    classifier = timm_classifier(backbone)
    marks = [*features, classifier]
    stages: list[Stage] = []
    current: list[str] = []

    def walk(module: nn.Module, prefix: str) -> None:
        nonlocal current
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            if name == classifier:
                continue
            if name not in marks and any(m.startswith(f"{name}.") for m in marks):
                walk(child, f"{name}.")  # holds a stage boundary or the classifier: split it further
                continue
            if any(True for _ in child.parameters()):
                current.append(name)
            if name in features:
                stages.append((name.replace(".", "_"), current))
                current = []

    walk(backbone, "")
    if current and stages:  # after the last stage, before the classifier: conv_head, head.norm, ...
        stages[-1] = (stages[-1][0], stages[-1][1] + current)
    return [(label, names) for label, names in stages if names]


def label(options: Mapping[str, Any]) -> str:
    """``timm:<name>``, how runs and tables name a timm model."""
    return f"timm:{options.get('name')}"


# ----------------------------------------------------------------------------- pretrained weights
def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, read from the environment now (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def torch_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class TimmWeights:
    """Pretrained timm weights ``<model>.<tag>``: their input conventions and their file in a local cache."""

    full_name: str  # resnet18.a1_in1k
    cfg: Any  # timm PretrainedCfg

    @classmethod
    def resolve(cls, options: Mapping[str, Any], weights: str) -> TimmWeights:
        """``DEFAULT`` (the tag in ``name`` or timm's default tag) or a tag such as ``a1_in1k``."""
        timm = _timm()
        name = check_name(options.get("name"))
        base, tag = timm.models.split_model_name_tag(name)
        if weights != "DEFAULT":
            tag = weights
        full = f"{base}.{tag}" if tag else base
        try:
            cfg = timm.models.get_pretrained_cfg(full)
        except RuntimeError:
            cfg = None
        tags = timm.list_pretrained(f"{base}.*")
        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
            raise InputError(f"timm has no pretrained weights {full!r}; "
                             + (f"choose DEFAULT or one of {', '.join(t.split('.', 1)[1] for t in tags)}" if tags
                                else f"{base} has none; give model.weights=<path to a state dict> or null"))
        if not tag:
            full = f"{base}.{cfg.tag}" if cfg.tag else base
        return cls(full, cfg)

    @property
    def mean(self) -> list[float]:
        return [float(m) for m in self.cfg.mean]

    @property
    def std(self) -> list[float]:
        return [float(s) for s in self.cfg.std]

    @property
    def crop_size(self) -> int:
        return int(self.cfg.input_size[-1])

    @property
    def resize_size(self) -> int:
        return int(math.floor(self.crop_size / (self.cfg.crop_pct or 1.0)))

    def candidates(self) -> list[Path]:
        """Where the file may sit, in the order looked at."""
        flat = [torch_checkpoints() / f"{self.full_name}{suffix}" for suffix in _LOCAL_SUFFIXES]
        url = [torch_checkpoints() / os.path.basename(urlparse(self.cfg.url).path)] if self.cfg.url else []
        return flat + url

    def local_file(self) -> Path:
        """The weights file in a local cache, or a one-line error naming the file and the folder."""
        if self.cfg.file and Path(self.cfg.file).is_file():
            return Path(self.cfg.file)
        for path in self.candidates():
            if path.is_file():
                return path
        hub_id, cache = self.cfg.hf_hub_id, hf_hub_cache()
        if hub_id:
            from huggingface_hub import try_to_load_from_cache

            for filename in [self.cfg.hf_hub_filename] if self.cfg.hf_hub_filename else ["model.safetensors",
                                                                                          "pytorch_model.bin"]:
                found = try_to_load_from_cache(hub_id, filename, cache_dir=cache)
                if isinstance(found, str) and Path(found).is_file():
                    return Path(found)
        flat = self.candidates()[0]
        source = (f"model.safetensors of https://huggingface.co/{hub_id}" if hub_id else f"{self.cfg.url}")
        hub = (f" or `hf download {hub_id}` into the Hugging Face cache {cache} (HF_HUB_CACHE/HF_HOME move it)"
               if hub_id else "")
        raise MissingFileError(
            f"timm weights {self.full_name} are not in the local cache: put {source} as {flat.name} into "
            f"{flat.parent} (torch.hub.get_dir()/checkpoints; TORCH_HOME moves it){hub}; nothing is downloaded"
        )

    def load(self, model: nn.Module, options: Mapping[str, Any]) -> None:
        """Fill ``model`` (built by :func:`build_timm` from ``options``) with these weights, except its
        classifier, which keeps its fresh initialisation."""
        path = self.local_file()
        generic = ("num_classes", "in_channels", "input_size", "width", "dropout", "name")
        reference = _create(self.full_name, options["num_classes"], options.get("in_channels", 3),
                            options.get("input_size", 224), options.get("dropout"),
                            {k: v for k, v in options.items() if k not in generic}, weights_file=path)
        head = f"{timm_classifier(model)}."
        state = {k: v for k, v in reference.state_dict().items() if not k.startswith(head)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith(head)]:
            raise InputError(f"{path} does not fit timm {options.get('name')}: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")


def timm_weights(options: Mapping[str, Any], weights: str) -> TimmWeights:
    return TimmWeights.resolve(options, weights)
