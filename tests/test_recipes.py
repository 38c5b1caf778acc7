"""experiment=ilsvrc/<arch> composes to torchvision's reference recipe (references/classification), arch by arch."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
import torchvision.models
from torchvision.transforms import InterpolationMode, v2

from convnetlab.callbacks.ema import WeightEMA, torchvision_ema_decay
from convnetlab.cli.hydra_app import config_dir, register_resolvers
from convnetlab.data.augment import TorchvisionV2
from convnetlab.models import ARCHS, get
from convnetlab.recipes import linear_scaled_lr, world_size

ALL_RECIPES = sorted(p.stem for p in (Path(config_dir()) / "experiment" / "ilsvrc").glob("[!_]*.yaml"))
V2_RECIPES = [name for name in ALL_RECIPES if name.endswith("_v2")]  # torchvision's V2 ("new") recipe
RECIPES = [name for name in ALL_RECIPES if name not in V2_RECIPES]  # its reference (V1) recipe
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


def test_the_v2_recipe_exists_for_the_resnets_torchvision_trained_with_it():
    assert V2_RECIPES == ["resnet101_v2", "resnet152_v2", "resnet50_v2"]


@pytest.mark.parametrize("name", V2_RECIPES)
def test_v2_recipe_matches_torchvisions_new_recipe(name, imagenet_root):
    """torchvision's references/classification README, ResNet-50 V2: --batch-size 128 (x 8 GPUs) --lr 0.5
    --lr-scheduler cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear --auto-augment ta_wide
    --epochs 600 --random-erase 0.1 --weight-decay 0.00002 --norm-weight-decay 0.0 --label-smoothing 0.1
    --mixup-alpha 0.2 --cutmix-alpha 1.0 --train-crop-size 176 --model-ema --val-resize-size 232 --ra-sampler
    --ra-reps 4 (train.py defaults: momentum 0.9, --lr-warmup-decay 0.01, --model-ema-steps 32,
    --model-ema-decay 0.99998, --interpolation bilinear, --val-crop-size 224)."""
    arch = name.removesuffix("_v2")
    cfg = recipe(name, imagenet_root, "trainer.devices=8")
    weights = getattr(torchvision.models, f"ResNet{arch.removeprefix('resnet')}_Weights").IMAGENET1K_V2
    assert cfg.recipe.target_acc1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    if arch == "resnet50":
        assert cfg.recipe.target_acc1 == 80.858
    assert cfg.model.arch == arch and cfg.model.width == 1.0 and cfg.model.small_input is False
    assert cfg.trainer.max_epochs == 600 and cfg.trainer.strategy == "ddp"
    assert cfg.data.batch_size == 128 and cfg.data.batch_size * cfg.recipe.world_size == 1024
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == pytest.approx(0.5)
    assert (cfg.optimizer.momentum, cfg.optimizer.weight_decay, cfg.optimizer.nesterov) == (0.9, 2e-5, False)
    assert cfg.module.exclude_norm_and_bias_from_weight_decay is True and cfg.module.label_smoothing == 0.1
    assert cfg.scheduler._target_.endswith("schedules.cosine")
    assert (cfg.scheduler.warmup_epochs, cfg.scheduler.warmup_start_factor, cfg.scheduler.min_lr_ratio) == (5, 0.01, 0)
    ema = cfg.callbacks.ema
    assert (ema.decay, ema.every_n_steps, ema.adjust_decay, ema.copy_epochs) == (0.99998, 32, True, 5)
    assert isinstance(instantiate(ema), WeightEMA)
    assert torchvision_ema_decay(ema.decay, 8, cfg.data.batch_size, ema.every_n_steps, 600) == pytest.approx(
        1 - 2e-5 * 1024 * 32 / 600)  # the per-update decay torchvision's train.py uses
    dm = instantiate(cfg.data)
    assert dm.repeated_augmentations == 4 and dm.repeated_augmentations_epoch == "dataset"
    assert isinstance(dm.augment, TorchvisionV2)
    assert (dm.augment.mixup_alpha, dm.augment.cutmix_alpha, dm.augment.random_erasing) == (0.2, 1.0, 0.1)
    crop, flip, trivial, erasing = dm.train_transform.transforms
    assert isinstance(crop, v2.RandomResizedCrop) and tuple(crop.size) == (176, 176) and crop.scale == (0.08, 1.0)
    assert InterpolationMode(crop.interpolation) == InterpolationMode.BILINEAR
    assert isinstance(flip, v2.RandomHorizontalFlip) and isinstance(trivial, v2.TrivialAugmentWide)
    assert isinstance(erasing, v2.RandomErasing) and erasing.p == 0.1
    resize, centre = dm.eval_transform.transforms
    assert list(resize.size) == [232] and InterpolationMode(resize.interpolation) == InterpolationMode.BILINEAR
    assert tuple(centre.size) == (224, 224)


def test_v2_learning_rate_and_global_batch_scale_with_the_world_size(imagenet_root):
    cfg = recipe("resnet50_v2", imagenet_root, "trainer.devices=4")
    assert cfg.data.batch_size == 128 and cfg.optimizer.lr == pytest.approx(0.25)
