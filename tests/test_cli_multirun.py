"""Multirun: one run dir per job; with DDP, child ranks join their job instead of re-running the sweep."""

from __future__ import annotations

import pytest
import yaml

from conftest import TINY_DATA, read_metrics, run_cli

pytestmark = pytest.mark.slow

SHORT = ["debug=limit", "trainer.max_epochs=1", "logger=csv"]


def job_dirs(sweep_dir):
    return sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())


def test_multirun_gives_one_run_dir_per_job(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("train", "-m", "model=lenet5,resnet18", "model.width=0.25", "optimizer.lr=0.1,0.01", *TINY_DATA, *SHORT,
            f"hydra.sweep.dir={sweep}", cwd=tmp_path, data_dir=data_dir)
    assert job_dirs(sweep) == ["0", "1", "2", "3"]
    jobs = [(read_metrics(sweep / d)["model"], (sweep / d / ".hydra" / "overrides.yaml").read_text()) for d in "0123"]
    assert sorted(model for model, _ in jobs) == ["lenet5", "lenet5", "resnet18", "resnet18"]
    assert sum("optimizer.lr=0.01" in overrides for _, overrides in jobs) == 2
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_multirun_option_names_are_checked_for_every_job_before_the_sweep_starts(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", "model=lenet5,resnet19", *TINY_DATA, *SHORT, f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path, data_dir=data_dir, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: unknown model 'resnet19'"), proc.stderr[-2000:]
    assert "lenet5" in errors[0]  # the valid names are listed
    assert not sweep.exists() and "#0 :" not in proc.stdout  # the lenet5 job never started
    # No outputs/, multirun/ or job dir anywhere (.cache/.config: HOME is the test's cwd).
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_multirun_with_ddp_cpu_runs_each_job_exactly_once_on_two_ranks(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "-m", "optimizer.lr=0.1,0.01", "trainer=ddp_cpu", "model=lenet5", *TINY_DATA, *SHORT,
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path, data_dir=data_dir)
    assert job_dirs(sweep) == ["0", "1"]
    for job in "01":
        assert read_metrics(sweep / job)["model"] == "lenet5"
        assert (sweep / job / "train_ddp_process_1.log").exists()  # rank 1 joined this job's directory
    # A child re-launching the sweep would start more jobs (more "Launching" lines) or new directories.
    assert proc.stdout.count("#0 :") == 1 and proc.stdout.count("#1 :") == 1
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_optuna_search_returns_each_jobs_metric_to_the_sweeper(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("train", "hparams_search=optuna", "hydra.sweeper.n_trials=3", "debug=fdr",
            "model=lenet5", *[o for o in TINY_DATA if "batch_size" not in o], "logger=csv", f"hydra.sweep.dir={sweep}", cwd=tmp_path, data_dir=data_dir)
    assert job_dirs(sweep) == ["0", "1", "2"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = [read_metrics(sweep / job)["val/acc1"] for job in "012"]
    best = max(trials)
    assert results["best_value"] == pytest.approx(best)
    assert set(results["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "data.batch_size",
                                           "module.label_smoothing"}


def test_optuna_with_ddp_cpu_children_do_not_start_their_own_study(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "trainer=ddp_cpu", "debug=limit",
                   "trainer.max_epochs=1", "model=lenet5", *[o for o in TINY_DATA if "batch_size" not in o],
                   "logger=csv", f"hydra.sweep.dir={sweep}", cwd=tmp_path, data_dir=data_dir)
    assert job_dirs(sweep) == ["0", "1"]
    assert proc.stdout.count("#0 :") == 1 and proc.stdout.count("#1 :") == 1 and "#2 :" not in proc.stdout
    assert all((sweep / job / "train_ddp_process_1.log").exists() for job in "01")
