"""The data layer by composition: sources plug into one ImageDataModule, the Preprocessing spec, and augment
presets as classes chosen by the augment config group (with label_smoothing read by the module config)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from conftest import REPO
from convnetlab.data import ImageDataModule, Preprocessing, ShapesDataModule
from convnetlab.data.augment import PRESET_CLASSES, AlexNet, Default, Preset, TorchvisionV2, resolve
from convnetlab.data.folder import register_resolvers
from convnetlab.data.sources import GeneratedSource
from convnetlab.errors import InputError

AUGMENT = REPO / "conf" / "augment"


def composed(*overrides: str):
    register_resolvers()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


# --- the Preprocessing spec ----------------------------------------------------------------------------


def test_preprocessing_spec_defaults_and_eval_protocols():
    spec = Preprocessing.of(32)
    assert (spec.resize_size, spec.channels, spec.mean, spec.eval_protocol) == (37, 3, (0.485, 0.456, 0.406), "center")
    assert Preprocessing.of(32, channels=1).mean == (pytest.approx(sum((0.485, 0.456, 0.406)) / 3),)
    assert spec.fill == [124, 116, 104] and (spec.eval_decode_size, spec.eval_crops) == (37, 1)
    with pytest.raises(AttributeError):
        spec.image_size = 64  # frozen: a DataModule's spec changes only as a whole
    multiscale = Preprocessing.of(224, 256, eval_protocol="multiscale")
    assert (multiscale.eval_sizes, multiscale.eval_decode_size, multiscale.eval_crops) == ([256, 288, 320], 320, 30)
    with pytest.raises(InputError, match="channels must be 1 or 3"):
        Preprocessing.of(32, channels=2)
    with pytest.raises(InputError, match="one per channel"):
        Preprocessing.of(32, mean=[0.5, 0.5])
    with pytest.raises(InputError, match="protocol=5crop"):
        Preprocessing.of(32, eval_protocol="5crop")


def test_datamodule_exposes_its_spec_and_reads_attributes_from_it(tmp_path):
    dm = ShapesDataModule(root=tmp_path, num_classes=4, image_size=32, num_workers=0)
    assert dm.preprocessing == Preprocessing.of(32, 37, 3, [0.5] * 3, [0.25] * 3)
    assert (dm.image_size, dm.resize_size, dm.channels, dm.mean, dm.std) == (32, 37, 3, (0.5,) * 3, (0.25,) * 3)
    dm.set_eval_protocol("10crop")
    assert dm.preprocessing.eval_protocol == "10crop"
    assert dm.eval_transform(torch.zeros(3, 37, 37)).shape == (10, 3, 32, 32)


# --- a source plugs in ---------------------------------------------------------------------------------


class _Tensors(Dataset):
    def __init__(self, n: int, transform=None) -> None:
        self.n, self.transform = n, transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        image = torch.full((1, 10, 10), index, dtype=torch.uint8)
        return (self.transform(image) if self.transform else image), index % 2


class TensorSource:
    """The smallest source: answers classes, splits and datasets; the DataModule does the rest."""

    root, ordered_by_sampler, classes = Path("."), True, ["even", "odd"]

    def prepare(self) -> None:
        pass

    def check_split(self, split: str) -> None:
        pass

    def has_test_split(self) -> bool:
        return False

    def dataset(self, split, channels, transform, decode_size):
        return _Tensors(20 if split == "train" else 6, transform)

    def distribute(self, dataset, rank, world_size) -> None:
        pass

    def pixel_sample(self, dataset):
        return [dataset[i][0] for i in range(3)]


def test_any_source_plugs_into_the_one_datamodule_with_resumable_order():
    def batches(resume_at: tuple[int, int] | None = None) -> list[list[int]]:
        torch.manual_seed(0)
        dm = ImageDataModule(TensorSource(), Preprocessing.of(8, 10, channels=1), batch_size=6, num_workers=0,
                             augment={"name": "none"})
        dm.setup("fit")
        if resume_at:
            dm.resume_train_at(*resume_at)
        loader = dm.train_dataloader()
        dm.train_sampler.set_epoch(1)
        return [x[:, 0, 0, 0].tolist() for x, _ in loader]

    full = batches()
    assert sorted(sum(full, [])) == list(range(20)) and [len(b) for b in full] == [6, 6, 6, 2]
    assert batches(resume_at=(1, 2)) == full[2:]


def test_generated_source_writes_once_on_setup(tmp_path):
    calls = []
    source = GeneratedSource(tmp_path / "gen", ["a"], lambda root: calls.append(root))
    dm = ImageDataModule(source, Preprocessing.of(8), num_workers=0)
    assert dm.classes == ["a"] and not calls  # known before any disk access
    with pytest.raises(FileNotFoundError):
        dm.setup("fit")  # this writer writes nothing
    assert calls == [tmp_path / "gen"]


# --- augment presets are classes chosen by the augment group -------------------------------------------


@pytest.mark.parametrize("path", sorted(AUGMENT.glob("*.yaml")), ids=lambda p: p.stem)
def test_augment_files_are_plain_group_files_naming_a_preset_class(path):
    text = path.read_text()
    assert "@package" not in text and not text.lstrip("# \n").startswith("augment:")
    config = OmegaConf.load(path)
    preset = instantiate(config)
    assert isinstance(preset, Preset) and preset.name == path.stem and type(preset) is PRESET_CLASSES[path.stem]
    assert config.label_smoothing == (0.1 if path.stem == "tv_v2" else 0.0)


def test_default_and_tv_v2_compose_their_label_smoothing_into_the_module():
    default = composed()
    assert default.module.label_smoothing == 0.0 and default.augment._target_.endswith(".Default")
    tv_v2 = composed("augment=tv_v2")
    assert tv_v2.module.label_smoothing == 0.1
    assert composed("augment=tv_v2", "module.label_smoothing=0.0").module.label_smoothing == 0.0
    assert composed("augment=tv_v2", "augment.label_smoothing=0.2").module.label_smoothing == 0.2
    alone = OmegaConf.create({"module": OmegaConf.load(REPO / "conf/module/classifier.yaml")})
    assert alone.module.label_smoothing == 0.0  # no augment group composed: the plain default


@pytest.mark.parametrize(("overrides", "expected"), [
    ([], Default()),
    (["augment=alexnet"], AlexNet(lighting="auto", alpha_std=0.1)),
    (["augment=alexnet", "augment.alpha_std=0.2"], AlexNet(alpha_std=0.2)),
    (["augment=alexnet", "augment.lighting=imagenet"], AlexNet(lighting="imagenet")),
    (["augment=tv_v2"], TorchvisionV2(random_erasing=0.1, mixup_alpha=0.2, cutmix_alpha=1.0, label_smoothing=0.1)),
    (["augment=tv_v2", "augment.mixup_alpha=0.8"], TorchvisionV2(mixup_alpha=0.8)),
])
def test_augment_overrides_people_type_reach_the_datamodule(tmp_path, overrides, expected):
    cfg = composed(*overrides, f"data.root={tmp_path}", "data.num_workers=0")
    dm = instantiate(cfg.data)
    assert repr(dm.augment) == repr(expected)
    assert (dm.train_transform is None) == (getattr(expected, "lighting", None) == "auto")  # auto: stats at setup


def test_datamodule_takes_a_preset_its_config_or_a_legacy_name_mapping():
    config = {"_target_": "convnetlab.data.augment.AlexNet", "alpha_std": 0.3, "label_smoothing": 0.0}
    assert repr(resolve(config)) == repr(AlexNet(alpha_std=0.3))
    preset = TorchvisionV2()
    assert resolve(preset) is preset and repr(resolve(None)) == repr(Default())
    # {"name": ...} mappings (configs before presets became classes) keep their meaning: no mixing unless given
    assert repr(resolve({"name": "tv_v2"})) == repr(TorchvisionV2(mixup_alpha=0.0, cutmix_alpha=0.0))
    with pytest.raises(InputError, match="augment=foo is not a preset"):
        resolve({"name": "foo"})
    with pytest.raises(InputError, match="augment=default does not take these options: \\['alpha_std'\\]"):
        resolve({"name": "default", "alpha_std": 0.1})
    with pytest.raises(InputError, match="is not an augmentation preset"):
        resolve({"_target_": "builtins.dict"})
