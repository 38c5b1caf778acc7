"""Every Findings experiment composes, runs (fast_dev_run, or a few batches where a post step needs a
checkpoint) and writes finding.md/.json/.png whose numbers are its jobs' own metrics."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, clean_env, cli_process, read_metrics, run_cli

pytestmark = pytest.mark.slow

SMALL_SHAPES = ["data.num_classes=4", "data.per_class_train=24", "data.per_class_val=8", "data.per_class_test=8",
                "data.batch_size=16", "data.num_workers=0"]
FDR = ["debug=fdr", *SMALL_SHAPES]
WITH_CHECKPOINT = ["debug=limit", "trainer.max_epochs=1", "data.num_workers=0"]  # post steps read the best ckpt

# experiment -> (overrides that shrink the sweep and the data, expected row labels, post-step columns)
CASES = {
    "depth": (["model.depth=8", "seed=1", "+model/designnet=plain,residual", *FDR], ["designnet=plain", "designnet=residual"], []),
    "kernels": (["model.kernel=5", "seed=1", *FDR], ["block=conv", "block=stack3"], []),
    "inception": (["seed=1", *FDR], ["block=conv", "block=inception", "block=inception_naive"], []),
    "gap_head": (["seed=1", *FDR], ["head=fc", "head=gap"], []),
    "activations": (["seed=1", *FDR], ["activation=relu", "activation=tanh", "activation=sigmoid"], []),
    "aux_heads": (["seed=1", *FDR], ["aux_heads=none", "aux_heads=vgg19_stages_2_3"], []),
    "augmentation": (["augment=default", "seed=1", *WITH_CHECKPOINT], ["run"], ["probe/rotate", "probe/noise"]),
    "saliency": (["data=digits", "seed=1,2", *WITH_CHECKPOINT], ["run"], ["sanity/saliency", "sanity/input_edges"]),
    "filters": (["seed=1", *WITH_CHECKPOINT, *SMALL_SHAPES[:-2]], ["run"], ["filters/first_trained", "filters/late_init"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_finding_runs_and_reports_its_jobs_own_numbers(name, data_dir, tmp_path):
    overrides, labels, post_columns = CASES[name]
    sweep = tmp_path / "sweep"
    run_cli("train", "-m", f"experiment=findings/{name}", *overrides, f"hydra.sweep.dir={sweep}", cwd=tmp_path,
            data_dir=data_dir)
    report = json.loads((sweep / "finding.json").read_text())
    assert [row["label"] for row in report["rows"]] == labels
    written = {key for row in report["rows"] for job in row["runs"] for key in read_metrics(Path(job))}
    missing = set(report["columns"]) - written - {"train/diverged_at_step"}  # only diverged jobs write that one
    assert not missing, f"no job wrote {missing}: a mistyped column or a metric that is not logged"
    assert f"experiment=findings/{name}" in report["command"] and report["claim"]
    for row in report["rows"]:
        for key in report["columns"]:
            values = [read_metrics(Path(job)).get(key) for job in row["runs"]]  # post steps write there too
            values = [v for v in values if isinstance(v, int | float)]
            expected = statistics.fmean(values) if values else None
            assert row["mean"][key] == (pytest.approx(expected) if expected is not None else None), key
        for key in post_columns:
            assert row["mean"][key] is not None and math.isfinite(row["mean"][key]), key
    assert (sweep / "finding.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (sweep / "finding.md").read_text()
    assert report["claim"] in markdown and "| setting | runs |" in markdown


def test_a_diverging_job_is_recorded_and_the_sweep_goes_on(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("train", "-m", "experiment=findings/depth", "model.depth=8", "+model/designnet=plain", "seed=1",
            "optimizer.lr=1e6,0.01", "debug=limit", "trainer.max_epochs=1", *SMALL_SHAPES, f"hydra.sweep.dir={sweep}",
            cwd=tmp_path, data_dir=data_dir)
    diverged, fine = read_metrics(sweep / "0"), read_metrics(sweep / "1")
    assert diverged["train/diverged_at_step"] >= 0 and "val/acc1" not in diverged
    assert fine["train/diverged_at_step"] is None and fine["test/acc1"] is not None
    rows = json.loads((sweep / "finding.json").read_text())["rows"]
    assert rows[0]["mean"]["train/diverged_at_step"] == diverged["train/diverged_at_step"]
    assert rows[0]["mean"]["val/acc1"] is None


def test_generations_table_from_the_compare_command(tmp_path):
    out = tmp_path / "gen"
    proc = cli_process("compare", "generations=[lenet5,alexnet,googlenet]", "runs=null", f"hydra.run.dir={out}",
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "generations.md").read_text()
    assert "| alexnet | 61.101 | 2.470 | 58.631 |" in table
    assert "| googlenet | 6.625 |" in table and "| googlenet + aux heads | 13.005 |" in table
    assert (out / "generations.csv").read_text().splitlines()[0].startswith("model,params,conv_params")


def test_transfer_experiment_writes_its_table_from_its_runs(data_dir, tmp_path):
    out = tmp_path / "transfer"
    env = clean_env(tmp_path) | {"CONVNETLAB_DATA": str(data_dir)}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "transfer_experiment.py"), "--out", str(out),
                           "--labels", "5", "--seeds", "0", "debug=limit", "trainer.max_epochs=1", "data.num_workers=0"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    table = (out / "transfer_results.md").read_text()
    methods = {"transfer_scratch": "from scratch", "transfer_features": "feature extraction",
               "transfer_finetune": "phased fine-tuning"}
    jobs = sorted((out / "labels5").glob("[0-9]*"))
    assert len(jobs) == 3
    for job in jobs:
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        assert f"| {methods[overrides['experiment']]} | {read_metrics(job)['test/acc1']:.1%} +- 0.0% |" in table
    assert "| linear probe (frozen embeddings) |" in table
