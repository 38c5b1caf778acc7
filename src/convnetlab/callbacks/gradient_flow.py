"""Per-layer gradient norms, first layer to last: makes vanishing gradients (and their cure) visible.

Every ``every_n_steps`` optimizer steps the L2 norm of each conv/linear weight gradient in the
backbone is logged as ``train/grad_norm/<layer>``; at the end of training the mean norm per layer is
plotted (log scale) to ``gradient_flow.png`` in the run dir, and the mean norms of the first and the
last layer go to the run summary (``train/grad_norm_first``, ``train/grad_norm_last`` in ``metrics.json``). Measured
in ``on_before_optimizer_step``, where gradients are unscaled (AMP), accumulated and, under DDP, already averaged across ranks.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch import nn



def weight_layers(backbone: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(module name, weight) of every conv/linear layer, in registration (roughly forward) order."""
    return [(name, module.weight) for name, module in backbone.named_modules()
            if isinstance(module, nn.Conv2d | nn.Linear) and module.weight.requires_grad]


class GradientFlow(pl.Callback):
    """Log per-layer gradient norms every ``every_n_steps`` and plot them at the end of training.

    Args:
        every_n_steps: logging interval in optimizer steps.
        output_dir: where ``gradient_flow.png`` goes; defaults to ``trainer.default_root_dir``.
        filename: the plot's file name.
    """

    def __init__(self, every_n_steps: int = 10, output_dir: str | None = None, filename: str = "gradient_flow.png") -> None:
        self.every_n_steps = max(1, int(every_n_steps))
        self.output_dir = output_dir
        self.filename = filename
        self.history: dict[str, list[float]] = {}

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        norms = {name: weight.grad.detach().norm().item()
                 for name, weight in weight_layers(pl_module.backbone) if weight.grad is not None}
        for name, value in norms.items():
            self.history.setdefault(name, []).append(value)
        pl_module.log_dict({f"train/grad_norm/{name}": value for name, value in norms.items()},
                           on_step=True, on_epoch=False)

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.history:
            self.plot(Path(self.output_dir or trainer.default_root_dir) / self.filename)
        self._first_last = [name for name, _ in weight_layers(pl_module.backbone) if name in self.history]

    def summary_metrics(self, trainer: pl.Trainer) -> dict[str, float]:
        """Mean norms of the first and last layer, in the network's order (a layer unfrozen late joins
        ``history`` late, so history's order is not the network's)."""
        ordered = getattr(self, "_first_last", [])
        if not ordered:
            return {}
        return {"train/grad_norm_first": statistics.fmean(self.history[ordered[0]]),
                "train/grad_norm_last": statistics.fmean(self.history[ordered[-1]])}

    def plot(self, path: Path) -> Path:
        """Mean (and min..max band) gradient norm per layer, first to last, on a log axis."""
        from matplotlib.figure import Figure

        from convnetlab.analysis.plots import save_figure

        names = list(self.history)
        series = [torch.tensor(self.history[n]) for n in names]
        mean = [s.mean().item() for s in series]
        floor = min((v for v in mean if v > 0), default=1e-12)
        fig = Figure(figsize=(max(6.0, 0.25 * len(names)), 4.0))
        ax = fig.subplots()
        x = range(len(names))
        ax.fill_between(x, [max(s.min().item(), floor) for s in series], [s.max().item() for s in series], alpha=0.2)
        ax.plot(x, [max(v, floor) for v in mean], marker="o")
        ax.set_yscale("log")
        ax.set_xticks(list(x), names, rotation=90, fontsize=6)
        ax.set_xlabel("layer (input -> output)")
        ax.set_ylabel("gradient L2 norm")
        ax.set_title(f"Gradient flow ({len(series[0])} measurements)")
        fig.tight_layout()
        return save_figure(fig, path, dpi=120)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = {k: list(v) for k, v in state_dict.get("history", {}).items()}
