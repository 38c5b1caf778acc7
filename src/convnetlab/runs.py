"""The run directory: ``metrics.json``, locating a run from one of its checkpoints, and its data config."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from convnetlab.errors import InputError

METRICS_FILE = "metrics.json"
RESOLVED_CONFIG = "config_resolved.yaml"  # the run's config with every interpolation resolved


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def update_metrics(run_dir: str | Path, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into ``run_dir/metrics.json`` (flat object), writing atomically; returns the result."""
    path = Path(run_dir) / METRICS_FILE
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update({key: _plain(value) for key, value in values.items()})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".metrics-", suffix=".json")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from the rest of a team
    with os.fdopen(fd, "w") as handle:
        json.dump(current, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)
    return current


def run_dir_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """The run dir holding ``<run>/checkpoints/<file>.ckpt`` (it has a ``.hydra`` folder), else None."""
    candidate = Path(ckpt_path).resolve().parent.parent
    return candidate if (candidate / ".hydra").is_dir() else None


def run_data_config(data: DictConfig | None, ckpt_path: str | Path, run_dir: Path | None) -> DictConfig:
    """``data`` if given, else the data config of the checkpoint's run (resolved at train time, so paths match)."""
    if data is not None:
        return data
    if run_dir is None:
        raise InputError(
            f"{ckpt_path} is not inside a convnetlab run dir, so its data is unknown; pass data=... (and data.root=...)."
        )
    resolved = run_dir / RESOLVED_CONFIG
    return OmegaConf.load(resolved if resolved.exists() else run_dir / ".hydra" / "config.yaml").data


def check_resume_checkpoint(ckpt_path: str | Path, module: torch.nn.Module) -> None:
    """Raise InputError if ``ckpt_path`` holds another backbone than ``module`` (names or shapes differ),
    naming both architectures, instead of Lightning's page of missing and unexpected keys."""
    from convnetlab.checkpoint_file import read_checkpoint

    checkpoint = read_checkpoint(ckpt_path)
    # The backbone only: callbacks add their own modules (auxiliary heads) after this check runs.
    saved = {k: v for k, v in checkpoint.get("state_dict", {}).items() if k.startswith("backbone.")}
    ours = {k: v for k, v in module.state_dict().items() if k.startswith("backbone.")}
    if saved.keys() == ours.keys() and all(saved[k].shape == ours[k].shape for k in ours):
        return
    theirs = checkpoint.get("hyper_parameters", {}).get("backbone", {})
    mine = getattr(module, "hparams", {}).get("backbone", {})
    raise InputError(
        f"{ckpt_path} holds a {theirs.get('arch', 'different')} (width {theirs.get('width', '?')}) but this run builds a "
        f"{mine.get('arch', '?')} (width {mine.get('width', '?')}); resume without changing model.*, or start a new run "
        f"with model.weights={ckpt_path} to initialise from it."
    )
