"""The config tree is composed from parts (one file per callback, one base per model family) and composes
to exactly the values every option had when each file still wrote them out in full."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from convnetlab.cli.hydra_app import register_resolvers

CONF = Path(__file__).resolve().parents[1] / "conf"
OUT = "${paths.output_dir}"
CKPT_DIR = "${paths.output_dir}/checkpoints"


def options(group: str) -> list[str]:
    """Selectable options of a group (``_*.yaml`` are bases, not options), sub-folders included."""
    return sorted(str(p.relative_to(CONF / group).with_suffix("")) for p in (CONF / group).rglob("*.yaml")
                  if not p.name.startswith("_"))


def composed(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def node(cfg, key: str):
    return OmegaConf.to_container(cfg[key], resolve=False)


# --- callbacks -------------------------------------------------------------------------------------------

DEFAULT_CALLBACKS = {
    "model_checkpoint": {
        "_target_": "pytorch_lightning.callbacks.ModelCheckpoint", "dirpath": CKPT_DIR,
        "filename": "best-epoch{epoch:03d}-acc{val/acc1:.4f}", "auto_insert_metric_name": False,
        "monitor": "val/acc1", "mode": "max", "save_top_k": 1, "save_last": False,
    },
    "last_checkpoint": {
        "_target_": "pytorch_lightning.callbacks.ModelCheckpoint", "dirpath": CKPT_DIR, "filename": "last",
        "monitor": None, "save_top_k": 1, "enable_version_counter": False, "save_on_train_epoch_end": True,
    },
    "step_checkpoint": {
        "_target_": "pytorch_lightning.callbacks.ModelCheckpoint", "dirpath": CKPT_DIR, "filename": "last",
        "monitor": None, "save_top_k": 1, "every_n_train_steps": 500, "enable_version_counter": False,
    },
    "checkpoint_on_sigterm": {"_target_": "convnetlab.callbacks.CheckpointOnSigterm", "dirpath": CKPT_DIR},
    "rng_state": {"_target_": "convnetlab.callbacks.RNGState"},
    "finite_loss": {"_target_": "convnetlab.callbacks.StopOnNonFiniteLoss", "check_every_n_steps": 1},
    "lr_monitor": {"_target_": "pytorch_lightning.callbacks.LearningRateMonitor", "logging_interval": "step"},
    "throughput": {"_target_": "convnetlab.callbacks.TrainThroughput", "warmup_batches": 5},
    "progress": {"_target_": "convnetlab.callbacks.progress_bar"},
}
GRADIENT_FLOW = {"gradient_flow": {"_target_": "convnetlab.callbacks.GradientFlow", "every_n_steps": 10, "output_dir": OUT}}
EMA = {"ema": {"_target_": "convnetlab.callbacks.ema.WeightEMA", "decay": 0.9999, "every_n_steps": 1, "copy_epochs": 0,
               "adjust_decay": False, "log_raw": True}}
DEFAULT_RUN_EMA = {"ema": {**EMA["ema"], "decay": 0.98, "log_raw": False}}  # callbacks/default_run
V2_EMA = {"ema": {**EMA["ema"], "decay": 0.99998, "every_n_steps": 32, "adjust_decay": True,
                  "copy_epochs": "${scheduler.warmup_epochs}"}}  # torchvision's V2 recipe (ilsvrc/_recipe_v2)


def aux_heads(heads: dict, head_type: str) -> dict:
    return {"aux_heads": {"_target_": "convnetlab.callbacks.AuxiliaryClassifiers", "heads": heads, "head_type": head_type}}


GOOGLENET_HEADS = aux_heads({"inception4a": 0.3, "inception4d": 0.3}, "googlenet")
VGG19_HEADS = aux_heads({"features.9": 0.3, "features.18": 0.3}, "gap")
FINETUNE = {"_target_": "convnetlab.callbacks.FinetuningSchedule", "phases": None, "start_epoch": 1, "every_n_epochs": 1,
            "num_stages": 2, "lr_ratio": 0.1, "lr_ratio_decay": 0.5, "train_bn": True}

CALLBACK_VARIANTS = {
    "default": DEFAULT_CALLBACKS,
    "default_run": {**DEFAULT_CALLBACKS, **DEFAULT_RUN_EMA},
    "gradient_flow": {**DEFAULT_CALLBACKS, **GRADIENT_FLOW},
    "ema": {**DEFAULT_CALLBACKS, **EMA},
    "aux_googlenet": {**DEFAULT_CALLBACKS, **GRADIENT_FLOW, **GOOGLENET_HEADS},
    "deep_supervision": {**DEFAULT_CALLBACKS, **GRADIENT_FLOW, **aux_heads({"layer2": 0.3, "layer3": 0.3}, "gap")},
    "feature_extraction": {**DEFAULT_CALLBACKS,
                           "feature_extraction": {"_target_": "convnetlab.callbacks.FeatureExtraction", "head": None}},
    "finetune": {**DEFAULT_CALLBACKS, "finetune": FINETUNE},
    "visual": {**DEFAULT_CALLBACKS, "visual_logging": {"_target_": "convnetlab.callbacks.VisualLogging",
                                                       "every_n_epochs": 1, "n_images": 8, "layer": None}},
}


def without(callbacks: dict, *keys: str) -> dict:
    return {k: v for k, v in callbacks.items() if k not in keys}


FINDINGS_CALLBACKS = {**DEFAULT_CALLBACKS, "step_checkpoint": None}  # findings/_base: short runs
DEFAULT_RUN = CALLBACK_VARIANTS["default_run"]  # `convnetlab-train` without experiment= or callbacks=
EXPERIMENT_CALLBACKS = {
    "default": DEFAULT_RUN,
    "googlenet_aux": CALLBACK_VARIANTS["aux_googlenet"],
    "resnet_deep_supervision": CALLBACK_VARIANTS["deep_supervision"],
    "transfer_features": {**CALLBACK_VARIANTS["feature_extraction"],
                          "model_checkpoint": {**DEFAULT_CALLBACKS["model_checkpoint"], "monitor": None}},
    "transfer_finetune": {**DEFAULT_CALLBACKS, "model_checkpoint": {**DEFAULT_CALLBACKS["model_checkpoint"], "monitor": None},
                          "finetune": {**FINETUNE, "start_epoch": 5, "every_n_epochs": 5, "num_stages": 2}},
    "transfer_scratch": {**DEFAULT_CALLBACKS, "model_checkpoint": {**DEFAULT_CALLBACKS["model_checkpoint"], "monitor": None}},
    "transfer_pretrain": DEFAULT_CALLBACKS,
    "vgg19_plain_aux": {**DEFAULT_CALLBACKS, **GRADIENT_FLOW, **VGG19_HEADS},
    "lenet5_digits": DEFAULT_CALLBACKS,
    "mini_ilsvrc": DEFAULT_CALLBACKS,
    "modern_vs_classic": DEFAULT_CALLBACKS,
    "resnet18_shapes_sgd": DEFAULT_CALLBACKS,
    "findings/activations": FINDINGS_CALLBACKS,  # + its own time_to_accuracy
    "findings/aux_heads": {**FINDINGS_CALLBACKS, **GRADIENT_FLOW},
    "findings/depth": {**FINDINGS_CALLBACKS, **GRADIENT_FLOW},
    **{f"findings/{name}": FINDINGS_CALLBACKS
       for name in ("augmentation", "filters", "gap_head", "inception", "kernels", "saliency")},
    "ilsvrc/googlenet": CALLBACK_VARIANTS["aux_googlenet"],
    **{f"ilsvrc/{name}": DEFAULT_CALLBACKS for name in options("experiment/ilsvrc")
       if name != "googlenet" and not name.endswith("_v2")},
    **{f"ilsvrc/{name}": {**DEFAULT_CALLBACKS, **V2_EMA} for name in options("experiment/ilsvrc") if name.endswith("_v2")},
}


def test_every_callbacks_option_and_experiment_has_its_expected_callbacks():
    """The tables above cover every option, so a new one has to say what it composes to."""
    assert set(options("callbacks")) == set(CALLBACK_VARIANTS) | set(DEFAULT_CALLBACKS) | {
        f"aux_heads/{name}" for name in ("none", "vgg19_stages_2_3", "inception4a_4d", "resnet_layers_2_3")}
    assert set(options("experiment")) == set(EXPERIMENT_CALLBACKS)


@pytest.mark.parametrize("variant", sorted(CALLBACK_VARIANTS))
def test_callbacks_variant_composes_to_the_default_callbacks_plus_its_own(variant):
    assert node(composed(f"callbacks={variant}"), "callbacks") == CALLBACK_VARIANTS[variant]


@pytest.mark.parametrize("name", sorted(DEFAULT_CALLBACKS))
def test_each_default_callback_file_writes_only_its_own_node(name):
    assert node(composed(f"callbacks={name}"), "callbacks") == {name: DEFAULT_CALLBACKS[name]}


@pytest.mark.parametrize("experiment", sorted(EXPERIMENT_CALLBACKS))
def test_experiment_composes_the_callbacks_it_always_had(experiment):
    callbacks = node(composed(f"experiment={experiment}"), "callbacks")
    if experiment == "findings/activations":  # the finding's own callback, written in the experiment itself
        own = callbacks.pop("time_to_accuracy")
        assert (own["_target_"], own["target"]) == ("convnetlab.callbacks.TimeToAccuracy", 0.5)
    assert callbacks == EXPERIMENT_CALLBACKS[experiment]


@pytest.mark.parametrize(("overrides", "expected"), [
    ([], DEFAULT_RUN),
    (["callbacks.step_checkpoint=null"], {**DEFAULT_RUN, "step_checkpoint": None}),
    (["callbacks.step_checkpoint.every_n_train_steps=5"],
     {**DEFAULT_RUN, "step_checkpoint": {**DEFAULT_CALLBACKS["step_checkpoint"], "every_n_train_steps": 5}}),
    (["callbacks.ema=null"], {**DEFAULT_CALLBACKS, "ema": None}),
    (["callbacks.ema.decay=0.9"], {**DEFAULT_CALLBACKS, "ema": {**DEFAULT_RUN_EMA["ema"], "decay": 0.9}}),
    (["+callbacks/aux_heads=vgg19_stages_2_3"], {**DEFAULT_RUN, **VGG19_HEADS}),
    (["+callbacks/aux_heads=none"], {**DEFAULT_RUN, "aux_heads": {}}),
    (["callbacks=gradient_flow", "+callbacks/aux_heads=vgg19_stages_2_3"], {**DEFAULT_CALLBACKS, **GRADIENT_FLOW, **VGG19_HEADS}),
    (["experiment=vgg19_plain_aux", "~callbacks.aux_heads"], {**DEFAULT_CALLBACKS, **GRADIENT_FLOW}),
    (["callbacks=deep_supervision", "~callbacks.aux_heads.heads", "+callbacks.aux_heads.heads={features.10: 0.3}"],
     {**DEFAULT_CALLBACKS, **GRADIENT_FLOW, **aux_heads({"features.10": 0.3}, "gap")}),
    (["callbacks=deep_supervision", "callbacks/aux_heads=vgg19_stages_2_3"], {**DEFAULT_CALLBACKS, **GRADIENT_FLOW, **VGG19_HEADS}),
    (["callbacks=finetune", "callbacks.finetune.start_epoch=5", "callbacks.finetune.num_stages=2"],
     {**DEFAULT_CALLBACKS, "finetune": {**FINETUNE, "start_epoch": 5}}),
    (["callbacks=visual", "callbacks.visual_logging.every_n_epochs=3"],
     {**CALLBACK_VARIANTS["visual"], "visual_logging": {**CALLBACK_VARIANTS["visual"]["visual_logging"], "every_n_epochs": 3}}),
    (["+callbacks.record._target_=fault_injection.RecordBatches", "+callbacks.record.path=x"],
     {**DEFAULT_RUN, "record": {"_target_": "fault_injection.RecordBatches", "path": "x"}}),
])
def test_command_line_callback_overrides_people_use_keep_working(overrides, expected):
    assert node(composed(*overrides), "callbacks") == expected


# --- packages ------------------------------------------------------------------------------------------

GLOBAL_OVERLAY_GROUPS = {"experiment", "debug", "hparams_search", "cluster"}


def test_only_overlay_groups_write_to_the_global_package():
    """A group's file writes its own node; only the overlays (experiment, debug, ...) reach across the tree."""
    global_files = {str(p.relative_to(CONF)) for p in CONF.rglob("*.yaml") if "@package _global_" in p.read_text()}
    assert global_files and {f.split("/")[0] for f in global_files} <= GLOBAL_OVERLAY_GROUPS, sorted(global_files)


@pytest.mark.parametrize(("trainer", "accelerator", "devices"), [("gpu", "gpu", 1), ("ddp", "gpu", -1)])
def test_gpu_trainers_are_plain_trainer_files_and_leave_speed_choices_to_measurement(trainer, accelerator, devices):
    assert OmegaConf.load(CONF / "trainer" / f"{trainer}.yaml").defaults == ["default"]
    cfg = composed(f"trainer={trainer}")
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.precision) == (accelerator, devices, "bf16-mixed")
    assert cfg.trainer.max_epochs == 10 and cfg.module.channels_last == "auto" and "trainer" not in cfg.trainer
    assert cfg.trainer.benchmark is True  # cuDNN autotunes per GPU and shape


# --- models --------------------------------------------------------------------------------------------

DATA_KEYS = {"num_classes": "${data.num_classes}", "in_channels": "${data.channels}", "input_size": "${data.image_size}"}
BASE = {"_target_": "convnetlab.models.build_model", **DATA_KEYS, "width": 1.0}
TORCHVISION = {**BASE, "small_input": "auto", "weights": None}
MLP_HEAD = {"classifier_hidden": "auto", "dropout": 0.5}
VGGS = [f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "_bn")]
RESNETS = [f"resnet{n}" for n in (18, 34, 50, 101, 152)]
EXPECTED_MODELS = {
    "alexnet": {**TORCHVISION, "arch": "alexnet", **MLP_HEAD},
    "alexnet_cpu": {**TORCHVISION, "arch": "alexnet", **MLP_HEAD, "width": 0.25, "dropout": 0.0},
    "designnet": {**BASE, "arch": "designnet", "widths": [16, 32, 64], "block": "conv", "kernel": 3, "blocks_per_stage": 1,
                  "depth": None, "norm": True, "activation": "relu", "head": "gap", "classifier_hidden": 256, "dropout": 0.0},
    "googlenet": {**TORCHVISION, "arch": "googlenet", "dropout": 0.2, "aux_logits": False},
    "googlenet_cpu": {**TORCHVISION, "arch": "googlenet", "dropout": 0.2, "aux_logits": False, "width": 0.125},
    "lenet5": {**BASE, "arch": "lenet5", "variant": "modern", "weights": None},
    "linear_head": {"_target_": "convnetlab.models.build_model", "arch": "linear_head", **DATA_KEYS,
                    "hidden": 0, "dropout": 0.0},
    **{vgg: {**TORCHVISION, "arch": vgg, **MLP_HEAD} for vgg in VGGS},
    "vgg11_bn_cpu": {**TORCHVISION, "arch": "vgg11_bn", **MLP_HEAD, "width": 0.25, "dropout": 0.0},
    **{resnet: {**TORCHVISION, "arch": resnet} for resnet in RESNETS},
    "resnet18_cpu": {**TORCHVISION, "arch": "resnet18", "width": 0.25},
    **{option: {**BASE, "arch": "timm", "name": name, "dropout": 0.0, "drop_path_rate": None, "weights": None}
       for option, name in [("timm", "resnet18"), *((f"timm/{n}", n) for n in
                            ("convnext_atto", "efficientnet_b0", "mobilenetv3_small_100", "regnetx_002"))]},
}
DESIGNNET_VARIANTS = {"plain": (False, "plain"), "plain_bn": (True, "plain"), "residual": (True, "residual"),
                      "residual_no_bn": (False, "residual")}


def test_every_model_option_has_its_expected_node():
    assert set(options("model")) == set(EXPECTED_MODELS) | {f"designnet/{name}" for name in DESIGNNET_VARIANTS}


@pytest.mark.parametrize("model", sorted(EXPECTED_MODELS))
def test_model_option_composes_to_the_values_it_always_had(model):
    assert node(composed(f"model={model}"), "model") == EXPECTED_MODELS[model]


@pytest.mark.parametrize("variant", sorted(DESIGNNET_VARIANTS))
def test_designnet_variants_patch_block_and_norm_only(variant):
    norm, block = DESIGNNET_VARIANTS[variant]
    cfg = composed("model=designnet", "model.width=0.5", f"+model/designnet={variant}")
    assert node(cfg, "model") == {**EXPECTED_MODELS["designnet"], "width": 0.5, "block": block, "norm": norm}


def test_model_files_no_longer_carry_the_pretrained_alias_and_lenet5_offers_no_torchvision_weights():
    assert not [p.name for p in (CONF / "model").rglob("*.yaml") if "pretrained" in p.read_text()]
    lenet5 = (CONF / "model" / "lenet5.yaml").read_text()
    assert "IMAGENET" not in lenet5 and "DEFAULT" not in lenet5 and "convnetlab .ckpt" in lenet5


# --- base files are not options ------------------------------------------------------------------------

@pytest.mark.parametrize("arg", ["experiment=findings/_base", "experiment=findings/_small_shapes", "experiment=ilsvrc/_recipe",
                                 "model=_base", "model=_torchvision", "experiment=findings/depth,findings/_base"])
def test_a_base_file_is_refused_like_an_unknown_option(arg):
    from convnetlab.cli.command_checks import check_group_choices
    from convnetlab.errors import InputError

    group, option = arg.split("=")[0], arg.split(",")[-1].split("=")[-1]
    with pytest.raises(InputError) as error:
        check_group_choices([arg])
    message = str(error.value)
    assert message.startswith(f"unknown {group} '{option}'; choose one of: ") and "\n" not in message
    listed = message.split("choose one of: ")[1].split(", ")
    assert listed == options(group) and not any("/_" in o or o.startswith("_") for o in listed)
    with pytest.raises(InputError) as unknown:
        check_group_choices([f"{group}=nope"])
    assert str(unknown.value) == message.replace(f"'{option}'", "'nope'")  # the same line as for a name that does not exist


def test_real_options_including_sub_folders_still_pass_the_check():
    from convnetlab.cli.command_checks import check_group_choices

    check_group_choices(["experiment=findings/depth", "model=resnet18_cpu", "+model/designnet=plain",
                         "+callbacks/aux_heads=none,vgg19_stages_2_3", "callbacks=deep_supervision", "trainer=gpu"])


# --- a sweep experiment run as one job is one point of its sweep ---------------------------------------

IMAGENET_SIZED = {f"ilsvrc/{name}" for name in options("experiment/ilsvrc")}  # composed, not built: slow


def sweep_points(params: dict) -> list[list[str]]:
    points = [[]]
    for key, values in params.items():
        points = [[*point, f"{key}={value.strip()}"] for point in points for value in str(values).split(",")]
    return points


def run_config(cfg) -> dict:
    """The composed run without hydra's own node; a callback set to null or to an empty node (e.g.
    +callbacks/aux_heads=none) is no callback, as convnetlab-train instantiates only the others."""
    run = OmegaConf.to_container(cfg, resolve=False)
    run["callbacks"] = {key: value for key, value in run["callbacks"].items() if value}
    return run


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_alone_is_a_point_of_its_sweep_and_builds(experiment):
    from hydra.utils import instantiate

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with_hydra = compose(config_name="train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        params = with_hydra.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params) if params else {}
        single = compose(config_name="train", overrides=[f"experiment={experiment}"])
        if params:
            points = [run_config(compose(config_name="train", overrides=[f"experiment={experiment}", *point]))
                      for point in sweep_points(params)]
            assert run_config(single) in points, f"experiment={experiment} without -m is none of its sweep's points"
    if experiment not in IMAGENET_SIZED:
        assert instantiate(single.model) is not None
