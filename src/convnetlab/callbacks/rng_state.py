"""Random-number-generator state in every checkpoint, so a resumed run draws what the original would have.

Lightning restores weights, optimizer, schedulers and loop counters, but not the RNGs; without them
a resumed run draws different dropout masks (and anything else the model or callbacks sample) from an
uninterrupted one. The training data does not depend on these streams: its order and augmentation are
seeded by (seed, epoch, position) (``data/resumable.py``), also in persistent DataLoader workers. With
both, resume-after-kill is bit-identical for deterministic runs.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


class RNGState(pl.Callback):
    """Saves Python, NumPy, torch CPU and CUDA RNG states with each checkpoint; restores them on load.

    States are stored as tensors and plain containers so checkpoints still load with
    ``torch.load(weights_only=True)``.
    """

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        return {
            "python": [version, list(internal), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
