"""Model zoo: torchvision's classic CNN families, parametrised so one code path serves ImageNet
and small CPU datasets.

With the defaults (num_classes=1000, in_channels=3, input_size=224, width=1, "auto" options) each
model is structurally identical to ``torchvision.models.<arch>(weights=None)`` (GoogLeNet with
``aux_logits=False``), so torchvision state dicts load with ``strict=True``. The families subclass
torchvision's classes and reuse their blocks, ``make_layers``/``cfgs`` and ``forward``; only
``__init__`` is ours, because torchvision's constructors hard-code channel counts, the RGB stem
and the classifier.

Options for small inputs and CPUs:

- ``small_input`` ("auto" means ``input_size < 112``): ResNet gets the CIFAR stem (3x3 stride-1
  ``conv1``, ``maxpool`` -> Identity); GoogLeNet a 3x3 stride-1 ``conv1`` with ``maxpool1`` and
  ``maxpool2`` -> Identity; AlexNet a 3x3 stride-1 first conv (its three pools then leave 3x3 maps
  at 32 px); VGG keeps its features (five pools take 32 px to 1x1). AlexNet/VGG also replace the
  6x6/7x7 ``avgpool`` with a global one, so the classifier is C*1*1 -> hidden -> hidden -> classes.
- ``classifier_hidden`` (AlexNet/VGG only): "auto" is 4096, or ``max(64, round(512 * width))``
  with small_input; an int overrides.
- ``width`` scales every conv channel count to ``max(8, round(c * width))`` (ResNet stage widths,
  GoogLeNet inception branches, ...); LeNet-5 uses a floor of 1. width=1 is exact.
- ``in_channels`` sets the first conv's input channels (e.g. 1 for grayscale digits).
- ``dropout`` (AlexNet/VGG/GoogLeNet only): None keeps the family default (0.5/0.5/0.2).
- ``arch_kwargs``: resnet ``zero_init_residual``; googlenet ``aux_logits`` (default False; if
  True, train mode returns torchvision's ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``
  instead of a tensor) and ``transform_input`` (default False: inputs are normalised by the data
  pipeline); designnet ``widths``, ``block``, ``kernel``, ``depth``, ``norm``, ``activation``, ``head``
  (see :mod:`convnetlab.models.design_net`, the ablation skeleton of the README's Findings); lenet5
  ``variant`` and ``c3_table`` (see :mod:`convnetlab.models.lenet`, which is
  32 px only and ignores ``small_input``).

Options that a family has no layer for (e.g. ``dropout`` for ResNet) raise instead of being
silently ignored.

``weights`` (``pretrained=True`` is its old alias for ``DEFAULT``) starts from torchvision weights in
the local torch cache or from a checkpoint / state-dict file, with a fresh classifier for
``num_classes``; see :mod:`convnetlab.models.weights`.
"""

from typing import Any

from torch import nn
from torchvision.models.alexnet import AlexNet
from torchvision.models.googlenet import BasicConv2d, GoogLeNet, Inception, InceptionAux
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.vgg import VGG, cfgs, make_layers

from convnetlab.models import weights as pretrained_weights
from convnetlab.models.design_net import DesignNet
from convnetlab.models.lenet import LeNet5
from convnetlab.errors import InputError

_VGG_CFGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
_RESNETS: dict[str, tuple[type[BasicBlock | Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}
# name: (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), as in torchvision's GoogLeNet.
_INCEPTIONS = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
ARCHS: tuple[str, ...] = (
    "lenet5",
    "alexnet",
    *(f"{vgg}{bn}" for vgg in _VGG_CFGS for bn in ("", "_bn")),
    "googlenet",
    *_RESNETS,
    "designnet",
)


def _ch(channels: int, width: float) -> int:
    """Scaled conv width; the floor of 8 keeps thin models' BatchNorm statistics meaningful."""
    return max(8, round(channels * width))


def _he_init(model: nn.Module, linear_std: float | None) -> None:
    """torchvision's ResNet/VGG init: He-normal convs, unit BN, and N(0, std) linears if given."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


class _AlexNet(AlexNet):
    """torchvision AlexNet (same layer indices) with width, stem and head options."""

    def __init__(
        self, num_classes: int, in_channels: int, width: float, small: bool, hidden: int, dropout: float
    ) -> None:
        nn.Module.__init__(self)
        c1, c2, c3, c4, c5 = (_ch(c, width) for c in (64, 192, 384, 256, 256))
        stem = (
            nn.Conv2d(in_channels, c1, kernel_size=3, padding=1)
            if small
            else nn.Conv2d(in_channels, c1, kernel_size=11, stride=4, padding=2)
        )
        self.features = nn.Sequential(
            stem,
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        pool = 1 if small else 6
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c5 * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )


class _VGG(VGG):
    """torchvision VGG built from its ``cfgs``/``make_layers`` with width, stem and head options."""

    def __init__(
        self,
        cfg: str,
        batch_norm: bool,
        num_classes: int,
        in_channels: int,
        width: float,
        small: bool,
        hidden: int,
        dropout: float,
    ) -> None:
        nn.Module.__init__(self)
        self.features = make_layers([v if v == "M" else _ch(v, width) for v in cfgs[cfg]], batch_norm)
        if in_channels != 3:  # make_layers hard-codes RGB
            self.features[0] = nn.Conv2d(in_channels, self.features[0].out_channels, 3, padding=1)
        pool = 1 if small else 7
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(_ch(512, width) * pool * pool, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        _he_init(self, linear_std=0.01)


class _ResNet(ResNet):
    """torchvision ResNet (its blocks, ``_make_layer`` and ``forward``) with stage widths
    64w..512w and an optional CIFAR stem."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int,
        in_channels: int,
        width: float,
        small: bool,
        zero_init_residual: bool = False,
    ) -> None:
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.dilation, self.groups, self.base_width = 1, 1, 64  # what _make_layer expects
        self.inplanes = _ch(64, width)
        if small:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, _ch(64, width), layers[0])
        self.layer2 = self._make_layer(block, _ch(128, width), layers[1], stride=2)
        self.layer3 = self._make_layer(block, _ch(256, width), layers[2], stride=2)
        self.layer4 = self._make_layer(block, _ch(512, width), layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        _he_init(self, linear_std=None)
        if zero_init_residual:  # each residual branch starts as identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)


class _GoogLeNet(GoogLeNet):
    """torchvision GoogLeNet (its Inception/BasicConv2d blocks and ``forward``) with scaled
    branch widths and an optional small-input stem."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        width: float,
        small: bool,
        dropout: float,
        aux_logits: bool = False,
        transform_input: bool = False,
    ) -> None:
        if transform_input and in_channels != 3:
            raise InputError("transform_input re-normalises RGB inputs; it needs in_channels=3")
        nn.Module.__init__(self)
        self.aux_logits, self.transform_input = aux_logits, transform_input
        c64, c192 = _ch(64, width), _ch(192, width)
        if small:
            self.conv1 = BasicConv2d(in_channels, c64, kernel_size=3, stride=1, padding=1)
        else:
            self.conv1 = BasicConv2d(in_channels, c64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.Identity() if small else nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(c64, c64, kernel_size=1)
        self.conv3 = BasicConv2d(c64, c192, kernel_size=3, padding=1)
        self.maxpool2 = nn.Identity() if small else nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels, out = c192, {}
        for name, branches in _INCEPTIONS.items():
            b1, b2r, b2, b3r, b3, b4 = (_ch(c, width) for c in branches)
            setattr(self, name, Inception(channels, b1, b2r, b2, b3r, b3, b4))
            channels = out[name] = b1 + b2 + b3 + b4
            if name == "inception3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "inception4e":
                self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.aux1 = InceptionAux(out["inception4a"], num_classes) if aux_logits else None
        self.aux2 = InceptionAux(out["inception4d"], num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():  # torchvision's init_weights=True
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise InputError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")


def classifier_name(arch: str) -> str:
    """Attribute path of the final classifier module, e.g. to swap the head for fine-tuning."""
    _check_arch(arch)
    return "fc" if arch == "googlenet" or arch.startswith("resnet") else "classifier"  # AlexNet, VGG, LeNet-5, DesignNet


def build_model(
    arch: str,
    num_classes: int = 1000,
    *,
    in_channels: int = 3,
    input_size: int = 224,
    width: float = 1.0,
    small_input: bool | str = "auto",
    classifier_hidden: int | str = "auto",
    dropout: float | None = None,
    weights: str | None = None,
    pretrained: bool = False,
    **arch_kwargs: Any,
) -> nn.Module:
    """Build ``arch`` mapping (N, in_channels, input_size, input_size) to (N, num_classes) logits.

    See the module docstring for the options; the defaults give torchvision's ImageNet models.
    """
    _check_arch(arch)
    weights = pretrained_weights.resolve_weights(weights, pretrained)
    if weights is not None:
        small_input, arch_kwargs = pretrained_weights.build_kwargs_for_weights(arch, weights, small_input, arch_kwargs)
        model = build_model(arch, num_classes, in_channels=in_channels, input_size=input_size, width=width,
                            small_input=small_input, classifier_hidden=classifier_hidden, dropout=dropout, **arch_kwargs)
        pretrained_weights.load_pretrained(model, arch, weights)
        return model
    if width <= 0:
        raise InputError(f"width must be positive, got {width}")
    has_mlp_head = arch in ("alexnet", "designnet") or arch.startswith("vgg")
    if classifier_hidden != "auto" and not has_mlp_head:
        raise InputError(f"classifier_hidden applies to AlexNet/VGG only, not {arch}")
    if dropout is not None and not (has_mlp_head or arch == "googlenet"):
        raise InputError(f"{arch} has no dropout layer; leave dropout=None")

    if arch == "designnet":  # 32-64 px ablation skeleton; small_input does not apply
        widths = [max(4, round(c * width)) for c in arch_kwargs.pop("widths", (16, 32, 64))]
        if classifier_hidden != "auto":
            arch_kwargs["hidden"] = classifier_hidden
        return DesignNet(num_classes, in_channels, input_size, widths=tuple(widths), dropout=dropout or 0.0,
                         **arch_kwargs)
    if arch == "lenet5":
        if input_size != 32:
            raise InputError(
                f"LeNet-5 needs 32x32 inputs, got input_size={input_size}; set data.image_size=32"
            )
        return LeNet5(num_classes, in_channels, width=width, **arch_kwargs)

    if small_input == "auto":
        small = input_size < 112
    elif isinstance(small_input, bool):
        small = small_input
    else:
        raise InputError(f"small_input must be a bool or 'auto', got {small_input!r}")

    if arch in _RESNETS:
        block, layers = _RESNETS[arch]
        return _ResNet(block, layers, num_classes, in_channels, width, small, **arch_kwargs)
    if arch == "googlenet":
        drop = 0.2 if dropout is None else dropout
        return _GoogLeNet(num_classes, in_channels, width, small, drop, **arch_kwargs)

    if classifier_hidden == "auto":
        hidden = max(64, round(512 * width)) if small else 4096
    elif isinstance(classifier_hidden, int) and classifier_hidden > 0:
        hidden = classifier_hidden
    else:
        raise InputError(f"classifier_hidden must be a positive int or 'auto', got {classifier_hidden!r}")
    drop = 0.5 if dropout is None else dropout
    if arch == "alexnet":
        return _AlexNet(num_classes, in_channels, width, small, hidden, drop, **arch_kwargs)
    vgg = arch.removesuffix("_bn")
    return _VGG(_VGG_CFGS[vgg], vgg != arch, num_classes, in_channels, width, small, hidden, drop, **arch_kwargs)
