"""The simplejpeg decode path (data/decode.py) gives the pixels the torchvision/PIL decode gave before it."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import pil_to_tensor, rgb_to_grayscale

from convnetlab.data.decode import decode_bytes, jpeg_scale, read_image
from convnetlab.errors import BadImageError

from photos import photo


def _encode(pixels: np.ndarray, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _torchvision(data: bytes, channels: int) -> torch.Tensor:
    return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                        mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)


def _assert_close(new: torch.Tensor, old: torch.Tensor, mean: float = 1.5, worst: int = 8) -> None:
    assert new.shape == old.shape and new.dtype == torch.uint8
    diff = (new.int() - old.int()).abs()
    assert diff.float().mean() < mean and diff.max() <= worst


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])  # CMYK goes to torchvision, the others to simplejpeg
@pytest.mark.parametrize("size", [(500, 375), (37, 61), (640, 480)])
@pytest.mark.parametrize("channels", [3, 1])
def test_full_size_jpeg_decode_matches_torchvision(mode, size, channels):
    data = _encode(photo(size, seed=size[0]), mode)
    _assert_close(decode_bytes(data, channels), _torchvision(data, channels))


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("channels", [3, 1])
def test_reduced_jpeg_decode_matches_the_previous_pil_draft_decode(mode, channels):
    """Before simplejpeg, JPEGs >= 4x larger than needed were decoded with PIL's ``draft`` (DCT scaling too)."""
    data = _encode(photo((640, 480), seed=3), mode)
    for decode_size in (37, 100):
        with Image.open(io.BytesIO(data)) as im:
            pil_mode = "L" if channels == 1 else "RGB"
            im.draft(pil_mode, (decode_size, decode_size))
            previous = pil_to_tensor(im.convert(pil_mode))
        _assert_close(decode_bytes(data, channels, decode_size), previous)


def test_reduced_jpeg_decode_is_a_downscaled_full_decode():
    """DCT scaling keeps each 8x8 block's lowest frequencies, close to averaging f x f pixels: so against
    an area (box) downscale of the full decode the mean error stays under 1.5 grey levels; single pixels
    differ more where the noise texture is strongest (the two filters' kernels differ), hence max <= 12."""
    data = _encode(photo((640, 480), seed=4))
    full = decode_bytes(data, 3)
    for decode_size, scale in ((37, 8), (100, 4)):
        reduced = decode_bytes(data, 3, decode_size)
        assert reduced.shape == (3, 480 // scale, 640 // scale) and min(reduced.shape[1:]) >= decode_size
        box = F.interpolate(full[None].float(), size=reduced.shape[1:], mode="area")[0].round().to(torch.uint8)
        _assert_close(reduced, box, mean=1.5, worst=12)


def test_jpeg_scale_keeps_the_needed_side_and_uses_only_quarter_and_eighth():
    assert jpeg_scale(375, 500, None) == 1
    assert jpeg_scale(375, 500, 37) == 8  # ceil(375 / 8) = 47 >= 37
    assert jpeg_scale(375, 500, 90) == 4  # ceil(375 / 4) = 94 >= 90
    assert jpeg_scale(375, 500, 120) == 1  # 1/2 is not used
    assert jpeg_scale(147, 1000, 37) == 4  # ceil(147 / 4) = 37: the decoded shorter side is still 37


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP"])
def test_other_formats_decode_as_before(fmt):
    """As read_image did before simplejpeg: PIL for BMP, torchvision for the rest (its own gray conversion;
    WebP stays RGB there and is converted with rgb_to_grayscale). In RGB every decoder gives PIL's pixels."""
    data = _encode(photo((48, 32), seed=5), fmt=fmt)
    with Image.open(io.BytesIO(data)) as im:
        assert torch.equal(decode_bytes(data, 3), pil_to_tensor(im.convert("RGB")))
        gray = pil_to_tensor(im.convert("L")) if fmt == "BMP" else _torchvision(data, 1)
    assert torch.equal(decode_bytes(data, 1), rgb_to_grayscale(gray) if gray.shape[0] == 3 else gray)


def test_image_tensors_come_from_the_decoded_array_without_a_copy():
    image = decode_bytes(_encode(photo((64, 48), seed=6)), 3)
    assert image.shape == (3, 48, 64) and image.stride() == (1, 64 * 3, 3)  # a (C, H, W) view of (H, W, C)


@pytest.mark.parametrize("damage", ["truncated", "garbage after the signature", "empty"])
def test_a_bad_jpeg_is_one_error_line_naming_it(damage):
    data = _encode(photo((64, 48), seed=7))
    data = {"truncated": data[: len(data) // 2], "garbage after the signature": data[:3] + b"junk" * 10,
            "empty": b""}[damage]
    with pytest.raises(BadImageError, match=r"^cannot decode image shard-3:key-9: [^\n]+$"):
        decode_bytes(data, 3, name="shard-3:key-9")


def test_read_image_reads_the_file_and_names_a_missing_one(tmp_path):
    data = _encode(photo((64, 48), seed=8))
    (tmp_path / "a.jpg").write_bytes(data)
    assert torch.equal(read_image(str(tmp_path / "a.jpg"), 3), decode_bytes(data, 3))
    missing = str(tmp_path / "gone.jpg")
    with pytest.raises(BadImageError, match=f"^cannot decode image {missing}: No such file"):
        read_image(missing, 3)
