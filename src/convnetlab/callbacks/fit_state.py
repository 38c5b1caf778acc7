"""State that belongs to the fit: restored when a fit resumes, never by a validate/test of a checkpoint."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class FitState:
    """Mixin for callbacks whose checkpointed state describes the training run (its time, images, epochs).

    Lightning restores every callback's state whenever it loads a checkpoint, for ``validate`` and ``test``
    too. After fit, ``convnetlab-train`` validates and tests the best checkpoint, which may be an early
    epoch's; restoring then would replace the whole run's numbers with that epoch's. Subclasses implement
    :meth:`load_fit_state`; it runs only when the trainer is fitting (``setup`` runs before any restore).
    """

    _fitting = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._fitting = stage == "fit"
        super().setup(trainer, pl_module, stage)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._fitting:
            self.load_fit_state(state_dict)

    def load_fit_state(self, state_dict: dict[str, Any]) -> None:
        raise NotImplementedError
