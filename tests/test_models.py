"""Model zoo: torchvision-exact ImageNet settings, small-input training steps, LeNet-5, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.googlenet import GoogLeNetOutputs

from convnetlab.models import ARCHS, LeNet5, build_model, classifier_name, get

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"

# arch: (parameters, GFLOPs) at ImageNet settings, from torchvision's model docs.
IMAGENET = {
    "alexnet": (61_100_840, 0.714),
    "vgg11": (132_863_336, 7.609),
    "vgg11_bn": (132_868_840, 7.609),
    "vgg13": (133_047_848, 11.308),
    "vgg13_bn": (133_053_736, 11.308),
    "vgg16": (138_357_544, 15.470),
    "vgg16_bn": (138_365_992, 15.470),
    "vgg19": (143_667_240, 19.632),
    "vgg19_bn": (143_678_248, 19.632),
    "googlenet": (6_624_904, 1.498),
    "resnet18": (11_689_512, 1.814),
    "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
    "resnet152": (60_192_808, 11.514),
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def torchvision_model(arch: str) -> nn.Module:
    kwargs = {"init_weights": False} if arch.startswith(("vgg", "googlenet")) else {}
    if arch == "googlenet":
        kwargs["aux_logits"] = False
    return getattr(torchvision.models, arch)(weights=None, **kwargs)


# Networks with a backbone and a classifier (linear_head, the classifier trained on embeddings, is only a head;
# timm stands for a library of networks chosen by model.name: tests/test_timm.py).
CNNS = [arch for arch in ARCHS if get(arch).classifier is not None and get(arch).variant_option is None]


def test_every_torchvision_arch_is_covered():
    # designnet: the Findings ablation skeleton; linear_head: a classifier on saved embeddings
    assert set(ARCHS) == {"lenet5", "designnet", "linear_head", "timm", *IMAGENET}
    assert set(CNNS) == {"lenet5", "designnet", *IMAGENET}


# Parameters and FLOPs live on the meta device: exact shapes, no memory, no init cost.
@pytest.mark.parametrize("arch", IMAGENET)
def test_imagenet_settings_match_torchvision(arch):
    with torch.device("meta"):
        ours, theirs = build_model(arch).eval(), torchvision_model(arch)
        with FlopCounterMode(display=False) as counter:
            logits = ours(torch.empty(1, 3, 224, 224))
    params, gflops = IMAGENET[arch]
    assert logits.shape == (1, 1000)
    assert n_params(ours) == params
    assert round(counter.get_total_flops() / 2 / 1e9, 3) == gflops
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert all(ours_sd[k].shape == theirs_sd[k].shape for k in ours_sd)
    assert repr(ours).partition("\n")[2] == repr(theirs).partition("\n")[2]  # same layers, same order


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn", "googlenet", "alexnet"])
def test_torchvision_state_dict_loads_strict(arch):
    model = build_model(arch).eval()
    theirs = torchvision_model(arch).eval()
    model.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)  # adaptive pooling accepts it; keeps the comparison cheap
    with torch.no_grad():
        torch.testing.assert_close(model(x), theirs(x))


def sgd_step(model: nn.Module, x: torch.Tensor, classes: int) -> torch.Tensor:
    """One SGD step on random labels; returns the logits after checking every parameter got a
    finite gradient and moved (in eval mode only the head must move: at init, GoogLeNet's
    std-0.01 weights without batch statistics shrink early-layer updates below float32 ulp)."""
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, torch.randint(classes, (x.shape[0],)))
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    moved = []
    for (name, p), old in zip(model.named_parameters(), before):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        moved.append(not torch.equal(p, old))
    assert all(moved) if model.training else moved[-1]
    return logits


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("arch", CNNS)
def test_small_model_trains(arch, mode):
    torch.manual_seed(0)
    model = build_model(arch, 7, input_size=32, width=1.0 if arch == "lenet5" else 0.25)
    model.train(mode == "train")
    logits = sgd_step(model, torch.randn(4, 3, 32, 32), 7)
    assert isinstance(logits, torch.Tensor) and logits.shape == (4, 7)


@pytest.mark.parametrize("arch", ["lenet5", "alexnet", "vgg11_bn", "googlenet", "resnet50"])
def test_grayscale_input(arch):
    width = 1.0 if arch == "lenet5" else 0.25
    model = build_model(arch, 7, in_channels=1, input_size=32, width=width)
    assert sgd_step(model, torch.randn(4, 1, 32, 32), 7).shape == (4, 7)


def test_small_input_stems_and_heads():
    kw = {"num_classes": 10, "input_size": 32, "width": 0.25}
    resnet, googlenet = build_model("resnet18", **kw), build_model("googlenet", **kw)
    assert resnet.conv1.stride == (1, 1) and isinstance(resnet.maxpool, nn.Identity)
    assert googlenet.conv1.conv.stride == (1, 1)
    assert isinstance(googlenet.maxpool1, nn.Identity) and isinstance(googlenet.maxpool2, nn.Identity)
    assert build_model("alexnet", **kw).features[0].kernel_size == (3, 3)
    assert build_model("resnet18", **kw, small_input=False).conv1.stride == (2, 2)
    for arch in ("alexnet", "vgg11"):
        model = build_model(arch, **kw)
        assert model.avgpool.output_size == (1, 1)
        assert model.classifier[-1].in_features == 128  # max(64, 512 * 0.25)
        custom = build_model(arch, **kw, classifier_hidden=96, dropout=0.1)
        assert custom.classifier[-1].in_features == 96
        assert {m.p for m in custom.modules() if isinstance(m, nn.Dropout)} == {0.1}
    zero_init = build_model("resnet50", **kw, zero_init_residual=True)
    assert not zero_init.layer1[0].bn3.weight.any()


@pytest.mark.parametrize("arch", CNNS)
def test_classifier_name_points_at_the_head(arch):
    head = build_model(arch, 7, input_size=32, width=0.25 if arch != "lenet5" else 1.0)
    for part in classifier_name(arch).split("."):
        head = getattr(head, part)
    last = head if isinstance(head, nn.Linear) else [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    assert last.out_features == 7


def test_googlenet_aux_logits_opt_in():
    model = build_model("googlenet", 7, input_size=32, width=0.25, aux_logits=True).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, GoogLeNetOutputs) and out.aux_logits1.shape == (2, 7)
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_lenet_parameter_counts():
    modern = LeNet5(10, 1, variant="modern")
    classic = LeNet5(10, 1, variant="classic")
    assert n_params(modern) == n_params(classic) == 61_706  # C3 stores the masked entries too
    c3 = classic.features.c3
    assert int(c3.mask.sum()) * 25 + c3.bias.numel() == 1_516
    assert int(c3.mask.sum()) * 25 + 61_706 - c3.weight.numel() == 60_806


def test_lenet_masked_weights_stay_zero():
    torch.manual_seed(0)
    model = build_model("lenet5", 10, in_channels=1, input_size=32, variant="classic")
    c3 = model.features.c3
    unconnected = c3.mask.expand_as(c3.weight) == 0
    assert torch.all(c3.weight[unconnected] == 0)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(2):
        loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 32, 32)), torch.randint(10, (4,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.all(c3.weight[unconnected] == 0)
    assert torch.any(c3.weight[~unconnected] != 0)


def test_lenet_needs_32_pixels():
    with pytest.raises(ValueError, match=r"32x32.*data\.image_size=32"):
        build_model("lenet5", 10, in_channels=1, input_size=28)


def test_unknown_arch_lists_valid_names():
    with pytest.raises(ValueError, match="resnet18") as err:
        build_model("resnet19")
    assert all(arch in str(err.value) for arch in ARCHS)


def test_options_without_a_layer_are_rejected():
    with pytest.raises(ValueError, match="dropout"):
        build_model("resnet18", dropout=0.3)
    with pytest.raises(ValueError, match="classifier_hidden"):
        build_model("googlenet", classifier_hidden=256)


@pytest.mark.parametrize("arch", [arch for arch in ARCHS if (CONF_DIR / f"{arch}.yaml").is_file()])
def test_hydra_config_instantiates(arch):
    """One plain config per architecture, composed as a run composes it (sized variants: test_config)."""
    from hydra import compose, initialize_config_dir

    from convnetlab.cli.hydra_app import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR.parent), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={arch}", "data.num_classes=5", "data.channels=1"])
    assert cfg.model.arch == arch
    with torch.device("meta"):  # wiring only; forward shapes without compute
        model = instantiate(cfg.model).eval()
        assert model(torch.empty(2, 1, 32, 32)).shape == (2, 5)
