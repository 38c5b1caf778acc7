"""Parameter efficiency across CNN generations, at ImageNet settings (224 px, 1000 classes).

Where do the parameters sit? For each torchvision-exact network: total parameters, those in conv
layers, in fully connected layers and in training-only auxiliary heads, forward GFLOPs, and
torchvision's published top-1 error, so "AlexNet has 61 M parameters, GoogLeNet 12x fewer" and
quotes like "GoogLeNet has only 4 million parameters" can be checked against the built networks.
"""

from __future__ import annotations

import csv
from pathlib import Path

from torch import nn

from convnetlab.analysis.complexity import count_parameters, forward_gflops
from convnetlab.analysis.published import published_errors
from convnetlab.models import build_model

COLUMNS = ("model", "params", "conv_params", "fc_params", "aux_params", "gflops", "top1_err")


def _params_of(model: nn.Module, kind: type, skip: str | None = None) -> int:
    return sum(count_parameters(m, trainable_only=False) for name, m in model.named_modules()
               if isinstance(m, kind) and not (skip and name.startswith(skip)))


def generation_row(arch: str, aux_heads: bool = False) -> dict:
    """One network's breakdown; ``aux_heads`` builds GoogLeNet with its two training-only classifiers."""
    if arch == "lenet5":  # a 32x32 grayscale, 10-class network: its own setting, not ImageNet's
        model, shape, suffix = build_model(arch, 10, in_channels=1, input_size=32), (1, 32, 32), " (32x32, 10 classes)"
    else:
        model, shape, suffix = build_model(arch, 1000, **({"aux_logits": True} if aux_heads else {})), (3, 224, 224), ""
    model.eval()  # GoogLeNet's aux heads run in train mode only; GFLOPs are for inference
    aux = sum(count_parameters(getattr(model, a)) for a in ("aux1", "aux2") if getattr(model, a, None) is not None)
    err = published_errors(arch)
    total = count_parameters(model)
    return {
        "model": arch + suffix + (" + aux heads" if aux_heads else ""),
        "params": total,
        "conv_params": _params_of(model, nn.Conv2d, skip="aux"),
        "fc_params": _params_of(model, nn.Linear, skip="aux"),
        "aux_params": aux,
        "gflops": forward_gflops(model, shape),
        "top1_err": err["top1_err"] if err else None,
    }


def generations_table(archs: list[str], googlenet_aux: bool = True) -> list[dict]:
    rows = [generation_row(arch) for arch in archs]
    if googlenet_aux and "googlenet" in archs:
        rows.insert(archs.index("googlenet") + 1, generation_row("googlenet", aux_heads=True))
    return rows


def to_markdown(rows: list[dict]) -> str:
    header = ["model", "params (M)", "in conv (M)", "in FC (M)", "aux heads (M)", "GFLOPs", "top-1 err % (torchvision)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        err = "-" if r["top1_err"] is None else f"{r['top1_err']:.2f}"
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.3f} | {r['conv_params'] / 1e6:.3f} | {r['fc_params'] / 1e6:.3f} "
                     f"| {r['aux_params'] / 1e6:.3f} | {r['gflops']:.4f} | {err} |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path
