"""The two comparison figures: top-1 error against GFLOPs (marker area ~ parameters), and error per epoch."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from matplotlib.figure import Figure

from convnetlab.analysis.comparison import Row, Run
from convnetlab.analysis.plots import save_figure


def plot_error_vs_gflops(rows: list[Row], path: Path, title: str = "") -> Path:
    """The classic accuracy-vs-operations chart: x GFLOPs (log), y top-1 error, area proportional to params."""
    fig = Figure(figsize=(7.0, 4.8))
    ax = fig.subplots()
    biggest = max(row.mean["params_m"] for row in rows)
    for i, row in enumerate(rows):
        x, y = row.mean["gflops"], row.mean["top1_err"]
        area = 40.0 + 1400.0 * row.mean["params_m"] / biggest
        colour = f"C{i % 10}"
        ax.scatter([x], [y], s=area, alpha=0.45, color=colour, edgecolors="black", linewidths=0.5)
        if not math.isnan(row.std["top1_err"]):
            ax.errorbar([x], [y], yerr=[row.std["top1_err"]], color=colour, capsize=3, fmt="none")
        ax.annotate(f"{row.label}\n{row.mean['params_m']:.2f}M", (x, y), textcoords="offset points",
                    xytext=(8, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("forward GFLOPs per image (multiply-adds, log scale)")
    ax.set_ylabel("top-1 error (%)")
    ax.set_title(title or "Top-1 error vs operations (marker area ~ parameters; bars: std over seeds)")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def val_error_per_epoch(run: Run) -> dict[int, float]:
    """Validation top-1 error (%) per training epoch from the run's ``metrics.csv``.

    The post-fit evaluation of the best checkpoint is logged at the step of the test row; those rows
    are not part of the training curve and are skipped.
    """
    path = run.path / "metrics.csv"
    if not path.is_file():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    post_fit_steps = {r["step"] for r in rows if r.get("test/acc1")}
    return {int(r["epoch"]): 100.0 * (1.0 - float(r["val/acc1"]))
            for r in rows if r.get("val/acc1") and r["step"] not in post_fit_steps}


def plot_error_vs_epoch(rows: list[Row], path: Path) -> Path:
    """Mean validation top-1 error per epoch for each model (mean over its runs at each epoch)."""
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.subplots()
    for i, row in enumerate(rows):
        curves = [val_error_per_epoch(run) for run in row.runs]
        epochs = sorted({e for curve in curves for e in curve})
        means = [sum(c[e] for c in curves if e in c) / sum(e in c for c in curves) for e in epochs]
        if epochs:
            ax.plot([e + 1 for e in epochs], means, marker="o", markersize=3, color=f"C{i % 10}", label=row.label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 error (%)")
    ax.set_title("Validation error during training (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
