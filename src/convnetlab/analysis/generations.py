"""Parameter efficiency across CNN generations, at ImageNet settings (224 px, 1000 classes).

Where do the parameters sit? For each torchvision-exact network: total parameters, those in conv
layers, in fully connected layers and in training-only auxiliary heads, forward GFLOPs, and
torchvision's published top-1 error, so "AlexNet has 61 M parameters, GoogLeNet 12x fewer" and
quotes like "GoogLeNet has only 4 million parameters" can be checked against the built networks.

Modern networks from timm join as ``timm:<name>`` (``generations=[resnet50,timm:convnext_tiny]``), built by
timm at the same 224 px / 1000-class setting; timm publishes no accuracies with the package, so their
top-1 column stays empty. Parameters are counted by layer type as the network builds them, so pointwise
MLPs written as ``nn.Linear`` (ConvNeXt-T and larger) count as FC.
"""

from __future__ import annotations

import csv
from pathlib import Path

from torch import nn

from convnetlab.analysis.complexity import count_parameters, forward_gflops
from convnetlab.models import build_model, registry

COLUMNS = ("model", "params", "conv_params", "fc_params", "aux_params", "gflops", "top1_err")


def _params_of(model: nn.Module, kind: type, skip: tuple[str, ...] = ()) -> int:
    return sum(count_parameters(m, trainable_only=False) for name, m in model.named_modules()
               if isinstance(m, kind) and not name.split(".")[0] in skip)


def generation_row(arch: str, aux_heads: bool = False) -> dict:
    """One network's breakdown at its published setting; ``aux_heads`` builds it with its built-in
    training-only classifiers (GoogLeNet's two). ``arch`` may be a label such as ``timm:convnext_tiny``."""
    label = arch
    arch, options = registry.parse_label(label)
    spec = registry.get(arch)
    channels, side, classes = spec.reference_input
    model = build_model(arch, classes, in_channels=channels, input_size=side, **options,
                        **(spec.aux_option if aux_heads else {}))
    setting = "" if (channels, side, classes) == (3, 224, 1000) else f" ({side}x{side}, {classes} classes)"
    model.eval()  # GoogLeNet's aux heads run in train mode only; GFLOPs are for inference
    aux = sum(count_parameters(getattr(model, a)) for a in spec.builtin_aux if getattr(model, a, None) is not None)
    err = registry.published_errors(arch)
    return {
        "model": label + setting + (" + aux heads" if aux_heads else ""),
        "params": count_parameters(model),
        "conv_params": _params_of(model, nn.Conv2d, skip=tuple(spec.builtin_aux)),
        "fc_params": _params_of(model, nn.Linear, skip=tuple(spec.builtin_aux)),
        "aux_params": aux,
        "gflops": forward_gflops(model, (channels, side, side)),
        "top1_err": err["top1_err"] if err else None,
    }


def generations_table(archs: list[str], aux_heads: bool = True) -> list[dict]:
    """A row per arch; with ``aux_heads``, each arch with built-in auxiliary heads gets a second row with them."""
    rows = []
    for arch in archs:
        rows.append(generation_row(arch))
        if aux_heads and registry.get(registry.parse_label(arch)[0]).builtin_aux:
            rows.append(generation_row(arch, aux_heads=True))
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
