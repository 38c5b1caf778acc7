"""cluster=slurm fills Hydra's submitit launcher from the trainer; the submitit local launcher runs a sweep."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import TINY_DATA, read_metrics, run_cli
from convnetlab.cli.hydra_app import config_dir, register_resolvers, resume_argv


def test_slurm_cluster_runs_one_task_per_gpu_on_every_node_and_resumes_after_requeue():
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["cluster=slurm", "trainer.devices=4", "trainer.num_nodes=2"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    assert launcher.max_num_timeout > 0 and cfg.ckpt_path == "last"
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.accelerator == "gpu"
    (environment,) = [instantiate(p) for p in cfg.trainer.plugins]
    assert type(environment).__name__ == "SLURMEnvironment" and environment.auto_requeue is False


def test_ckpt_path_last_is_left_to_lightning():
    argv = ["convnetlab-train", "ckpt_path=last", "model=lenet5"]
    assert resume_argv(argv) == argv


@pytest.mark.slow
def test_submitit_local_launcher_finishes_a_two_job_multirun(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "seed=1,2",
            "model=lenet5", *TINY_DATA, "debug=limit", "trainer.max_epochs=1", "logger=csv",
            f"hydra.sweep.dir={sweep}", cwd=tmp_path, data_dir=data_dir)
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    assert all(read_metrics(sweep / job)["model"] == "lenet5" for job in jobs)
    assert {read_metrics(sweep / job)["test/acc1"] is not None for job in jobs} == {True}
