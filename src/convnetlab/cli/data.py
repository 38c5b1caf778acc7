"""``convnetlab-data``: generate the embedded datasets, or check a class-folder tree for bad images.

A check lists every unreadable file (one line each) instead of stopping at the first, so a large
folder is fixed in one pass; the exit status is non-zero when anything is wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from convnetlab.cli.hydra_app import config_dir, register_resolvers
from convnetlab.data.folder import find_samples, list_classes, read_image


def generate(datamodule) -> Path:
    """Write the dataset once (a no-op when it already exists) and return its root."""
    datamodule.prepare_data()
    return Path(datamodule.root)


def bad_images(root: Path, channels: int) -> tuple[int, list[str]]:
    """(number of images checked, one message per file that cannot be decoded) over all splits."""
    checked, problems = 0, []
    for split in ("train", "val", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for path, _ in find_samples(split_dir, list_classes(split_dir)):
            checked += 1
            try:
                read_image(path, channels)
            except RuntimeError as error:
                problems.append(str(error).splitlines()[0])
    return checked, problems


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="data")
def hydra_main(cfg: DictConfig) -> None:
    datamodule = instantiate(cfg.data)
    if cfg.action == "generate":
        root = generate(datamodule)
        print(f"{cfg.data.name}: {datamodule.num_classes} classes at {root}")
    elif cfg.action == "check":
        checked, problems = bad_images(Path(datamodule.root), datamodule.channels)
        print("\n".join(problems + [f"checked {checked} images under {datamodule.root}: {len(problems)} unreadable"]))
        if problems:
            sys.exit(1)
    else:
        sys.exit(f"error: action={cfg.action} is not one of generate, check")


def main() -> None:
    register_resolvers()
    hydra_main()


if __name__ == "__main__":
    main()
