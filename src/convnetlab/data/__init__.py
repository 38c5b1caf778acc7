"""Data layer: one image DataModule over pluggable sources (class folders, generated folders, litdata streams),
a preprocessing spec, augmentation presets, and the named DataModules the data configs instantiate."""

from convnetlab.data.datamodule import DigitsDataModule, ImageFolderDataModule, ShapesDataModule
from convnetlab.data.digits import write_digits
from convnetlab.data.folder import ImageFolderDataset, list_classes, read_image, register_resolvers
from convnetlab.data.image_datamodule import ImageDataModule
from convnetlab.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from convnetlab.data.sources import FolderSource, GeneratedSource, Source
from convnetlab.data.shapes import SHAPE_NAMES, generate_shapes, render_shape
from convnetlab.data.transforms import default_resize_size, eval_transform, train_transform

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SHAPE_NAMES",
    "DigitsDataModule",
    "FolderSource",
    "GeneratedSource",
    "ImageDataModule",
    "ImageFolderDataModule",
    "ImageFolderDataset",
    "Preprocessing",
    "ShapesDataModule",
    "Source",
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
