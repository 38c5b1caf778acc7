"""Check config values against the type hints of the callables they will be passed to.

A wrong type (``trainer.max_epochs=abc``, ``data.batch_size=1.5``) would otherwise fail deep inside
Lightning or a DataLoader, or not fail at all. Every config node with a ``_target_`` is checked key by
key against that target's signature; hints this module cannot judge (classes, callables, generics it
does not know) are skipped, so the check never rejects a value the target would accept.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from convnetlab.errors import InputError

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def _accepts(hint: Any, value: Any) -> bool | None:
    """True/False if ``value`` does/does not fit ``hint``; None if this check cannot tell."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_accepts(arg, value) for arg in args]
        return True if True in verdicts else (False if all(v is False for v in verdicts) else None)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, list | tuple)
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    if inspect.isclass(hint) and not issubclass(hint, os.PathLike) and isinstance(value, int | float | str | list):
        return isinstance(value, hint)  # e.g. torch.Tensor: a config scalar or string is never one
    return None


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is None and hasattr(hint, "__name__"):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _hints(target: str) -> dict[str, Any]:
    """Parameter hints of the target; for a class, of its ``__init__`` and its bases' (``**kwargs`` chains)."""
    try:
        obj = get_object(target)
    except Exception:
        return {}
    hints: dict[str, Any] = {}
    for fn in [cls.__init__ for cls in reversed(obj.__mro__)] if inspect.isclass(obj) else [obj]:
        try:
            hints.update(typing.get_type_hints(fn))
        except Exception:  # unresolvable annotations: nothing to check against
            continue
    return hints


def check_config_types(cfg: DictConfig) -> None:
    """Raise :class:`InputError` for the first value whose type its ``_target_`` cannot take."""
    container = OmegaConf.to_container(cfg, resolve=False)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("_target_"), str):
                hints = _hints(node["_target_"])
                for key, value in node.items():
                    if key in HYDRA_KEYS or key not in hints or isinstance(value, dict):
                        continue
                    if isinstance(value, str) and "${" in value:  # interpolations resolve later
                        continue
                    if _accepts(hints[key], value) is False:
                        raise InputError(f"{path}{key}={value!r} must be {_type_name(hints[key])} "
                                         f"({node['_target_']}); fix the override or the config.")
            for key, value in node.items():
                walk(value, f"{path}{key}.")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}{i}.")

    walk(container, "")
