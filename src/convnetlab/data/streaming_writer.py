"""Class folders to litdata chunks (``convnetlab-data action=optimize``), and the ``classes.json`` beside them.

``optimize_folder`` writes ``<out>/<split>/`` (litdata's ``chunk-*.bin`` + ``index.json``) for every split
of ``<root>/{train,val[,test]}/<class>/<image>``, each item ``{"image": the file's bytes as on disk, "label",
"index": its position in the split, "name": its path under root}``, and last ``<out>/classes.json`` (classes
and per-split counts), so the class count resolves without reading a chunk and an output with that file is
complete. Items are shuffled once (seed 0) before chunking, so every chunk mixes classes: litdata shuffles
chunks and items within a chunk, and a batch comes from one chunk. ``out`` may be ``s3://...`` (litdata
uploads; credentials from the usual AWS environment variables).

Everything training would refuse is refused before a chunk is written: a layout training rejects
(``folder.dataset_classes``, then every split's class folders with images), and a local ``out`` the output
cannot be published to (a file, a non-empty folder that is not streaming output, a folder inside ``root``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator

from convnetlab.data.folder import (SPLITS, STREAMING_INFO, atomic_dir, dataset_classes, find_bad_files, find_samples,
                                    streaming_output, streaming_split_error)
from convnetlab.errors import ConvnetlabError, InputError, MissingFileError

log = logging.getLogger(__name__)
OPTIMIZE_HINT = "`convnetlab-data action=optimize root=<class-folder dataset> out=<dir>`"


def is_remote(location: str | Path) -> bool:
    return "://" in str(location)


def join(location: str | Path, *parts: str) -> str:
    """``location/part/...`` for a local folder or an object-store URL alike."""
    return "/".join([str(location).rstrip("/"), *parts]) if is_remote(location) else str(Path(location, *parts))


def read_info(location: str | Path) -> dict[str, Any]:
    """``classes.json`` of an ``optimize_folder`` output (downloaded for a remote one)."""
    path = join(location, STREAMING_INFO)
    if not is_remote(location):
        if not Path(path).is_file():
            raise _not_streaming(Path(location))
        return json.loads(Path(path).read_text())
    from litdata.streaming.fs_provider import _get_fs_provider

    provider = _get_fs_provider(path)
    if not provider.exists(path):
        raise MissingFileError(f"{path} does not exist (or is not readable with these credentials); write it with "
                               "`convnetlab-data action=optimize root=<class-folder dataset> out=<url>`")
    with tempfile.TemporaryDirectory() as tmp:
        provider.download_file(path, os.path.join(tmp, STREAMING_INFO))
        return json.loads(Path(tmp, STREAMING_INFO).read_text())


def _not_streaming(path: Path) -> ConvnetlabError:
    """What ``path`` (a local data.root without ``classes.json``) is instead of streaming data, and what to do."""
    output = streaming_output(path)  # not path itself (no classes.json): the output of which path is a split
    if output is not None:
        return streaming_split_error(path, output)
    todo = f"write streaming data with {OPTIMIZE_HINT}, or point data.root at the folder that holds {STREAMING_INFO}"
    if not path.exists():
        return MissingFileError(f"{path} does not exist; {todo}")
    if not path.is_dir():
        return InputError(f"{path} is a file, not a folder; {todo}")
    return MissingFileError(f"{path} is not convnetlab streaming data (no {STREAMING_INFO}); {todo}")


def _item(sample: tuple[str, int, int, str]) -> dict[str, Any]:
    """One chunk item: the encoded bytes as read from disk (no re-encoding) and what identifies the sample."""
    path, label, index, name = sample
    return {"image": Path(path).read_bytes(), "label": label, "index": index, "name": name}


def _split_samples(root: Path, split: str, classes: list[str]) -> list[tuple[str, int, int, str]]:
    """(path, label, index, name) of the split's good files, shuffled with seed 0; bad files are logged."""
    samples = find_samples(root / split, classes)
    bad = find_bad_files([p for p, _ in samples])
    if bad:
        log.warning("%s: leaving out %d bad file(s):\n  %s", root / split, len(bad), "\n  ".join(sorted(bad)))
        bad_paths = {problem.rsplit(": ", 1)[0] for problem in bad}
        samples = [(p, y) for p, y in samples if p not in bad_paths]
    random.Random(0).shuffle(samples)
    return [(p, y, i, Path(p).relative_to(root).as_posix()) for i, (p, y) in enumerate(samples)]


def optimize_folder(root: str | Path, out: str | Path, num_workers: int = 1, chunk_bytes: str | int = "64MB",
                    chunk_size: int | None = None) -> str:
    """Write every split present under ``root`` as litdata chunks under ``out`` (a no-op when ``out`` has
    ``classes.json``). ``chunk_size`` (items per chunk) overrides ``chunk_bytes``; ``num_workers`` are
    litdata's reader processes (1-2 on a small machine: the work is reading files)."""
    import litdata

    root = Path(root)
    if _exists(out):
        log.info("%s already holds streaming data; nothing to do", out)
        return str(out)
    if not is_remote(out):
        _check_out(root, Path(out))
    classes = dataset_classes(root, option="root")
    info: dict[str, Any] = {"classes": classes, "splits": {}}
    # every split's samples before writing: a class folder without images stops the run before any chunk
    splits = {split: _split_samples(root, split, classes) for split in SPLITS if (root / split).is_dir()}

    def write(target: str) -> None:
        for split, samples in splits.items():
            sizing = {"chunk_size": chunk_size} if chunk_size else {"chunk_bytes": chunk_bytes}
            previous, environment = multiprocessing.get_start_method(allow_none=True), dict(os.environ)
            try:  # litdata sets the process-wide start method (spawn: each worker re-imports torch); fork is
                # enough to read files, and the caller's method comes back (its DataLoaders must not spawn)
                with _private_work_dirs():
                    litdata.optimize(fn=_item, inputs=samples, output_dir=join(target, split),
                                     num_workers=num_workers, reorder_files=False, keep_data_ordered=True,
                                     verbose=False, start_method="fork", **sizing)
            finally:
                multiprocessing.set_start_method(previous, force=True)
                for key in set(os.environ) - set(environment):  # DATA_OPTIMIZER_NUM_WORKERS and the like
                    del os.environ[key]
            info["splits"][split] = len(samples)

    if is_remote(out):  # classes.json goes last: its presence says the upload is complete
        write(str(out))
        _upload_info(info, join(out, STREAMING_INFO))
        return str(out)
    with atomic_dir(Path(out)) as tmp:  # an interrupted run never leaves an output that looks complete
        write(str(tmp))
        (tmp / STREAMING_INFO).write_text(json.dumps(info, indent=1) + "\n")
    if not _exists(out):  # atomic_dir keeps a folder another process filled meanwhile, and drops ours
        raise InputError(f"out={out} was filled by something else while the chunks were written; "
                         "choose a new or empty folder")
    return str(out)


def _check_out(root: Path, out: Path) -> None:
    """Refuse a local ``out`` the chunks cannot go to. atomic_dir renames the finished folder onto ``out``,
    which fails for a file or a non-empty folder; a folder inside ``root`` would become part of the dataset."""
    target, source = out.resolve(), root.resolve()
    if target == source or source in target.parents:
        raise InputError(f"out={out} is root={root} or inside it; choose a folder outside the dataset")
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"out={out}: {existing} is a file, not a folder; choose a new or empty folder")
    if existing == target and any(target.iterdir()):
        raise InputError(f"out={out} exists and is not convnetlab streaming output (no {STREAMING_INFO}): "
                         "choose a new or empty folder")


@contextlib.contextmanager
def _private_work_dirs() -> Iterator[None]:
    """Give one ``litdata.optimize`` call its own staging folders. litdata's default ones are shared by every
    process of the machine (``$TMPDIR/chunks`` and ``$TMPDIR/data``) and each call empties them first, so two
    optimize jobs at once (an upload to s3 beside any other) would delete each other's chunks. A folder the
    user chose through litdata's own variables (``DATA_OPTIMIZER_CACHE_FOLDER``, ``..._DATA_CACHE_FOLDER``)
    is kept."""
    with tempfile.TemporaryDirectory(prefix="convnetlab-optimize-") as tmp:
        for variable, name in (("DATA_OPTIMIZER_CACHE_FOLDER", "chunks"), ("DATA_OPTIMIZER_DATA_CACHE_FOLDER", "data")):
            os.environ.setdefault(variable, os.path.join(tmp, name))
        yield


def _exists(out: str | Path) -> bool:
    if not is_remote(out):
        return Path(out, STREAMING_INFO).is_file()
    from litdata.streaming.fs_provider import _get_fs_provider

    return _get_fs_provider(str(out)).exists(join(out, STREAMING_INFO))


def _upload_info(info: dict[str, Any], url: str) -> None:
    from litdata.streaming.fs_provider import _get_fs_provider

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp, STREAMING_INFO)
        local.write_text(json.dumps(info, indent=1) + "\n")
        _get_fs_provider(url).upload_file(str(local), url)
