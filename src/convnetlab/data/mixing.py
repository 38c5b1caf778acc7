"""Batch mixing for the ``tv_v2`` recipe: MixUp or CutMix as a DataLoader ``collate_fn``.

The only augmentation that changes labels (into soft (N, num_classes) targets, which
``ImageClassifier.loss`` accepts); per-image presets live in ``augment.py``.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from convnetlab.data.folder import collate_present
from convnetlab.errors import InputError


class MixUpCutMix:
    """collate_fn mixing each batch with MixUp(``mixup_alpha``) or CutMix(``cutmix_alpha``), chosen at random.

    Mixing needs arithmetic, so images leave as float in [0, 255] (``ImageClassifier.normalize``
    accepts that) and labels as soft (N, num_classes) targets. An alpha of 0 disables that mix.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0) -> None:
        mixes = [v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha > 0 else []
        mixes += [v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha > 0 else []
        if not mixes:
            raise InputError("MixUpCutMix needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.mix = v2.RandomChoice(mixes)

    def __call__(self, batch: list[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = collate_present(batch)
        return self.mix(images.float(), labels)
