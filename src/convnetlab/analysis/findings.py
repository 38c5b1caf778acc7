"""Tables for the README's Findings: the jobs of one sweep, grouped by what was varied, mean ± std over seeds.

A finding is a Hydra multirun. Each job's row label is made of the overrides that differ between its
jobs (``seed`` excepted: jobs that differ only in seed form one row), and its values come from the
job's ``metrics.json`` plus whatever a post step added (sanity-check scores, probe accuracies). Rows
keep the sweep's order, so a table reads as the experiment was written.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure

from convnetlab.analysis.plots import save_figure
from convnetlab.runs import METRICS_FILE

AGGREGATED_OVER = ("seed",)


@dataclass
class Job:
    path: Path
    overrides: dict[str, str]
    metrics: dict[str, Any]


@dataclass
class FindingRow:
    label: str
    settings: dict[str, str]
    jobs: list[Job] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [float(j.metrics[key]) for j in self.jobs if isinstance(j.metrics.get(key), int | float)]

    def mean(self, key: str) -> float:
        values = self.values(key)
        return statistics.fmean(values) if values else math.nan

    def std(self, key: str) -> float:
        values = self.values(key)
        return statistics.stdev(values) if len(values) > 1 else math.nan


def _overrides(job_dir: Path) -> dict[str, str]:
    items = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    return dict(item.lstrip("+~").split("=", 1) for item in items if "=" in item)


def load_jobs(sweep_dir: Path) -> list[Job]:
    """Every job below ``sweep_dir`` that wrote metrics.json, in job-number order."""
    dirs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    dirs.sort(key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    return [Job(d, _overrides(d), json.loads((d / METRICS_FILE).read_text()))
            for d in dirs if (d / METRICS_FILE).is_file()]


def group_jobs(jobs: Sequence[Job]) -> list[FindingRow]:
    """One row per combination of the overrides that vary between jobs (seed aside)."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides))
    varying = [k for k in keys if k not in AGGREGATED_OVER and len({j.overrides.get(k) for j in jobs}) > 1]
    rows: dict[str, FindingRow] = {}
    for job in jobs:
        settings = {k: job.overrides.get(k, "-") for k in varying}
        label = " ".join(f"{short_key(k)}={v}" for k, v in settings.items()) or "run"
        rows.setdefault(label, FindingRow(label, settings)).jobs.append(job)
    return list(rows.values())


def format_value(value: float, fmt: str) -> str:
    if math.isnan(value):
        return "-"
    return fmt.format(value)


def cell(row: FindingRow, key: str, fmt: str) -> str:
    """``mean ± std`` over the row's seeds (``mean`` alone for one run; ``n/m`` if some runs lack it)."""
    mean, std = row.mean(key), row.std(key)
    text = format_value(mean, fmt)
    if not math.isnan(std) and std > 0:
        text += " ± " + format_value(std, fmt)
    have = len(row.values(key))
    if 0 < have < len(row.jobs):
        text += f" ({have}/{len(row.jobs)} runs)"
    return text


def to_markdown(rows: Sequence[FindingRow], columns: Mapping[str, Sequence[str]]) -> str:
    """``columns``: metrics key -> (header, format), e.g. ``{"val/acc1": ("val top-1", "{:.1%}")}``."""
    header = ["setting", "runs", *(name for name, _ in columns.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.label, str(len(row.jobs)), *(cell(row, key, fmt) for key, (_, fmt) in columns.items())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_json(rows: Sequence[FindingRow], columns: Mapping[str, Sequence[str]]) -> list[dict]:
    return [{"label": r.label, "settings": r.settings, "runs": [str(j.path) for j in r.jobs],
             "mean": {k: _plain(r.mean(k)) for k in columns}, "std": {k: _plain(r.std(k)) for k in columns}}
            for r in rows]


def _plain(value: float) -> float | None:
    return None if math.isnan(value) else value


def short_key(key: str) -> str:
    return key.replace("/", ".").split(".")[-1]


def plot_rows(rows: Sequence[FindingRow], path: Path, y: str, y_label: str, x: str | None = None,
              log_y: bool = False, title: str = "") -> Path:
    """``y`` per row: with ``x`` (an override key) one line per combination of the other settings,
    else horizontal bars; error bars are the std over seeds."""
    fig = Figure(figsize=(6.4, 0.45 * len(rows) + 1.6) if x is None else (6.4, 4.0))
    ax = fig.subplots()
    if x is None:
        means = [r.mean(y) for r in rows]
        errors = [0.0 if math.isnan(r.std(y)) else r.std(y) for r in rows]
        ax.barh(range(len(rows)), means, xerr=errors, color="tab:blue", alpha=0.8)
        ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(y_label)
        if log_y:
            ax.set_xscale("log")
    else:
        lines: dict[str, list[FindingRow]] = {}
        for row in rows:
            name = " ".join(f"{short_key(k)}={v}" for k, v in row.settings.items() if k != x)
            lines.setdefault(name, []).append(row)
        for name, members in lines.items():
            members = sorted(members, key=lambda r: _number(r.settings.get(x, "")))
            ax.errorbar([_number(r.settings.get(x, "")) for r in members], [r.mean(y) for r in members],
                        yerr=[0.0 if math.isnan(r.std(y)) else r.std(y) for r in members],
                        marker="o", capsize=3, label=name or None)
        ax.set_xlabel(short_key(x))
        ax.set_ylabel(y_label)
        if log_y:
            ax.set_yscale("log")
        if len(lines) > 1:
            ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
