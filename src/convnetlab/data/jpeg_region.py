"""Decode one rectangle of a JPEG: the C helper ``_jpeg_region.c`` (libjpeg-turbo), called through ctypes.

The helper is compiled against the system's libjpeg-turbo when the package is installed
(``hatch_build.py``). Where that was not possible (no C compiler or no libjpeg headers) ``available()``
is False and the decoder decodes whole JPEGs instead: the same pixels, more slowly.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

# Not "*.so" alone: Python would take that for an extension module (pkgutil walks would import it).
LIBRARY = Path(__file__).with_name("_jpeg_region.ctypes.so")


def _load() -> ctypes.CDLL | None:
    try:
        library = ctypes.CDLL(str(LIBRARY))
    except OSError:
        return None
    library.convnetlab_decode_region.argtypes = [
        ctypes.c_char_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int,
        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
    ]
    library.convnetlab_decode_region.restype = ctypes.c_int
    library.convnetlab_message_size.restype = ctypes.c_int
    return library


_LIBRARY = _load()


def available() -> bool:
    """Whether the region decoder was built (see the module docstring)."""
    return _LIBRARY is not None


def decode_region(data: bytes, channels: int, scale: int, top: int, left: int, height: int,
                  width: int) -> np.ndarray:
    """Rows ``top..top+height`` and columns ``left..left+width`` of the JPEG ``data`` decoded at 1/``scale``
    size (coordinates in that scaled image), as a ``(height, width, channels)`` uint8 array; ``channels``
    is 1 (gray) or 3 (RGB). Raises ValueError with libjpeg's one-line reason."""
    if _LIBRARY is None:
        raise RuntimeError(f"the JPEG region decoder is not built ({LIBRARY} is missing); reinstall convnetlab "
                           "with a C compiler and the libjpeg-turbo headers (Debian: libjpeg-dev)")
    if channels not in (1, 3) or scale not in (1, 2, 4, 8) or min(top, left) < 0 or min(height, width) < 1:
        raise ValueError(f"region {width}x{height} at ({left}, {top}), {channels} channels, 1/{scale} scale: "
                         "give channels 1 or 3, scale 1, 2, 4 or 8 and a non-empty region inside the image")
    out = np.empty((height, width, channels), dtype=np.uint8)
    message = ctypes.create_string_buffer(_LIBRARY.convnetlab_message_size())
    status = _LIBRARY.convnetlab_decode_region(data, len(data), scale, channels, top, left, height, width,
                                               out.ctypes.data, message)
    if status != 0:
        raise ValueError(message.value.decode(errors="replace") or "libjpeg failed")
    return out
