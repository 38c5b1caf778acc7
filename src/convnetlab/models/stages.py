"""Backbone stages, last to first, and the classifier head: what fine-tuning unfreezes, in order.

Later stages hold the most task-specific features, so fine-tuning unfreezes them first and the early,
generic ones (edges, colours) last or never (Yosinski et al. 2014). A stage is a label plus the
``named_modules()`` names it covers; the label names its optimizer groups (``lr/layer4``).

- ResNet: ``layer4``, ``layer3``, ``layer2``, ``layer1``, ``stem`` (conv1 + bn1)
- GoogLeNet: ``inception5`` (5a, 5b), ``inception4`` (4a..4e), ``inception3`` (3a, 3b), ``stem`` (conv1..conv3)
- AlexNet / VGG: ``block<k>``, the convolutions (and BatchNorms) between two max-pools of ``features``
- LeNet-5: ``c5``, ``c3``, ``c1``
"""

from __future__ import annotations

from torch import nn

from convnetlab.errors import InputError
from convnetlab.models.zoo import classifier_name

Stage = tuple[str, list[str]]


def _pool_blocks(features: nn.Sequential) -> list[Stage]:
    """``features`` split after each max-pool; each block lists its layers that have parameters."""
    blocks, current = [], []
    for index, layer in features.named_children():
        if any(True for _ in layer.parameters()):
            current.append(f"features.{index}")
        if isinstance(layer, nn.MaxPool2d) and current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return [(f"block{k}", names) for k, names in enumerate(blocks, start=1)]


def stages(backbone: nn.Module, arch: str) -> list[Stage]:
    """The backbone's stages from the last (closest to the classifier) to the first."""
    if arch.startswith("resnet"):
        first_to_last = [("stem", ["conv1", "bn1"]), *((f"layer{k}", [f"layer{k}"]) for k in range(1, 5))]
    elif arch == "googlenet":
        inception = [name for name, _ in backbone.named_children() if name.startswith("inception")]
        first_to_last = [("stem", ["conv1", "conv2", "conv3"]),
                         *((f"inception{k}", [n for n in inception if n[9] == str(k)]) for k in (3, 4, 5))]
    elif arch == "alexnet" or arch.startswith("vgg"):
        first_to_last = _pool_blocks(backbone.features)
    elif arch == "lenet5":
        first_to_last = [(name, [f"features.{name}"]) for name in ("c1", "c3", "c5")]
    else:
        raise InputError(f"no stage preset for arch {arch!r}; give FinetuningSchedule explicit phases")
    return first_to_last[::-1]


def head_modules(backbone: nn.Module, arch: str) -> list[str]:
    """The classifier head (``fc`` or ``classifier``) plus GoogLeNet's built-in aux heads when present."""
    aux = [name for name in ("aux1", "aux2") if getattr(backbone, name, None) is not None]
    return [classifier_name(arch), *aux]
