"""Every architecture convnetlab builds, declared once (see :mod:`convnetlab.models.registry`).

The torchvision families (AlexNet, VGG, GoogLeNet, ResNet) come from :mod:`convnetlab.models.zoo`,
LeNet-5 and DesignNet are our own, ``linear_head`` is the classifier trained on saved embeddings, and
``timm`` is any timm network (``model.name``; :mod:`convnetlab.models.timm_models`).
"""

from __future__ import annotations

from functools import partial

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from convnetlab.errors import InputError
from convnetlab.models import zoo
from convnetlab.models.design_net import DesignNet
from convnetlab.models.lenet import LeNet5
from convnetlab.models.linear_head import linear_head
from convnetlab.models.registry import Architecture, register
from convnetlab.models import timm_models
from convnetlab.models.stages import googlenet_stages, lenet_stages, pool_block_stages, resnet_stages


def _build_lenet5(num_classes: int, *, in_channels: int, input_size: int, width: float, **kwargs) -> nn.Module:
    if input_size != 32:
        raise InputError(f"LeNet-5 needs 32x32 inputs, got input_size={input_size}; set data.image_size=32")
    return LeNet5(num_classes, in_channels, width=width, **kwargs)


def _build_designnet(num_classes: int, *, in_channels: int, input_size: int, width: float,
                     classifier_hidden: int | str, dropout: float, widths=(16, 32, 64), **kwargs) -> nn.Module:
    """DesignNet's ``widths`` scale with ``width`` (floor 4); ``classifier_hidden`` "auto" keeps its 256."""
    if classifier_hidden != "auto":
        kwargs["hidden"] = classifier_hidden
    scaled = tuple(max(4, round(c * width)) for c in widths)
    return DesignNet(num_classes, in_channels, input_size, widths=scaled, dropout=dropout, **kwargs)


def _build_linear_head(num_classes: int, *, in_channels: int, input_size: int, width: float, dropout: float,
                       hidden: int = 0) -> nn.Module:
    if width != 1.0:
        raise InputError("linear_head has no convolutions to scale; leave width=1")
    return linear_head(num_classes, in_channels, input_size, hidden=hidden, dropout=dropout)


register(Architecture("lenet5", _build_lenet5, classifier="classifier", stages=lenet_stages,
                      reference_input=(1, 32, 10)))
register(Architecture("alexnet", zoo.build_alexnet, classifier="classifier", stages=pool_block_stages,
                      torchvision_name="alexnet", mlp_head=True, default_dropout=0.5, small_input_stem=True))
for _depth, _cfg in {"11": "A", "13": "B", "16": "D", "19": "E"}.items():
    for _bn in (False, True):
        _name = f"vgg{_depth}{'_bn' if _bn else ''}"
        register(Architecture(_name, partial(zoo.build_vgg, _cfg, _bn), classifier="classifier",
                              stages=pool_block_stages, torchvision_name=_name, mlp_head=True, default_dropout=0.5,
                              small_input_stem=True))
# GoogLeNet's weights were ported from TensorFlow and expect inputs re-normalised to [-1, 1] (transform_input).
register(Architecture("googlenet", zoo.build_googlenet, classifier="fc", stages=googlenet_stages,
                      torchvision_name="googlenet", default_dropout=0.2, small_input_stem=True,
                      builtin_aux={"aux2": 1, "aux1": 2}, aux_option={"aux_logits": True},
                      weights_options={"transform_input": True}))
for _depth, (_block, _layers) in {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}.items():
    register(Architecture(f"resnet{_depth}", partial(zoo.build_resnet, _block, _layers), classifier="fc",
                          stages=resnet_stages, torchvision_name=f"resnet{_depth}", small_input_stem=True))
# The Findings' ablation skeleton (32-64 px): its features split at max-pools like VGG's.
register(Architecture("designnet", _build_designnet, classifier="classifier", stages=pool_block_stages,
                      mlp_head=True, default_dropout=0.0, reference_input=(3, 32, 10)))
register(Architecture("linear_head", _build_linear_head, classifier=None, default_dropout=0.0,
                      reference_input=(512, 1, 10)))
# Any timm network (model.name): classifier and stages are read from the built model (pretrained_cfg, feature_info).
register(Architecture("timm", timm_models.build_timm, classifier=timm_models.timm_classifier,
                      stages=timm_models.timm_stages, default_dropout=0.0, variant_option="name",
                      named_weights=timm_models.timm_weights))
