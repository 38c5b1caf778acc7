"""Findings building blocks: DesignNet's swappable parts, filter structure, time to accuracy, the
generations table and the sweep-to-table report."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import math
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from convnetlab.analysis import findings, verdicts
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
    assert again == stats  # the same initial draw each time
    trained_conv = module.backbone.get_submodule(next(n for n, m in module.backbone.named_modules()
                                                      if isinstance(m, nn.Conv2d)))
    assert stats["filters/first_trained"] == pytest.approx(low_frequency_share(trained_conv.weight))
    assert stats["filters/first_noise"] == pytest.approx(noise_share(5))  # LeNet-5's 5x5 kernels
    picture = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert picture.shape[0] > 300 and picture.std() > 10  # four kernel grids drawn, not a blank canvas


def fake_clock(monkeypatch, *readings: float) -> None:
    """time.perf_counter as seen by TimeToAccuracy returns ``readings`` in turn."""
    ticks = iter(readings)
    monkeypatch.setattr("convnetlab.callbacks.time_to_accuracy.time", SimpleNamespace(perf_counter=lambda: next(ticks)))


def test_time_to_accuracy_reports_the_first_epoch_at_target_to_the_run_summary(tmp_path, monkeypatch):
    fake_clock(monkeypatch, 100.0, 107.25)  # fit start; the validation that reaches the target (epoch 2)
    callback = TimeToAccuracy(target=0.5)
    callback.on_fit_start(None, None)
    for epoch, acc in enumerate([0.2, 0.55, 0.4, 0.7]):
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, callback_metrics={"val/acc1": torch.tensor(acc)})
        callback.on_validation_end(trainer, None)
    metrics = callback_metrics([callback], trainer)
    assert metrics["val/epochs_to_target"] == 2 and metrics["val/target"] == 0.5
    assert metrics["val/seconds_to_target"] == 7.25  # the clock is read at fit start and at the first hit only
    assert not (tmp_path / "metrics.json").exists()  # callbacks report; the entry point writes


def test_time_to_accuracy_reports_null_when_never_reached():
    callback = TimeToAccuracy(target=0.9)
    callback.on_fit_start(None, None)
    callback.on_validation_end(SimpleNamespace(sanity_checking=False, current_epoch=0,
                                               callback_metrics={"val/acc1": torch.tensor(0.3)}), None)
    metrics = callback.summary_metrics(None)
    assert metrics["val/epochs_to_target"] is None and metrics["val/seconds_to_target"] is None


def test_time_to_accuracy_survives_a_resume(tmp_path, monkeypatch):
    # before: fit start 10, target reached at 14, checkpoint at 16; after: fit start 500, asked at 503
    fake_clock(monkeypatch, 10.0, 14.0, 16.0, 500.0, 503.0)
    before = TimeToAccuracy(target=0.5)
    before.on_fit_start(None, None)
    before.on_validation_end(SimpleNamespace(sanity_checking=False, current_epoch=2,
                                             callback_metrics={"val/acc1": torch.tensor(0.6)}), None)
    state = before.state_dict()
    tested = TimeToAccuracy(target=0.5)  # a test of that checkpoint in a new trainer: its fit never ran
    tested.setup(None, None, "test")
    tested.load_state_dict(state)
    assert (tested.epochs, tested.seconds) == (None, None)
    after = TimeToAccuracy(target=0.5)
    after.setup(None, None, "fit")  # Lightning sets up before it restores
    after.load_state_dict(state)
    after.on_fit_start(None, None)
    assert (after.epochs, after.seconds) == (3, 4.0)
    assert after.elapsed() == 6.0 + 3.0  # the clock continues from where the run stopped


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


@pytest.mark.parametrize(("verdict", "message"), [
    ([{"column": "test/acc1", "higher": "block=a", "than": "block=b"}],
     r"finding.verdict\[0\].column='test/acc1' is not one of finding.columns: val/acc1"),
    ([{"column": "val/acc1", "higher": "block=a", "lower": "block=b", "than": 0.5}], "exactly one of higher"),
    ([{"column": "val/acc1", "higher": "block=a"}], "give than: <row> or a number"),
    ([{"column": "val/acc1", "higher": "block=a", "than": "block=b", "margin": "2std"}], "margin='2std': give a number"),
    ([{"column": "val/acc1", "higher": "block=a", "than": "block=b", "by": 1}], "unknown key 'by'"),
    ([], "give a list of checks"),
])
def test_finding_report_rejects_a_bad_verdict_rule_before_the_sweep_runs(verdict, message):
    from convnetlab.cli.findings import FindingReport

    with pytest.raises(InputError, match=message):
        FindingReport("x", "claim", {"val/acc1": ["val top-1", "{:.1%}"]}, {"y": "val/acc1"}, {}, verdict)


# ----------------------------------------------------------------------------- verdicts
ACC = {"val/acc1": ("val top-1", "{:.1%}"), "params": ("params", "{:,.0f}")}


def rows_of(sweep: Path, results: dict[str, list[float]], params: dict[str, int] | None = None) -> list:
    """One job per value: results maps a block to its seeds' val/acc1."""
    num = 0
    for block, accs in results.items():
        for seed, acc in enumerate(accs, 1):
            fake_job(sweep, num, [f"model.block={block}", f"seed={seed}"],
                     {"val/acc1": acc, **({"params": params[block]} if params else {})})
            num += 1
    return findings.group_jobs(findings.load_jobs(sweep))


def test_margin_std_is_the_sum_of_the_two_rows_sample_stds(tmp_path):
    # a: 0.70, 0.80 (mean 0.75, std 0.0707); b: 0.60, 0.62 (mean 0.61, std 0.0141): spread 0.0849
    rows = rows_of(tmp_path, {"a": [0.70, 0.80], "b": [0.60, 0.62]})
    check = {"column": "val/acc1", "higher": "block=a", "than": "block=b", "margin": "std"}
    result = verdicts.evaluate_check(rows, check, ACC)
    assert result.margin == pytest.approx(0.1 / math.sqrt(2) + 0.02 / math.sqrt(2))
    assert (result.a, result.b, result.holds) == (pytest.approx(0.75), pytest.approx(0.61), True)  # 0.14 > 0.085
    assert result.text == ("block=a: val top-1 higher than block=b by more than the seeds' spread: 75.0% vs 61.0%, "
                           "margin 8.5%")
    assert not verdicts.evaluate_check(rows, {**check, "margin": 0.15}, ACC).holds  # 0.14 is not > 0.15
    assert verdicts.evaluate_check(rows, {**check, "margin": 0.13}, ACC).holds
    lower = {"column": "val/acc1", "lower": "block=a", "than": "block=b", "margin": "-std"}
    assert not verdicts.evaluate_check(rows, lower, ACC).holds  # a is above b by more than the spread
    wide = rows_of(tmp_path / "wide", {"a": [0.55, 0.95], "b": [0.60, 0.62]})  # same mean gap, std 0.28
    assert not verdicts.evaluate_check(wide, check, ACC).holds
    assert verdicts.evaluate_check(wide, {**check, "higher": "block=b", "than": "block=a", "margin": "-std"}, ACC).holds


def test_verdict_is_confirmed_when_all_checks_hold_partly_when_some_not_reproduced_when_none(tmp_path):
    rows = rows_of(tmp_path, {"stack3": [0.78, 0.80], "conv": [0.60, 0.64]}, params={"stack3": 56_938, "conv": 78_250})
    accuracy = {"column": "val/acc1", "higher": "block=stack3", "than": "block=conv", "margin": "std"}
    cheaper = {"column": "params", "lower": "block=stack3", "than": "block=conv"}
    above_chance = {"column": "val/acc1", "higher": "block=conv", "than": 0.1}
    assert verdicts.evaluate_verdict(rows, [accuracy, cheaper, above_chance], ACC)[0] == "confirmed"
    reversed_accuracy = {**accuracy, "higher": "block=conv", "than": "block=stack3"}
    verdict, results = verdicts.evaluate_verdict(rows, [reversed_accuracy, cheaper], ACC)
    assert verdict == "partly reproduced" and [r.holds for r in results] == [False, True]
    assert verdicts.evaluate_verdict(rows, [reversed_accuracy, {**cheaper, "lower": "block=conv",
                                                                "than": "block=stack3"}], ACC)[0] == "not reproduced"
    missing = {"column": "params", "lower": "block=stack3", "than": "block=conv"}
    no_params = rows_of(tmp_path / "no_params", {"stack3": [0.8], "conv": [0.6]})
    assert not verdicts.evaluate_check(no_params, missing, ACC).holds  # a value nobody measured does not hold


def test_a_check_can_compare_two_columns_of_the_one_row_of_a_sweep_that_varies_nothing(tmp_path):
    for num, (seed, trained) in enumerate([(1, 0.38), (2, 0.40)]):
        fake_job(tmp_path, num, [f"seed={seed}"], {"filters/first_trained": trained, "filters/first_noise": 0.18})
    rows = findings.group_jobs(findings.load_jobs(tmp_path))
    columns = {"filters/first_trained": ("first conv trained", "{:.2f}"), "filters/first_noise": ("noise level", "{:.2f}")}
    check = {"column": "filters/first_trained", "higher": "run", "than": "run", "than_column": "filters/first_noise",
             "margin": 0.2}
    result = verdicts.evaluate_check(rows, check, columns)
    assert [r.label for r in rows] == ["run"] and result.b == 0.18 and result.holds  # 0.39 - 0.18 > 0.2
    assert not verdicts.evaluate_check(rows, {**check, "margin": 0.22}, columns).holds
    verdicts.check_rule_rows([check], {"seed": ["1", "2"], "experiment": ["findings/filters"]})


def report(verdict: list | None) -> "FindingReport":
    from convnetlab.cli.findings import FindingReport

    return FindingReport("kernels", "claim", {k: list(v) for k, v in ACC.items()}, {"y": "val/acc1"}, {}, verdict)


KERNELS_RULE = [{"column": "val/acc1", "higher": "kernel=7 block=stack3", "than": "kernel=7 block=conv", "margin": "std"}]


@pytest.mark.parametrize(("sweep", "message"), [
    ({"model.kernel": ["5"], "model.block": ["conv", "stack3"]},
     r"finding.verdict\[0\].higher='kernel=7 block=stack3': kernel is not varied by this sweep, which varies "
     r"model.block: conv,stack3 \(or finding.verdict=null\)$"),
    ({"model.kernel": ["5", "9"], "model.block": ["conv", "stack3"]},
     r"finding.verdict\[0\].higher='kernel=7 block=stack3': no row with kernel=7 in this sweep"),
    ({"model.kernel": ["5", "7"], "model.block": ["conv", "stack3"], "model.norm": ["true", "false"]},
     r"name a value for each varied override \(model.kernel: 5,7; model.block: conv,stack3; model.norm: true,false\)"),
])
def test_a_rule_naming_a_row_the_sweep_lacks_is_a_one_line_error_at_sweep_start(sweep, message):
    with pytest.raises(InputError, match=message) as error:
        report(KERNELS_RULE).check_rows({**sweep, "seed": ["1", "2"]})
    assert "\n" not in str(error.value)
    report(KERNELS_RULE).check_rows({"model.kernel": ["5", "7"], "model.block": ["conv", "stack3"], "seed": ["1"]})
    report(None).check_rows(sweep)  # finding.verdict=null: no rule to check


def test_the_sweep_is_the_sweepers_params_with_the_command_line_on_top():
    from omegaconf import OmegaConf

    from convnetlab.cli.findings import sweep_values

    config = OmegaConf.create({"hydra": {"sweeper": {"params": {"model.kernel": "5,7", "+model/designnet": "plain,residual",
                                                                "seed": "1,2"}},
                                         "overrides": {"task": ["model.kernel=5", "experiment=findings/kernels"]}}})
    assert sweep_values(config) == {"model.kernel": ["5"], "model/designnet": ["plain", "residual"], "seed": ["1", "2"],
                                    "experiment": ["findings/kernels"]}


def test_finding_report_writes_the_computed_verdict_and_each_check(tmp_path):
    for num, (kernel, block, seed, acc) in enumerate([(7, "conv", 1, 0.62), (7, "conv", 2, 0.66),
                                                      (7, "stack3", 1, 0.70), (7, "stack3", 2, 0.69),
                                                      (5, "conv", 1, 0.5), (5, "stack3", 1, 0.5)]):
        fake_job(tmp_path, num, [f"model.kernel={kernel}", f"model.block={block}", f"seed={seed}"], {"val/acc1": acc})
    files = report(KERNELS_RULE).write(tmp_path, "convnetlab-train -m experiment=findings/kernels")
    verdict = json.loads(files["json"].read_text())["verdict"]
    # stack3 0.695 +- 0.0071 vs conv 0.64 +- 0.0283: gap 0.055 > spread 0.0354
    assert verdict["result"] == "confirmed" and verdict["checks"][0]["holds"] is True
    assert verdict["checks"][0]["rule"] == KERNELS_RULE[0]
    assert verdict["checks"][0]["margin"] == pytest.approx(0.01 / math.sqrt(2) + 0.04 / math.sqrt(2))
    markdown = files["md"].read_text()
    assert "**Verdict: confirmed** (1 of 1 checks hold" in markdown
    assert ("- holds: kernel=7 block=stack3: val top-1 higher than kernel=7 block=conv by more than the seeds' "
            "spread: 69.5% vs 64.0%, margin 3.5%") in markdown
    (tmp_path / "1" / "metrics.json").write_text(json.dumps({"val/acc1": 0.74}))  # conv now 0.68 +- 0.042
    again = json.loads(report(KERNELS_RULE).write(tmp_path, "x")["json"].read_text())["verdict"]
    assert again["result"] == "not reproduced" and again["checks"][0]["holds"] is False
    assert json.loads(report(None).write(tmp_path, "x")["json"].read_text())["verdict"] is None


# ----------------------------------------------------------------------------- the README's Findings
FINDINGS = Path(__file__).resolve().parents[1] / "conf" / "experiment" / "findings"


def _number(text: str) -> float:
    text = text.strip()
    return float(text.rstrip("%").replace(",", "")) / (100 if text.endswith("%") else 1)


def readme_rows(readme: str, name: str, columns: dict) -> list:
    """The README's table of finding ``name`` as rows: each ``mean ± std`` cell becomes two runs with that
    mean and sample std (mean -+ std/sqrt(2)); a ``-`` cell, runs without the value."""
    table = re.search(rf"experiment=findings/{name}\b[^\n]*\n```\n\n(\|.*?\n)\n", readme, re.S).group(1).splitlines()
    assert [c.strip() for c in table[0].strip("|").split("|")][2:] == [v[0] for v in columns.values()], name
    rows = []
    for line in table[2:]:
        label, runs, *cells = (c.strip() for c in line.strip("|").split("|"))
        jobs = [findings.Job(Path(str(i)), {}, {}) for i in range(int(runs))]
        for key, text in zip(columns, cells):
            if text != "-":
                mean, _, std = text.partition("±")
                for sign, job in zip((-1, 1), jobs):
                    job.metrics[key] = _number(mean) + sign * (_number(std) if std else 0.0) / math.sqrt(2)
        settings = dict(token.split("=", 1) for token in label.split()) if label != "run" else {}
        rows.append(findings.FindingRow(label, settings, jobs))
    return rows


@pytest.mark.parametrize("name", sorted(p.stem for p in FINDINGS.glob("[!_]*.yaml")))
def test_the_readme_states_the_verdict_its_rule_computes_from_its_table(name):
    spec = yaml.safe_load((FINDINGS / f"{name}.yaml").read_text())["finding"]
    columns = {k: tuple(v) for k, v in spec["columns"].items()}
    readme = (FINDINGS / "README.md").read_text()
    verdict, results = verdicts.evaluate_verdict(readme_rows(readme, name, columns), spec["verdict"], columns)
    section = readme.split(f"experiment=findings/{name}", 2)[2]  # past the overview table's command
    stated = re.search(r"\*\*Verdict: (confirmed|partly reproduced|not reproduced)\*\* \(", section).group(1)
    assert stated == verdict, [r.text for r in results if not r.holds]
    for result in results:  # each check is written beside the verdict with its numbers
        assert f"{'holds' if result.holds else 'fails'}: {result.text}" in section.split("\n## ")[0]
