"""experiment=ilsvrc/<arch> composes to torchvision's reference recipe (references/classification), arch by arch."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torchvision.transforms import v2

from convnetlab.cli.hydra_app import config_dir, register_resolvers
from convnetlab.models import ARCHS, get
from convnetlab.recipes import linear_scaled_lr, world_size

RECIPES = sorted(p.stem for p in (Path(config_dir()) / "experiment" / "ilsvrc").glob("[!_]*.yaml"))
NO_BATCHNORM = {"alexnet", "vgg11", "vgg13", "vgg16", "vgg19"}  # torchvision's recipe: lr 0.01 instead of 0.1


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ilsvrc")
    for split in ("train", "val"):
        for wnid in ("n01440764", "n01443537", "n01484850"):
            (root / split / wnid).mkdir(parents=True)
    return root


def recipe(arch: str, root: Path, *overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train", overrides=[f"experiment=ilsvrc/{arch}", f"data.root={root}", *overrides])


def test_every_imagenet_family_has_a_recipe():
    # every architecture with torchvision ImageNet weights (lenet5/designnet are 32 px networks, linear_head a head)
    assert set(RECIPES) == {arch for arch in ARCHS if get(arch).torchvision_name}


@pytest.mark.parametrize("arch", RECIPES)
def test_recipe_matches_the_torchvision_reference(arch, imagenet_root):
    cfg = recipe(arch, imagenet_root, "trainer.devices=8")  # the reference setting: 8 GPUs x 32 images
    assert cfg.model.arch == arch and cfg.model.width == 1.0 and cfg.model.num_classes == 3
    assert cfg.trainer.max_epochs == 90 and cfg.trainer.strategy == "ddp"
    assert cfg.data.batch_size * cfg.recipe.world_size == 256
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert cfg.optimizer.lr == pytest.approx(0.01 if arch in NO_BATCHNORM else 0.1)
    assert (cfg.optimizer.momentum, cfg.optimizer.weight_decay, cfg.optimizer.nesterov) == (0.9, 1e-4, False)
    assert cfg.module.exclude_norm_and_bias_from_weight_decay is False and cfg.module.label_smoothing == 0.0
    assert cfg.scheduler._target_.endswith("schedules.step")
    assert (cfg.scheduler.step_size, cfg.scheduler.gamma, cfg.scheduler.warmup_epochs) == (30, 0.1, 0)
    assert cfg.data.name == "imagenet"
    dm = instantiate(cfg.data)
    crop, flip = dm.train_transform.transforms
    assert isinstance(crop, v2.RandomResizedCrop) and tuple(crop.size) == (224, 224) and crop.scale == (0.08, 1.0)
    assert isinstance(flip, v2.RandomHorizontalFlip)
    resize, centre = dm.eval_transform.transforms
    assert list(resize.size) == [256] and tuple(centre.size) == (224, 224)
    heads = (cfg.callbacks.get("aux_heads") or {}).get("heads")
    if arch == "googlenet":
        assert dict(heads) == {"inception4a": 0.3, "inception4d": 0.3} and cfg.model.aux_logits is False
    else:
        assert heads is None


@pytest.mark.parametrize("devices, nodes, lr", [(8, 1, 0.1), (4, 1, 0.05), (8, 2, 0.2), (1, 1, 0.0125)])
def test_learning_rate_scales_linearly_with_the_world_size(devices, nodes, lr, imagenet_root):
    cfg = recipe("resnet50", imagenet_root, f"trainer.devices={devices}", f"trainer.num_nodes={nodes}")
    assert cfg.recipe.world_size == devices * nodes and cfg.data.batch_size == 32
    assert cfg.optimizer.lr == pytest.approx(lr)


def test_the_trainer_can_still_be_chosen_on_the_command_line(imagenet_root):
    cfg = recipe("resnet18", imagenet_root, "trainer=ddp_cpu")
    assert cfg.trainer.accelerator == "cpu" and cfg.recipe.world_size == 2
    assert cfg.optimizer.lr == pytest.approx(0.1 * 64 / 256)


def test_world_size_helpers():
    assert world_size("0,1,2", 2) == 6 and world_size([0, 1], 1) == 2 and world_size(4, 1) == 4
    assert linear_scaled_lr(0.1, 64, 8) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="at least one process"):
        world_size(0, 1)
