"""Transfer learning as callbacks on Lightning's ``BaseFinetuning``: feature extraction, then phased
fine-tuning with discriminative learning rates.

``FeatureExtraction`` freezes the backbone and trains only the new head (``fc``/``classifier``).
``FinetuningSchedule`` starts the same way, then unfreezes stages at given epochs, each as its own
optimizer groups (``layer4``, ``layer4_no_decay``) at an absolute LR or a ratio of the head's; by default
the arch's last stages, one per epoch, at 0.1x, 0.05x, ... the head's LR (:mod:`convnetlab.models.stages`).

Decisions:

- Frozen BatchNorm layers stay in eval mode, so they normalise with the pretrained running statistics
  and never update them. ``BaseFinetuning.freeze(train_bn=False)`` alone only stops the statistics
  updates (``track_running_stats=False``); in train mode such a layer would still normalise with each
  batch's statistics, which differ from the ones the frozen weights after it were trained with (and are
  noisy with few labels). Unfrozen stages' BatchNorms train normally (``train_bn=False`` keeps them frozen).
- Learning rates: a new group's base rate is the phase's LR; the scheduler (``SharedLambdaLR``) applies
  the same multiplier to every group, so the ratios between stages hold throughout the schedule.
- DDP (Lightning issue 20340): DDP's reducer registers only the parameters that require grad when the
  model is wrapped, which is after ``setup`` froze the backbone; gradients of parameters unfrozen later
  are never all-reduced and the ranks drift apart silently. Unfreezing depends only on the epoch (the
  same on every rank), and before each optimizer step this callback averages the gradients of every
  parameter it unfroze across ranks itself (one flat ``all_reduce``); tested with ``trainer=ddp_cpu``.
- Resume: the applied phases are checkpointed; on restart their modules are unfrozen again before the
  optimizer state (groups, LRs, moments) and the scheduler are restored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import BaseFinetuning
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from convnetlab.errors import InputError
from convnetlab.models import registry


@dataclass(frozen=True)
class Phase:
    """At the start of (0-based) ``epoch``, unfreeze ``modules`` as groups ``name``/``name_no_decay``
    at ``lr``, or at ``lr_ratio`` times the head's base LR."""

    epoch: int
    modules: tuple[str, ...]
    name: str
    lr: float | None = None
    lr_ratio: float | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> Phase:
        spec = dict(spec)
        if unknown := set(spec) - {"epoch", "modules", "lr", "lr_ratio", "name"}:
            raise InputError(f"phase {spec}: unknown keys {sorted(unknown)}; use epoch, modules, lr or lr_ratio, name")
        if "epoch" not in spec or not spec.get("modules"):
            raise InputError(f"phase {spec}: give epoch and modules, e.g. {{epoch: 2, modules: [layer4], lr_ratio: 0.1}}")
        if (spec.get("lr") is None) == (spec.get("lr_ratio") is None):
            raise InputError(f"phase {spec}: give exactly one of lr (absolute) or lr_ratio (times the head's lr)")
        modules = (spec["modules"],) if isinstance(spec["modules"], str) else tuple(str(m) for m in spec["modules"])
        name = spec.get("name") or "+".join(modules).replace(".", "_")
        lr, ratio = spec.get("lr"), spec.get("lr_ratio")
        return cls(int(spec["epoch"]), modules, str(name), None if lr is None else float(lr),
                   None if ratio is None else float(ratio))


def _arch(pl_module: pl.LightningModule) -> registry.Architecture:
    return registry.get(pl_module.hparams.backbone.get("arch", ""))


def _submodules(backbone: nn.Module, names: Sequence[str], who: str) -> list[nn.Module]:
    modules = dict(backbone.named_modules())
    if missing := [name for name in names if name not in modules]:
        top = ", ".join(name for name, _ in backbone.named_children())
        raise InputError(f"{who}: no module {missing} in the backbone; names come from named_modules(), top level: {top}")
    return [modules[name] for name in names]


def sync_batchnorm_modes(module: nn.Module) -> None:
    """Frozen BatchNorms (``track_running_stats`` off, as ``BaseFinetuning.freeze`` leaves them) in eval mode."""
    for child in module.modules():
        if isinstance(child, _BatchNorm):
            child.train(module.training and child.track_running_stats)


class FeatureExtraction(BaseFinetuning):
    """Freeze the backbone (BatchNorm statistics included) and train only the classifier head.

    Args:
        head: backbone module names that stay trainable; default: ``fc``/``classifier`` of the arch
            (plus GoogLeNet's ``aux1``/``aux2`` when built with ``aux_logits``).
    """

    def __init__(self, head: Sequence[str] | None = None) -> None:
        super().__init__()
        self.head = [str(name) for name in head] if head else None

    def head_names(self, pl_module: pl.LightningModule) -> list[str]:
        return self.head or _arch(pl_module).head_modules(pl_module.backbone)

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(pl_module.backbone, train_bn=False)
        self.make_trainable(_submodules(pl_module.backbone, self.head_names(pl_module), type(self).__name__))
        pl_module.name_param_groups("head")

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """Nothing to unfreeze: the backbone stays frozen."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        sync_batchnorm_modes(pl_module.backbone)


class FinetuningSchedule(FeatureExtraction):
    """Feature extraction first, then unfreeze backbone stages epoch by epoch with their own LRs.

    Args:
        phases: ``[{epoch, modules, lr | lr_ratio, name?}, ...]`` (see :class:`Phase`); None builds the
            preset from the arch's stages (its registry entry), last first, with the options below.
        start_epoch, every_n_epochs: stage ``i`` (0 = last) unfreezes at ``start_epoch + i * every_n_epochs``.
        num_stages: how many stages the preset unfreezes (None: all; earlier ones only pay off with
            enough data).
        lr_ratio, lr_ratio_decay: stage ``i`` trains at ``lr_ratio * lr_ratio_decay**i`` x the head's LR.
        train_bn: whether unfrozen stages' BatchNorm layers train (affine parameters and statistics).
        head: as in :class:`FeatureExtraction`.
    """

    def __init__(
        self,
        phases: Sequence[Mapping[str, Any]] | None = None,
        start_epoch: int = 1,
        every_n_epochs: int = 1,
        num_stages: int | None = 2,
        lr_ratio: float = 0.1,
        lr_ratio_decay: float = 0.5,
        train_bn: bool = True,
        head: Sequence[str] | None = None,
    ) -> None:
        super().__init__(head)
        self.phase_specs = None if phases is None else [dict(spec) for spec in phases]
        self.preset = {"start_epoch": int(start_epoch), "every_n_epochs": int(every_n_epochs),
                       "num_stages": num_stages, "lr_ratio": float(lr_ratio), "lr_ratio_decay": float(lr_ratio_decay)}
        self.train_bn = train_bn
        self.phases: list[Phase] = []
        self.applied: list[str] = []  # names of phases already unfrozen; checkpointed
        self._unfrozen: list[nn.Parameter] = []  # parameters DDP's reducer does not know about

    # ----------------------------------------------------------------- phases
    def resolve_phases(self, pl_module: pl.LightningModule) -> list[Phase]:
        """The configured phases (or the arch preset), checked against the backbone."""
        if self.phase_specs is not None:
            phases = [Phase.parse(spec) for spec in self.phase_specs]
        else:
            arch, p = _arch(pl_module), self.preset
            available = arch.stages_last_first(pl_module.backbone)
            count = len(available) if p["num_stages"] is None else int(p["num_stages"])
            if not 0 <= count <= len(available):
                raise InputError(f"num_stages={count} but {arch.name} has {len(available)} stages: "
                                 f"{', '.join(label for label, _ in available)}")
            phases = [Phase(p["start_epoch"] + i * p["every_n_epochs"], tuple(names), label,
                            lr_ratio=p["lr_ratio"] * p["lr_ratio_decay"] ** i)
                      for i, (label, names) in enumerate(available[:count])]
        owner: dict[int, str] = {id(q): "the head" for m in _submodules(pl_module.backbone, self.head_names(pl_module),
                                                                        "FinetuningSchedule") for q in m.parameters()}
        for phase in phases:
            if phase.epoch < 0:
                raise InputError(f"phase {phase.name}: epoch must be >= 0, got {phase.epoch}")
            for module in _submodules(pl_module.backbone, phase.modules, f"FinetuningSchedule phase {phase.name}"):
                for param in module.parameters():
                    if (other := owner.setdefault(id(param), phase.name)) != phase.name:
                        raise InputError(f"phase {phase.name} overlaps {other}: each parameter may be unfrozen once")
        if len({phase.name for phase in phases}) != len(phases):
            raise InputError(f"phase names must be unique: {[phase.name for phase in phases]}")
        return phases

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.phases = self.resolve_phases(pl_module)
        super().setup(trainer, pl_module, stage)

    def _unfreeze(self, pl_module: pl.LightningModule, phase: Phase) -> list[nn.Module]:
        modules = _submodules(pl_module.backbone, phase.modules, phase.name)
        self.make_trainable(modules)
        if not self.train_bn:
            for module in self.flatten_modules(modules):
                if isinstance(module, _BatchNorm):
                    self.freeze_module(module)
        self._unfrozen += [p for m in modules for p in m.parameters() if p.requires_grad]
        return modules

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """Unfreeze every phase due by ``epoch`` as new optimizer groups at the schedule's current multiplier."""
        head = optimizer.param_groups[0]
        head_base = head.get("initial_lr", head["lr"])
        multiplier = head["lr"] / head_base if head_base else 1.0
        for phase in self.phases:
            if phase.epoch > epoch or phase.name in self.applied:
                continue
            modules = self._unfreeze(pl_module, phase)
            base = phase.lr if phase.lr is not None else phase.lr_ratio * head_base
            for group in pl_module.param_groups(modules, prefix=phase.name):
                optimizer.add_param_group({**group, "lr": base * multiplier, "initial_lr": base})
            self.applied.append(phase.name)
            rank_zero_info(f"epoch {epoch}: unfroze {phase.name} ({', '.join(phase.modules)}), base lr {base:.3g}")

    # ----------------------------------------------------------------- resume and DDP
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "applied_phases": list(self.applied)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.applied = list(state_dict.get("applied_phases", []))
        super().load_state_dict(state_dict)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """On resume, unfreeze the phases already applied; BaseFinetuning then restores their optimizer groups."""
        if self._restarting:
            known = {phase.name: phase for phase in self.phases}
            if unknown := [name for name in self.applied if name not in known]:
                raise InputError(f"the checkpoint applied phases {unknown} that this schedule does not have; "
                                 "resume with the phases it was trained with")
            for name in self.applied:
                self._unfreeze(pl_module, known[name])
        super().on_fit_start(trainer, pl_module)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer) -> None:
        """Average the unfrozen parameters' gradients across ranks (DDP's reducer skips them)."""
        if trainer.world_size > 1 and self._unfrozen and dist.is_available() and dist.is_initialized():
            average_gradients(self._unfrozen, trainer.world_size)


def average_gradients(params: Sequence[nn.Parameter], world_size: int) -> None:
    """All-reduce the gradients of ``params`` in one flat buffer and divide by ``world_size``."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for param, grad in zip(params, grads):
        if param.grad is not None:
            param.grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()
