"""Image bytes -> uint8 (C, H, W) tensors: the one decoder behind every image the data pipeline reads.

``read_image`` reads a file, ``decode_bytes`` decodes bytes from any source (folders, streams); both
raise one ``BadImageError`` line naming the image. ``read_transformed``/``decode_transformed`` also apply
the per-image transform, and when it starts with a random-resized crop they decode only the crop
(``jpeg_region``): the same pixels, without decoding what the crop throws away.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable

import numpy as np
import simplejpeg
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor, resize, rgb_to_grayscale

from convnetlab.data import jpeg_region
from convnetlab.errors import BadImageError

JPEG_SIGNATURE = b"\xff\xd8\xff"
_SIGNATURES = {JPEG_SIGNATURE: "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"BM": "BMP"}
# What a decoder's message carries besides the reason: torchvision's "<function>, <source file>:<line>, "
# and PIL's "<_io.BytesIO object at 0x...>".
_DECODER_NOISE = re.compile(r"^\w+, \S+:\d+, | ?<_io\.\w+ object at 0x[0-9a-f]+>")
# DCT-domain reductions tried, largest first. Not 1/2: it would change what the decoded pixels are
# for images only 2-4x larger than needed (e.g. the PCA-lighting statistics computed from them).
_SCALES = (8, 4)
_SIMPLEJPEG_COLORSPACES = frozenset({"YCbCr", "Gray", "RGB"})  # simplejpeg converts these like torchvision/PIL
# Chroma subsamplings the region decoder takes. Not 4:1:0/4:4:1-style 4x2 and 2x4 ones: libjpeg-turbo before
# 3.0 crops their chroma columns wrongly when DCT scaling is on (rare in practice; they decode whole).
_REGION_SUBSAMPLINGS = frozenset({"444", "422", "420", "440", "411", "Gray"})


def read_image(path: str, channels: int, decode_size: int | None = None) -> torch.Tensor:
    """Decode the file at ``path`` to uint8 (C, H, W); errors are one line naming the file.

    The bytes are read once and decoded by ``decode_bytes``. JPEGs go through libjpeg-turbo via
    ``simplejpeg``, straight into a numpy array that becomes the tensor without a copy (a channels-last
    view, which the uint8 crops and resizes read as it is), and, when the caller needs only
    ``decode_size`` pixels on the shorter side and the image is at least 4x larger, at 1/4 or 1/8 scale
    (DCT scaling: the decode and the resize after it get cheaper; libjpeg-turbo's other n/8 scales decode
    more slowly). CMYK/YCCK JPEGs (rare; simplejpeg converts their colours
    differently) and the other formats go through torchvision (PNG, WebP, GIF) or PIL (BMP, which
    torchvision cannot read). Why simplejpeg and not torchvision's decoder, measured: the "Data pipeline"
    section of scripts/bench/README.md.
    """
    return decode_bytes(_read_bytes(path), channels, decode_size, path)


def read_transformed(path: str, channels: int, decode_size: int | None, transform: Callable | None) -> torch.Tensor:
    """``transform(read_image(path, channels, decode_size))``, decoding only the crop when it can
    (``decode_transformed``)."""
    return decode_transformed(_read_bytes(path), channels, decode_size, transform, path)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BadImageError(f"cannot decode image {path}: {e.strerror or e}") from e


def decode_bytes(data: bytes, channels: int, decode_size: int | None = None, name: str = "<bytes>") -> torch.Tensor:
    """Encoded image bytes to uint8 ``(channels, H, W)``; a failure is one ``BadImageError`` line naming ``name``.

    ``decode_size`` (shorter side the caller needs, or None for full size) lets a JPEG decode at a
    reduced scale (``jpeg_scale``) whose shorter side is still at least ``decode_size``. The result may be a
    non-contiguous (channels-last) view; call ``.contiguous()`` if a caller needs plain strides.
    """
    try:
        if data[:3] == JPEG_SIGNATURE:
            image = _jpeg(data, channels, decode_size)
        elif data[:2] == b"BM":
            with Image.open(io.BytesIO(data)) as im:
                image = pil_to_tensor(im.convert("L" if channels == 1 else "RGB"))
        else:
            image = _torchvision(data, channels)
    except (RuntimeError, OSError, ValueError, SyntaxError) as e:
        raise BadImageError(f"cannot decode image {name}: {_reason(data, e)}") from e
    if image.shape[0] != channels:  # WebP ignores GRAY mode and stays RGB
        image = rgb_to_grayscale(image)
    return image


def image_kind(head: bytes) -> str | None:
    """The image format the first bytes of a file announce (JPEG, PNG, BMP, WebP: the training formats), or None."""
    kind = next((name for magic, name in _SIGNATURES.items() if head.startswith(magic)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "WebP"
    return kind


def _reason(data: bytes, error: BaseException) -> str:
    """Why ``data`` did not decode, in the user's terms rather than the decoder's (which names its source files)."""
    if not data:
        return "zero-byte file"
    kind = image_kind(data[:16])
    if kind is None:
        return "not an image (unknown file signature)"
    detail = _DECODER_NOISE.sub("", (str(error).strip().splitlines() or [""])[0]).strip()
    return f"damaged {kind} ({detail or type(error).__name__})"


def decode_transformed(data: bytes, channels: int, decode_size: int | None, transform: Callable | None,
                       name: str = "<bytes>") -> torch.Tensor:
    """``transform(decode_bytes(data, channels, decode_size, name))``, with the same random draws and pixels.

    When ``transform`` is a ``v2.Compose`` whose first step is a ``RandomResizedCrop`` and ``data`` is a
    JPEG the region decoder reads, the crop is drawn from the image size in the header and only that
    region is decoded (``jpeg_region``), then resized and passed to the remaining steps. A crop keeps
    about half the image on average, so this skips much of the decode (measured: "Data pipeline" in
    scripts/bench/README.md). A damaged file is then reported when a crop first reaches the damage.
    """
    crop = _leading_crop(transform)
    if crop is not None and jpeg_region.available() and data[:3] == JPEG_SIGNATURE:
        image = _decode_crop(data, channels, decode_size, crop, name)
        if image is not None:
            for step in transform.transforms[1:]:  # what v2.Compose does with one input
                image = step(image)
            return image
    image = decode_bytes(data, channels, decode_size, name)
    return transform(image) if transform is not None else image


def _leading_crop(transform: Callable | None) -> v2.RandomResizedCrop | None:
    """The ``RandomResizedCrop`` a ``v2.Compose`` starts with (exact types: subclasses may behave otherwise)."""
    if type(transform) is v2.Compose and transform.transforms and type(transform.transforms[0]) is v2.RandomResizedCrop:
        return transform.transforms[0]
    return None


def _decode_crop(data: bytes, channels: int, decode_size: int | None, crop: v2.RandomResizedCrop, name: str
                 ) -> torch.Tensor | None:
    """The crop's region decoded and resized to the crop size; None for JPEGs the region decoder does not read."""
    try:
        height, width, colorspace, subsampling = simplejpeg.decode_jpeg_header(data)
    except ValueError as e:
        raise BadImageError(f"cannot decode image {name}: {e}") from e
    if colorspace not in _SIMPLEJPEG_COLORSPACES or subsampling not in _REGION_SUBSAMPLINGS:
        return None
    scale = jpeg_scale(height, width, decode_size)
    # The crop's parameters are drawn exactly as RandomResizedCrop draws them for the decoded image, from
    # a stand-in of its shape (an expanded scalar: no memory).
    shape = torch.empty((), dtype=torch.uint8).expand(channels, math.ceil(height / scale), math.ceil(width / scale))
    box = crop.make_params([shape])
    try:
        pixels = jpeg_region.decode_region(data, channels, scale, box["top"], box["left"], box["height"], box["width"])
    except ValueError as e:
        raise BadImageError(f"cannot decode image {name}: {e}") from e
    # (C, H, W) view of the (H, W, C) array: channels-last memory, where torch's uint8 resize is fastest.
    region = torch.from_numpy(pixels).permute(2, 0, 1)
    return resize(region, list(crop.size), interpolation=crop.interpolation, antialias=crop.antialias)


def jpeg_scale(height: int, width: int, decode_size: int | None) -> int:
    """The largest of 8, 4 (else 1) by which a ``height`` x ``width`` JPEG can shrink keeping ``decode_size``."""
    if not decode_size:
        return 1
    return next((f for f in _SCALES if math.ceil(min(height, width) / f) >= decode_size), 1)


def _jpeg(data: bytes, channels: int, decode_size: int | None) -> torch.Tensor:
    height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    if colorspace not in _SIMPLEJPEG_COLORSPACES:
        return _torchvision(data, channels)
    scale = jpeg_scale(height, width, decode_size)
    # Asking for exactly ceil(side / scale) makes libjpeg-turbo pick the 1/scale factor and no other n/8.
    pixels = simplejpeg.decode_jpeg(data, "GRAY" if channels == 1 else "RGB",
                                    min_height=math.ceil(height / scale), min_width=math.ceil(width / scale))
    return torch.from_numpy(pixels).permute(2, 0, 1)  # (C, H, W) view of the (H, W, C) array, no copy


def _torchvision(data: bytes, channels: int) -> torch.Tensor:
    encoded = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())  # torchvision wants a writable tensor
    return decode_image(encoded, mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)
