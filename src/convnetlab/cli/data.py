"""``convnetlab-data``: generate the embedded datasets, check a class-folder tree for bad images, or sort
the official ILSVRC-2012 validation folder into class folders, or optimize a dataset into litdata chunks.

A check lists every problem (one line each) instead of stopping at the first, so a large folder is
fixed in one pass: bad files, and what training would refuse in the layout (no train/ split, fewer than
two classes, a split whose class folders differ from train's, a class folder without images; the rules
of ``folder.py`` that training runs), so a check that passes means training accepts the folder. Exit
status: 0 when all is well, 1 (``PROBLEMS_FOUND``) when a check found problems, 2 for bad input (an unknown
action, a missing argument, or a root that is no class-folder tree at all: missing, a file, empty, litdata
output, a folder of images), as for every convnetlab command. A layout problem is a finding (1), listed
with the bad files, because the user pointed at the dataset and wants to know everything wrong with it; a
root that is none is a wrong argument (2), with nothing checked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from convnetlab.cli.hydra_app import entry_point
from convnetlab.data.folder import (IMAGE_EXTENSIONS, LAYOUT, find_samples, inspect_file, layout_errors, read_image,
                                    streaming_output)
from convnetlab.data.imagenet_prep import prepare_val
from convnetlab.data.streaming_writer import optimize_folder
from convnetlab.errors import InputError, MissingFileError

ACTIONS = ("generate", "check", "prepare_imagenet_val", "optimize")
PROBLEMS_FOUND = 1  # exit status of a check that ran and found bad files (bad input exits 2)


def generate(datamodule) -> Path:
    """Write the dataset once (a no-op when it already exists) and return its root."""
    datamodule.prepare_data()
    return Path(datamodule.root)


def _class_dirs(root: Path) -> list[Path]:
    """Class folders of every split present (``train``/``val``/``test``), else ``root``'s own subfolders."""
    splits = [root / s for s in ("train", "val", "test") if (root / s).is_dir()] or [root]
    return sorted(d for split in splits for d in split.iterdir() if d.is_dir() and not d.name.startswith("."))


def check_root(root: Path) -> None:
    """Refuse a root that is no class-folder tree at all (bad input: there is nothing to check)."""
    todo = "pass the dataset root (with train/<class>/<image>)"
    if not root.exists():
        raise MissingFileError(f"{root} does not exist; {todo}")
    if not root.is_dir():
        raise InputError(f"{root} is a file, not a folder; {todo}")
    output = streaming_output(root)
    if output is not None:
        raise InputError(f"{root} is litdata output (convnetlab streaming chunks), not class folders: train on it "
                         f"with data=streaming data.root={output}, or check the class folders it was written from")
    entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    if not entries:
        raise InputError(f"{root} is empty; {LAYOUT}")
    if not (root / "train").is_dir() and any(
            e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS for e in entries):
        raise InputError(f"{root} holds images, not class folders; root should be the dataset root, with "
                         "train/<class>/<image>")


def bad_images(root: Path, channels: int = 3) -> tuple[int, list[str]]:
    """(number of files checked, one message per problem) for a class-folder tree.

    Problems: class folders without images (empty, or only other files), files that are not images (by
    extension or content), and zero-byte, unreadable, truncated or undecodable images.
    """
    check_root(root)
    checked, problems = 0, []
    for class_dir in _class_dirs(root):
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(class_dir, followlinks=True) for f in names)
        try:  # training's rule for a class folder (find_samples)
            find_samples(class_dir.parent, [class_dir.name])
        except MissingFileError:
            problems.append(f"{class_dir}: empty class folder" if not files else
                            f"{class_dir}: no images, only files training does not read")
        for path in files:
            checked += 1
            if os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS:
                problems.append(f"{path}: not an image file (extension not in {', '.join(sorted(IMAGE_EXTENSIONS))})")
                continue
            problem = inspect_file(path)
            if problem is None:
                try:
                    read_image(path, channels)
                except RuntimeError as error:
                    problem = str(error)
            if problem:
                problems.append(problem)
    return checked, problems


def check(root: Path, channels: int) -> int:
    """Print every problem and a summary line; the exit status (``PROBLEMS_FOUND`` if anything is wrong).

    Layout problems (``layout_errors``: the checks training runs) come first, then the bad files. A root
    without splits (one split's class folders, e.g. ``<root>/val`` after ``prepare_imagenet_val``) gets its
    files checked only: it is not a dataset root, and its layout is the dataset's to judge."""
    check_root(root)
    has_splits = any((root / split).is_dir() for split in ("train", "val", "test"))
    layout = [str(error) for error in layout_errors(root, option="root")[1]] if has_splits else []
    checked, problems = bad_images(root, channels)
    summary = f"checked {checked} images under {root}: {len(problems)} unreadable"
    if layout:
        summary += f"; {len(layout)} layout problem(s) that training would refuse"
    print("\n".join(layout + problems + [summary]))
    return PROBLEMS_FOUND if layout or problems else 0


def run_action(cfg: DictConfig, output_dir: Path) -> None:
    """Run ``cfg.action``; a check that finds bad files exits with ``PROBLEMS_FOUND`` after listing them."""
    if cfg.action not in ACTIONS:
        raise InputError(f"action={cfg.action} is not one of {', '.join(ACTIONS)}")
    if cfg.action == "prepare_imagenet_val":
        if not (cfg.get("root") and cfg.get("val_dir") and cfg.get("devkit")):
            raise InputError("prepare_imagenet_val needs root=<dataset root> val_dir=<flat val folder> "
                             "devkit=<devkit folder>")
        counts = prepare_val(cfg.val_dir, cfg.devkit, Path(cfg.root) / "val")
        print(f"{Path(cfg.root) / 'val'}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
        return
    if cfg.action == "optimize":
        if not (cfg.get("root") and cfg.get("out")):
            raise InputError("optimize needs root=<class-folder dataset> out=<dir or s3://bucket/path>")
        out = optimize_folder(cfg.root, cfg.out, cfg.num_workers, cfg.chunk_bytes)
        print(f"{out}: litdata chunks of every split; train with data=streaming data.root={out}")
        return
    if cfg.action == "check" and cfg.get("root"):
        status = check(Path(cfg.root), cfg.data.get("channels", 3))
    elif cfg.action == "generate":
        datamodule = instantiate(cfg.data)
        print(f"{cfg.data.name}: {datamodule.num_classes} classes at {generate(datamodule)}")
        return
    else:
        datamodule = instantiate(cfg.data)
        status = check(Path(datamodule.root), datamodule.channels)
    if status:
        sys.exit(status)


main = entry_point("data_tools", run_action)


if __name__ == "__main__":
    main()
