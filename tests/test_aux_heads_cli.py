"""Auxiliary heads end to end: two DDP ranks on the CPU, resume with the heads, eval without them."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_DATA, read_metrics, run_cli

pytestmark = pytest.mark.slow


def test_deep_supervision_under_ddp_resumes_and_evaluates_without_the_callback(data_dir, tmp_path):
    run = tmp_path / "run"
    common = [*TINY_DATA, "model.width=0.125", "logger=csv", "data.persistent_workers=false"]
    run_cli("train", "experiment=resnet_deep_supervision", "trainer=ddp_cpu", "trainer.max_epochs=1", *common,
            "trainer.log_every_n_steps=1", f"hydra.run.dir={run}", cwd=tmp_path, data_dir=data_dir)
    first_run = read_metrics(run)
    assert {"val/aux_acc1/layer2", "val/aux_acc1/layer3"} <= first_run.keys()
    (log,) = run.rglob("metrics.csv")
    with log.open() as handle:
        logged = [float(r["train/grad_norm/conv1"]) for r in csv.DictReader(handle) if r.get("train/grad_norm/conv1")]
    assert logged and first_run["train/grad_norm_first"] == pytest.approx(sum(logged) / len(logged))  # the mean logged
    with Image.open(run / "gradient_flow.png") as picture:
        assert picture.size == (720, 480) and np.asarray(picture.convert("L")).std() > 10  # 6 x 4 in at 120 dpi, drawn

    run_cli("train", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2",
            cwd=tmp_path, data_dir=data_dir)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and any(k.startswith("aux_heads.") for k in last["state_dict"])

    trained = read_metrics(run)  # read now: eval merges its numbers into the run's metrics.json
    best = trained["ckpt_best"]
    run_cli("evaluate", f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path, data_dir=data_dir)
    assert read_metrics(tmp_path / "eval")["test/acc1"] == pytest.approx(trained["test/acc1"])
