"""Data layer: class-folder datasets yielding uint8 images, their DataModules and the embedded datasets."""

from convnetlab.data.datamodule import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DigitsDataModule,
    ImageFolderDataModule,
    ShapesDataModule,
)
from convnetlab.data.digits import write_digits
from convnetlab.data.folder import ImageFolderDataset, list_classes, read_image, register_resolvers
from convnetlab.data.shapes import SHAPE_NAMES, generate_shapes, render_shape
from convnetlab.data.transforms import default_resize_size, eval_transform, train_transform

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SHAPE_NAMES",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "ImageFolderDataset",
    "ShapesDataModule",
    "default_resize_size",
    "eval_transform",
    "generate_shapes",
    "list_classes",
    "read_image",
    "register_resolvers",
    "render_shape",
    "train_transform",
    "write_digits",
]
