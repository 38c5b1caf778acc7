"""Pre-CNN baselines (convnetlab-baseline), the per-class training subset they share with the CNNs, the
"When did CNNs win?" verdict, and scripts/cnn_vs_classic.py end to end."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.svm import SVC, LinearSVC

from conftest import REPO, TINY_DATA, clean_env, read_metrics, run_cli
from convnetlab.analysis.baselines import count_params, hog_features, pixel_features
from convnetlab.analysis.learning_curves import crossings, verdict
from convnetlab.data import DigitsDataModule
from convnetlab.data.subsample import per_class_indices
from convnetlab.errors import InputError


# --- the training subset -------------------------------------------------------------------------------
def test_per_class_indices_draw_n_of_each_class_with_the_seed():
    labels = [0] * 10 + [1] * 7 + [2] * 12
    picked = per_class_indices(labels, 5, seed=3)
    assert Counter(labels[i] for i in picked) == {0: 5, 1: 5, 2: 5} and picked == sorted(set(picked))
    assert per_class_indices(labels, 5, seed=3) == picked
    assert per_class_indices(labels, 5, seed=4) != picked
    with pytest.raises(InputError, match="choose 1..7"):
        per_class_indices(labels, 8, seed=0)


def test_train_per_class_subsamples_train_only_and_seeds_the_draw(data_dir):
    def train_and_val(seed: int, n: int | None):
        torch.manual_seed(seed)  # what pl.seed_everything does first in every CLI
        datamodule = DigitsDataModule(root=data_dir, num_workers=0, train_per_class=n)
        datamodule.setup("fit")
        return datamodule.train_dataset, datamodule.val_dataset

    full, full_val = train_and_val(0, None)
    few, val = train_and_val(0, 4)
    assert len(few) == 40 and Counter(label for _, label in few.samples) == {c: 4 for c in range(10)}
    assert set(few.samples) <= set(full.samples) and len(val) == len(full_val)
    image, label = few[0]  # the in-memory images follow the kept samples
    assert label == few.samples[0][1] and image.dtype == torch.uint8
    assert train_and_val(0, 4)[0].samples == few.samples
    assert train_and_val(1, 4)[0].samples != few.samples


# --- features and parameter counts -----------------------------------------------------------------------
def test_hog_features_of_grey_and_colour_images_and_pixels_in_unit_range():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (3, 1, 32, 32), dtype=np.uint8)
    colour = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    # 4x4 cells of 8 px -> 3x3 blocks of 2x2 cells x 9 orientations = 324 numbers, for any channel count
    assert hog_features(grey).shape == (3, 324) and hog_features(colour).shape == (3, 324)
    assert hog_features(grey, orientations=6, pixels_per_cell=16, cells_per_block=1).shape == (3, 4 * 6)
    pixels = pixel_features(colour)
    assert pixels.shape == (3, 3 * 32 * 32) and pixels.min() >= 0 and pixels.max() <= 1


def test_params_count_what_each_fitted_model_keeps_to_predict():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 7)), np.repeat([0, 1, 2], 20)
    linear = LinearSVC(random_state=0).fit(x, y)
    assert count_params(linear) == 3 * 7 + 3
    rbf = SVC().fit(x, y)
    support = rbf.support_vectors_.shape[0]
    assert count_params(rbf) == support * 7 + 2 * support + 3  # vectors, dual coefs (classes-1 each), biases
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    assert count_params(forest) == sum(t.tree_.node_count for t in forest.estimators_)


# --- the verdict -------------------------------------------------------------------------------------------
def test_crossing_is_interpolated_in_log_size_and_has_a_direction():
    # gap -0.1 at 5, +0.1 at 125: halfway in log size is sqrt(5 * 125) = 25
    ((at, direction),) = crossings({5: -0.1, 125: 0.1})
    assert at == pytest.approx(25.0) and direction == "up"
    assert crossings({5: 0.2, 20: -0.1, 100: 0.3}) == [(pytest.approx(math.exp(math.log(5) + 2 / 3 * math.log(4))), "down"),
                                                        (pytest.approx(20 * 5 ** 0.25), "up")]
    assert crossings({5: -0.1, 20: 0.0, 100: 0.2}) == [(20, "up")]  # an exact tie between opposite signs
    assert crossings({5: 0.1, 20: 0.0, 100: 0.2}) == []  # touching is not crossing
    assert crossings({5: 0.1, 20: 0.2}) == []


def test_verdict_compares_the_best_cnn_with_the_best_classic_pipeline_at_each_size():
    curves = {"lenet5": {5: [0.5, 0.6], 20: [0.80], 100: [0.95]},
              "resnet": {5: [0.40], 20: [0.85], 100: [0.97]},
              "hog_svm": {5: [0.70], 20: [0.82], 100: [0.90]},
              "pixels_rf": {5: [0.75], 20: [0.70], 100: [0.80]}}
    result = verdict("digits", curves, ["lenet5", "resnet"])
    # best CNN 0.55 / 0.85 / 0.97 against best classic 0.75 (pixels_rf) / 0.82 / 0.90 (hog_svm)
    assert result.gap == pytest.approx({5: -0.20, 20: 0.03, 100: 0.07})
    ((at, direction),) = result.crossings
    assert direction == "up" and at == pytest.approx(5 * 4 ** (0.20 / 0.23))
    assert result.text.startswith("digits: the curves cross; CNNs overtake at ~17 images/class")
    assert "lenet5 passes the best classic pipeline at ~" in result.text
    assert [d for _, d in result.per_cnn["resnet"]] == ["up"] and result.ties == []
    tie = verdict("digits", {"lenet5": {5: [0.5], 20: [0.84, 0.88]}, "hog_svm": {5: [0.7], 20: [0.85, 0.85]}}, ["lenet5"])
    # gap +0.01 at 20 is inside lenet5's seed std (0.028): the crossing is reported and flagged as a tie
    assert tie.ties == [20] and "Within the seeds' spread" in tie.text and [d for _, d in tie.crossings] == ["up"]

    cnn_always = verdict("shapes", {"lenet5": {5: [0.9], 20: [0.95]}, "hog_svm": {5: [0.5], 20: [0.6]}}, ["lenet5"])
    assert cnn_always.crossings == [] and "no crossing; CNNs win at every size tried (5 to 20" in cnn_always.text
    classic_always = verdict("shapes", {"lenet5": {5: [0.2], 20: [0.3]}, "hog_svm": {5: [0.5], 20: [0.6]}}, ["lenet5"])
    assert "classic pipelines win at every size tried" in classic_always.text
    assert "lenet5 never passes the best classic pipeline" in classic_always.text


# --- the CLI ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_baseline_and_cnn_run_dirs_land_in_one_compare_table(tmp_path, data_dir):
    baseline_dir, cnn_dir = tmp_path / "baseline", tmp_path / "cnn"
    run_cli("baseline", "method=hog_svm", *TINY_DATA, "data.train_per_class=12", f"hydra.run.dir={baseline_dir}",
            cwd=tmp_path, data_dir=data_dir)
    run_cli("train", *TINY_DATA, "model=lenet5", "logger=csv", "trainer.max_epochs=1",
            f"hydra.run.dir={cnn_dir}", cwd=tmp_path, data_dir=data_dir)
    baseline = read_metrics(baseline_dir)
    assert baseline["model"] == "hog_svm" and baseline["data"] == "shapes" and baseline["gflops"] is None
    assert baseline["train_images"] == 4 * 12 and baseline["features"] == 324
    assert baseline["params"] == 4 * 324 + 4  # LinearSVC: classes x features + biases
    assert 0 <= baseline["val/acc1"] <= 1 and 0 <= baseline["test/acc1"] <= 1 and baseline["train_seconds"] > 0
    assert (baseline_dir / ".hydra" / "config.yaml").is_file()

    compare_dir = tmp_path / "compare"
    run_cli("compare", f"runs=[{baseline_dir},{cnn_dir}]", "wandb.enabled=false", f"hydra.run.dir={compare_dir}",
            cwd=tmp_path, data_dir=data_dir)
    rows = {row["model"]: row for row in csv.DictReader((compare_dir / "comparison.csv").open())}
    assert set(rows) == {"hog_svm", "lenet5"}
    for name, run_dir in (("hog_svm", baseline_dir), ("lenet5", cnn_dir)):
        metrics = read_metrics(run_dir)
        assert float(rows[name]["top1_err"]) == pytest.approx(100 * (1 - metrics["test/acc1"]), abs=1e-4)
        assert float(rows[name]["params_m"]) == pytest.approx(metrics["params"] / 1e6, rel=1e-4)
        assert float(rows[name]["train_s"]) == pytest.approx(metrics["train_seconds"], rel=1e-4)
    assert rows["hog_svm"]["gflops"] == "" and rows["lenet5"]["gflops"] != ""
    table = (compare_dir / "comparison.md").read_text()
    assert "| hog_svm | 1 |" in table and "| lenet5 | 1 |" in table


def test_a_subset_size_larger_than_the_data_is_one_error_line(tmp_path, data_dir, monkeypatch, capsys):
    """In this process; an unknown method is answered before Hydra (test_command_line.py)."""
    from convnetlab.cli import baseline

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["baseline", *TINY_DATA, "data.train_per_class=25", f"paths.data_dir={data_dir}"])
    with pytest.raises(SystemExit) as stopped:
        baseline.main()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: data.train_per_class=25: choose 1..24")


@pytest.mark.slow
def test_cnn_vs_classic_script_end_to_end(tmp_path, data_dir):
    out = tmp_path / "finding"
    tiny = ["data.num_classes=4", "data.per_class_train=24", "data.per_class_val=8", "data.per_class_test=8",
            f"paths.data_dir={data_dir}", "trainer.max_epochs=1", "forest.n_estimators=10"]
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "cnn_vs_classic.py"), "--out", str(out),
                           "--datasets", "shapes", "--sizes", "3,all", "--seeds", "0", *tiny],
                          cwd=tmp_path, env=clean_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list(csv.DictReader((out / "finding.csv").open()))
    methods = {"hog_svm", "hog_rf", "pixels_rf", "pixels_svm", "lenet5", "resnet18_cpu"}
    assert {(r["method"], r["size"]) for r in runs} == {(m, s) for m in methods for s in ("3", "all")}
    assert {float(r["images_per_class"]) for r in runs} == {3.0, 24.0}
    for r in runs:  # each row is its run's metrics.json
        assert float(r["test_acc1"]) == pytest.approx(read_metrics(Path(r["run_dir"]))["test/acc1"])
    finding = (out / "finding.md").read_text()
    assert "| hog_svm (classic) |" in finding and "| resnet18_cpu (CNN) |" in finding and "all (24)/class" in finding
    assert "- shapes: " in finding and (out / "finding.png").stat().st_size > 0
    baseline_run = next(r["run_dir"] for r in runs if r["method"] == "hog_svm" and r["size"] == "3")
    assert json.loads((Path(baseline_run) / "metrics.json").read_text())["train_images"] == 12
