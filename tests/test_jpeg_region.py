"""The JPEG region decoder (data/jpeg_region.py) and the crop-first decode it enables (data/decode.py):
the same pixels and the same random draws as decoding the whole JPEG, then transforming."""

import io
import math
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image

from convnetlab.data import decode, jpeg_region
from convnetlab.data.augment import build_preset, decode_size
from convnetlab.data.decode import decode_bytes, decode_transformed, read_transformed
from convnetlab.data.folder import ImageFolderDataset, list_classes
from convnetlab.data.resumable import keyed_rng
from convnetlab.errors import BadImageError

from photos import photo


def _jpeg(pixels: np.ndarray, mode: str = "RGB", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


# Chroma subsampling 4:2:0 (PIL's default), 4:2:2, 4:4:4; progressive; grayscale; sizes that are not
# multiples of an iMCU; restart markers.
ENCODINGS = {
    "420": {}, "422": {"subsampling": 1}, "444": {"subsampling": 0}, "progressive": {"progressive": True},
    "restart markers": {"restart_marker_rows": 1},
}


def _header_present() -> bool:
    include = Path(sysconfig.get_config_var("INCLUDEDIR") or "/usr/include")
    return any((folder / "jpeglib.h").exists() for folder in (include, Path("/usr/include"), Path("/usr/local/include")))


def test_the_region_decoder_is_built_where_it_can_be():
    """The install builds it wherever a C compiler and the libjpeg headers exist (as on CI): a silent
    fallback to whole decodes would only show up as slower training."""
    if not (shutil.which("cc") or shutil.which("gcc")) or not _header_present():
        pytest.skip("no C compiler or libjpeg headers: the package falls back to whole decodes")
    assert jpeg_region.available(), f"{jpeg_region.LIBRARY} missing: run `make setup` (pip install -e .)"


needs_decoder = pytest.mark.skipif(not jpeg_region.available(), reason="region decoder not built")


@needs_decoder
@pytest.mark.parametrize("encoding", list(ENCODINGS) + ["gray"])
@pytest.mark.parametrize("size", [(203, 157), (500, 375)])
def test_regions_are_bit_identical_to_a_slice_of_the_whole_decode(encoding, size):
    data = _jpeg(photo(size, seed=size[0]), "L" if encoding == "gray" else "RGB", **ENCODINGS.get(encoding, {}))
    rng = np.random.default_rng(0)
    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    for channels in (3, 1):
        for scale in (1, 4, 8):
            whole = simplejpeg.decode_jpeg(data, "RGB" if channels == 3 else "GRAY",
                                           min_height=math.ceil(height / scale), min_width=math.ceil(width / scale))
            rows, cols = whole.shape[:2]
            # Edges, single pixels and the whole image, then random regions.
            boxes = [(0, 0, rows, cols), (0, 0, 1, 1), (rows - 1, cols - 1, 1, 1), (0, cols - 1, rows, 1),
                     (rows // 2, 0, rows - rows // 2, cols)]
            for _ in range(12):
                h, w = int(rng.integers(1, rows + 1)), int(rng.integers(1, cols + 1))
                boxes.append((int(rng.integers(0, rows - h + 1)), int(rng.integers(0, cols - w + 1)), h, w))
            for top, left, h, w in boxes:
                region = jpeg_region.decode_region(data, channels, scale, top, left, h, w)
                np.testing.assert_array_equal(region, whole[top:top + h, left:left + w],
                                              err_msg=f"{channels} ch, 1/{scale}, region {(top, left, h, w)}")


@needs_decoder
def test_a_region_outside_the_image_or_in_damaged_data_is_an_error():
    data = _jpeg(photo((64, 48), seed=1))
    with pytest.raises(ValueError, match="outside the 64x48 image"):
        jpeg_region.decode_region(data, 3, 1, 40, 0, 9, 64)
    with pytest.raises(ValueError):
        jpeg_region.decode_region(data[: len(data) // 2], 3, 1, 0, 0, 48, 64)  # the region reaches the cut


def _items(dataset: ImageFolderDataset, seed: int = 7) -> list[torch.Tensor]:
    out = []
    for key in range(len(dataset)):
        with keyed_rng(seed, key):
            out.append(dataset[key][0])
    return out


@pytest.fixture
def jpeg_folder(tmp_path):
    for i in range(6):
        folder = tmp_path / "train" / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        size = [(300, 225), (160, 200), (97, 131)][i % 3]
        (folder / f"{i}.jpg").write_bytes(_jpeg(photo(size, seed=i), "L" if i == 5 else "RGB"))
    return tmp_path / "train"


@needs_decoder
@pytest.mark.parametrize("preset, image_size", [("default", 64), ("default", 32), ("tv_v2", 48), ("inception", 64)])
def test_crop_first_training_items_equal_decode_then_transform(jpeg_folder, monkeypatch, preset, image_size):
    """Same images and the same random draws (a later step's draws follow the crop's) as a whole decode,
    including DCT-scaled decodes; and the region decoder really ran for every item."""
    transform = build_preset(preset, image_size)
    dataset = ImageFolderDataset(jpeg_folder, list_classes(jpeg_folder), 3, transform,
                                 decode_size=decode_size(preset, image_size))
    calls = []
    real = jpeg_region.decode_region
    monkeypatch.setattr(jpeg_region, "decode_region", lambda *a: calls.append(a) or real(*a))
    cropped_first = _items(dataset)
    assert len(calls) == len(dataset)
    monkeypatch.setattr(jpeg_region, "available", lambda: False)
    whole_first = _items(dataset)
    assert len(calls) == len(dataset)
    for new, old in zip(cropped_first, whole_first):
        assert new.shape == (3, image_size, image_size)
        assert torch.equal(new, old)


@needs_decoder
def test_transforms_that_do_not_start_with_a_random_crop_decode_whole_images(jpeg_folder, monkeypatch):
    monkeypatch.setattr(jpeg_region, "decode_region", lambda *a: pytest.fail("no region decode expected"))
    data = (next(jpeg_folder.rglob("*.jpg"))).read_bytes()
    for transform in (build_preset("alexnet", 32), build_preset("none", 32), None):
        with keyed_rng(1, 0):
            out = decode_transformed(data, 3, None, transform)
        with keyed_rng(1, 0):
            expected = decode_bytes(data, 3)
            expected = transform(expected) if transform is not None else expected
        assert torch.equal(out, expected)


def test_cmyk_jpegs_and_other_formats_take_the_whole_decode(tmp_path, monkeypatch):
    monkeypatch.setattr(jpeg_region, "decode_region", lambda *a: pytest.fail("no region decode expected"))
    transform = build_preset("default", 32)
    for name, data in (("cmyk.jpg", _jpeg(photo((80, 60), seed=2), "CMYK")),
                       ("photo.png", _png(photo((80, 60), seed=3)))):
        with keyed_rng(1, 0):
            out = decode_transformed(data, 3, None, transform, name)
        with keyed_rng(1, 0):
            assert torch.equal(out, transform(decode_bytes(data, 3)))


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_without_the_built_library_items_are_the_same_and_the_call_says_how_to_build_it(jpeg_folder, monkeypatch):
    transform = build_preset("default", 32)
    dataset = ImageFolderDataset(jpeg_folder, list_classes(jpeg_folder), 3, transform)
    expected = _items(dataset)
    monkeypatch.setattr(jpeg_region, "_LIBRARY", None)
    assert not jpeg_region.available()
    assert all(torch.equal(a, b) for a, b in zip(_items(dataset), expected))
    with pytest.raises(RuntimeError, match="libjpeg-dev"):
        jpeg_region.decode_region(b"", 3, 1, 0, 0, 1, 1)


@needs_decoder
def test_a_damaged_file_is_one_line_naming_it_when_the_crop_reaches_the_damage(tmp_path):
    path = tmp_path / "cut.jpg"
    data = _jpeg(photo((120, 90), seed=4))
    path.write_bytes(data[: len(data) // 3])
    # scale (1, 1): the crop is the whole image, so it always reaches the cut.
    transform = build_preset("default", 32, scale=(1.0, 1.0))
    assert decode._leading_crop(transform) is not None
    with pytest.raises(BadImageError, match=f"cannot decode image {path}") as error:
        read_transformed(str(path), 3, None, transform)
    assert "\n" not in str(error.value)


def _build_hook(root: Path):
    """hatch_build.py's hook on a copy of the C source under ``root``, with warnings recorded."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hatch_build", Path(__file__).parents[1] / "hatch_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = root / module.SOURCE
    source.parent.mkdir(parents=True)
    shutil.copy(Path(jpeg_region.__file__).with_name("_jpeg_region.c"), source)

    class App:
        warnings: list[str] = []

        def display_warning(self, text: str) -> None:
            self.warnings.append(text)

    app = App()
    hook = module.JpegRegionBuildHook(str(root), {}, None, None, str(root / "dist"), "wheel", app=app)
    return hook, app, source.with_suffix(".ctypes.so")


def test_the_install_hook_builds_the_library_and_fails_softly_without_a_compiler(tmp_path, monkeypatch):
    if not (shutil.which("cc") or shutil.which("gcc")) or not _header_present():
        pytest.skip("no C compiler or libjpeg headers")
    hook, app, library = _build_hook(tmp_path)
    build_data = {"artifacts": [], "pure_python": True}
    hook.initialize("standard", build_data)
    assert library.exists() and not app.warnings
    assert build_data["artifacts"] == [str(library.relative_to(tmp_path))] and build_data["pure_python"] is False

    monkeypatch.setenv("CC", "/nonexistent/cc -m64")  # a broken compiler: a warning, no library, no failure
    build_data = {"artifacts": [], "pure_python": True}
    hook.initialize("standard", build_data)
    assert not library.exists() and build_data["artifacts"] == []
    assert len(app.warnings) == 1 and "not built" in app.warnings[0] and "libjpeg-dev" in app.warnings[0]


@needs_decoder
def test_region_arguments_out_of_range_are_refused_before_the_decoder_runs():
    data = _jpeg(photo((64, 48), seed=1))
    for args in [(3, 1, -1, 0, 4, 4), (3, 1, 0, 0, 0, 4), (2, 1, 0, 0, 4, 4), (3, 3, 0, 0, 4, 4)]:
        with pytest.raises(ValueError, match="non-empty region inside the image"):
            jpeg_region.decode_region(data, *args)
    with pytest.raises(ValueError, match="outside"):  # a sum that would overflow a C int
        jpeg_region.decode_region(data, 3, 1, 0, 2**31 - 1, 4, 2)


def test_a_failing_transform_is_raised_as_it_is_not_blamed_on_the_file(jpeg_folder):
    def broken(image):
        raise RuntimeError("a bug in the transform")

    for policy in ("error", "skip"):
        dataset = ImageFolderDataset(jpeg_folder, list_classes(jpeg_folder), 3, broken, bad_images=policy)
        with pytest.raises(RuntimeError, match="a bug in the transform") as error:
            dataset[0]
        assert not isinstance(error.value, BadImageError)


def test_channels_last_items_are_batched_by_plain_copies_with_the_same_values():
    from convnetlab.data.folder import collate_present
    from torch.utils.data import default_collate

    hwc = [torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8) for _ in range(3)]
    items = [(image.permute(2, 0, 1), label) for label, image in enumerate(hwc)]  # channels-last (C, H, W) views
    images, labels = collate_present([items[0], None, items[1], items[2]])
    expected = default_collate([(image.contiguous(), label) for image, label in items])
    assert torch.equal(images, expected[0]) and torch.equal(labels, expected[1])
    assert images.shape == (3, 3, 5, 7) and images.is_contiguous(memory_format=torch.channels_last)
    mixed, _ = collate_present([items[0], (items[1][0].contiguous(), 1)])  # a whole-decoded NCHW item among them
    assert mixed.is_contiguous() and torch.equal(mixed, expected[0][:2])
    gray, _ = collate_present([(torch.zeros(1, 4, 4, dtype=torch.uint8), 0)] * 2)
    assert gray.shape == (2, 1, 4, 4) and gray.is_contiguous()
