"""Hyperparameters as a checkpoint stores them: plain containers that name things, never import paths.

A checkpoint must load with ``torch.load(weights_only=True)`` (no OmegaConf objects) and must survive
moving code between modules, so:

- the backbone is ``{"arch": <registered name>, **build options}``, rebuilt with
  :func:`convnetlab.models.build_model` (0.1.0 checkpoints stored ``_target_: convnetlab.models.build_model``
  or ``convnetlab.analysis.embeddings.linear_head``; both are read as the same thing);
- the scheduler is ``{"name": <convnetlab.lit.schedules.SCHEDULES key>, **options}``;
- the optimizer keeps its ``_target_`` (a ``torch.optim`` class: PyTorch's public, stable names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from omegaconf import OmegaConf

from convnetlab.errors import InputError
from convnetlab.lit.schedules import SCHEDULES

_SCHEDULE_MODULE = "convnetlab.lit.schedules."


def to_plain(value: Any) -> Any:
    """Resolve OmegaConf containers into builtin dicts/lists (safe for weights_only checkpoints)."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def backbone_spec(backbone: Mapping[str, Any]) -> dict[str, Any]:
    """``{"arch", **options}`` from a model config (its ``_target_``, a config-level detail, dropped)."""
    spec = {k: v for k, v in to_plain(backbone).items() if k != "_target_"}
    if "arch" not in spec:
        raise InputError(f"the model config names no arch: {sorted(spec)}; give model.arch=<a registered architecture>")
    return spec


def scheduler_spec(scheduler: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{"name", **options}`` from a scheduler config with ``_target_: convnetlab.lit.schedules.<name>``."""
    if not scheduler:
        return None
    spec = to_plain(scheduler)
    target = spec.pop("_target_", None)
    spec.pop("_partial_", None)
    if target is not None:
        if not str(target).startswith(_SCHEDULE_MODULE):
            raise InputError(f"scheduler {target} is not one of convnetlab's schedules ({', '.join(SCHEDULES)})")
        spec = {"name": str(target).removeprefix(_SCHEDULE_MODULE), **spec}
    if spec.get("name") not in SCHEDULES:
        raise InputError(f"unknown scheduler {spec.get('name')!r}; choose one of {', '.join(SCHEDULES)}")
    return spec


def scheduler_factory(spec: Mapping[str, Any]) -> Callable[..., Any]:
    """``factory(optimizer, steps_per_epoch=..., max_epochs=...)`` for a :func:`scheduler_spec`."""
    options = {k: v for k, v in spec.items() if k != "name"}
    return partial(SCHEDULES[spec["name"]], **options)
