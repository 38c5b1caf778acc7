"""Class-folder image datasets (``<split>/<class>/<image>``) read as uint8 tensors.

Also holds the small on-disk helpers shared by every class-folder dataset: cheap class
listing (for the ``num_classes_in`` config resolver), the layout rules training applies
(``list_classes``, ``check_classes``, ``check_two_classes``, ``find_samples``; ``layout_errors``
gathers them for ``convnetlab-data action=check`` and ``action=optimize``) and atomic directory
creation (so the embedded generators never leave a half-written dataset that looks complete).
"""

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import Dataset, default_collate

from convnetlab.data.decode import image_kind, read_image, read_transformed
from convnetlab.errors import BadImageError, ConvnetlabError, InputError, MissingFileError

STREAMING_INFO = "classes.json"  # classes and split sizes, written by streaming_writer.optimize_folder
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
log = logging.getLogger(__name__)
LAYOUT = "expected <root>/train/<class>/<image>, <root>/val/<class>/<image> and optionally <root>/test/..."


def list_classes(split_dir: str | Path) -> list[str]:
    """Sorted class-folder names of one split; lists a single directory level, so it is cheap even for ImageNet."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        missing = split_dir if split_dir.parent.is_dir() else split_dir.parent
        if missing.exists():
            raise InputError(f"{missing} is a file, not a folder; {LAYOUT}")
        raise MissingFileError(f"{missing} does not exist; {LAYOUT}")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        output = streaming_output(split_dir)
        if output is not None:  # chunks passed where class folders were expected
            raise streaming_split_error(split_dir, output)
        raise MissingFileError(f"{split_dir} has no class folders; {LAYOUT}")
    return classes


def streaming_output(path: str | Path) -> Path | None:
    """The ``optimize_folder`` output (the folder holding ``classes.json``) that ``path`` is or is a split of."""
    path = Path(path)
    if (path / STREAMING_INFO).is_file():
        return path
    if path.name in SPLITS and (path.parent / STREAMING_INFO).is_file():
        return path.parent
    return None


def streaming_split_error(path: Path, output: Path) -> InputError:
    """For ``path``, a split folder of the streaming data at ``output``, given where a root was expected."""
    return InputError(f"{path} is one split of convnetlab streaming data (litdata chunks); read it with "
                      f"data=streaming data.root={output}, the folder that holds {STREAMING_INFO}")


def check_classes(split_dir: str | Path, classes: list[str]) -> None:
    """Fail early when a split's class folders differ from train's, since labels are folder indices."""
    found = list_classes(split_dir)
    if found != classes:
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        raise InputError(f"{split_dir}: class folders differ from train (missing {missing}, extra {extra}); "
                         "every split needs the same class folders as train")


def check_two_classes(classes: list[str], where: str | Path, option: str = "data.root") -> None:
    """Fail when there are fewer than two classes: the loss and the metrics would fail with a traceback, and
    a single class is usually a root that points one level too deep. ``option`` names the setting to fix."""
    if len(classes) < 2:
        raise InputError(f"{where} has {len(classes)} class(es) ({', '.join(classes)}); a classifier needs at "
                         f"least two: add class folders, or point {option} at the folder that holds train/<class>/")


def layout_errors(root: str | Path, option: str = "data.root") -> tuple[list[str], list[ConvnetlabError]]:
    """Train's classes and every reason training would refuse ``root``'s layout, by the checks it runs:
    train/ with class folders (``list_classes``), at least two classes, and val (required) and test (when
    present) with train's class folders (``check_classes``). Class folders without images are left to
    ``find_samples``, which walks the whole tree."""
    root = Path(root)
    try:
        classes = list_classes(root / "train")
    except ConvnetlabError as error:
        return [], [error]
    errors: list[ConvnetlabError] = []
    try:
        check_two_classes(classes, root, option)
    except InputError as error:
        errors.append(error)
    for split in (s for s in SPLITS[1:] if s == "val" or (root / s).is_dir()):
        try:
            check_classes(root / split, classes)
        except ConvnetlabError as error:
            errors.append(error)
    return classes, errors


def dataset_classes(root: str | Path, option: str = "data.root") -> list[str]:
    """Train's classes once ``root``'s layout is one training accepts (``layout_errors``); else its first problem."""
    classes, errors = layout_errors(root, option)
    if errors:
        raise errors[0]
    return classes


def check_class_count(expected: int | None, found: int, where: str | Path) -> None:
    """Fail when a configured class count (``data.num_classes``) differs from the data's; None checks nothing."""
    if expected is not None and expected != found:
        raise InputError(f"num_classes={expected} but {where} has {found} class folders")


def find_samples(split_dir: str | Path, classes: list[str]) -> list[tuple[str, int]]:
    """(path, label) for every image under ``split_dir/<class>/``, in a stable sorted order."""
    samples = []
    for label, name in enumerate(classes):
        found = len(samples)
        for dirpath, dirnames, filenames in os.walk(Path(split_dir) / name, followlinks=True):
            dirnames.sort()
            samples += [
                (os.path.join(dirpath, f), label)
                for f in sorted(filenames)
                if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
            ]
        if len(samples) == found:  # a class that can never be seen would silently skew every metric
            raise MissingFileError(f"class folder {Path(split_dir) / name} has no images "
                                   f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add some or remove the folder")
    return samples


BAD_IMAGE_POLICIES = ("error", "skip")
BAD_IMAGE_HINT = "list them all with `convnetlab-data action=check root=<dataset root>`, or set data.bad_images=skip"


def inspect_file(path: str) -> str | None:
    """Why ``path`` cannot be a training image (zero-byte, unreadable, not an image, truncated), or None.

    Reads only the first and last bytes, so scanning ImageNet takes seconds rather than a full
    decode; a corrupt body is still caught when the image is decoded.
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return f"{path}: zero-byte file"
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, size - 64))
            tail = f.read()
    except OSError as e:
        return f"{path}: unreadable ({e.strerror or e})"
    kind = image_kind(head)
    if kind is None:
        return f"{path}: not an image (unknown file signature)"
    no_end_marker = (kind == "JPEG" and b"\xff\xd9" not in tail) or (kind == "PNG" and b"IEND" not in tail)
    if no_end_marker and not _loads(path):
        return f"{path}: truncated {kind} (no end marker)"
    return None


def _loads(path: str) -> bool:
    """Full PIL decode, only for the rare file without an end marker (some cameras append trailing data)."""
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except (OSError, SyntaxError, ValueError):
        return False


def find_bad_files(paths: list[str], workers: int = 8) -> list[str]:
    """``inspect_file`` over many files (threads: the work is waiting on the disk); one message per bad file."""
    with ThreadPoolExecutor(workers) as pool:
        return [problem for problem in pool.map(inspect_file, paths, chunksize=256) if problem]


class ImageFolderDataset(Dataset):
    """Items are ``(uint8 image (C, H, W), label)``; ``samples`` keeps ``(path, label)`` so exports can name files.

    ``bad_images="error"`` stops at the first file that fails to decode, naming it (no scan, so a
    large folder starts at once). ``"skip"`` checks every file's header when the dataset is built,
    drops the bad ones with one log message listing them, and returns ``None`` for a file that only
    fails at decode time (``collate_present`` drops those from the batch).

    With ``in_memory=True`` every image is decoded once up front, which removes per-epoch JPEG
    decoding for the small embedded datasets; transforms still run per item. ``decode_size``
    allows reduced-size JPEG decoding (see ``read_image``).
    """

    def __init__(
        self,
        split_dir: str | Path,
        classes: list[str],
        channels: int = 3,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        in_memory: bool = False,
        bad_images: str = "error",
        decode_size: int | None = None,
    ) -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise InputError(f"bad_images={bad_images} is not one of {', '.join(BAD_IMAGE_POLICIES)}")
        self.classes = classes
        self.channels = channels
        self.transform = transform
        self.bad_images = bad_images
        self.decode_size = decode_size
        self.samples = find_samples(split_dir, classes)
        self.skipped: list[str] = []
        if bad_images == "skip":
            self.skipped = self._drop(find_bad_files([p for p, _ in self.samples]), split_dir)
        self._images = None
        if in_memory:
            images = {p: self._read(p) for p, _ in self.samples}
            self.skipped += self._drop([p for p, image in images.items() if image is None], split_dir)
            self._images = [images[p] for p, _ in self.samples]

    def keep(self, indices: Sequence[int]) -> None:
        """Restrict the dataset to the items at ``indices``, in that order (e.g. a per-class training subset)."""
        if self._images is not None:
            self._images = [self._images[i] for i in indices]
        self.samples = [self.samples[i] for i in indices]

    def _drop(self, problems: list[str], split_dir: str | Path) -> list[str]:
        """Remove the samples named by ``problems`` (``"<path>: why"`` messages or bare paths) and log them once."""
        if not problems:
            return []
        bad = {problem.rsplit(": ", 1)[0] for problem in problems}
        self.samples = [(p, label) for p, label in self.samples if p not in bad]
        log.warning("%s: skipping %d bad file(s) (data.bad_images=skip):\n  %s", split_dir, len(problems),
                    "\n  ".join(problems))
        return problems

    def _read(self, path: str, transform: Callable | None = None) -> torch.Tensor | None:
        """The decoded image (``transform``-ed, see ``read_transformed``), or None for a skipped bad file."""
        try:
            return read_transformed(path, self.channels, self.decode_size, transform)
        except BadImageError as error:  # only the file's fault: a failing transform is a bug, raised as it is
            if self.bad_images == "error":
                raise BadImageError(f"{error}; {BAD_IMAGE_HINT}") from error
            log.warning("skipping %s (data.bad_images=skip)", error)
            return None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.samples[index]
        if self._images is None:
            image = self._read(path, self.transform)
            return None if image is None else (image, label)
        image = self._images[index]
        return (self.transform(image) if self.transform is not None else image), label


def collate_present(batch: list) -> Any:
    """``default_collate`` without the ``None`` items a skipping dataset returns for undecodable files.

    When every image is channels-last in memory (the JPEG region path's resize output), the batch is
    stacked as ``(B, H, W, C)`` and returned as a channels-last ``(B, C, H, W)`` view: a plain copy per
    image instead of a transposition in the worker (``ImageClassifier.normalize`` gives the model the
    memory format it trains in).
    """
    items = [item for item in batch if item is not None]
    if items and all(_channels_last_image(image) for image, *_ in items):
        images = torch.stack([image.permute(1, 2, 0) for image, *_ in items]).permute(0, 3, 1, 2)
        return [images, *default_collate([tuple(rest) for _, *rest in items])]
    return default_collate(items)


def _channels_last_image(image: Any) -> bool:
    """A (C, H, W) tensor whose memory is (H, W, C)-contiguous, with more than one channel."""
    return (isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] > 1
            and image.permute(1, 2, 0).is_contiguous())


def count_classes(path: str | Path) -> int:
    """Classes of a split folder (its class folders) or of streaming data, local or ``s3://`` (its
    ``classes.json``, see ``streaming_writer.py``). The configs pass ``<root>/train`` for class folders and
    the root itself for streaming data, so when a path holds neither and is not named like a split, the error
    says what streaming data is rather than what class folders are."""
    from convnetlab.data.streaming_writer import read_info

    if "://" in str(path) or (Path(path) / STREAMING_INFO).is_file():
        return len(read_info(path)["classes"])
    try:
        return len(list_classes(path))
    except ConvnetlabError:
        if Path(path).name in SPLITS:
            raise
        return len(read_info(path)["classes"])  # raises: says how to write streaming data


def register_resolvers() -> None:
    """Register ``${num_classes_in:<dir>}`` so configs can size the classifier from disk; safe to call repeatedly."""
    if not OmegaConf.has_resolver("num_classes_in"):
        OmegaConf.register_new_resolver("num_classes_in", count_classes)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp dir beside ``target`` and rename it into place only once the block completes.

    An interrupted write therefore never produces ``target``; if another process published
    ``target`` first, ours is discarded and theirs kept.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.chmod(0o755)  # mkdtemp creates 0700; a shared data dir should stay readable
    try:
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
