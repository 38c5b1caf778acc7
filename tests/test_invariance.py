"""Invariance probe: the six transforms, the accuracy table, and `convnetlab-probe` end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from conftest import TINY_DATA, read_metrics, run_cli
from convnetlab.analysis.invariance import TRANSFORMS, apply, invariance_table, plot_invariance, write_csv
from convnetlab.lit import ImageClassifier

NONZERO = {"translate": 2, "scale": 0.2, "rotate": 20, "squeeze": 0.2, "stroke": 1, "noise": 16}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bar_image(bright_on_dark: bool = True) -> torch.Tensor:
    """A (1, 1, 16, 16) uint8 image: a 2-pixel-wide off-centre bar on a plain background."""
    image = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    image[..., 3:12, 6:8] = 255
    return image if bright_on_dark else 255 - image


def test_the_six_transforms_are_registered():
    assert set(TRANSFORMS) == set(NONZERO)


@pytest.mark.parametrize("name", sorted(NONZERO))
def test_magnitude_zero_is_the_identity(name):
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    assert torch.equal(apply(name, images, 0), images)


@pytest.mark.parametrize("name", sorted(NONZERO))
def test_every_transform_changes_the_image_and_keeps_uint8(name):
    images = bar_image().repeat(2, 3, 1, 1)
    out = apply(name, images, NONZERO[name])
    assert out.dtype == torch.uint8 and out.shape == images.shape and not torch.equal(out, images)


@pytest.mark.parametrize("bright_on_dark", [True, False])
def test_stroke_width_follows_the_foreground_polarity(bright_on_dark):
    image = bar_image(bright_on_dark)
    ink = (lambda x: int((x > 127).sum())) if bright_on_dark else (lambda x: int((x < 128).sum()))
    assert ink(apply("stroke", image, 1)) > ink(image) > ink(apply("stroke", image, -1))


def test_noise_is_seeded_and_clamped():
    images = bar_image()
    a = apply("noise", images, 200, torch.Generator().manual_seed(1))
    assert torch.equal(a, apply("noise", images, 200, torch.Generator().manual_seed(1)))
    assert a.min() == 0 and a.max() == 255


def test_an_unknown_transform_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown transform 'blur'; valid: translate, scale, rotate"):
        apply("blur", bar_image(), 1)


def test_the_table_at_magnitude_zero_is_the_trainer_test_accuracy(tmp_path):
    torch.manual_seed(0)
    backbone = {"_target_": "convnetlab.models.build_model", "arch": "lenet5", "num_classes": 4, "in_channels": 1,
                "input_size": 32}
    module = ImageClassifier(backbone=backbone, num_classes=4, optimizer={"_target_": "torch.optim.SGD",
                             "_partial_": True, "lr": 0.1}, mean=[0.3], std=[0.3])
    g = torch.Generator().manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randint(0, 256, (40, 1, 32, 32), dtype=torch.uint8, generator=g),
                                      torch.randint(0, 4, (40,), generator=g)), batch_size=16)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (tested,) = trainer.test(module, loader, verbose=False)
    rows = invariance_table(module, loader, {"rotate": [0, 30], "noise": [0, 64]})
    assert [(r["transform"], r["magnitude"]) for r in rows] == [("rotate", 0), ("rotate", 30), ("noise", 0), ("noise", 64)]
    assert rows[0]["acc1"] == pytest.approx(tested["test/acc1"]) and rows[2]["acc1"] == rows[0]["acc1"]
    rows = [{"ckpt": "a.ckpt", "model": "lenet5", **r} for r in rows]
    write_csv(rows, tmp_path / "invariance.csv")
    assert next(csv.reader((tmp_path / "invariance.csv").open())) == ["ckpt", "model", "transform", "magnitude", "acc1"]
    with Image.open(plot_invariance(rows, tmp_path / "invariance.png")) as picture:
        assert picture.size == (720, 280)  # one 3.6 x 2.8 in panel per transform (rotate, noise) at 100 dpi
        assert np.asarray(picture.convert("L")).std() > 10  # axes and curves drawn, not a blank canvas


@pytest.mark.slow
def test_probe_cli_overlays_checkpoints_and_starts_at_the_eval_accuracy(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_cli("train", *TINY_DATA, "model=lenet5", "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={run_dir}",
            cwd=tmp_path, data_dir=data_dir)
    best = read_metrics(run_dir)["ckpt_best"]
    last = str(run_dir / "checkpoints" / "last.ckpt")
    run_cli("evaluate", f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path, data_dir=data_dir)
    out = tmp_path / "probe"
    proc = run_cli("probe", f"ckpt_paths=[{best},{last}]", "magnitudes.translate=[0,3]", "magnitudes.scale=[0,0.3]",
                   "magnitudes.rotate=[0,30]", "magnitudes.squeeze=[0,0.3]", "magnitudes.stroke=[0,1]",
                   "magnitudes.noise=[0,64]", "labels=[best-ckpt,last-ckpt]", f"hydra.run.dir={out}", cwd=tmp_path,
                   data_dir=data_dir)
    rows = list(csv.DictReader((out / "invariance.csv").open()))
    assert list(rows[0]) == ["ckpt", "model", "transform", "magnitude", "acc1"] and len(rows) == 2 * 6 * 2
    plain = [float(r["acc1"]) for r in rows if r["ckpt"] == best and float(r["magnitude"]) == 0]
    assert plain == pytest.approx([read_metrics(tmp_path / "eval")["test/acc1"]] * 6, abs=1e-6)
    with Image.open(out / "invariance.png") as picture:
        assert picture.size == (1080, 560)  # six transforms: 3 x 2 panels of 3.6 x 2.8 in at 100 dpi
        assert np.asarray(picture.convert("L")).std() > 10
    assert "best-ckpt" in proc.stdout and "last-ckpt" in proc.stdout
    missing = run_cli("probe", cwd=tmp_path, data_dir=data_dir, check=False)
    assert missing.returncode != 0 and missing.stderr.strip().splitlines()[-1].startswith("error: ckpt_paths must be set: add ckpt_paths=[")
