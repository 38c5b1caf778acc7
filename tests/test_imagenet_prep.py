"""ILSVRC-2012 val preparation on a tiny fake devkit: class folders by ground truth, links, idempotence, names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from convnetlab.data import ImageFolderDataModule
from convnetlab.data.imagenet_prep import class_names, prepare_val, read_synsets

SYNSETS = [("n01440764", "tench, Tinca tinca"), ("n01443537", "goldfish, Carassius auratus"),
           ("n01484850", "great white shark, white shark")]
GROUND_TRUTH = [2, 1, 3, 2, 2]  # 1-based ILSVRC2012 ids of val files 1..5


def _fake_release(tmp_path: Path, meta: str) -> tuple[Path, Path]:
    val = tmp_path / "ILSVRC2012_img_val"
    val.mkdir()
    for i in range(1, len(GROUND_TRUTH) + 1):
        Image.new("RGB", (12, 9), (40 * i, 0, 0)).save(val / f"ILSVRC2012_val_{i:08d}.JPEG")
    devkit = tmp_path / "devkit"
    (devkit / "data").mkdir(parents=True)
    (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{k}\n" for k in GROUND_TRUTH))
    if meta == "mat":
        savemat = pytest.importorskip("scipy.io").savemat
        fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
        rows = [(i + 1, wnid, words, 0) for i, (wnid, words) in enumerate(SYNSETS)]
        rows.append((1001, "n00001740", "entity", 3))  # an inner node of the hierarchy: not a class
        savemat(devkit / "data" / "meta.mat", {"synsets": np.array(rows, dtype=fields)})
    else:
        (devkit / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in SYNSETS))
    return val, devkit


@pytest.mark.parametrize("meta", ["mat", "txt"])
def test_val_is_sorted_into_wnid_folders_by_the_ground_truth(tmp_path, meta):
    val, devkit = _fake_release(tmp_path, meta)
    assert read_synsets(devkit) == SYNSETS
    out = tmp_path / "ilsvrc" / "val"
    counts = prepare_val(val, devkit, out)
    assert counts["link"] == 5 and counts["existing"] == 0
    by_class = {d.name: sorted(f.name for f in d.iterdir()) for d in out.iterdir()}
    assert by_class == {
        "n01440764": ["ILSVRC2012_val_00000002.JPEG"],
        "n01443537": ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000004.JPEG", "ILSVRC2012_val_00000005.JPEG"],
        "n01484850": ["ILSVRC2012_val_00000003.JPEG"],
    }
    linked = out / "n01484850" / "ILSVRC2012_val_00000003.JPEG"
    assert linked.stat().st_ino == (val / linked.name).stat().st_ino  # a hard link, no copied bytes
    assert prepare_val(val, devkit, out) == {"link": 0, "symlink": 0, "copy": 0, "existing": 5}  # idempotent
    root = out.parent
    assert class_names(root) == {"n01440764": "tench", "n01443537": "goldfish", "n01484850": "great white shark"}
    assert (root / "wnid_names.txt").read_text().splitlines()[0] == "n01440764\ttench, Tinca tinca"
    # The prepared folder reads as data=imagenet's val split.
    for wnid, _ in SYNSETS:
        (root / "train" / wnid).mkdir(parents=True)
        Image.new("RGB", (12, 9)).save(root / "train" / wnid / "a.JPEG")
    dm = ImageFolderDataModule(root, image_size=8, num_workers=0, name="imagenet")
    dm.setup("validate")
    assert [label for _, label in dm.val_dataset.samples] == [0, 1, 1, 1, 2]


def test_missing_devkit_files_are_clear_errors(tmp_path):
    val, devkit = _fake_release(tmp_path, "txt")
    (devkit / "LOC_synset_mapping.txt").unlink()
    with pytest.raises(FileNotFoundError, match="has neither data/meta.mat nor LOC_synset_mapping.txt"):
        prepare_val(val, devkit, tmp_path / "out")


@pytest.mark.slow
def test_prepare_imagenet_val_cli(tmp_path, data_dir):
    val, devkit = _fake_release(tmp_path, "txt")
    root = tmp_path / "ilsvrc"
    args = ("action=prepare_imagenet_val", f"root={root}", f"val_dir={val}", f"devkit={devkit}")
    proc = run_cli("data", *args, cwd=tmp_path, data_dir=data_dir)
    assert "5 link" in proc.stdout and len(list((root / "val").rglob("*.JPEG"))) == 5
    assert json.loads((root / "class_names.json").read_text())["n01443537"] == "goldfish"
