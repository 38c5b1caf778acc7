"""Sort the official flat ILSVRC-2012 validation folder into ``val/<wnid>/`` class folders.

The official val set is 50,000 files ``ILSVRC2012_val_00000001.JPEG`` ... in one folder; the devkit
gives each file's 1-based ILSVRC2012 class id (``data/ILSVRC2012_validation_ground_truth.txt``, line
i = file i) and maps ids to WordNet ids and names (``data/meta.mat``, or Kaggle's
``LOC_synset_mapping.txt`` with one ``wnid name`` line per class in id order). Files are hard-linked
(falling back to a symlink, then a copy) so no image bytes are duplicated, and a rerun only adds
what is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from convnetlab.errors import InputError, MissingFileError

GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
META = "data/meta.mat"
SYNSET_MAPPING = "LOC_synset_mapping.txt"
NAMES_TXT = "wnid_names.txt"
NAMES_JSON = "class_names.json"
_VAL_FILE = re.compile(r"ILSVRC2012_val_(\d+)\.JPEG$", re.IGNORECASE)


def read_synsets(devkit: str | Path) -> list[tuple[str, str]]:
    """``(wnid, words)`` of the leaf classes in ILSVRC2012_ID order (list index = id - 1)."""
    devkit = Path(devkit)
    meta = devkit / META
    if meta.is_file():
        return _synsets_from_meta(meta)
    for mapping in (devkit / SYNSET_MAPPING, devkit / "data" / SYNSET_MAPPING):
        if mapping.is_file():
            lines = [line.split(maxsplit=1) for line in mapping.read_text().splitlines() if line.strip()]
            return [(parts[0], parts[1] if len(parts) > 1 else parts[0]) for parts in lines]
    raise MissingFileError(
        f"{devkit} has neither {META} nor {SYNSET_MAPPING}; pass devkit=<ILSVRC2012 devkit folder>"
    )


def _synsets_from_meta(meta: Path) -> list[tuple[str, str]]:
    try:
        from scipy.io import loadmat
    except ImportError as error:
        raise ImportError(
            f"reading {meta} needs scipy (pip install scipy), or put {SYNSET_MAPPING} in the devkit"
        ) from error
    leaves = {}
    for synset in loadmat(meta, squeeze_me=True)["synsets"]:
        if int(synset["num_children"]) == 0:
            leaves[int(synset["ILSVRC2012_ID"])] = (str(synset["WNID"]), str(synset["words"]))
    return [leaves[i] for i in sorted(leaves)]


def read_ground_truth(devkit: str | Path) -> list[int]:
    """1-based class id of val file i (line i of the devkit's ground truth)."""
    path = Path(devkit) / GROUND_TRUTH
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist; pass devkit=<the ILSVRC2012 devkit folder>")
    return [int(line) for line in path.read_text().split()]


def link_or_copy(source: Path, target: Path) -> str:
    """Hard link ``target`` to ``source``; symlink across file systems; copy as a last resort."""
    try:
        os.link(source, target)
        return "link"
    except OSError:
        pass
    try:
        target.symlink_to(source.resolve())
        return "symlink"
    except OSError:
        shutil.copy2(source, target)
        return "copy"


def prepare_val(val_dir: str | Path, devkit: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Write ``out_dir/<wnid>/<file>`` for every official val file; returns counts by how each was made.

    Idempotent: files already in place are counted as ``existing`` and left alone. Also writes the
    wnid -> name tables beside ``out_dir`` (see ``write_class_names``).
    """
    val_dir, out_dir = Path(val_dir), Path(out_dir)
    synsets, labels = read_synsets(devkit), read_ground_truth(devkit)
    files = sorted((int(m.group(1)), p) for p in val_dir.iterdir() if (m := _VAL_FILE.search(p.name)))
    if not files:
        raise MissingFileError(
            f"{val_dir} has no ILSVRC2012_val_*.JPEG files; pass val_dir=<the flat official val folder>"
        )
    counts = {"link": 0, "symlink": 0, "copy": 0, "existing": 0}
    for number, path in files:
        if not 1 <= number <= len(labels):
            raise InputError(
                f"{path.name}: the ground truth has only {len(labels)} lines; is this the matching devkit?"
            )
        target = out_dir / synsets[labels[number - 1] - 1][0] / path.name
        if target.exists():
            counts["existing"] += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        counts[link_or_copy(path, target)] += 1
    write_class_names(out_dir.parent, synsets)
    return counts


def write_class_names(root: str | Path, synsets: list[tuple[str, str]]) -> None:
    """``wnid_names.txt`` (``wnid<TAB>all words``) and ``class_names.json`` (wnid -> first word) in ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / NAMES_TXT).write_text("".join(f"{wnid}\t{words}\n" for wnid, words in synsets))
    short = {wnid: words.split(",")[0].strip() for wnid, words in synsets}
    (root / NAMES_JSON).write_text(json.dumps(short, indent=1) + "\n")


def class_names(root: str | Path) -> dict[str, str]:
    """wnid -> human-readable name from ``root/class_names.json``, or {} when the dataset has none."""
    path = Path(root) / NAMES_JSON
    return json.loads(path.read_text()) if path.is_file() else {}
