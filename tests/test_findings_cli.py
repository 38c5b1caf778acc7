"""Every Findings experiment composes, runs (fast_dev_run, or a few batches where a post step needs a
checkpoint) and writes finding.md/.json/.png whose numbers are its jobs' own metrics."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from convnetlab.analysis import findings, verdicts

from conftest import REPO, clean_env, cli_process, read_metrics, run_cli

pytestmark = pytest.mark.slow

SMALL_SHAPES = ["data.num_classes=4", "data.per_class_train=24", "data.per_class_val=8", "data.per_class_test=8",
                "data.batch_size=16", "data.num_workers=0"]
FDR = ["debug=fdr", *SMALL_SHAPES]
WITH_CHECKPOINT = ["debug=limit", "trainer.max_epochs=1", "data.num_workers=0"]  # post steps read the best ckpt

NO_VERDICT = ["finding.verdict=null"]  # a reduced sweep lacks rows its rule compares (an error at sweep start)

# experiment -> (overrides that shrink the sweep and the data, expected row labels, post-step columns)
CASES = {
    "depth": (["model.depth=8", "seed=1", "+model/designnet=plain,residual", *FDR, *NO_VERDICT],
              ["designnet=plain", "designnet=residual"], []),
    "kernels": (["model.kernel=5", "seed=1", *FDR, *NO_VERDICT], ["block=conv", "block=stack3"], []),
    "inception": (["seed=1", *FDR], ["block=conv", "block=inception", "block=inception_naive"], []),
    "gap_head": (["seed=1", *FDR], ["head=fc", "head=gap"], []),
    "activations": (["seed=1", *FDR], ["activation=relu", "activation=tanh", "activation=sigmoid"], []),
    "aux_heads": (["seed=1", *FDR], ["aux_heads=none", "aux_heads=vgg19_stages_2_3"], []),
    "augmentation": (["augment=default", "seed=1", *WITH_CHECKPOINT, *NO_VERDICT], ["run"], ["probe/rotate", "probe/noise"]),
    "saliency": (["data=digits", "seed=1,2", *WITH_CHECKPOINT, *NO_VERDICT], ["run"], ["sanity/saliency", "sanity/input_edges"]),
    "filters": (["seed=1", *WITH_CHECKPOINT, *SMALL_SHAPES[:-2]], ["run"], ["filters/first_trained", "filters/late_init"]),
}


def rows_from_job_dirs(sweep: Path) -> dict[tuple, list[Path]]:
    """The test's own grouping: job dirs by the values of the overrides that differ between jobs (seed aside)."""
    jobs = {}
    for path in sorted(sweep.glob("*/.hydra/overrides.yaml")):
        if not (path.parent.parent / "metrics.json").is_file():  # a post step's own run (probe/), not a job
            continue
        items = yaml.safe_load(path.read_text())
        jobs[path.parent.parent] = {k.lstrip("+~"): v for k, v in (item.split("=", 1) for item in items) if k != "seed"}
    varying = sorted({k for o in jobs.values() for k in o if len({p.get(k) for p in jobs.values()}) > 1})
    rows: dict[tuple, list[Path]] = {}
    for job, overrides in jobs.items():
        rows.setdefault(tuple((k, overrides[k]) for k in varying), []).append(job)
    return rows


def numbers(jobs: list[Path], key: str) -> list[float]:
    values = [read_metrics(job).get(key) for job in jobs]  # post steps write their numbers there too
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


@pytest.mark.parametrize("name", list(CASES))
def test_finding_runs_and_reports_its_jobs_own_numbers(name, data_dir, tmp_path):
    overrides, labels, post_columns = CASES[name]
    sweep = tmp_path / "sweep"
    run_cli("train", "-m", f"experiment=findings/{name}", *overrides, f"hydra.sweep.dir={sweep}", cwd=tmp_path,
            data_dir=data_dir)
    report = json.loads((sweep / "finding.json").read_text())
    assert [row["label"] for row in report["rows"]] == labels
    expected_rows = rows_from_job_dirs(sweep)
    assert len(report["rows"]) == len(expected_rows)
    for key in set(report["columns"]) - {"train/diverged_at_step"}:  # only diverged jobs write that one
        assert any(key in read_metrics(job) for jobs in expected_rows.values() for job in jobs), \
            f"no job wrote {key}: a mistyped column or a metric that is not logged"
    own_rows = []
    for row in report["rows"]:
        settings = tuple(sorted(row["settings"].items()))
        jobs = expected_rows[settings]
        assert sorted(Path(r) for r in row["runs"]) == sorted(jobs), row["label"]
        for key in report["columns"]:
            values = numbers(jobs, key)
            mean = statistics.fmean(values) if values else None
            std = statistics.stdev(values) if len(values) > 1 else None
            assert row["mean"][key] == (None if mean is None else pytest.approx(mean)), (row["label"], key)
            assert row["std"][key] == (None if std is None else pytest.approx(std)), (row["label"], key)
        for key in post_columns:
            assert numbers(jobs, key), (row["label"], key)  # the post step measured every job
        own_rows.append(findings.FindingRow(row["label"], dict(settings),
                                            [findings.Job(job, {}, read_metrics(job)) for job in jobs]))
    rule = yaml.safe_load((REPO / "conf" / "experiment" / "findings" / f"{name}.yaml").read_text())["finding"]
    if NO_VERDICT[0] in overrides:
        assert report["verdict"] is None
    else:  # the verdict from the test's own rows and the finding's rule as written in its YAML
        columns = {k: tuple(v) for k, v in rule["columns"].items()}
        result, checks = verdicts.evaluate_verdict(own_rows, rule["verdict"], columns)
        assert report["verdict"]["result"] == result
        assert [(c["holds"], c["text"]) for c in report["verdict"]["checks"]] == [(c.holds, c.text) for c in checks]
        assert f"**Verdict: {result}**" in (sweep / "finding.md").read_text()
    with Image.open(sweep / "finding.png") as picture:
        assert picture.format == "PNG" and np.asarray(picture.convert("L")).std() > 5  # bars drawn, not a blank
    markdown = (sweep / "finding.md").read_text()
    assert report["claim"] == rule["claim"] and report["claim"] in markdown
    assert f"experiment=findings/{name}" in report["command"]
    (key, (_, fmt)), first = next(iter(rule["columns"].items())), report["rows"][0]
    if first["mean"][key] is not None:  # the table's first cell is the mean computed above, formatted
        assert f"| {first['label']} | {len(first['runs'])} | {fmt.format(first['mean'][key])}" in markdown


def test_a_rule_naming_a_row_the_reduced_sweep_lacks_stops_it_before_any_job(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", "experiment=findings/kernels", "model.kernel=5", "seed=1", *FDR,
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path, data_dir=data_dir, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: finding.verdict[0].higher='kernel=5 block=stack3': kernel is not varied by this sweep, which varies "
        "model.block: conv,stack3 (or finding.verdict=null)")
    assert not list(sweep.glob("*/metrics.json"))


def test_a_diverging_job_is_recorded_and_the_sweep_goes_on(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("train", "-m", "experiment=findings/depth", "model.depth=8", "+model/designnet=plain", "seed=1",
            "optimizer.lr=1e6,0.01", "debug=limit", "trainer.max_epochs=1", *SMALL_SHAPES, *NO_VERDICT,
            f"hydra.sweep.dir={sweep}", cwd=tmp_path, data_dir=data_dir)
    diverged, fine = read_metrics(sweep / "0"), read_metrics(sweep / "1")
    assert diverged["train/diverged_at_step"] in range(3) and "val/acc1" not in diverged  # limit: 3 batches an epoch
    assert fine["train/diverged_at_step"] is None and isinstance(fine["test/acc1"], float)
    rows = json.loads((sweep / "finding.json").read_text())["rows"]
    assert [r["runs"] for r in rows] == [[str(sweep / "0")], [str(sweep / "1")]] and list(rows[0]["settings"]) == ["optimizer.lr"]
    assert rows[0]["mean"]["train/diverged_at_step"] == diverged["train/diverged_at_step"]
    assert rows[0]["mean"]["val/acc1"] is None and rows[1]["mean"]["test/acc1"] == fine["test/acc1"]


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
