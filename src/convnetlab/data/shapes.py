"""Deterministic synthetic ImageNet-style dataset: one shape per image on a cluttered background.

Only geometry identifies the class. Colour, position, scale, rotation, mirroring, clutter and
occlusion are drawn independently of the label, so mean colour carries no label information,
while a small CNN still learns the task in a few epochs. Every image has its own seeded numpy
Generator, so the same parameters always give byte-identical files.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from convnetlab.data.folder import atomic_dir
from convnetlab.errors import InputError

_SUPERSAMPLE = 4  # draw at 4x and box-downsample, for anti-aliased edges at ~36 px
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}  # part of each image's seed, independent of dict order

Part = tuple[np.ndarray, int]  # polygon (N, 2) in unit coordinates; 255 fills, 0 cuts a hole


def _ngon(
    n: int, radius: float = 1.0, phase: float = -np.pi / 2, centre: tuple[float, float] = (0.0, 0.0), ry: float = 0.0
) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + (ry or radius) * np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    outer = _ngon(2 * points)
    return outer * np.where(np.arange(2 * points) % 2, inner, 1.0)[:, None]


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], axis=1)


def _poly(*xy: float) -> np.ndarray:
    return np.asarray(xy, dtype=float).reshape(-1, 2)


def _normalise(parts: list[Part]) -> list[Part]:
    """Centre on the bounding box and fit in the unit circle, so a sampled radius is the object's true extent."""
    pts = np.concatenate([p for p, _ in parts])
    centre = (pts.min(0) + pts.max(0)) / 2
    radius = np.linalg.norm(pts - centre, axis=1).max()
    return [((p - centre) / radius, fill) for p, fill in parts]


# Ordered so that the first ten (the default) are the most distinct at 32 px.
_SHAPES: dict[str, list[Part]] = {
    name: _normalise(parts)
    for name, parts in {
        "circle": [(_ngon(48), 255)],
        "square": [(_ngon(4, phase=np.pi / 4), 255)],
        "triangle": [(_ngon(3), 255)],
        "star": [(_star(), 255)],
        "cross": [(_poly(-.3, -1, .3, -1, .3, 1, -.3, 1), 255), (_poly(-1, -.3, 1, -.3, 1, .3, -1, .3), 255)],
        "ring": [(_ngon(48), 255), (_ngon(48, 0.55), 0)],
        "heart": [(_heart(), 255)],
        "arrow": [(_poly(-1, -.2, .15, -.2, .15, -.6, 1, 0, .15, .6, .15, .2, -1, .2), 255)],
        "crescent": [(_ngon(48), 255), (_ngon(48, 0.8, centre=(0.45, -0.15)), 0)],
        "lshape": [(_poly(-.6, -1, -.15, -1, -.15, .55, .6, .55, .6, 1, -.6, 1), 255)],
        "diamond": [(_poly(0, -1, .55, 0, 0, 1, -.55, 0), 255)],
        "ellipse": [(_ngon(48, ry=0.5), 255)],
        "trapezoid": [(_poly(-1, .5, 1, .5, .45, -.5, -.45, -.5), 255)],
        "tshape": [(_poly(-1, -1, 1, -1, 1, -.55, .22, -.55, .22, 1, -.22, 1, -.22, -.55, -1, -.55), 255)],
        "hexagon": [(_ngon(6), 255)],
        "pentagon": [(_ngon(5), 255)],
    }.items()
}
SHAPE_NAMES: tuple[str, ...] = tuple(_SHAPES)


@dataclass(frozen=True)
class Difficulty:
    """Nuisance ranges; none of them depends on the class."""

    scale: tuple[float, float]  # object radius as a fraction of half the image side
    rotation: float  # max |angle| in degrees
    contrast: float  # min RGB distance (0..sqrt 3) between the object and the background gradient
    lines: tuple[int, int]  # clutter lines per image (inclusive range)
    blobs: tuple[int, int]  # clutter ellipses per image, smaller than the object
    occlusion: float  # probability that a blob covers part of the object
    noise: float  # pixel noise std, 0..255 units


DIFFICULTIES = {
    "easy": Difficulty((0.6, 0.85), 10.0, 0.7, (0, 1), (0, 0), 0.0, 0.0),
    "medium": Difficulty((0.55, 0.85), 30.0, 0.5, (1, 3), (0, 1), 0.15, 3.0),
    "hard": Difficulty((0.4, 0.8), 180.0, 0.35, (3, 6), (2, 4), 0.35, 8.0),
}


def shape_classes(num_classes: int, class_offset: int = 0) -> list[str]:
    """Class names for ``num_classes`` shapes from ``SHAPE_NAMES[class_offset]`` on, sorted like the folders
    an ImageFolder reads. Offsets give disjoint tasks, e.g. 8 classes at offset 0 and 8 at offset 8."""
    if not 1 <= num_classes <= len(SHAPE_NAMES) - class_offset or class_offset < 0:
        raise InputError(f"num_classes + class_offset must be in 1..{len(SHAPE_NAMES)} ({len(SHAPE_NAMES)} shapes), "
                         f"got num_classes={num_classes}, class_offset={class_offset}")
    return sorted(SHAPE_NAMES[class_offset:class_offset + num_classes])


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _object_colour(rng: np.random.Generator, background: np.ndarray, contrast: float) -> np.ndarray:
    """Random colour (0..1) far enough from every colour of the background gradient (best of a few tries)."""
    gradient = background[0] + np.linspace(0, 1, 9)[:, None] * (background[1] - background[0])
    candidates = rng.random((16, 3))
    distance = np.linalg.norm(candidates[:, None] - gradient[None], axis=2).min(1)
    ok = np.flatnonzero(distance >= contrast)
    return candidates[ok[0] if ok.size else distance.argmax()]


def _blend(pixels: np.ndarray, mask: Image.Image, colour: np.ndarray) -> np.ndarray:
    """Paint ``colour`` through a supersampled mask; blending at output size is much cheaper than at 4x."""
    alpha = np.asarray(mask.reduce(_SUPERSAMPLE), dtype=np.float32)[..., None] / 255
    return pixels * (1 - alpha) + colour * alpha


def render_shape(name: str, size: int, difficulty: str, rng: np.random.Generator) -> Image.Image:
    """One RGB ``size`` x ``size`` image of shape ``name``: gradient, clutter, the object, maybe an occluder, noise."""
    d = DIFFICULTIES[difficulty]
    big = size * _SUPERSAMPLE
    half = big / 2

    background = rng.random((2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    axis = np.linspace(-0.5, 0.5, size)
    t = np.clip(0.5 + axis[None, :] * np.cos(angle) + axis[:, None] * np.sin(angle), 0, 1)[..., None]
    gradient = Image.fromarray(((background[0] * (1 - t) + background[1] * t) * 255).astype(np.uint8))
    image = gradient.resize((big, big), Image.Resampling.NEAREST)  # the final box-downsample restores it exactly
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(d.lines[0], d.lines[1] + 1)):
        draw.line(rng.uniform(0, big, 4).tolist(), fill=_colour(rng), width=int(rng.integers(1, 3)) * _SUPERSAMPLE)
    for _ in range(rng.integers(d.blobs[0], d.blobs[1] + 1)):
        c, r = rng.uniform(0, big, 2), rng.uniform(0.08, 0.25, 2) * half
        draw.ellipse([*(c - r), *(c + r)], fill=_colour(rng))
    pixels = np.asarray(image.reduce(_SUPERSAMPLE), dtype=np.float32)

    colour = _object_colour(rng, background, d.contrast) * 255
    radius = rng.uniform(*d.scale) * half
    centre = half + rng.uniform(-1, 1, 2) * max(0.0, 0.9 * half - radius)
    theta = np.deg2rad(rng.uniform(-d.rotation, d.rotation))
    mirror = np.array([-1.0 if rng.random() < 0.5 else 1.0, 1.0])
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    mask = Image.new("L", (big, big), 0)
    mask_draw = ImageDraw.Draw(mask)
    for points, fill in _SHAPES[name]:
        mask_draw.polygon((points * mirror @ rotation.T * radius + centre).ravel().tolist(), fill=fill)
    pixels = _blend(pixels, mask, colour)

    if rng.random() < d.occlusion:
        a = rng.uniform(0, 2 * np.pi)
        c = centre + radius * rng.uniform(0.5, 1.0) * np.array([np.cos(a), np.sin(a)])
        r = radius * rng.uniform(0.25, 0.45)
        mask = Image.new("L", (big, big), 0)
        ImageDraw.Draw(mask).ellipse([*(c - r), *(c + r)], fill=255)
        pixels = _blend(pixels, mask, np.array(_colour(rng), dtype=np.float32))

    if d.noise:
        pixels = pixels + d.noise * rng.standard_normal(pixels.shape, dtype=np.float32)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def generate_shapes(
    out_dir: str | Path,
    num_classes: int,
    size: int,
    per_class: dict[str, int],
    difficulty: str = "medium",
    seed: int = 0,
    class_offset: int = 0,
) -> Path:
    """Write ``out_dir/<split>/<shape>/<index>.jpg`` plus ``classes.json`` once; reuse a complete ``out_dir``.

    Images are stored at ``size`` (the eval resize size, so Resize + CenterCrop follows the
    ImageNet protocol) as quality-90 JPEGs with full-resolution chroma (4:2:0 would blur colour
    edges at ~36 px). The directory appears atomically, so an interrupted run is never mistaken
    for a finished dataset. An image depends only on (seed, split, shape, index): a shape looks the
    same in every class selection, and smaller per-class counts are prefixes of larger ones.
    """
    out_dir = Path(out_dir)
    if out_dir.is_dir():
        return out_dir
    if difficulty not in DIFFICULTIES:
        raise InputError(f"difficulty must be one of {sorted(DIFFICULTIES)}, got {difficulty!r}")
    if unknown := set(per_class) - set(_SPLIT_IDS):
        raise InputError(f"unknown splits {sorted(unknown)}; expected a subset of {list(_SPLIT_IDS)}")
    classes = shape_classes(num_classes, class_offset)
    with atomic_dir(out_dir) as tmp:
        for split, count in per_class.items():
            for name in classes:
                class_dir = tmp / split / name
                class_dir.mkdir(parents=True)
                for i in range(count):
                    rng = np.random.default_rng([seed, _SPLIT_IDS[split], SHAPE_NAMES.index(name), i])
                    image = render_shape(name, size, difficulty, rng)
                    image.save(class_dir / f"{i:05d}.jpg", quality=90, subsampling=0)
        (tmp / "classes.json").write_text(json.dumps(dict(enumerate(classes)), indent=1) + "\n")
    return out_dir
