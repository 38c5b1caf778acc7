"""Open a ``.ckpt`` file the user named: a missing, damaged or foreign file is one line that says what to do.

A checkpoint cut short by a full disk or an interrupted copy, or a text file given by mistake, otherwise
surfaces as ``torch.load``'s ``OSError``/``UnpicklingError`` traceback from deep inside Lightning.
"""

from __future__ import annotations

import contextlib
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from convnetlab.errors import ConvnetlabError, InputError, MissingFileError

# What torch.load and load_from_checkpoint raise for a file that is not a complete Lightning checkpoint.
_UNREADABLE = (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError,
               TypeError, AttributeError)


def check_checkpoint_path(path: str | Path, key: str = "ckpt_path") -> Path:
    """``path`` as a Path if it is a file; else a one-line error naming ``key`` (a folder is not "missing")."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{key}={path} is a folder; pass the path of a .ckpt file in it "
                         "(a run keeps them in <run>/checkpoints/)")
    if not path.is_file():
        raise MissingFileError(f"{key}={path} does not exist; pass the path of an existing .ckpt file.")
    return path


@contextlib.contextmanager
def reading_checkpoint(path: str | Path) -> Iterator[None]:
    """Turn a failure to read ``path`` inside the block into one InputError line (ours pass through)."""
    try:
        yield
    except ConvnetlabError:
        raise
    except _UNREADABLE as error:
        reason = (str(error).strip().splitlines() or [""])[0][:160]
        other = "another of the run's checkpoints/" if Path(path).name == "last.ckpt" else "the run's checkpoints/last.ckpt"
        raise InputError(f"cannot read checkpoint {path} ({type(error).__name__}: {reason}); the file is damaged "
                         f"(a copy cut short?) or not a convnetlab .ckpt: pass another one, e.g. {other}") from error


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU, with the errors above."""
    path = check_checkpoint_path(path, key)
    with reading_checkpoint(path):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ValueError("no state_dict in it")
    return checkpoint


def load_classifier(path: str | Path, key: str = "ckpt_path") -> Any:
    """The ``ImageClassifier`` saved in ``path``, on the CPU, with the errors above."""
    from convnetlab.lit import ImageClassifier

    path = check_checkpoint_path(path, key)
    with reading_checkpoint(path):
        return ImageClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
