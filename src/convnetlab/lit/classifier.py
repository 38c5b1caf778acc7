"""`ImageClassifier`: the one LightningModule that trains any backbone on image labels.

The backbone, optimizer and scheduler arrive as config mappings and are stored as plain hyperparameters
that name the architecture and schedule (:mod:`convnetlab.lit.hparams`), so a checkpoint is self-describing:
it rebuilds its own network with ``ImageClassifier.load_from_checkpoint(path)``, loads with
``torch.load(path, weights_only=True)`` and survives code moves.

Pretrained weights (``backbone.weights``) are loaded once, when the run starts; the stored backbone
config drops them (``backbone_weights`` records where they came from), so restoring a checkpoint never
needs the original weight file. ``mean``/``std`` are given by the caller: the entry point resolves them
once (the weights' own statistics win over the data's, see ``models.weights.input_normalization``).

Callbacks extend the module through one small API instead of ad-hoc attributes: :meth:`add_loss_term`
(extra training losses, e.g. auxiliary classifiers; GoogLeNet's built-in aux outputs use it too),
:meth:`attach` (extra trainable sub-modules, optimised and checkpointed) and :meth:`name_param_groups`
(the name of the optimizer groups, e.g. ``head`` while the backbone is frozen).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from convnetlab.errors import InputError
from convnetlab.lit import memory_format
from convnetlab.lit.epoch_sums import TrainEpochSums
from convnetlab.lit.hparams import backbone_spec, scheduler_factory, scheduler_spec, to_plain
from convnetlab.lit.param_groups import norm_parameter_names, split_weight_decay
from convnetlab.models import build_model, registry
from convnetlab.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from convnetlab.models.weights import eval_transform_mismatch, resolve_weights

# torchvision GoogLeNet's built-in auxiliary heads (aux_logits=True) are weighted 0.3, as in the paper.
TORCHVISION_AUX_WEIGHT = 0.3
MEMORY_FORMAT_KEY = "memory_format"  # checkpoint entry: the format a channels_last="auto" run trained in

LossTerm = Callable[[Any, torch.Tensor], torch.Tensor]  # (forward output, targets) -> unweighted loss


def output_width(backbone: nn.Module) -> int | None:
    """Width of the last ``nn.Linear`` registered in the backbone (its classifier), if any."""
    linears = [m for m in backbone.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


class ImageClassifier(pl.LightningModule):
    """Cross-entropy image classification around a backbone built from ``backbone`` (a config).

    Args:
        backbone: ``{"arch": <registered architecture>, **build options}`` (a model config; a
            ``_target_`` in it is ignored) for :func:`convnetlab.models.build_model`.
        num_classes: number of labels; must equal the backbone's output width (checked at build).
        optimizer: partial optimizer config (``_partial_: true``), called with parameter groups.
        scheduler: a ``conf/scheduler`` config (``_target_: convnetlab.lit.schedules.<name>`` + options) or
            its stored form ``{"name": <name>, **options}``; the schedule steps every batch. ``None``: a
            constant learning rate.
        label_smoothing: cross-entropy label smoothing.
        mean, std: per-channel normalisation in [0, 1] units, applied on the device to uint8 batches;
            empty for inputs that are already features (``data=embeddings``).
        channels_last: convert the backbone and batches to channels-last memory format; ``"auto"``: the
            faster of NCHW and channels-last for this model, input and machine, measured when a Trainer
            sets the module up (:mod:`convnetlab.lit.memory_format`, cached per machine) and kept in
            checkpoints, so a resumed run and an evaluation use the format the run trained with.
        exclude_norm_and_bias_from_weight_decay: the usual recipe; norms and biases get no decay.
        backbone_weights: where the backbone's initial weights came from (set from ``backbone.weights``;
            a record only, never reloaded).
        compile: ``torch.compile`` the backbone in place (``nn.Module.compile``, so state-dict keys stay
            clean: no ``_orig_mod.``) when fitting starts (``setup("fit")``, after callbacks such as the
            EMA have copied the eager module); evaluation-only uses stay eager.
    """

    def __init__(
        self,
        backbone: Mapping[str, Any],
        num_classes: int,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        label_smoothing: float = 0.0,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        channels_last: bool | Literal["auto"] = False,
        exclude_norm_and_bias_from_weight_decay: bool = True,
        backbone_weights: str | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(channels_last, str) and channels_last != "auto":
            raise InputError(f"channels_last={channels_last!r}: use true, false or auto")
        backbone = backbone_spec(backbone)
        weights = resolve_weights(backbone.pop("weights", None), backbone.pop("pretrained", False))
        hparams = {
            "backbone": backbone,
            "num_classes": int(num_classes),
            "optimizer": to_plain(optimizer),
            "scheduler": scheduler_spec(scheduler),
            "label_smoothing": float(label_smoothing),
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "channels_last": channels_last if channels_last == "auto" else bool(channels_last),
            "exclude_norm_and_bias_from_weight_decay": bool(exclude_norm_and_bias_from_weight_decay),
            "backbone_weights": weights or backbone_weights,
            "compile": bool(compile),
        }
        self.save_hyperparameters(hparams)
        self.backbone: nn.Module = build_model(**backbone, **({"weights": weights} if weights else {}))
        width = output_width(self.backbone)
        if width is not None and width != num_classes:
            raise InputError(
                f"The backbone predicts {width} classes but the data has {num_classes}; "
                "set model.num_classes to the data's class count (the default configs do this)."
            )
        if len(mean) != len(std):
            raise InputError(f"mean has {len(mean)} channels but std has {len(std)}; give one value per channel.")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0, persistent=False)
        self._channels_last: bool | None = None  # None: "auto" not yet resolved (NCHW meanwhile)
        if channels_last != "auto":
            self.set_memory_format(bool(channels_last))

        top5 = min(5, num_classes)
        self._train_epoch = TrainEpochSums(top5)  # the epoch's training loss/top-1/top-5, logged once per epoch
        self.val_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.test_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self._loss_terms: dict[str, tuple[float, LossTerm]] = {}
        self._param_group_name = ""
        for name, index in registry.get(backbone["arch"]).builtin_aux.items():  # e.g. GoogLeNet's aux_logits
            if getattr(self.backbone, name, None) is not None:
                self.add_loss_term(f"aux_loss/{name}", TORCHVISION_AUX_WEIGHT,
                                   lambda out, targets, i=index: self.loss(out[i], targets))

    # ----------------------------------------------------------------- extension API for callbacks
    def add_loss_term(self, name: str, weight: float, fn: LossTerm) -> None:
        """Add ``weight * fn(forward output, targets)`` to the training loss, logged unweighted as ``train/<name>``."""
        self._loss_terms[name] = (float(weight), fn)

    def remove_loss_term(self, name: str) -> None:
        self._loss_terms.pop(name, None)

    def attach(self, name: str, module: nn.Module) -> None:
        """Register an extra trainable sub-module (optimised and checkpointed with the model); a checkpoint
        holding it still loads into a module without it (its weights are dropped, see on_load_checkpoint)."""
        if name in dict(self.named_children()) and self.attached(name) is None:
            raise InputError(f"{name} is a part of ImageClassifier itself; attach under another name")
        self.add_module(name, module)
        self._attached = {*getattr(self, "_attached", ()), name}

    def attached(self, name: str) -> nn.Module | None:
        """The sub-module attached as ``name``, or None."""
        return getattr(self, name) if name in getattr(self, "_attached", ()) else None

    def name_param_groups(self, name: str) -> None:
        """Name the optimizer groups ``configure_optimizers`` builds: ``""`` gives ``decay``/``no_decay``,
        ``"head"`` gives ``head``/``head_no_decay`` (logged as ``lr/<group>``)."""
        self._param_group_name = name

    # ----------------------------------------------------------------- forward path
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 255]) batches -> normalised float, done on the model's device.

        Without mean/std (feature vectors, ``data=embeddings``) inputs pass through as floats.
        """
        if self.mean.numel() == 0:
            return images.float()
        images = (images.float() - self.mean) / self.std
        if images.ndim == 4:  # batches may arrive in either layout (``collate_present``): give the model its own
            images = images.contiguous(memory_format=torch.channels_last if self._channels_last
                                       else torch.contiguous_format)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of uint8 images (N, C, H, W)."""
        return self.backbone(self.normalize(images))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Main-head logits, unwrapping torchvision's (logits, aux...) training outputs."""
        out = self(images)
        return out[0] if isinstance(out, tuple) else out

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy; ``targets`` may be class indices or soft (N, num_classes) distributions."""
        return F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        out = self(images)
        logits = out[0] if isinstance(out, tuple) else out
        loss = self.loss(logits, targets)
        n = len(images)
        for name, (weight, fn) in self._loss_terms.items():
            value = fn(out, targets)
            loss = loss + weight * value
            self._log_step_and_epoch(f"train/{name}", value, n)
        self._train_epoch.add(logits, targets, loss, n)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        if self._is_last_train_batch(batch_idx):
            self._log_train_epoch()
        return loss

    def _log_train_epoch(self) -> None:
        """``train/loss_epoch``, ``train/acc1``, ``train/acc5`` of the epoch so far, summed over DDP ranks."""
        trainer = self._trainer
        distributed = trainer is not None and trainer.world_size > 1
        epoch = self._train_epoch.pop((lambda t: trainer.strategy.reduce(t, reduce_op="sum")) if distributed else None)
        if epoch is None:
            return
        for name, key in (("train/loss_epoch", "loss"), ("train/acc1", "acc1"), ("train/acc5", "acck")):
            self.log(name, epoch[key], on_step=False, on_epoch=True, batch_size=1)

    def on_train_epoch_end(self) -> None:
        """An epoch of unknown length (iterable data) logs its training metrics here, after the callbacks'
        epoch-end hooks; with a known length they were logged on its last batch, so callbacks see them."""
        self._log_train_epoch()

    def _is_last_train_batch(self, batch_idx: int) -> bool:
        """True on the epoch's last batch (when its length is known) or when stepping outside a Trainer.

        The epoch metrics are handed to ``self.log`` only here, not every step: each ``self.log`` call costs
        Lightning bookkeeping, a measurable share of a small network's step (scripts/bench/overhead.py).
        """
        if self._trainer is None:
            return True
        batches = self._trainer.num_training_batches
        return math.isfinite(batches) and batch_idx + 1 >= batches

    def _log_step_and_epoch(self, name: str, value: torch.Tensor, n: int) -> None:
        """``name`` per step (the contract's metric name) and ``name_epoch`` as the epoch mean."""
        self.log(name, value, on_step=True, on_epoch=False, batch_size=n)
        self.log(f"{name}_epoch", value, on_step=False, on_epoch=True, batch_size=n)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc1, self.val_acc5)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc1, self.test_acc5)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return self.logits(images).softmax(dim=1)

    def _evaluate(self, batch, stage: str, acc1: MulticlassAccuracy, acc5: MulticlassAccuracy) -> None:
        images, targets = batch
        logits = self.logits(images)
        n = len(images)
        self.log(f"{stage}/loss", self.loss(logits, targets), on_epoch=True, batch_size=n, sync_dist=True)
        acc1(logits, targets)
        acc5(logits, targets)
        self.log(f"{stage}/acc1", acc1, on_epoch=True, prog_bar=True, batch_size=n)
        self.log(f"{stage}/acc5", acc5, on_epoch=True, batch_size=n)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._channels_last is not None:
            checkpoint[MEMORY_FORMAT_KEY] = {"channels_last": self._channels_last}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the memory format the checkpoint trained with (``channels_last="auto"``), so a resume stays
        bit-exact and skips the probe; drop the weights of attached modules this module does not have (e.g.
        auxiliary heads of a run with ``AuxiliaryClassifiers``), so such a checkpoint loads (strictly, for
        everything else) for inference."""
        stored = checkpoint.get(MEMORY_FORMAT_KEY) or {}
        trained = stored.get("channels_last", checkpoint.get("hyper_parameters", {}).get("channels_last"))
        if self.hparams.channels_last == "auto" and isinstance(trained, bool):  # older checkpoints: their flag
            self.set_memory_format(trained)
        state = checkpoint.get("state_dict", {})
        own = {name for name, _ in self.named_children()}
        for key in [k for k in state if k.split(".", 1)[0] not in own]:
            del state[key]

    def compile_backbone(self) -> None:
        """``torch.compile`` the backbone in place (once): parameters and state-dict keys are unchanged."""
        if getattr(self.backbone, "_compiled_call_impl", None) is None:
            self.backbone.compile()

    @property
    def uses_channels_last(self) -> bool:
        """Whether the backbone and batches are channels-last now (``"auto"`` before it is resolved: no)."""
        return bool(self._channels_last)

    def set_memory_format(self, channels_last: bool) -> None:
        """Convert the backbone (parameters keep their identity) and, from now on, the batches."""
        self._channels_last = channels_last
        self.backbone = self.backbone.to(memory_format=torch.channels_last if channels_last
                                         else torch.contiguous_format)

    def setup(self, stage: str) -> None:
        """Resolve ``channels_last="auto"``; compile the backbone for fitting (``compile=True``); warn when the
        data's eval crop/resize differ from those the pretrained weights were measured with."""
        if self._channels_last is None:  # "auto"; a resumed run then takes its checkpoint's (on_load_checkpoint)
            self.set_memory_format(memory_format.choose_for_run(self.backbone, self.hparams.backbone, self.trainer,
                                                                train=stage == "fit"))
        if stage == "fit" and self.hparams.get("compile", False):
            self.compile_backbone()
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and hasattr(datamodule, "resize_size"):
            hint = eval_transform_mismatch(self.hparams.backbone.get("arch", ""), self.hparams.backbone_weights,
                                           datamodule.image_size, datamodule.resize_size, options=self.hparams.backbone)
            if hint:
                rank_zero_warn(hint)

    # ----------------------------------------------------------------- optimisation
    def param_groups(self, modules: list[nn.Module] | None = None, prefix: str = "") -> list[dict]:
        """Weight-decay / no-decay groups of the trainable parameters of ``modules`` (default: all),
        named ``prefix`` and ``prefix_no_decay`` (``decay``/``no_decay`` without a prefix)."""
        members = None if modules is None else {id(p) for module in modules for p in module.parameters()}
        return split_weight_decay(
            ((name, p) for name, p in self.named_parameters() if members is None or id(p) in members),
            weight_decay=self.hparams.optimizer.get("weight_decay", 0.0),
            exclude_norm_and_bias=self.hparams.exclude_norm_and_bias_from_weight_decay,
            norm_parameter_names=norm_parameter_names(self),
            prefix=prefix,
        )

    def configure_optimizers(self) -> Any:
        """Optimizer over the trainable parameters; LRs are logged per group as ``lr/<group name>``."""
        optimizer = instantiate(self.hparams.optimizer)(self.param_groups(prefix=self._param_group_name))
        if not self.hparams.scheduler:
            return optimizer
        steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // max(1, self.trainer.max_epochs or 1))
        scheduler = scheduler_factory(self.hparams.scheduler)(
            optimizer, steps_per_epoch=steps_per_epoch, max_epochs=self.trainer.max_epochs
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}
