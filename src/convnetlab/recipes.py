"""Resolvers for recipe configs: the world size a Trainer config will use and the linear LR scaling rule.

Recipes are written for torchvision's reference setting (8 GPUs x 32 images = global batch 256,
lr 0.1). With another number of devices the per-device batch stays the same, the global batch scales
with the world size, and so does the learning rate (Goyal et al. 2017): ``lr = base_lr * global / 256``.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from convnetlab.errors import InputError


def world_size(devices: int | str | list, num_nodes: int = 1) -> int:
    """Processes a Trainer with ``devices`` and ``num_nodes`` will run (-1/"auto": all visible GPUs, else 1)."""
    if isinstance(devices, list | tuple) or OmegaConf.is_list(devices):
        per_node = len(devices)
    elif devices in (-1, "-1", "auto"):
        import torch

        per_node = max(1, torch.cuda.device_count())
    elif isinstance(devices, str) and "," in devices:
        per_node = len([d for d in devices.split(",") if d.strip()])
    else:
        per_node = int(devices)
    if per_node < 1 or int(num_nodes) < 1:
        raise InputError(f"trainer.devices={devices} and trainer.num_nodes={num_nodes} must give at least one process")
    return per_node * int(num_nodes)


def linear_scaled_lr(base_lr: float, batch_per_device: int, processes: int, base_batch: int = 256) -> float:
    """``base_lr`` is for a global batch of ``base_batch``; scale it to ``batch_per_device * processes``."""
    return float(base_lr) * int(batch_per_device) * int(processes) / int(base_batch)


def register_recipe_resolvers() -> None:
    """``${world_size:devices,num_nodes}`` and ``${linear_scaled_lr:base_lr,batch,processes[,base_batch]}``."""
    if not OmegaConf.has_resolver("world_size"):
        OmegaConf.register_new_resolver("world_size", world_size)
    if not OmegaConf.has_resolver("linear_scaled_lr"):
        OmegaConf.register_new_resolver("linear_scaled_lr", linear_scaled_lr)
