"""The run directory: ``metrics.json``, locating a run from one of its checkpoints, and its data config."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

METRICS_FILE = "metrics.json"
RESOLVED_CONFIG = "config_resolved.yaml"  # the run's config with every interpolation resolved


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def update_metrics(run_dir: str | Path, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into ``run_dir/metrics.json`` (flat object), writing atomically; returns the result."""
    path = Path(run_dir) / METRICS_FILE
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update({key: _plain(value) for key, value in values.items()})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".metrics-", suffix=".json")
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
        raise ValueError(
            f"{ckpt_path} is not inside a convnetlab run dir, so its data is unknown; pass data=... (and data.root=...)."
        )
    resolved = run_dir / RESOLVED_CONFIG
    return OmegaConf.load(resolved if resolved.exists() else run_dir / ".hydra" / "config.yaml").data
