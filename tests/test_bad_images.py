"""Bad images: `check` finds every planted kind; data.bad_images=error stops, skip drops and trains on."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import read_metrics, run_cli
from convnetlab.cli.data import bad_images
from convnetlab.data import ImageFolderDataModule
from convnetlab.data.folder import inspect_file

CLASSES = ("cat", "dog")


def _good_tree(root: Path, per_class: int = 4) -> Path:
    for split in ("train", "val"):
        for k, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (40, 30), (60 * k + 10 * i, 90, 200)).save(root / split / name / f"{i}.jpg")
    return root


def _truncated(path: Path) -> Path:
    data = (path.parent / "0.jpg").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture()
def planted(tmp_path) -> tuple[Path, dict[str, Path]]:
    """A good tree plus one file of each bad kind in train/dog, and an empty class folder in val."""
    root = _good_tree(tmp_path / "ds")
    dog = root / "train" / "dog"
    bad = {
        "truncated": _truncated(dog / "truncated.jpg"),
        "zero-byte": dog / "empty.jpg",
        "not an image": dog / "notes.jpg",
        "unreadable": dog / "dangling.jpg",
        "not an image file": dog / "readme.txt",
        "empty class folder": root / "val" / "bird",
    }
    bad["zero-byte"].touch()
    bad["not an image"].write_text("a text file renamed .jpg")
    bad["unreadable"].symlink_to(tmp_path / "moved-away.jpg")  # a dangling link: open() fails
    bad["not an image file"].write_text("class notes")
    bad["empty class folder"].mkdir()
    return root, bad


def test_check_finds_each_planted_kind_of_bad_file(planted):
    root, bad = planted
    checked, problems = bad_images(root)
    assert len(problems) == len(bad) and checked == 16 + 5
    for kind, path in bad.items():
        assert any(p.startswith(f"{path}: {kind}") for p in problems), (kind, problems)


def test_check_finds_a_file_without_read_permission(tmp_path, monkeypatch):
    """Root (CI) reads a chmod 0 file anyway, so the denial comes from open() itself, as the OS gives it."""
    import builtins

    root = _good_tree(tmp_path / "ds")
    path = root / "train" / "dog" / "1.jpg"
    real_open = builtins.open

    def denying_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denying_open)
    assert inspect_file(str(path)) == f"{path}: unreadable (Permission denied)"
    assert bad_images(root) == (16, [f"{path}: unreadable (Permission denied)"])  # convnetlab-data action=check


def test_check_finds_a_directory_named_like_an_image(tmp_path):
    folder = tmp_path / "photo.jpg"
    folder.mkdir()
    assert inspect_file(str(folder)).startswith(f"{folder}: ")


def test_bad_images_error_stops_at_the_first_bad_file_naming_it(tmp_path):
    root = _good_tree(tmp_path / "ds")
    corrupt = _truncated(root / "train" / "cat" / "2.jpg")
    dm = ImageFolderDataModule(root, image_size=16, batch_size=8, num_workers=0)
    dm.setup("fit")
    with pytest.raises(RuntimeError) as error:
        list(dm.train_dataloader())
    message = str(error.value)
    assert "\n" not in message and str(corrupt) in message and "data.bad_images=skip" in message
    with pytest.raises(RuntimeError, match=re.escape(str(corrupt))):  # in_memory stops before training
        ImageFolderDataModule(root, image_size=16, in_memory=True).setup("fit")


def test_bad_images_skip_drops_counts_and_trains_on(tmp_path, caplog):
    root = _good_tree(tmp_path / "ds")
    corrupt = _truncated(root / "train" / "cat" / "2.jpg")
    (root / "train" / "dog" / "empty.jpg").touch()
    with caplog.at_level(logging.WARNING):
        dm = ImageFolderDataModule(root, image_size=16, batch_size=16, num_workers=0, bad_images="skip")
        dm.setup("fit")
    assert len(dm.train_dataset) == 7 and len(dm.train_dataset.skipped) == 2
    assert "skipping 2 bad file(s)" in caplog.text and str(corrupt) in caplog.text
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (7, 3, 16, 16) and labels.tolist().count(0) == 3


def test_skip_also_drops_a_file_that_only_fails_to_decode(tmp_path):
    """A JPEG with intact header and end marker but a corrupt body passes the scan; its batch slot is dropped."""
    root = _good_tree(tmp_path / "ds")
    good = (root / "train" / "cat" / "0.jpg").read_bytes()
    (root / "train" / "cat" / "1.jpg").write_bytes(good[:20] + b"\x00" * 40 + good[-2:])
    dm = ImageFolderDataModule(root, image_size=16, batch_size=16, num_workers=0, bad_images="skip")
    dm.setup("fit")
    assert len(dm.train_dataset) == 8
    images, _ = next(iter(dm.train_dataloader()))
    assert len(images) == 7 and images.dtype == torch.uint8


@pytest.mark.slow
def test_check_cli_then_training_with_skip(planted, data_dir, tmp_path):
    root, bad = planted
    bad["empty class folder"].rmdir()  # training needs the same classes in train and val
    bad["not an image file"].unlink()
    proc = run_cli("data", "action=check", f"root={root}", cwd=tmp_path, data_dir=data_dir, check=False)
    assert proc.returncode == 1 and str(bad["truncated"]) in proc.stdout and ": 4 unreadable" in proc.stdout
    common = ["data=imagefolder", f"data.root={root}", "data.image_size=32", "data.batch_size=4", "data.num_workers=0",
              "model=lenet5", "trainer.max_epochs=1", "logger=csv"]
    run_cli("train", *common, "data.bad_images=skip", f"hydra.run.dir={tmp_path / 'skip'}", cwd=tmp_path,
            data_dir=data_dir)
    assert "test/acc1" in read_metrics(tmp_path / "skip")
