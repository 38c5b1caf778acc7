"""Data a run would refuse is refused (or, by `convnetlab-data action=check`, listed) up front, in one line that
says what to do: `check` and `optimize` apply training's layout rules, `optimize` refuses an `out` its chunks
cannot go to, a root that is a file or no streaming data is named as such, the baselines refuse one class, and
an undecodable file is explained without the decoder's internals. In-process: library functions, no CLI runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO
from convnetlab.cli.data import PROBLEMS_FOUND, check
from convnetlab.data.folder import ImageFolderDataset, count_classes, list_classes
from convnetlab.data.streaming import StreamingDataModule, StreamingSource
from convnetlab.data.streaming_writer import optimize_folder
from convnetlab.errors import BadImageError, ConvnetlabError, InputError, MissingFileError


def tree(root: Path, classes: dict[str, tuple[str, ...]] | None = None, per_class: int = 2) -> Path:
    """``root/<split>/<class>/<i>.png``; ``classes`` maps a split to its class folders (default a, b in train, val)."""
    for split, names in (classes or {"train": ("a", "b"), "val": ("a", "b")}).items():
        for k, name in enumerate(names):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (40 * k, 20 * i, 90)).save(root / split / name / f"{i}.png")
    return root


def fake_chunks(root: Path, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """What ``optimize_folder`` leaves, without litdata: ``classes.json`` and each split's ``index.json``."""
    root.mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps({"classes": ["a", "b"], "splits": {"train": 2, "val": 2}}))
    for split in splits:
        (root / split).mkdir()
        (root / split / "index.json").write_text("{}")
    return root


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and isinstance(error.value, ConvnetlabError)
    return message


# --- optimize: where the chunks go ---------------------------------------------------------------------
@pytest.mark.parametrize("where", ["a folder of other files", "the root", "inside the root", "a file"])
def test_optimize_refuses_an_out_the_chunks_cannot_go_to_and_writes_nothing(tmp_path, where):
    root = tree(tmp_path / "ds")
    out = {"a folder of other files": tmp_path / "photos", "the root": root, "inside the root": root / "chunks",
           "a file": tmp_path / "notes.txt"}[where]
    if where == "a folder of other files":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    if where == "a file":
        out.write_text("mine")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InputError) as error:
        optimize_folder(root, out)
    expected = {"a folder of other files": "is not convnetlab streaming output (no classes.json): choose a new or "
                "empty folder", "the root": f"is root={root} or inside it; choose a folder outside",
                "inside the root": f"is root={root} or inside it",
                "a file": "is a file, not a folder"}[where]
    assert expected in one_line(error)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_optimize_writes_into_an_empty_existing_folder(tmp_path):
    out = tmp_path / "chunks"
    out.mkdir()
    optimize_folder(tree(tmp_path / "ds"), out, chunk_size=4)
    assert json.loads((out / "classes.json").read_text())["splits"] == {"train": 4, "val": 4}


# --- optimize: the dataset --------------------------------------------------------------------------------
def test_optimize_refuses_one_class_before_writing(tmp_path):
    root = tree(tmp_path / "ds", {"train": ("a",), "val": ("a",)})
    with pytest.raises(InputError) as error:
        optimize_folder(root, tmp_path / "chunks")
    assert "has 1 class(es) (a); a classifier needs at least two" in one_line(error)
    assert not (tmp_path / "chunks").exists()


def test_optimize_names_differing_class_folders_not_a_missing_one(tmp_path):
    root = tree(tmp_path / "ds", {"train": ("a", "b"), "val": ("a", "c")})
    with pytest.raises(InputError) as error:
        optimize_folder(root, tmp_path / "chunks")
    message = one_line(error)
    assert "val: class folders differ from train (missing ['b'], extra ['c'])" in message
    assert "every split needs the same class folders as train" in message and "has no images" not in message


# --- a root that is a file ------------------------------------------------------------------------------
def test_a_root_that_is_a_file_is_called_a_file(tmp_path):
    file = tmp_path / "ds.zip"
    file.write_bytes(b"PK")
    for refuse in (lambda: list_classes(file / "train"), lambda: count_classes(file / "train"),
                   lambda: optimize_folder(file, tmp_path / "chunks"), lambda: check(file, 3),
                   lambda: StreamingDataModule(file).num_classes, lambda: count_classes(file)):
        with pytest.raises(InputError) as error:
            refuse()
        assert f"{file} is a file, not a folder" in one_line(error) and "does not exist" not in str(error.value)


# --- convnetlab-data action=check ------------------------------------------------------------------------
@pytest.mark.parametrize("layout, expected", [
    ({"train": ("a",), "val": ("a",)}, "has 1 class(es) (a); a classifier needs at least two"),
    ({"val": ("a", "b")}, "train does not exist"),
    ({"train": ("a", "b"), "val": ("a", "c")}, "val: class folders differ from train"),
    ({"train": ("a", "b"), "val": ("a", "b"), "test": ("a",)}, "test: class folders differ from train"),
])
def test_check_lists_what_training_would_refuse(tmp_path, capsys, layout, expected):
    root = tree(tmp_path / "ds", layout)
    assert check(root, 3) == PROBLEMS_FOUND
    out = capsys.readouterr().out
    assert expected in out and "layout problem(s) that training would refuse" in out


def test_check_of_one_splits_class_folders_checks_its_files_only(tmp_path, capsys):
    """E.g. <root>/val after prepare_imagenet_val: not a dataset root, so no layout verdict on it."""
    root = tree(tmp_path / "ds")
    assert check(root / "val", 3) == 0
    assert "checked 4 images" in capsys.readouterr().out
    (root / "val" / "b" / "2.png").write_bytes(b"")
    assert check(root / "val", 3) == PROBLEMS_FOUND
    assert "2.png: zero-byte file" in capsys.readouterr().out


def test_check_lists_a_class_folder_with_only_other_files(tmp_path, capsys):
    root = tree(tmp_path / "ds")
    (root / "val" / "b" / "0.png").unlink()
    (root / "val" / "b" / "1.png").rename(root / "val" / "b" / "1.tif")
    assert check(root, 3) == PROBLEMS_FOUND
    assert f"{root / 'val' / 'b'}: no images" in capsys.readouterr().out


def test_check_passes_what_training_accepts(tmp_path, capsys):
    assert check(tree(tmp_path / "ds"), 3) == 0
    assert "checked 8 images" in capsys.readouterr().out


@pytest.mark.parametrize("root, expected", [
    ("empty", "is empty; expected <root>/train/<class>/<image>"),
    ("ds/train/a", "holds images, not class folders; root should be the dataset root, with train/<class>/<image>"),
    ("chunks", "is litdata output (convnetlab streaming chunks), not class folders: train on it with data=streaming "
               "data.root="),
    ("chunks/train", "data.root="),
])
def test_check_refuses_a_root_that_is_no_class_folder_tree(tmp_path, root, expected):
    tree(tmp_path / "ds")
    (tmp_path / "empty").mkdir()
    fake_chunks(tmp_path / "chunks")
    with pytest.raises(InputError) as error:
        check(tmp_path / root, 3)
    assert expected in one_line(error)
    if root.startswith("chunks"):
        assert str(error.value).endswith(f"data.root={tmp_path / 'chunks'}, or check the class folders it was "
                                         "written from")


# --- data=streaming with a root that is no streaming data ------------------------------------------------
@pytest.mark.parametrize("root, expected", [
    ("empty", "empty is not convnetlab streaming data (no classes.json); write streaming data with "
              "`convnetlab-data action=optimize"),
    ("missing", "missing does not exist; write streaming data with"),
    ("ds", "ds is not convnetlab streaming data (no classes.json)"),
    ("chunks/train", "chunks/train is one split of convnetlab streaming data (litdata chunks); read it with "
                     "data=streaming data.root="),
])
def test_a_streaming_root_that_is_no_streaming_data_says_what_to_do(tmp_path, root, expected):
    tree(tmp_path / "ds")
    (tmp_path / "empty").mkdir()
    fake_chunks(tmp_path / "chunks")
    refusals = [lambda: StreamingDataModule(tmp_path / root).setup("fit")]
    if root != "ds":  # count_classes reads a folder with subfolders as class folders (custom split names)
        refusals.append(lambda: count_classes(tmp_path / root))
    for refuse in refusals:
        with pytest.raises(ConvnetlabError) as error:
            refuse()
        assert expected in one_line(error) and "class folders" not in str(error.value)
        assert "folder that holds classes.json" in str(error.value)
        if root == "chunks/train":
            assert str(error.value).endswith(f"data.root={tmp_path / 'chunks'}, the folder that holds classes.json")


def test_a_missing_split_index_is_named(tmp_path):
    chunks = fake_chunks(tmp_path / "chunks", splits=("train",))
    with pytest.raises(MissingFileError) as error:
        StreamingSource(chunks).check_split("val")
    assert one_line(error).startswith(f"{chunks / 'val' / 'index.json'} does not exist")


def test_class_folders_given_for_streaming_chunks_point_to_data_streaming(tmp_path):
    chunks = fake_chunks(tmp_path / "chunks")
    with pytest.raises(InputError) as error:
        count_classes(chunks / "train")  # data=imagefolder data.root=<chunks>
    assert one_line(error).endswith(f"read it with data=streaming data.root={chunks}, the folder that holds "
                                    "classes.json")


# --- convnetlab-baseline ----------------------------------------------------------------------------------
def test_the_baseline_refuses_one_class_as_training_does(tmp_path):
    from hydra import compose, initialize_config_dir

    from convnetlab.cli.baseline import baseline
    from convnetlab.data.folder import register_resolvers

    root = tree(tmp_path / "ds", {"train": ("a",), "val": ("a",)})
    register_resolvers()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("baseline", overrides=["data=imagefolder", f"data.root={root}", "data.image_size=8",
                                             "data.num_workers=0"])
    with pytest.raises(InputError) as error:
        baseline(cfg, tmp_path)
    assert f"{root} has 1 class(es) (a); a classifier needs at least two" in one_line(error)


# --- a bad file met in training ----------------------------------------------------------------------------
@pytest.mark.parametrize("content, reason", [(b"", "zero-byte file"),
                                             (b"a text file", "not an image (unknown file signature)")])
def test_a_bad_file_in_training_is_explained_plainly_and_points_to_check(tmp_path, content, reason):
    root = tree(tmp_path / "ds")
    bad = root / "train" / "a" / "bad.jpg"
    bad.write_bytes(content)
    dataset = ImageFolderDataset(root / "train", ["a", "b"])
    with pytest.raises(BadImageError) as error:
        dataset[[p for p, _ in dataset.samples].index(str(bad))]
    message = one_line(error)
    assert message.startswith(f"cannot decode image {bad}: {reason}; ") and ".cpp" not in message
    assert "list them all with `convnetlab-data action=check root=<dataset root>`" in message
