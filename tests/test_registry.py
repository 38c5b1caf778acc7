"""The architecture registry: one declaration per architecture, asked by everything else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from convnetlab.analysis.generations import generation_row
from convnetlab.callbacks import FinetuningSchedule
from convnetlab.lit import ImageClassifier
from convnetlab.models import build_model, classifier_name, get, names, registry
from convnetlab.models.registry import Architecture

SRC = Path(__file__).resolve().parents[1] / "src" / "convnetlab"
TORCHVISION_FAMILIES = [a for a in names() if get(a).torchvision_name]


@pytest.mark.parametrize("arch", TORCHVISION_FAMILIES)
def test_published_numbers_come_from_torchvision_meta_and_match_the_built_network(arch):
    meta = get(arch).published()
    with torch.device("meta"):
        model = build_model(arch)
    assert sum(p.numel() for p in model.parameters()) == meta["num_params"]
    assert 0 < meta["acc1"] < meta["acc5"] < 100
    assert registry.published_errors(arch)["top1_err"] == pytest.approx(100 - meta["acc1"])


def test_architectures_without_torchvision_weights_have_no_published_numbers():
    assert get("lenet5").published() is None and registry.published_errors("designnet") is None


def test_no_code_outside_the_registry_switches_on_architecture_names():
    families = "|".join(["lenet", "alexnet", "vgg", "googlenet", "resnet", "designnet", "linear_head"])
    switch = re.compile(rf"""arch(\.name)?\s*(==|!=|in\s*\()|startswith\(\(?["']({families})""")
    offenders = [f"{path.relative_to(SRC)}:{n}: {line.strip()}"
                 for path in SRC.rglob("*.py") if path.name != "architectures.py"
                 for n, line in enumerate(path.read_text().splitlines(), start=1) if switch.search(line)]
    assert not offenders, "switch on arch names outside models/architectures.py:\n" + "\n".join(offenders)


class _Tiny(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU())
        self.top = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(self.top(self.body(x)))


def test_one_registration_makes_an_architecture_work_everywhere(monkeypatch):
    tiny = Architecture("tiny", lambda num_classes, *, in_channels, input_size, width: _Tiny(num_classes, in_channels),
                        classifier="head", stages=lambda m: [("body", ["body"]), ("top", ["top"])],
                        reference_input=(3, 16, 10))
    monkeypatch.setitem(registry._REGISTRY, "tiny", tiny)
    assert "tiny" in names() and classifier_name("tiny") == "head"
    assert generation_row("tiny")["params"] == sum(p.numel() for p in _Tiny(10, 3).parameters())
    module = ImageClassifier(backbone={"arch": "tiny", "num_classes": 3, "in_channels": 3, "input_size": 16},
                             num_classes=3, optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1})
    phases = FinetuningSchedule(num_stages=None).resolve_phases(module)
    assert [(p.name, p.modules, p.epoch) for p in phases] == [("top", ("top",), 1), ("body", ("body",), 2)]
    with pytest.raises(ValueError, match="tiny has no dropout layer"):
        build_model("tiny", 3, dropout=0.1)


def test_registering_a_name_twice_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(get("resnet18"))
