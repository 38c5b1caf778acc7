"""Attribution maps (captum) and the model-parameter randomisation test that checks them.

Every method has the signature ``method(model, inputs, targets) -> (N, H, W)`` non-negative maps,
where ``model`` maps normalised inputs to logits (``module.backbone``, in eval mode) and ``inputs``
are normalised images (``module.normalize(uint8)``). That one signature lets ``sanity_check`` run
any method, including ``input_edges``, a reference that never looks at the model.

Sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps"): re-draw every weight of the
network (same architecture), compute the same maps and measure the mean Spearman rank correlation
between the trained and the randomised maps. A map that explains what the network learned must
change when what it learned is destroyed; above ``SANITY_THRESHOLD`` (more than half of the pixel
ranking survives randomisation) the method is flagged: it mostly shows the input and the architecture
(edges, contrast, where receptive fields overlap), not what the weights learned. A constant map ranks
nothing and counts as similarity 0.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
from torch import Tensor, nn

from convnetlab.analysis.hooks import capture_outputs
from convnetlab.errors import InputError

SANITY_THRESHOLD = 0.5
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

Method = Callable[[nn.Module, Tensor, Tensor], Tensor]


def _logits(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """The model's main logits (torchvision GoogLeNet may return a (logits, aux...) tuple)."""

    def forward(x: Tensor) -> Tensor:
        out = model(x)
        return out[0] if isinstance(out, tuple) else out

    return forward


def _per_class_loss(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """-log softmax: column ``t`` is the cross-entropy loss the sample would have with label ``t``,
    so captum's ``target=labels`` differentiates the loss itself."""
    logits = _logits(model)
    return lambda x: -F.log_softmax(logits(x), dim=1)


def _rng_devices(tensor: Tensor) -> list[int]:
    return [tensor.device.index or 0] if tensor.is_cuda else []


def _leaf(inputs: Tensor) -> Tensor:
    """A fresh input leaf that requires grad, so the caller's tensor is never touched."""
    return inputs.detach().clone().requires_grad_(True)


def saliency(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Simonyan et al. 2014: |d loss / d input|, max over channels, one value per pixel."""
    attr = Saliency(_per_class_loss(model)).attribute(_leaf(inputs), target=targets, abs=True)
    return attr.amax(dim=1).detach()


def smoothgrad(
    model: nn.Module, inputs: Tensor, targets: Tensor, samples: int = 25, noise: float = 0.15, seed: int = 0
) -> Tensor:
    """Smilkov et al. 2017: the saliency map averaged over ``samples`` noisy copies of the input.

    ``noise`` is the Gaussian std as a fraction of the batch's value range (the paper's 10-20%).
    Noise comes from a forked, seeded RNG, so maps are reproducible and training RNG is untouched.
    """
    stdev = noise * (inputs.max() - inputs.min()).item()
    with torch.random.fork_rng(devices=_rng_devices(inputs)):
        torch.manual_seed(seed)
        attr = NoiseTunnel(Saliency(_per_class_loss(model))).attribute(
            _leaf(inputs), nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=min(samples, 8),
            stdevs=stdev, target=targets, abs=True)
    return attr.amax(dim=1).detach()


def grad_cam(model: nn.Module, inputs: Tensor, targets: Tensor, layer: str) -> Tensor:
    """Selvaraju et al. 2017 at sub-module ``layer``: ReLU of the gradient-weighted channel sum of its
    output for the target logit, upsampled bilinearly to the input size (so it stays >= 0)."""
    cam = LayerGradCam(_logits(model), model.get_submodule(layer)).attribute(
        _leaf(inputs), target=targets, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), interpolate_mode="bilinear")[:, 0].detach()


def input_edges(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Sobel edge magnitude of the input, max over channels: ignores the model entirely, which makes
    it the reference a method must beat in ``sanity_check`` (its similarity is exactly 1)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=inputs.device)
    kernels = torch.stack([kx, kx.T]).unsqueeze(1)
    n, c, h, w = inputs.shape
    padded = F.pad(inputs.detach().float().reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="replicate")  # no frame edge
    grads = F.conv2d(padded, kernels)
    return grads.norm(dim=1).reshape(n, c, h, w).amax(dim=1)


@torch.no_grad()
def last_conv_stage(backbone: nn.Module, inputs: Tensor) -> str:
    """Name of the last sub-module whose output is still a spatial map (> 1 pixel), pooling excluded.

    Found from one forward pass, so it works for every family: ``layer4`` (ResNet), ``inception5b``
    (GoogLeNet), the last ReLU of ``features`` (AlexNet/VGG) and ``features.act3`` (LeNet-5, whose
    C5 output is 1x1 on 32 px). A container ending in a pool shares the pool's output and is skipped.
    """
    with capture_outputs(backbone) as outputs:
        backbone(inputs[:1])
    maps = {name: out for name, out in outputs.items() if out.ndim == 4}
    pooled = [out for name, out in maps.items() if isinstance(backbone.get_submodule(name), POOLS)]
    for name, out in reversed(maps.items()):
        if min(out.shape[-2:]) > 1 and not any(out is p for p in pooled):  # pools, and containers ending in one
            return name
    raise InputError(f"{type(backbone).__name__} has no layer with a spatial output larger than 1 pixel")


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy with every layer re-initialised (``reset_parameters``: weights, biases, BN statistics)."""
    clone = copy.deepcopy(model)
    param = next(model.parameters())
    with torch.random.fork_rng(devices=_rng_devices(param)):
        torch.manual_seed(seed)
        for module in clone.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    return clone


def _ranks(x: Tensor) -> Tensor:
    """1-based ranks, ties sharing their average rank (the Spearman convention)."""
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return (ends - (counts - 1).double() / 2)[inverse]


def _pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation; 0 when a map is constant (it ranks nothing)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denominator = a.norm() * b.norm()
    return float(a @ b / denominator) if denominator > 0 else 0.0


def map_similarity(a: Tensor, b: Tensor) -> tuple[float, float]:
    """(Spearman, Pearson) correlation between the absolute values of two maps of one image."""
    a, b = a.detach().abs().flatten().cpu(), b.detach().abs().flatten().cpu()
    return _pearson(_ranks(a), _ranks(b)), _pearson(a, b)


@dataclass
class SanityResult:
    """Mean similarities over the images, the verdict, and the maps behind them."""

    spearman: float
    pearson: float
    flagged: bool
    trained: Tensor
    randomized: Tensor

    def summary(self) -> dict[str, float | bool]:
        return {"spearman": self.spearman, "pearson": self.pearson, "flagged": self.flagged}


def sanity_check(
    method: Method, model: nn.Module, inputs: Tensor, targets: Tensor, seed: int = 0,
    threshold: float = SANITY_THRESHOLD,
) -> SanityResult:
    """Model-parameter randomisation test of ``method``: flagged when the mean Spearman similarity of
    trained and randomised maps exceeds ``threshold`` (the maps barely depend on the weights)."""
    trained = method(model, inputs, targets).detach()
    randomized = method(randomized_copy(model, seed), inputs, targets).detach()
    pairs = [map_similarity(t, r) for t, r in zip(trained, randomized)]
    spearman = sum(s for s, _ in pairs) / len(pairs)
    pearson = sum(p for _, p in pairs) / len(pairs)
    return SanityResult(spearman, pearson, spearman > threshold, trained, randomized)
