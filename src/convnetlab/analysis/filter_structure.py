"""How structured are conv kernels? Low-spatial-frequency energy share, at initialisation and trained.

Edges, bars and colour blobs (what trained first layers are said to hold) are smooth: most of a
kernel's energy sits at low spatial frequencies. Random initial kernels are white noise: their
energy is spread evenly over all k x k DFT frequencies, so the expected share of any set of
frequencies is its size / k^2. The share of frequencies with max(|fx|, |fy|) <= k // 5 (DC only for
3x3, the 3x3 lowest for 5x5 and 7x7, 5x5 for 11x11), measured per (filter, input channel) slice
is therefore a number that noise keeps near its expectation and structure
pushes up.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from matplotlib.figure import Figure
from torch import Tensor

from convnetlab.analysis.filters import conv_layers, filter_grid
from convnetlab.analysis.plots import save_figure
from convnetlab.checkpoint_file import load_classifier
from convnetlab.errors import InputError
from convnetlab.runs import run_dir_of_checkpoint


def low_frequency_mask(k: int) -> Tensor:
    freq = torch.fft.fftfreq(k) * k  # integer frequencies -k//2 .. k//2
    return torch.maximum(freq.abs()[:, None], freq.abs()[None, :]) <= k // 5


def low_frequency_share(weight: Tensor) -> float:
    """Mean over (filter, input channel) slices of the energy share at low spatial frequencies."""
    w = weight.detach().float().flatten(0, 1)
    power = torch.fft.fft2(w).abs().pow(2)
    low = (power * low_frequency_mask(w.shape[-1])).sum((-2, -1))
    return (low / power.sum((-2, -1)).clamp_min(1e-30)).mean().item()


def noise_share(k: int) -> float:
    """What white-noise kernels give on average: the low-frequency set's share of all k*k frequencies."""
    return low_frequency_mask(k).float().mean().item()


def _run_seed(ckpt_path: str | Path) -> int:
    run_dir = run_dir_of_checkpoint(ckpt_path)
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()) if run_dir else {}
    return int((config or {}).get("seed", 0))


def filters_at_init_and_trained(ckpt_path: str | Path, png: Path, layers: list[str] | None = None) -> tuple[dict, Path]:
    """Shares and kernel grids of the first and the last conv layer (or ``layers``): trained weights
    from the checkpoint, initial ones from the same architecture drawn with the run's seed."""
    with torch.random.fork_rng(devices=[]):  # building networks draws initial weights: the caller's RNG is restored
        module = load_classifier(ckpt_path)
        trained = module.backbone
        torch.manual_seed(_run_seed(ckpt_path))
        initial = type(module)(**module.hparams).backbone  # built as the run built it, before training
    convs = dict(conv_layers(trained))
    names = list(layers) if layers else [next(iter(convs)), list(convs)[-1]]
    if len(names) != 2 or any(name not in convs for name in names):
        raise InputError(f"filters: layers needs two conv layer names (early, late), got {names}; "
                         f"conv layers: {', '.join(convs)}")
    stats, grids = {}, []
    for which, name in zip(("first", "late"), names):
        k = convs[name].weight.shape[-1]
        stats[f"filters/{which}_noise"] = noise_share(k)
        for when, model in (("init", initial), ("trained", trained)):
            weight = model.get_submodule(name).weight
            stats[f"filters/{which}_{when}"] = low_frequency_share(weight)
            grids.append((f"{name} ({k}x{k}) {when}: low-freq share {stats[f'filters/{which}_{when}']:.2f}"
                          f" (noise {stats[f'filters/{which}_noise']:.2f})", filter_grid(weight, max_filters=16, max_inputs=16)))
    return stats, _save_grids(grids, png)


def _save_grids(grids: list[tuple[str, Tensor]], path: Path) -> Path:
    fig = Figure(figsize=(8.0, 4.2 * (len(grids) // 2)))
    axes = fig.subplots(len(grids) // 2, 2, squeeze=False)
    for ax, (title, grid) in zip(axes.flat, grids):
        ax.imshow(grid.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
