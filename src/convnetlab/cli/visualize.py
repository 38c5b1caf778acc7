"""``convnetlab-visualize ckpt_path=...``: filters, feature maps, saliency, SmoothGrad, Grad-CAM and the
randomisation sanity check of a checkpoint, as PNGs plus ``summary.json`` in this command's run dir.

The sanity check answers "saliency maps can be misleading" with a number per method; the Sobel edge
map of the input, which ignores the model, is included as the reference that must be flagged.
"""

from __future__ import annotations

import itertools
import json
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import IterableDataset

from convnetlab.analysis import attribution, plots
from convnetlab.analysis.filters import (conv_layers, default_feature_layers, feature_map_grid, feature_maps,
                                         filter_grid, resolve_layers)
from convnetlab.analysis.samples import image_files, load_images, pick_images
from convnetlab.cli.checkpoint import load_checkpoint
from convnetlab.cli.hydra_app import entry_point
from convnetlab.errors import InputError

SUMMARY = "summary.json"


def _inputs(cfg: DictConfig, datamodule) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """uint8 images, labels (-1: unknown) and names: the user's files, else the first test images."""
    if cfg.get("images"):
        images = cfg.images if isinstance(cfg.images, str) else list(cfg.images)
        files = image_files(images)[: cfg.n_images]
        return load_images(files, datamodule.channels, datamodule.eval_transform, datamodule.classes)
    datamodule.decode_on = "worker"  # images are read here, outside a Trainer: decode them in the loader
    datamodule.setup("test")
    dataset = datamodule.test_dataloader().dataset
    if isinstance(dataset, IterableDataset):  # data=streaming: no indexing
        return _pick_streamed(dataset, cfg.n_images, limit=max(1000, 20 * cfg.n_images))
    return pick_images(dataset, cfg.n_images)


def _pick_streamed(dataset: IterableDataset, n: int, limit: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``pick_images`` for a dataset that can only be iterated: the first image of each class among the
    first ``limit`` items, then the first other ones, up to ``n``; names are positions (``#i``).
    Only the items that can be chosen are kept in memory."""
    first: dict[int, int] = {}
    kept: dict[int, tuple[torch.Tensor, int]] = {}
    for index, (image, label) in enumerate(itertools.islice(dataset, limit)):
        if int(label) not in first or index < n:
            kept[index] = (image, int(label))
        first.setdefault(int(label), index)
    chosen = sorted(first.values())[:n]
    chosen += [i for i in sorted(kept) if i not in chosen][: n - len(chosen)]
    return (torch.stack([kept[i][0] for i in chosen]), torch.tensor([kept[i][1] for i in chosen]),
            [f"#{i}" for i in chosen])


def _write_filters(backbone: nn.Module, layers: list[str], output_dir: Path, arch: str) -> list[str]:
    """A kernel grid for the first conv layer and for every conv layer among ``layers``."""
    written = []
    for name in dict.fromkeys([conv_layers(backbone)[0][0], *layers]):
        layer = backbone.get_submodule(name)
        if isinstance(layer, nn.Conv2d):
            title = f"{arch} {name}: {tuple(layer.weight.shape)} kernels"
            written.append(plots.save_grid(filter_grid(layer.weight), output_dir / f"filters_{name}.png", title).name)
    return written


def _write_feature_maps(backbone: nn.Module, image: torch.Tensor, inputs: torch.Tensor, name: str, layers: list[str],
                        max_channels: int, output_dir: Path, arch: str) -> list[str]:
    activations = feature_maps(backbone, inputs, layers)
    flat = [layer for layer in layers if layer not in activations or activations[layer].ndim != 4]
    if flat:
        raise InputError(f"layers {flat} do not output feature maps (N, C, H, W); pick conv layers, e.g. "
                         f"{', '.join(n for n, _ in conv_layers(backbone)[:4])}")
    grids = {f"{layer} {tuple(out.shape[1:])}": feature_map_grid(out[0], max_channels) for layer, out in activations.items()}
    title = f"{arch} feature maps of {name} (first {max_channels} channels)"
    return [plots.save_feature_maps(image, grids, output_dir / "feature_maps.png", title).name]


def visualize(cfg: DictConfig, output_dir: Path) -> dict:
    """Write every picture of ``cfg.ckpt_path`` into ``output_dir``; returns the summary."""
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.ckpt_path:
        raise InputError("ckpt_path is required: convnetlab-visualize ckpt_path=<run>/checkpoints/<file>.ckpt")
    module, datamodule, data_cfg = load_checkpoint(cfg.ckpt_path, cfg.get("data"))
    module.to(cfg.device).eval()
    backbone, classes = module.backbone, datamodule.classes
    arch = module.hparams.backbone.get("arch", type(backbone).__name__)
    images, labels, names = _inputs(cfg, datamodule)
    images, labels = images.to(cfg.device), labels.to(cfg.device)
    inputs = module.normalize(images)
    with torch.no_grad():
        predictions = module.logits(images).argmax(dim=1)
    targets = torch.where(labels >= 0, labels, predictions)  # explain the label, or the prediction if unknown
    captions = [classes[t] + ("" if p == t else f" (pred {classes[p]})") for t, p in zip(targets, predictions)]

    layers = (resolve_layers(backbone, list(cfg.layers)) if cfg.get("layers")
              else default_feature_layers(backbone, inputs, cfg.n_layers))
    files = {"filters": _write_filters(backbone, layers, output_dir, arch),
             "feature_maps": _write_feature_maps(backbone, images[0], inputs[:1], names[0], layers, cfg.max_channels,
                                                 output_dir, arch)}

    cam_layer = resolve_layers(backbone, [cfg.grad_cam_layer])[0] if cfg.grad_cam_layer else \
        attribution.last_conv_stage(backbone, inputs)
    methods = {
        "saliency": attribution.saliency,
        "smoothgrad": partial(attribution.smoothgrad, samples=cfg.smoothgrad.samples, noise=cfg.smoothgrad.noise,
                              seed=cfg.seed),
        "grad_cam": partial(attribution.grad_cam, layer=cam_layer),
        "input_edges": attribution.input_edges,  # the reference that ignores the weights
    }
    titles = {"saliency": "saliency |d loss / d input|, max over channels",
              "smoothgrad": f"SmoothGrad ({cfg.smoothgrad.samples} samples, noise {cfg.smoothgrad.noise:g})",
              "grad_cam": f"Grad-CAM at {cam_layer}"}
    threshold = cfg.sanity_check.threshold
    results = {name: attribution.sanity_check(method, backbone, inputs, targets, seed=cfg.seed, threshold=threshold)
               for name, method in methods.items()}
    for name, title in titles.items():
        path = plots.save_heatmaps(images, results[name].trained, captions, output_dir / f"{name}.png", f"{arch}: {title}")
        files[name] = [path.name]
    files["sanity_check"] = [plots.save_sanity(images, results, output_dir / "sanity_check.png", threshold).name]

    summary = {
        "ckpt": str(cfg.ckpt_path), "model": arch, "data": data_cfg.get("name"),
        "images": [{"name": n, "label": classes[lb] if lb >= 0 else None, "prediction": classes[p], "explained": classes[t]}
                   for n, lb, p, t in zip(names, labels.tolist(), predictions.tolist(), targets.tolist())],
        "feature_layers": layers, "grad_cam_layer": cam_layer,
        "sanity_check": {"threshold": threshold, **{name: r.summary() for name, r in results.items()}},
        "files": files,
    }
    (output_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def print_sanity(summary: dict, output_dir: Path) -> None:
    rows = [f"  {name:<12} Spearman {r['spearman']:+.3f}  Pearson {r['pearson']:+.3f}  {'FLAGGED' if r['flagged'] else 'ok'}"
            for name, r in summary["sanity_check"].items() if isinstance(r, dict)]
    print("\n".join(["", "sanity check (trained vs randomised weights):", *rows, f"  run_dir      {output_dir}", ""]))


main = entry_point("visualize", visualize, report=print_sanity)


if __name__ == "__main__":
    main()
