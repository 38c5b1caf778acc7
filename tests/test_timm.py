"""timm backbones in the harness (model=timm model.name=...): build, train, checkpoint, resume, fine-tuning
phases and aux heads from feature_info, Grad-CAM, complexity/generations, compare, local-only weights,
configs, and one fast_dev_run of experiment=modern_vs_classic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import timm
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import TINY_DATA, random_image_loader, read_metrics, run_cli
from convnetlab.analysis.attribution import grad_cam, last_conv_stage
from convnetlab.analysis.comparison import compare
from convnetlab.analysis.generations import generations_table, to_markdown
from convnetlab.callbacks import AuxiliaryClassifiers, FinetuningSchedule
from convnetlab.cli.hydra_app import config_dir, register_resolvers
from convnetlab.errors import InputError, MissingFileError
from convnetlab.lit import ImageClassifier
from convnetlab.models import build_model, classifier_name, registry
from convnetlab.models.weights import eval_transform_mismatch, input_normalization

CONF = Path(config_dir())
TINY = "resnet10t"  # 4.9 M parameters, 0.02 GFLOPs at 32 px: the smallest timm ResNet
BACKBONE = {"_target_": "convnetlab.models.build_model", "arch": "timm", "name": TINY, "num_classes": 4,
            "in_channels": 3, "input_size": 32, "dropout": 0.0}
ADAMW = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3, "weight_decay": 0.01}
PRESETS = sorted(p.stem for p in (CONF / "model" / "timm").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_module(backbone=BACKBONE) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(backbone=backbone, num_classes=4, optimizer=ADAMW, mean=[0.5] * 3, std=[0.25] * 3)


def quiet_trainer(root: Path, callbacks=(), **kwargs) -> pl.Trainer:
    kwargs = {"max_epochs": 1, "num_sanity_val_steps": 0, "limit_train_batches": 2, **kwargs}
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, default_root_dir=root, callbacks=list(callbacks), **kwargs)


def images(n: int = 4, side: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- building
@pytest.mark.parametrize("name, classifier, first, last", [
    (TINY, "fc", ("act1", ["conv1", "bn1"]), ("layer4", ["layer4"])),
    ("mobilenetv3_small_050", "classifier", ("bn1", ["conv_stem", "bn1"]),
     ("blocks_5", ["blocks.4", "blocks.5", "conv_head"])),
])
def test_any_timm_name_builds_with_classifier_and_stages_read_from_the_model(name, classifier, first, last):
    model = build_model("timm", 4, input_size=32, name=name)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    spec = registry.get("timm")
    assert spec.classifier_path(model) == classifier_name("timm", model) == classifier
    assert model.get_submodule(classifier) is model.get_classifier()
    stages = spec.stages(model)
    assert stages[0] == first and stages[-1] == last
    assert [label for label, _ in stages] == [f["module"].replace(".", "_") for f in model.feature_info]
    # every parameter sits in exactly one stage or in the classifier
    owners = [prefix for _, names in stages for prefix in names] + [classifier]
    for param_name, _ in model.named_parameters():
        assert sum(param_name.startswith(f"{o}.") for o in owners) == 1, param_name


def test_convnext_stages_keep_the_head_norm_and_leave_the_classifier_out():
    model = build_model("timm", 4, input_size=32, name="convnext_atto")
    assert classifier_name("timm", model) == "head.fc"
    stages = dict(registry.get("timm").stages(model))
    assert list(stages) == ["stages_0", "stages_1", "stages_2", "stages_3"]
    assert stages["stages_0"] == ["stem", "stages.0"] and stages["stages_3"] == ["stages.3", "head.norm"]


def test_bad_names_and_options_are_one_line_errors():
    with pytest.raises(InputError, match="timm has no model 'resnet10x'"):
        build_model("timm", 4, name="resnet10x")
    with pytest.raises(InputError, match="model.name"):
        build_model("timm", 4)
    with pytest.raises(InputError, match="width"):
        build_model("timm", 4, name=TINY, width=0.5)
    with pytest.raises(InputError, match="arch 'timm' needs the built network|depends on the built network"):
        classifier_name("timm")
    model = build_model("timm", 4, name=TINY, dropout=0.3, drop_path_rate=0.1, in_channels=1, input_size=32)
    assert model.drop_rate == 0.3 and model.conv1[0].in_channels == 1


# ----------------------------------------------------------------------------- training and checkpoints
def test_one_training_step_lowers_the_loss():
    module = make_module()
    module.train()
    batch = next(iter(random_image_loader()))
    optimizer = module.configure_optimizers()
    before = module.training_step(batch, 0)
    before.backward()
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        after = module.loss(module.logits(batch[0]), batch[1])
    assert torch.isfinite(before) and after < before


def test_checkpoint_round_trip_with_weights_only_and_resume_continue(tmp_path):
    module = make_module()
    quiet_trainer(tmp_path).fit(module, random_image_loader())
    path = tmp_path / "timm.ckpt"
    trainer = quiet_trainer(tmp_path)
    trainer.fit(module, random_image_loader())
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    assert raw["hyper_parameters"]["backbone"] == {k: v for k, v in BACKBONE.items() if k != "_target_"}
    restored = ImageClassifier.load_from_checkpoint(path, weights_only=True)
    module.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(module(images()), restored(images()))
    assert raw["global_step"] == 2
    resumed = quiet_trainer(tmp_path, max_epochs=2)
    resumed.fit(make_module(), random_image_loader(), ckpt_path=path)
    assert resumed.global_step == 4 and resumed.current_epoch == 2


def test_a_resumed_timm_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    from convnetlab.callbacks import RNGState

    def fit(epochs: int, ckpt_path: Path | None = None, save: Path | None = None) -> ImageClassifier:
        torch.manual_seed(0)
        module = make_module()
        trainer = quiet_trainer(tmp_path, callbacks=[RNGState()], max_epochs=epochs)
        trainer.fit(module, random_image_loader(), ckpt_path=ckpt_path)
        if save is not None:
            trainer.save_checkpoint(save)
        return module

    straight = fit(2)
    fit(1, save=tmp_path / "epoch1.ckpt")
    resumed = fit(2, ckpt_path=tmp_path / "epoch1.ckpt")
    ours, theirs = resumed.state_dict(), straight.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


# ----------------------------------------------------------------------------- callbacks and analysis
def test_finetuning_schedule_presets_phases_from_feature_info(tmp_path):
    module = make_module()
    schedule = FinetuningSchedule(num_stages=2, start_epoch=1)
    phases = schedule.resolve_phases(module)
    assert [(p.epoch, p.modules, p.name, p.lr_ratio) for p in phases] == [
        (1, ("layer4",), "layer4", 0.1), (2, ("layer3",), "layer3", 0.05)]
    assert schedule.head_names(module) == ["fc"]
    trainer = quiet_trainer(tmp_path, [schedule], max_epochs=2, limit_train_batches=1)
    trainer.fit(module, random_image_loader())
    trainable = {n.split(".")[0] for n, p in module.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"fc", "layer4"} and schedule.applied == ["layer4"]
    assert {g["name"] for g in trainer.optimizers[0].param_groups} >= {"head", "layer4"}


def test_auxiliary_classifiers_attach_to_a_feature_info_stage():
    module = make_module()
    callback = AuxiliaryClassifiers({"layer2": 0.3}, head_type="gap")
    callback.setup(pl.Trainer(accelerator="cpu", logger=False), module, "fit")
    head = module.attached("aux_heads")["layer2"]
    assert head[-1].in_features == module.backbone.feature_info[2]["num_chs"] and head[-1].out_features == 4
    module.train()
    batch = next(iter(random_image_loader()))
    callback.on_train_batch_start(None, module, batch, 0)
    total = module.training_step(batch, 0)
    with torch.no_grad():
        main = module.loss(module.logits(batch[0]), batch[1])
    assert total > main  # main + 0.3 x the aux head's cross-entropy
    total.backward()
    assert head[-1].weight.grad is not None and head[-1].weight.grad.abs().sum() > 0


def test_grad_cam_default_layer_is_the_last_spatial_stage():
    module = make_module().eval()
    inputs = module.normalize(images(2, side=64))
    layer = last_conv_stage(module.backbone, inputs)
    assert layer == "layer4"  # 2x2 maps at 64 px (stride 32)
    maps = grad_cam(module.backbone, inputs, torch.tensor([0, 1]), layer=layer)
    assert maps.shape == (2, 64, 64) and (maps >= 0).all()


def test_generations_table_takes_timm_labels_at_imagenet_settings():
    rows = generations_table(["resnet18", "timm:resnet18"])
    assert [r["model"] for r in rows] == ["resnet18", "timm:resnet18"]
    torchvision_row, timm_row = rows
    assert timm_row["params"] == torchvision_row["params"] == 11_689_512  # the same network
    assert timm_row["gflops"] == pytest.approx(torchvision_row["gflops"], rel=1e-3)
    assert timm_row["top1_err"] is None and "| timm:resnet18 | 11.690 |" in to_markdown(rows)
    with pytest.raises(InputError, match="resnet50 has no variants"):
        generations_table(["resnet50:foo"])


def test_compare_names_timm_runs_by_their_network(tmp_path):
    for i, (name, acc) in enumerate([("convnext_atto", 0.6), ("convnext_atto", 0.7), ("regnetx_002", 0.5)]):
        run = tmp_path / str(i)
        (run / ".hydra").mkdir(parents=True)
        config = {"model": {"arch": "timm", "name": name, "num_classes": 10, "dropout": 0.0}, "data": {"name": "shapes"}}
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        (run / "metrics.json").write_text(json.dumps({"model": "timm", "data": "shapes", "test/acc1": acc,
                                                      "test/acc5": 1.0, "params": 1e6, "gflops": 0.01}))
    rows, problems = compare([tmp_path])
    assert not problems
    assert [(r.label, r.n) for r in rows] == [("timm:convnext_atto", 2), ("timm:regnetx_002", 1)]
    assert rows[0].mean["top1_err"] == pytest.approx(35.0)


# ----------------------------------------------------------------------------- pretrained weights
@pytest.fixture
def empty_caches(tmp_path, monkeypatch) -> dict[str, Path]:
    """Empty torch and Hugging Face caches; any download attempt fails the test."""
    caches = {"torch": tmp_path / "torch", "hf": tmp_path / "hf"}
    monkeypatch.setenv("TORCH_HOME", str(caches["torch"]))
    monkeypatch.setenv("HF_HUB_CACHE", str(caches["hf"]))
    fail = lambda *a, **k: pytest.fail("tried to download")  # noqa: E731
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", fail)
    monkeypatch.setattr(timm.models._hub, "download_cached_file", fail)
    return caches


def imagenet_reference() -> torch.nn.Module:
    torch.manual_seed(3)
    return timm.create_model(TINY, pretrained=False)  # 1000 classes, like the published file


def assert_backbone_is(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    theirs = reference.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, theirs[key]), key
    assert model.fc.out_features == 4


def test_missing_timm_weights_stop_with_one_line_naming_file_and_cache(empty_caches):
    with pytest.raises(MissingFileError) as err:
        build_model("timm", 4, name=TINY, weights="DEFAULT")
    message = str(err.value)
    assert "\n" not in message and "nothing is downloaded" in message
    assert f"resnet10t.c3_in1k.safetensors into {empty_caches['torch'] / 'hub' / 'checkpoints'}" in message
    assert "huggingface.co/timm/resnet10t.c3_in1k" in message and str(empty_caches["hf"]) in message
    with pytest.raises(InputError, match="no pretrained weights 'resnet10t.nope'.*c3_in1k"):
        build_model("timm", 4, name=TINY, weights="nope")


def test_timm_weights_load_from_the_torch_cache_with_a_fresh_classifier(empty_caches):
    from safetensors.torch import save_file

    reference = imagenet_reference()
    path = empty_caches["torch"] / "hub" / "checkpoints" / "resnet10t.c3_in1k.safetensors"
    path.parent.mkdir(parents=True)
    save_file(reference.state_dict(), path)
    torch.manual_seed(0)
    model = build_model("timm", 4, name=TINY, weights="DEFAULT")
    assert_backbone_is(model, reference)
    # the weights' input conventions: timm's mean/std and the 176 px crop of a 201 px resize of resnet10t
    assert input_normalization("timm", "DEFAULT", [0.5] * 3, [0.2] * 3, options={"name": TINY}) == (
        pytest.approx([0.485, 0.456, 0.406]), pytest.approx([0.229, 0.224, 0.225]))
    assert "data.image_size=176 data.resize_size=201" in eval_transform_mismatch("timm", "DEFAULT", 32, 36,
                                                                                 options={"name": TINY})
    module = ImageClassifier(backbone={**BACKBONE, "weights": "DEFAULT"}, num_classes=4, optimizer=ADAMW)
    assert module.hparams.backbone_weights == "DEFAULT" and "weights" not in module.hparams.backbone


def test_timm_weights_are_found_in_the_hugging_face_cache(empty_caches):
    from safetensors.torch import save_file

    reference = imagenet_reference()
    repo = empty_caches["hf"] / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    save_file(reference.state_dict(), repo / "snapshots" / "0123abc" / "model.safetensors")
    assert_backbone_is(build_model("timm", 4, name=TINY, weights="c3_in1k"), reference)


def test_a_timm_state_dict_file_loads_via_model_weights(tmp_path):
    reference = imagenet_reference()
    path = tmp_path / "resnet10t_imagenet.pth"
    torch.save(reference.state_dict(), path)
    assert_backbone_is(build_model("timm", 4, name=TINY, weights=str(path)), reference)


# ----------------------------------------------------------------------------- configs and the experiment
def composed(config_name: str, *overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def test_presets_name_timm_models_that_exist_and_compose():
    assert PRESETS == ["convnext_atto", "efficientnet_b0", "mobilenetv3_small_100", "regnetx_002"]
    available = set(timm.list_models())
    for preset in PRESETS:
        model = composed("train", f"model=timm/{preset}").model
        assert (model.arch, model.name) == ("timm", preset) and preset in available
    assert composed("train", "model=timm", "model.name=convnext_atto").model.name == "convnext_atto"
    assert list(composed("compare", "generations=[resnet50,timm:convnext_tiny]").generations) == [
        "resnet50", "timm:convnext_tiny"]


def test_modern_vs_classic_sweeps_the_classic_five_beside_the_timm_presets():
    cfg = composed("train", "experiment=modern_vs_classic")
    models = cfg.hydra.sweeper.params.model.split(",")
    assert models[:5] == ["lenet5", "alexnet_cpu", "vgg11_bn_cpu", "googlenet_cpu", "resnet18_cpu"]
    assert models[5:] == [f"timm/{p}" for p in PRESETS]
    mini = composed("train", "experiment=mini_ilsvrc")
    assert cfg.hydra.sweeper.params.model.startswith(mini.hydra.sweeper.params.model)
    plain = lambda node: OmegaConf.to_container(node, resolve=False)  # noqa: E731
    assert plain(cfg.data) == plain(mini.data) and plain(cfg.trainer) == plain(mini.trainer)  # same data, budget
    assert plain(cfg.module) == plain(mini.module)  # and recipe (AdamW + cosine)


@pytest.mark.slow
def test_modern_vs_classic_runs_one_timm_job_with_fast_dev_run(data_dir, tmp_path):
    run = tmp_path / "run"
    run_cli("train", "experiment=modern_vs_classic", "model=timm/mobilenetv3_small_100", *TINY_DATA,
            "trainer.fast_dev_run=true", "logger=csv", f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    metrics = read_metrics(run)
    assert metrics["params"] > 1e6 and metrics["gflops"] > 0 and metrics["test/acc1"] is not None
    config = yaml.safe_load((run / "config_resolved.yaml").read_text())
    assert (config["model"]["arch"], config["model"]["name"]) == ("timm", "mobilenetv3_small_100")
