"""Accuracy against training images per class, and where CNN and classic curves cross ("When did CNNs win?").

A *curve* maps images per class to the test top-1 of each seed. At every size the best CNN (highest mean
over seeds) is compared with the best classic pipeline; the gap ``cnn - classic`` is interpolated linearly
in log(images per class) between the sizes tried, and each change of sign is a crossing. A size whose gap
is no larger than the larger sample std of the two (over seeds) is reported as a tie. Sizes are only
those measured: "CNNs win at every size" means at every size tried, nothing is extrapolated.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from convnetlab.analysis.plots import save_figure

Curve = Mapping[float, Sequence[float]]  # images per class -> test top-1 of each seed


def mean_curve(curve: Curve) -> dict[float, float]:
    return {x: statistics.fmean(v) for x, v in sorted(curve.items()) if v}


def std_curve(curve: Curve) -> dict[float, float]:
    return {x: statistics.stdev(v) if len(v) > 1 else 0.0 for x, v in sorted(curve.items()) if v}


def best_at_each_size(curves: Mapping[str, Curve]) -> dict[float, tuple[str, float]]:
    """Size -> (name, mean) of the curve with the highest mean there (sizes where any curve was measured)."""
    means = {name: mean_curve(curve) for name, curve in curves.items()}
    sizes = sorted({x for m in means.values() for x in m})
    return {x: max(((name, m[x]) for name, m in means.items() if x in m), key=lambda p: p[1]) for x in sizes}


def crossings(gap: Mapping[float, float]) -> list[tuple[float, str]]:
    """Where ``gap`` (size -> a - b) changes sign: (size, ``"up"`` if a overtakes b there, else ``"down"``).

    Between two sizes of opposite sign the crossing is interpolated linearly in log(size); a gap of exactly
    0 at a size is a crossing at that size only if the sign differs on its two sides.
    """
    points = [(x, g) for x, g in sorted(gap.items()) if not math.isnan(g)]
    signed = [(x, g) for x, g in points if g != 0]
    found = []
    for (x0, g0), (x1, g1) in zip(signed, signed[1:]):
        if (g0 > 0) == (g1 > 0):
            continue
        zeros = [x for x, g in points if g == 0 and x0 < x < x1]
        if zeros:
            at = zeros[0]
        else:
            t = g0 / (g0 - g1)
            at = math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0)))
        found.append((at, "up" if g1 > 0 else "down"))
    return found


@dataclass
class Verdict:
    """The computed answer for one dataset; ``text`` is the sentence finding.md prints."""

    dataset: str
    gap: dict[float, float]                                # best CNN - best classic, per size
    crossings: list[tuple[float, str]]
    per_cnn: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # each CNN vs best classic
    ties: list[float] = field(default_factory=list)  # sizes where |gap| is within the seeds' spread
    text: str = ""


def _describe(found: list[tuple[float, str]], gap: Mapping[float, float]) -> str:
    """One CNN against the best classic pipeline, in words."""
    if found:
        return ", then ".join(f"{'passes' if d == 'up' else 'falls below'} the best classic pipeline at ~{_size(x)}/class"
                              for x, d in found)
    return ("is above the best classic pipeline at every size" if all(g > 0 for g in gap.values())
            else "never passes the best classic pipeline")


def _size(x: float) -> str:
    return f"{x:.0f}" if x >= 10 or abs(x - round(x)) < 0.05 else f"{x:.1f}"


def verdict(dataset: str, curves: Mapping[str, Curve], cnns: Sequence[str]) -> Verdict:
    """Where the best CNN and the best classic pipeline cross on ``dataset`` (``cnns`` names the CNN curves)."""
    cnn_curves = {k: v for k, v in curves.items() if k in cnns}
    classic_curves = {k: v for k, v in curves.items() if k not in cnns}
    best_cnn, best_classic = best_at_each_size(cnn_curves), best_at_each_size(classic_curves)
    sizes = sorted(set(best_cnn) & set(best_classic))
    if not sizes:
        return Verdict(dataset, {}, [], text=f"{dataset}: no size has both a CNN and a classic result")
    gap = {x: best_cnn[x][1] - best_classic[x][1] for x in sizes}
    spread = {x: max(std_curve(curves[best_cnn[x][0]]).get(x, 0.0), std_curve(curves[best_classic[x][0]]).get(x, 0.0))
              for x in sizes}
    ties = [x for x in sizes if abs(gap[x]) <= spread[x]]
    found = crossings(gap)
    classic_mean = {x: best_classic[x][1] for x in sizes}
    per_cnn = {}
    for name, curve in cnn_curves.items():
        mine = mean_curve(curve)
        per_cnn[name] = crossings({x: mine[x] - classic_mean[x] for x in sizes if x in mine})

    def at(x: float) -> str:
        (c, a), (k, b) = best_cnn[x], best_classic[x]
        return f"{c} {a:.1%} vs {k} {b:.1%} at {_size(x)}/class"

    lo, hi = sizes[0], sizes[-1]
    if not found:
        winner = "CNNs win" if gap[lo] > 0 else ("classic pipelines win" if gap[lo] < 0 else "tie")
        text = (f"{dataset}: no crossing; {winner} at every size tried ({_size(lo)} to {_size(hi)} images/class; "
                f"{at(lo)}, {at(hi)}).")
    else:
        parts = [f"{'CNNs overtake' if d == 'up' else 'classic pipelines overtake'} at ~{_size(x)} images/class"
                 for x, d in found]
        text = f"{dataset}: the curves cross; " + ", then ".join(parts) + f" ({at(lo)}; {at(hi)})."
    details = [f"{name} {_describe(per_cnn[name], {x: mean_curve(curve)[x] - classic_mean[x] for x in sizes if x in mean_curve(curve)})}"
               for name, curve in cnn_curves.items()]
    if details:
        text += " " + "; ".join(details) + "."
    if ties:
        text += (f" Within the seeds' spread (a tie: |gap| <= the larger sample std of the two) at "
                 f"{', '.join(_size(x) for x in ties)} images/class.")
    return Verdict(dataset, gap, found, per_cnn, ties, text)


def plot_curves(panels: Mapping[str, Mapping[str, Curve]], cnns: Sequence[str], path: Path,
                verdicts: Mapping[str, Verdict] | None = None) -> Path:
    """One panel per dataset: mean test top-1 (± std over seeds) against images per class, log x.
    CNNs solid, classic pipelines dashed; grey vertical lines mark the computed crossings."""
    fig = Figure(figsize=(5.2 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (dataset, curves) in zip(axes, panels.items()):
        for name, curve in curves.items():
            mean, std = mean_curve(curve), std_curve(curve)
            xs = list(mean)
            ax.errorbar(xs, [mean[x] for x in xs], yerr=[std[x] for x in xs], label=name, capsize=2, marker="o",
                        markersize=3, linestyle="-" if name in cnns else "--")
        for x, _ in (verdicts or {}).get(dataset, Verdict(dataset, {}, [])).crossings:
            ax.axvline(x, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        ax.set_title(dataset)
        ax.set_xlabel("training images per class")
        ax.set_ylabel("test top-1")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
