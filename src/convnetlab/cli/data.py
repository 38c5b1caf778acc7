"""``convnetlab-data``: generate the embedded datasets, check a class-folder tree for bad images, or sort
the official ILSVRC-2012 validation folder into class folders, or optimize a dataset into litdata chunks.

A check lists every problem (one line each) instead of stopping at the first, so a large folder is
fixed in one pass. Exit status: 0 when all is well, 1 (``PROBLEMS_FOUND``) when a check found bad files,
2 for bad input (an unknown action, a missing root or argument), as for every convnetlab command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from convnetlab.cli.hydra_app import entry_point
from convnetlab.data.folder import IMAGE_EXTENSIONS, inspect_file, read_image
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


def bad_images(root: Path, channels: int = 3) -> tuple[int, list[str]]:
    """(number of files checked, one message per problem) for a class-folder tree.

    Problems: empty class folders, files that are not images (by extension or content), and
    zero-byte, unreadable, truncated or undecodable images.
    """
    if not root.is_dir():
        raise MissingFileError(f"{root} does not exist; pass the dataset root (with train/<class>/...)")
    checked, problems = 0, []
    for class_dir in _class_dirs(root):
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(class_dir, followlinks=True) for f in names)
        if not files:
            problems.append(f"{class_dir}: empty class folder")
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
    """Print every problem and a summary line; the exit status (``PROBLEMS_FOUND`` if anything is wrong)."""
    checked, problems = bad_images(root, channels)
    print("\n".join(problems + [f"checked {checked} images under {root}: {len(problems)} unreadable"]))
    return PROBLEMS_FOUND if problems else 0


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
