"""Findings building blocks: DesignNet's swappable parts, filter structure, time to accuracy, the
generations table and the sweep-to-table report."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

from convnetlab.analysis import findings
from convnetlab.analysis.complexity import count_parameters
from convnetlab.analysis.filter_structure import filters_at_init_and_trained, low_frequency_share, noise_share
from convnetlab.analysis.generations import generations_table
from convnetlab.callbacks import TimeToAccuracy
from convnetlab.summary import callback_metrics
from convnetlab.errors import InputError
from convnetlab.models import build_model


def weighted_layers(model: nn.Module, skip: str = "shortcut") -> int:
    return sum(isinstance(m, nn.Conv2d | nn.Linear) and skip not in name for name, m in model.named_modules())


@pytest.mark.parametrize("depth", [8, 20, 32])
@pytest.mark.parametrize("block", ["plain", "residual"])
def test_designnet_depth_counts_weighted_layers_as_the_resnet_paper(block, depth):
    model = build_model("designnet", 10, input_size=32, block=block, depth=depth)
    assert weighted_layers(model) == depth
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_residual_block_adds_its_input_and_plain_block_does_not():
    torch.manual_seed(0)
    plain = build_model("designnet", 10, block="plain", depth=8, norm=False).features[1]
    residual = build_model("designnet", 10, block="residual", depth=8, norm=False).features[1]
    residual.load_state_dict(plain.state_dict())
    x = torch.randn(2, 16, 8, 8)
    branch = plain.conv2(plain.conv1(x))
    assert torch.allclose(plain(x), torch.relu(branch))
    assert torch.allclose(residual(x), torch.relu(branch + x))


@pytest.mark.parametrize(("kernel", "ratio"), [(5, 18 / 25), (7, 27 / 49)])
def test_stacked_3x3_convs_have_the_textbook_parameter_ratio_at_equal_width(kernel, ratio):
    def conv_weights(block: str) -> int:
        model = build_model("designnet", 10, widths=[32, 32, 32], block=block, kernel=kernel, norm=False)
        return sum(m.weight.numel() for m in model.features[1:].modules() if isinstance(m, nn.Conv2d))

    assert conv_weights("stack3") / conv_weights("conv") == pytest.approx(ratio)


def test_stack3_has_the_receptive_field_of_one_large_kernel():
    def receptive_field(block: str) -> int:
        model = build_model("designnet", 10, widths=[8, 8, 8], block=block, kernel=7).features[1]
        torch.manual_seed(0)
        x = torch.randn(1, 8, 21, 21, requires_grad=True)
        model.eval()(x)[0, :, 10, 10].sum().backward()
        return int((x.grad.abs().sum((0, 1)) > 0).any(0).sum())

    assert receptive_field("stack3") == receptive_field("conv") == 7


def test_one_by_one_reductions_shrink_the_inception_module():
    reduced = build_model("designnet", 10, widths=[32, 64, 128], block="inception")
    naive = build_model("designnet", 10, widths=[32, 64, 128], block="inception_naive")
    assert count_parameters(reduced) < count_parameters(naive) / 2
    assert reduced(torch.randn(2, 3, 32, 32)).shape == naive(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_gap_head_has_no_hidden_layers_and_fc_head_flattens_the_last_map():
    gap = build_model("designnet", 10, input_size=32, widths=[32, 64, 128], head="gap")
    fc = build_model("designnet", 10, input_size=32, widths=[32, 64, 128], head="fc", classifier_hidden=256)
    assert count_parameters(gap.classifier) == 128 * 10 + 10
    assert count_parameters(fc.classifier) == (128 * 8 * 8 + 1) * 256 + 257 * 256 + 257 * 10  # 3 stages, 2 pools
    assert fc(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"block": "nope"}, "unknown block 'nope'"),
    ({"activation": "gelu"}, "unknown activation 'gelu'"),
    ({"block": "plain", "depth": 10}, "depth = 6n + 2"),
    ({"block": "conv", "depth": 8}, "needs block=plain|residual"),
    ({"kernel": 4}, "kernel must be odd"),
])
def test_designnet_rejects_bad_settings_with_a_message_naming_them(kwargs, message):
    with pytest.raises(InputError, match=message.replace("|", r"\|").replace("+", r"\+")):
        build_model("designnet", 10, **kwargs)


def test_low_frequency_share_is_at_noise_level_for_random_and_one_for_constant_kernels():
    torch.manual_seed(0)
    for k in (3, 5, 7, 11):
        assert low_frequency_share(torch.randn(256, 3, k, k)) == pytest.approx(noise_share(k), rel=0.1)
        assert low_frequency_share(torch.ones(4, 3, k, k)) == pytest.approx(1.0)
    assert noise_share(3) == pytest.approx(1 / 9) and noise_share(7) == pytest.approx(9 / 49)


def test_filters_at_init_and_trained_leaves_the_callers_rng_alone(tmp_path):
    """The initial weights are drawn with the run's seed from a forked RNG: the caller's stream goes on."""
    import pytorch_lightning as pl

    from convnetlab.lit import ImageClassifier

    backbone = {"_target_": "convnetlab.models.build_model", "arch": "lenet5", "num_classes": 4, "in_channels": 1,
                "input_size": 32}
    module = ImageClassifier(backbone=backbone, num_classes=4, optimizer={"_target_": "torch.optim.SGD", "_partial_": True,
                             "lr": 0.1}, mean=[0.5], std=[0.25])
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": pl.__version__}, ckpt)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    stats, png = filters_at_init_and_trained(ckpt, tmp_path / "pictures" / "filters.png")
    assert torch.equal(torch.get_rng_state(), before)
    again, _ = filters_at_init_and_trained(ckpt, tmp_path / "again.png")
    assert again == stats and png.stat().st_size > 1000  # the same initial draw each time, and a picture


def test_time_to_accuracy_reports_the_first_epoch_at_target_to_the_run_summary(tmp_path):
    callback = TimeToAccuracy(target=0.5)
    callback.on_fit_start(None, None)
    for epoch, acc in enumerate([0.2, 0.55, 0.4, 0.7]):
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, callback_metrics={"val/acc1": torch.tensor(acc)})
        callback.on_validation_end(trainer, None)
    metrics = callback_metrics([callback], trainer)
    assert metrics["val/epochs_to_target"] == 2 and metrics["val/target"] == 0.5
    assert 0 < metrics["val/seconds_to_target"] < 60
    assert not (tmp_path / "metrics.json").exists()  # callbacks report; the entry point writes


def test_time_to_accuracy_reports_null_when_never_reached():
    callback = TimeToAccuracy(target=0.9)
    callback.on_fit_start(None, None)
    callback.on_validation_end(SimpleNamespace(sanity_checking=False, current_epoch=0,
                                               callback_metrics={"val/acc1": torch.tensor(0.3)}), None)
    metrics = callback.summary_metrics(None)
    assert metrics["val/epochs_to_target"] is None and metrics["val/seconds_to_target"] is None


def test_time_to_accuracy_survives_a_resume(tmp_path):
    before = TimeToAccuracy(target=0.5)
    before.on_fit_start(None, None)
    before.on_validation_end(SimpleNamespace(sanity_checking=False, current_epoch=2,
                                             callback_metrics={"val/acc1": torch.tensor(0.6)}), None)
    after = TimeToAccuracy(target=0.5)
    after.load_state_dict(before.state_dict())
    after.on_fit_start(None, None)
    assert (after.epochs, after.seconds) == (3, before.seconds)
    assert after.elapsed() >= before.seconds  # the clock continues from where the run stopped


def test_generations_table_matches_the_published_parameter_counts():
    rows = {r["model"]: r for r in generations_table(["alexnet", "googlenet"])}
    assert rows["alexnet"]["params"] == 61_100_840 and rows["googlenet"]["params"] == 6_624_904
    assert rows["alexnet"]["fc_params"] / rows["alexnet"]["params"] > 0.95  # AlexNet's weight is in its FC layers
    with_aux = rows["googlenet + aux heads"]
    assert with_aux["params"] == 6_624_904 + with_aux["aux_params"] and with_aux["aux_params"] > 6e6
    assert rows["googlenet"]["gflops"] == pytest.approx(1.498, abs=1e-3)


def fake_job(sweep: Path, num: int, overrides: list[str], metrics: dict) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "metrics.json").write_text(json.dumps(metrics))


def test_sweep_rows_group_seeds_and_keep_the_sweep_order(tmp_path):
    for num, (block, seed, acc) in enumerate([("plain", 1, 0.5), ("plain", 2, 0.7), ("residual", 1, 0.9), ("residual", 2, 0.8)]):
        fake_job(tmp_path, num, [f"model.block={block}", f"seed={seed}", "experiment=findings/depth"], {"val/acc1": acc})
    (tmp_path / "9" / ".hydra").mkdir(parents=True)  # a job that crashed before metrics.json: skipped
    (tmp_path / "9" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model.block=conv", "seed=1"]))
    rows = findings.group_jobs(findings.load_jobs(tmp_path))
    assert [r.label for r in rows] == ["block=plain", "block=residual"]
    assert rows[0].mean("val/acc1") == pytest.approx(0.6) and rows[0].std("val/acc1") == pytest.approx(0.1414, abs=1e-4)
    table = findings.to_markdown(rows, {"val/acc1": ("val top-1", "{:.1%}")})
    assert "| block=plain | 2 | 60.0% ± 14.1% |" in table and "| block=residual | 2 | 85.0% ± 7.1% |" in table


@pytest.mark.parametrize(("columns", "plot", "post", "message"), [
    ({"val/acc1": ["val top-1", "a", "{:.1%}"]}, {"y": "val/acc1"}, {}, "give \\[header, format\\]"),
    ({"val/acc1": ["val top-1", "{:.1%}"]}, {"y": "test/acc1"}, {}, "plot.y='test/acc1' is not one of"),
    ({"val/acc1": ["val top-1", "{:.1%}"]}, {"y": "val/acc1"}, {"nope": {}}, "unknown finding.post step 'nope'"),
])
def test_finding_report_rejects_a_bad_spec_before_the_sweep_runs(columns, plot, post, message):
    from convnetlab.cli.findings import FindingReport

    with pytest.raises(InputError, match=message):
        FindingReport("x", "claim", columns, plot, post)
