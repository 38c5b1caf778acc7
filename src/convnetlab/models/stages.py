"""Backbone stages per family, from the input to the classifier: what fine-tuning unfreezes (last first)
and where auxiliary heads attach.

Later stages hold the most task-specific features, so fine-tuning unfreezes them first and the early,
generic ones (edges, colours) last or never (Yosinski et al. 2014). A stage is a label plus the
``named_modules()`` names it covers; the label names its optimizer groups (``lr/layer4``).

- ResNet: ``stem`` (conv1 + bn1), ``layer1`` .. ``layer4``
- GoogLeNet: ``stem`` (conv1..conv3), ``inception3`` (3a, 3b), ``inception4`` (4a..4e), ``inception5`` (5a, 5b)
- AlexNet / VGG / DesignNet: ``block<k>``, the layers with parameters between two max-pools of ``features``
- LeNet-5: ``c1``, ``c3``, ``c5``

Each architecture names its function in :mod:`convnetlab.models.architectures`.
"""

from __future__ import annotations

from torch import nn

from convnetlab.models.registry import Stage


def resnet_stages(backbone: nn.Module) -> list[Stage]:
    return [("stem", ["conv1", "bn1"]), *((f"layer{k}", [f"layer{k}"]) for k in range(1, 5))]


def googlenet_stages(backbone: nn.Module) -> list[Stage]:
    inception = [name for name, _ in backbone.named_children() if name.startswith("inception")]
    return [("stem", ["conv1", "conv2", "conv3"]),
            *((f"inception{k}", [n for n in inception if n[9] == str(k)]) for k in (3, 4, 5))]


def pool_block_stages(backbone: nn.Module) -> list[Stage]:
    """``features`` split after each max-pool; each block lists its layers that have parameters."""
    blocks, current = [], []
    for index, layer in backbone.features.named_children():
        if any(True for _ in layer.parameters()):
            current.append(f"features.{index}")
        if isinstance(layer, nn.MaxPool2d) and current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return [(f"block{k}", names) for k, names in enumerate(blocks, start=1)]


def lenet_stages(backbone: nn.Module) -> list[Stage]:
    return [(name, [f"features.{name}"]) for name in ("c1", "c3", "c5")]
