"""Model zoo: torchvision's classic CNN families, parametrised so one code path serves ImageNet
and small CPU datasets.

With the defaults (num_classes=1000, in_channels=3, input_size=224, width=1, "auto" options) each
model is structurally identical to ``torchvision.models.<arch>(weights=None)`` (GoogLeNet with
``aux_logits=False``), so torchvision state dicts load with ``strict=True``. The families subclass
torchvision's classes and reuse their blocks, ``make_layers``/``cfgs`` and ``forward``; only
``__init__`` is ours, because torchvision's constructors hard-code channel counts, the RGB stem
and the classifier.

The options (``width``, ``small_input``, ``classifier_hidden``, ``dropout``, ...) are resolved by
:func:`convnetlab.models.build.build_model`; the ``build_*`` functions here take them resolved.
"""

from torch import nn
from torchvision.models.alexnet import AlexNet
from torchvision.models.googlenet import BasicConv2d, GoogLeNet, Inception, InceptionAux
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.vgg import VGG, cfgs, make_layers

from convnetlab.errors import InputError

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


def _mlp_hidden(classifier_hidden: int | str, small: bool, width: float) -> int:
    """AlexNet/VGG hidden width: "auto" is 4096, or ``max(64, round(512 * width))`` for small inputs."""
    if classifier_hidden == "auto":
        return max(64, round(512 * width)) if small else 4096
    if isinstance(classifier_hidden, int) and classifier_hidden > 0:
        return classifier_hidden
    raise InputError(f"classifier_hidden must be a positive int or 'auto', got {classifier_hidden!r}")


def build_alexnet(num_classes: int, *, in_channels: int, input_size: int, width: float, small: bool,
                  classifier_hidden: int | str, dropout: float) -> nn.Module:
    return _AlexNet(num_classes, in_channels, width, small, _mlp_hidden(classifier_hidden, small, width), dropout)


def build_vgg(cfg: str, batch_norm: bool, num_classes: int, *, in_channels: int, input_size: int, width: float,
              small: bool, classifier_hidden: int | str, dropout: float) -> nn.Module:
    hidden = _mlp_hidden(classifier_hidden, small, width)
    return _VGG(cfg, batch_norm, num_classes, in_channels, width, small, hidden, dropout)


def build_resnet(block: type[BasicBlock | Bottleneck], layers: list[int], num_classes: int, *, in_channels: int,
                 input_size: int, width: float, small: bool, zero_init_residual: bool = False) -> nn.Module:
    return _ResNet(block, layers, num_classes, in_channels, width, small, zero_init_residual)


def build_googlenet(num_classes: int, *, in_channels: int, input_size: int, width: float, small: bool, dropout: float,
                    aux_logits: bool = False, transform_input: bool = False) -> nn.Module:
    return _GoogLeNet(num_classes, in_channels, width, small, dropout, aux_logits, transform_input)
