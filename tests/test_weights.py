"""Pretrained weights: torchvision files from a (fake) local torch cache, plain state dicts, convnetlab
checkpoints, the promised errors, and the input conventions that travel with the weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

from convnetlab.data import IMAGENET_MEAN, IMAGENET_STD
from convnetlab.lit import ImageClassifier
from convnetlab.models import build_model
from convnetlab.models.weights import cached_weights_file, eval_transform_mismatch, input_normalization, torchvision_weights

TINY = {"input_size": 32, "width": 0.125}
SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05}


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch cache; any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    return tmp_path / "torch"


def put_in_cache(model: torch.nn.Module, arch: str, name: str = "DEFAULT") -> Path:
    path = cached_weights_file(torchvision_weights(arch, name))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def fit_one_step(module: ImageClassifier, root: Path, ckpt: Path, classes: int) -> None:
    data = TensorDataset(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.randint(0, classes, (8,)))
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=root)
    trainer.fit(module, DataLoader(data, batch_size=8))
    trainer.save_checkpoint(ckpt)


def assert_same_except(model: torch.nn.Module, reference: dict, head: str) -> None:
    state = model.state_dict()
    for key, value in reference.items():
        if not key.startswith(head) and key in state:
            assert torch.equal(state[key], value), key


def test_torchvision_weights_load_from_the_local_torch_cache_with_a_new_classifier(torch_home):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    path = put_in_cache(reference, "resnet18")
    assert path == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    model = build_model("resnet18", 7, weights="IMAGENET1K_V1")
    assert_same_except(model, reference.state_dict(), "fc.")
    assert model.fc.out_features == 7 and not torch.equal(model.fc.weight[:7], reference.fc.weight[:7])
    alias = build_model("resnet18", 7, pretrained=True)  # the old spelling of DEFAULT
    assert torch.equal(alias.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_missing_torchvision_weights_name_the_exact_file_and_folder(torch_home):
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError) as error:
        build_model("resnet18", 7, weights="DEFAULT")
    message = str(error.value)
    assert f"put {expected.name} " in message and f"into {expected.parent} " in message
    assert "nothing is downloaded" in message and "\n" not in message


def test_googlenet_weights_switch_on_transform_input_with_imagenet_normalisation(torch_home):
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    put_in_cache(reference, "googlenet")
    backbone = {"_target_": "convnetlab.models.build_model", "arch": "googlenet", "num_classes": 5, "weights": "DEFAULT"}
    module = ImageClassifier(backbone=backbone, num_classes=5, optimizer=SGD, mean=[0.5] * 3, std=[0.25] * 3)
    model = module.backbone
    assert model.transform_input and model.aux1 is None
    assert_same_except(model, {k: v for k, v in reference.state_dict().items() if not k.startswith("aux")}, "fc.")
    # transform_input re-maps ImageNet-normalised inputs, so runs normalise with ImageNet's statistics.
    mean, std = input_normalization("googlenet", "DEFAULT", [0.5] * 3, [0.25] * 3)
    assert mean == pytest.approx(IMAGENET_MEAN) and std == pytest.approx(IMAGENET_STD)


def test_a_plain_state_dict_file_loads_into_the_same_architecture(tmp_path):
    source = build_model("resnet18", 10, **TINY)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    model = build_model("resnet18", 4, weights=str(tmp_path / "weights.pt"), **TINY)
    assert_same_except(model, source.state_dict(), "fc.")
    assert model.fc.out_features == 4


@pytest.mark.parametrize("arch, kwargs", [("vgg11", TINY), ("resnet18", {"input_size": 32, "width": 0.25})])
def test_weights_of_another_architecture_are_a_one_line_error_naming_file_and_arch(tmp_path, arch, kwargs):
    torch.save(build_model("resnet18", 10, **TINY).state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(ValueError, match=f"resnet.pt does not hold weights for this {arch}") as error:
        build_model(arch, 4, weights=str(tmp_path / "resnet.pt"), **kwargs)
    assert "\n" not in str(error.value)


def test_unknown_names_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no torchvision weights 'IMAGENET9'; choose one of IMAGENET1K_V1"):
        build_model("resnet18", 4, weights="IMAGENET9")
    with pytest.raises(ValueError, match="lenet5 has no torchvision weights"):
        build_model("lenet5", 4, input_size=32, weights="DEFAULT")
    with pytest.raises(FileNotFoundError, match="nope.ckpt does not exist"):
        build_model("resnet18", 4, weights=str(tmp_path / "nope.ckpt"), **TINY)
    with pytest.raises(ValueError, match="small_input=false"):
        build_model("resnet18", 4, input_size=32, small_input=True, weights="DEFAULT")


def test_a_convnetlab_checkpoint_starts_a_new_task_and_its_checkpoints_stand_alone(tmp_path):
    backbone = {"_target_": "convnetlab.models.build_model", "arch": "resnet18", "num_classes": 6, **TINY}
    source = ImageClassifier(backbone=backbone, num_classes=6, optimizer=SGD, mean=[0.4] * 3, std=[0.2] * 3)
    fit_one_step(source, tmp_path, tmp_path / "source.ckpt", classes=6)

    target = ImageClassifier(backbone={**backbone, "num_classes": 3, "weights": str(tmp_path / "source.ckpt")},
                             num_classes=3, optimizer=SGD, mean=[0.5] * 3, std=[0.25] * 3)
    assert_same_except(target.backbone, source.backbone.state_dict(), "fc.")
    assert target.backbone.fc.out_features == 3
    # the weights' normalisation wins over the data's
    assert input_normalization("resnet18", str(tmp_path / "source.ckpt"), [0.5] * 3, [0.25] * 3) == ([0.4] * 3, [0.2] * 3)
    assert input_normalization("resnet18", None, [0.5] * 3, [0.25] * 3) == ([0.5] * 3, [0.25] * 3)
    assert "weights" not in target.hparams.backbone
    assert target.hparams.backbone_weights == str(tmp_path / "source.ckpt")

    fit_one_step(target, tmp_path, tmp_path / "target.ckpt", classes=3)
    (tmp_path / "source.ckpt").unlink()  # restoring never needs the original weights again
    restored = ImageClassifier.load_from_checkpoint(tmp_path / "target.ckpt", weights_only=True)
    assert torch.equal(restored.backbone.layer1[0].conv1.weight, target.backbone.layer1[0].conv1.weight)


def test_eval_transform_of_torchvision_weights_is_checked_against_the_data():
    assert eval_transform_mismatch("resnet18", "DEFAULT", 224, 256) is None
    hint = eval_transform_mismatch("resnet50", "DEFAULT", 32, 37)
    assert "Resize(232) + CenterCrop(224)" in hint and "data.image_size=224 data.resize_size=232" in hint
    assert eval_transform_mismatch("resnet18", "/some/file.ckpt", 32, 37) is None
