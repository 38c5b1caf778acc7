"""ILSVRC-style comparison of finished runs: find runs, group them by model, aggregate over seeds.

A *run* is a directory with Hydra's ``.hydra/config.yaml`` (every ``convnetlab-train`` job has one,
even a job that crashed). It is *complete* when its ``metrics.json`` holds ``test/acc1``; other runs
are reported with the reason, never silently dropped. Runs are grouped by data and model: the
architecture plus every model setting that differs between runs of that architecture (e.g.
``resnet18 width=0.25`` vs ``resnet18 width=0.5``), so different seeds of one setting form one row.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from convnetlab.errors import MissingFileError
from convnetlab.runs import METRICS_FILE, RESOLVED_CONFIG

# Model settings that follow from the data rather than describing the model.
_DATA_DERIVED = {"_target_", "arch", "num_classes", "in_channels", "input_size"}

# (column, metrics.json key, transform): errors in percent, as the ILSVRC tables print them.
COLUMNS: list[tuple[str, str, Any]] = [
    ("top1_err", "test/acc1", lambda v: 100.0 * (1.0 - v)),
    ("top5_err", "test/acc5", lambda v: 100.0 * (1.0 - v)),
    ("params_m", "params", lambda v: v / 1e6),
    ("gflops", "gflops", float),
    ("train_img_s", "train_images_per_s", float),
    ("infer_img_s", "infer_images_per_s", float),
    ("train_s", "train_seconds", float),
]


@dataclass
class Run:
    path: Path
    config: dict
    metrics: dict
    problem: str | None = None  # why the run cannot be compared (failed, unfinished, ...)

    @property
    def arch(self) -> str:
        """The model as tables name it: the arch, or ``<arch>:<variant>`` for a registry entry that stands for
        many networks (``timm:convnext_atto``, see ``Architecture.label``)."""
        model = self.config.get("model") or {}
        arch = str(self.metrics.get("model") or model.get("arch", "?"))
        from convnetlab.models import registry

        return registry.get(arch).label(model) if arch in registry.names() else arch

    @property
    def data(self) -> str:
        return str(self.metrics.get("data") or (self.config.get("data") or {}).get("name", "?"))


@dataclass
class Row:
    """One model (on one dataset), aggregated over its runs (seeds)."""

    label: str
    arch: str
    data: str
    runs: list[Run] = field(default_factory=list)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.runs)


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run dir at or below ``paths`` (a run dir, a multirun dir, or any folder of them), sorted."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.is_dir():
            raise MissingFileError(f"{path} does not exist; pass run or multirun directories (runs=[dir1,dir2]).")
        if (path / ".hydra" / "config.yaml").is_file():
            found.add(path.resolve())
        found.update(p.parent.parent.resolve() for p in path.rglob(".hydra/config.yaml"))
    return sorted(found)


def load_run(path: Path) -> Run:
    """Read a run's config (resolved if available) and metrics, and say what is missing."""
    resolved = path / RESOLVED_CONFIG
    config = yaml.safe_load((resolved if resolved.is_file() else path / ".hydra" / "config.yaml").read_text()) or {}
    metrics_path = path / METRICS_FILE
    if not metrics_path.is_file():
        return Run(path, config, {}, problem="no metrics.json (failed or still running)")
    metrics = json.loads(metrics_path.read_text())
    if metrics.get("test/acc1") is None:
        return Run(path, config, metrics, problem="no test/acc1 in metrics.json (failed, unfinished or test=false)")
    return Run(path, config, metrics)


def _model_settings(run: Run) -> dict[str, Any]:
    model = run.config.get("model") or {}
    return {k: v for k, v in model.items() if k not in _DATA_DERIVED}


def group_runs(runs: Sequence[Run]) -> list[Row]:
    """Group complete runs by (data, arch, model settings that vary within that arch)."""
    by_arch: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_arch.setdefault((run.data, run.arch), []).append(run)
    several_datasets = len({data for data, _ in by_arch}) > 1
    rows: dict[str, Row] = {}
    for (data, arch), members in by_arch.items():
        settings = [_model_settings(r) for r in members]
        keys = sorted({k for s in settings for k in s})
        varying = [k for k in keys if len({json.dumps(s.get(k), sort_keys=True) for s in settings}) > 1]
        for run, setting in zip(members, settings):
            label = " ".join([arch, *(f"{k}={setting.get(k)}" for k in varying)])
            if several_datasets:
                label = f"{label} [{data}]"
            rows.setdefault(label, Row(label, arch, data)).runs.append(run)
    return list(rows.values())


def aggregate(rows: list[Row]) -> list[Row]:
    """Fill each row's mean and sample std (std is NaN for a single run); sort by mean top-1 error."""
    for row in rows:
        for column, key, transform in COLUMNS:
            values = [transform(r.metrics[key]) for r in row.runs if r.metrics.get(key) is not None]
            row.mean[column] = statistics.fmean(values) if values else math.nan
            row.std[column] = statistics.stdev(values) if len(values) > 1 else math.nan
    return sorted(rows, key=lambda r: (r.mean["top1_err"], r.label))


def compare(paths: Iterable[str | Path]) -> tuple[list[Row], list[Run]]:
    """Aggregated rows of the complete runs under ``paths``, and the runs that could not be used."""
    runs = [load_run(p) for p in find_run_dirs(paths)]
    if not runs:
        raise MissingFileError(f"no runs (folders with .hydra/config.yaml) under {', '.join(map(str, paths))}")
    complete = [r for r in runs if r.problem is None]
    return aggregate(group_runs(complete)), [r for r in runs if r.problem is not None]


def write_csv(rows: list[Row], path: Path, published: dict[str, dict] | None = None) -> Path:
    """One line per model: mean and std of every column, the number of runs and their dirs."""
    published = published or {}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["model", "arch", "data", "n_runs"]
        for column, _, _ in COLUMNS:
            header += [column, f"{column}_std"]
        writer.writerow([*header, "published_top1_err", "published_top5_err", "runs"])
        for row in rows:
            values = [row.label, row.arch, row.data, row.n]
            for column, _, _ in COLUMNS:
                values += [_num(row.mean[column]), _num(row.std[column])]
            ref = published.get(row.label, {})
            values += [_num(ref.get("top1_err", math.nan)), _num(ref.get("top5_err", math.nan))]
            writer.writerow([*values, ";".join(str(r.path) for r in row.runs)])
    return path


def _num(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def _mean_std(row: Row, column: str, fmt: str) -> str:
    mean, std = row.mean[column], row.std[column]
    if math.isnan(mean):
        return "-"
    return fmt.format(mean) if math.isnan(std) else f"{fmt.format(mean)} ± {fmt.format(std)}"


def to_markdown(rows: list[Row], problems: list[Run], published: dict[str, dict] | None = None) -> str:
    """The comparison table people read: errors in %, mean ± std over runs, plus unusable runs."""
    published = published or {}
    show_published = any(row.label in published for row in rows)
    header = ["model", "runs", "top-1 err %", "top-5 err %", "params (M)", "GFLOPs", "train img/s",
              "infer img/s", "train time (s)"]
    if show_published:
        header += ["torchvision top-1 err %", "torchvision top-5 err %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.label, str(row.n), _mean_std(row, "top1_err", "{:.2f}"), _mean_std(row, "top5_err", "{:.2f}"),
                 f"{row.mean['params_m']:.3f}", f"{row.mean['gflops']:.4f}",  # fixed by the model: no spread
                 _mean_std(row, "train_img_s", "{:.0f}"), _mean_std(row, "infer_img_s", "{:.0f}"),
                 _mean_std(row, "train_s", "{:.1f}")]
        if show_published:
            ref = published.get(row.label)
            cells += [f"{ref['top1_err']:.2f}", f"{ref['top5_err']:.2f}"] if ref else ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    if problems:
        lines += ["", f"Not compared ({len(problems)} runs):", ""]
        lines += [f"- `{run.path}`: {run.problem}" for run in problems]
    return "\n".join(lines) + "\n"
