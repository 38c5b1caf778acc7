"""torchvision's published ImageNet-1k accuracies (weights ``.meta``; see REFERENCE.md), to print beside ours."""

from __future__ import annotations

# arch: (acc@1, acc@5) in percent, IMAGENET1K_V1 weights, single 224 crop after resize 256.
TORCHVISION_IMAGENET1K_V1: dict[str, tuple[float, float]] = {
    "alexnet": (56.522, 79.066),
    "vgg11": (69.020, 88.628), "vgg11_bn": (70.370, 89.810),
    "vgg13": (69.928, 89.246), "vgg13_bn": (71.586, 90.374),
    "vgg16": (71.592, 90.382), "vgg16_bn": (73.360, 91.516),
    "vgg19": (72.376, 90.876), "vgg19_bn": (74.218, 91.842),
    "googlenet": (69.778, 89.530),
    "resnet18": (69.758, 89.078), "resnet34": (73.314, 91.420), "resnet50": (76.130, 92.862),
    "resnet101": (77.374, 93.546), "resnet152": (78.312, 94.046),
}


def published_errors(arch: str) -> dict[str, float] | None:
    """Top-1/top-5 error (%) of torchvision's V1 weights for ``arch``, or None if it has none."""
    if arch not in TORCHVISION_IMAGENET1K_V1:
        return None
    acc1, acc5 = TORCHVISION_IMAGENET1K_V1[arch]
    return {"top1_err": 100.0 - acc1, "top5_err": 100.0 - acc5}
