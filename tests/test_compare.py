"""convnetlab-compare on synthetic run dirs (grouping, means/stds, ordering, failed runs, files, W&B) and on the
output of real `convnetlab-train` runs."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_DATA, TINY_MODEL, clean_env, read_metrics, run_cli
from convnetlab.analysis.comparison import compare
from convnetlab.analysis.comparison_plots import val_error_per_epoch


def make_run(root: Path, name: str, arch: str, acc1: float | None, width: float = 1.0, data: str = "shapes",
             params: int = 1000, gflops: float = 0.5, epochs: tuple[float, ...] = (0.5, 0.7)) -> Path:
    """A run dir as convnetlab-train leaves it (acc1=None: a job that crashed before metrics.json)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    config = {"model": {"arch": arch, "width": width, "num_classes": 10}, "data": {"name": data}, "seed": 1}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    if acc1 is None:
        return run
    metrics = {"model": arch, "data": data, "params": params, "gflops": gflops, "test/acc1": acc1,
               "test/acc5": min(1.0, acc1 + 0.1), "train_images_per_s": 100.0, "infer_images_per_s": 400.0,
               "train_seconds": 10.0}
    (run / "metrics.json").write_text(json.dumps(metrics))
    with (run / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "step", "val/acc1", "test/acc1"])
        for epoch, val in enumerate(epochs):
            writer.writerow([epoch, 10 * (epoch + 1) - 1, val, ""])
        writer.writerow([len(epochs), 10 * len(epochs), 0.99, ""])  # post-fit validation of the best ckpt
        writer.writerow([len(epochs), 10 * len(epochs), "", acc1])
    return run


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun"
    for seed, acc in enumerate((0.80, 0.84, 0.82)):
        make_run(root, f"{seed}", "resnet18", acc, params=700_000, gflops=0.035)
    for seed, acc in enumerate((0.60, 0.70)):
        make_run(root, f"{3 + seed}", "lenet5", acc, params=60_000, gflops=0.0004)
    make_run(root, "5", "resnet18", 0.90, width=0.5, params=2_800_000, gflops=0.14)
    make_run(root, "6", "alexnet", None)  # crashed
    return root


def test_rows_hold_means_and_sample_stds_sorted_by_top1_error(sweep):
    rows, problems = compare([sweep])
    assert [r.label for r in rows] == ["resnet18 width=0.5", "resnet18 width=1.0", "lenet5"]
    resnet = rows[1]
    assert resnet.n == 3
    assert resnet.mean["top1_err"] == pytest.approx(100 * (1 - 0.82))
    assert resnet.std["top1_err"] == pytest.approx(statistics.stdev([20.0, 16.0, 18.0]))
    assert resnet.mean["params_m"] == pytest.approx(0.7) and resnet.std["params_m"] == pytest.approx(0.0)
    lenet = rows[2]
    assert lenet.mean["top1_err"] == pytest.approx(35.0) and lenet.std["top1_err"] == pytest.approx(7.0710678)
    assert [p.path.name for p in problems] == ["6"] and "no metrics.json" in problems[0].problem


def test_epoch_curve_skips_the_post_fit_evaluation_rows(sweep):
    rows, _ = compare([sweep])
    assert val_error_per_epoch(rows[0].runs[0]) == pytest.approx({0: 50.0, 1: 30.0})


def test_a_run_without_test_metrics_is_listed_not_dropped(tmp_path):
    make_run(tmp_path, "ok", "lenet5", 0.5)
    unfinished = make_run(tmp_path, "unfinished", "lenet5", 0.5)
    (unfinished / "metrics.json").write_text(json.dumps({"model": "lenet5", "val/acc1": 0.4}))
    rows, problems = compare([tmp_path / "ok", unfinished])
    assert [r.n for r in rows] == [1] and [p.path.name for p in problems] == ["unfinished"]
    assert "no test/acc1" in problems[0].problem


def test_a_missing_runs_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        compare([tmp_path / "nowhere"])


@pytest.mark.slow
def test_cli_writes_table_charts_and_a_wandb_run(sweep, tmp_path, data_dir):
    out = tmp_path / "cmp"
    proc = run_cli("compare", f"runs=[{sweep}]", f"hydra.run.dir={out}", cwd=tmp_path, data_dir=data_dir)
    table = (out / "comparison.md").read_text()
    assert table.index("resnet18 width=0.5") < table.index("resnet18 width=1.0") < table.index("lenet5")
    assert "18.00 ± 2.00" in table  # resnet18 width=1 top-1 error over 3 seeds
    assert "multirun/6" in table and "no metrics.json" in table  # the crashed job is listed
    with (out / "comparison.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    assert [line["model"] for line in lines] == ["resnet18 width=0.5", "resnet18 width=1.0", "lenet5"]
    assert float(lines[1]["top1_err"]) == pytest.approx(18.0) and lines[1]["n_runs"] == "3"
    assert (out / "comparison.png").stat().st_size > 10_000 and (out / "comparison_epochs.png").stat().st_size > 10_000
    assert str(out) in proc.stdout
    (wandb_run,) = (out / "wandb").glob("offline-run-*")
    wandb_cli = str(Path(sys.executable).parent / "wandb")  # the venv's, which need not be on PATH
    inspect = subprocess.run([wandb_cli, "leet", "inspect", "--summary", "--json", str(wandb_run)],
                             capture_output=True, text=True, env=clean_env(tmp_path), check=True)
    summary = json.loads(inspect.stdout)["summary"]
    assert {"comparison/table", "comparison/error_vs_gflops", "comparison/error_vs_epoch"} <= summary.keys()


def test_imagenet_rows_show_torchvision_published_errors(tmp_path):
    from convnetlab.analysis.comparison import to_markdown
    from convnetlab.cli.compare import published_beside

    make_run(tmp_path, "a", "resnet18", 0.69, data="imagenet")
    rows, problems = compare([tmp_path])
    table = to_markdown(rows, problems, published_beside(rows))
    assert "torchvision top-1 err %" in table and f"{100 - 69.758:.2f}" in table


@pytest.mark.slow
def test_cli_table_rows_are_the_metrics_of_real_training_runs(data_dir, tmp_path):
    runs = tmp_path / "runs"
    for name, model in (("lenet", ["model=lenet5"]), ("resnet", TINY_MODEL)):
        run_cli("train", *TINY_DATA, *model, "trainer.max_epochs=1", "logger=csv", f"hydra.run.dir={runs / name}",
                cwd=tmp_path, data_dir=data_dir)
    out = tmp_path / "cmp"
    run_cli("compare", f"runs=[{runs}]", "wandb.enabled=false", f"hydra.run.dir={out}", cwd=tmp_path,
            data_dir=data_dir)
    with (out / "comparison.csv").open() as handle:
        lines = {Path(line["runs"]).name: line for line in csv.DictReader(handle)}
    assert sorted(lines) == ["lenet", "resnet"]
    for name, line in lines.items():
        metrics = read_metrics(runs / name)
        assert (line["arch"], line["data"], line["n_runs"]) == (metrics["model"], "shapes", "1")
        expected = {"top1_err": 100 * (1 - metrics["test/acc1"]), "top5_err": 100 * (1 - metrics["test/acc5"]),
                    "params_m": metrics["params"] / 1e6, "gflops": metrics["gflops"],
                    "train_img_s": metrics["train_images_per_s"], "infer_img_s": metrics["infer_images_per_s"],
                    "train_s": metrics["train_seconds"]}
        assert {k: float(line[k]) for k in expected} == pytest.approx(expected, rel=1e-5)  # written with 6 significant digits
        assert f"{expected['top1_err']:.2f}" in (out / "comparison.md").read_text()
    assert not (out / "wandb").exists()
