"""metrics.json merging and resume argument replay."""

from __future__ import annotations

import json

import yaml

from convnetlab.cli.hydra_app import resume_argv
from convnetlab.runs import update_metrics


def test_metrics_json_merges_and_stays_flat(tmp_path):
    update_metrics(tmp_path, {"model": "lenet5", "val/acc1": 0.5})
    update_metrics(tmp_path, {"test/acc1": 0.75, "val/acc1": 0.6, "bad": float("nan")})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "model": "lenet5", "val/acc1": 0.6, "test/acc1": 0.75, "bad": None}
    assert not list(tmp_path.glob(".metrics-*"))


def test_metrics_json_is_as_readable_as_the_other_run_files(tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        update_metrics(tmp_path, {"val/acc1": 0.5})
        (tmp_path / "neighbour.txt").write_text("x")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "neighbour.txt").stat().st_mode) == 0o644


def test_resume_replays_the_runs_overrides_and_reuses_its_directory(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=lenet5", "trainer.max_epochs=2",
                                                                     "hydra.run.dir=old"]))
    ckpt = run / "checkpoints" / "last.ckpt"
    argv = resume_argv(["train", f"ckpt_path={ckpt}", "trainer.max_epochs=4"])
    assert argv == ["train", "model=lenet5", f"ckpt_path={ckpt}", "trainer.max_epochs=4", f"hydra.run.dir={run.resolve()}"]


def test_resume_is_not_applied_to_multirun():
    argv = ["train", "-m", "ckpt_path=x.ckpt"]
    assert resume_argv(argv) == argv


def test_resume_pins_the_config_groups_the_run_was_composed_with(tmp_path):
    """A run from before a default changed (here: before experiment=default added a weight EMA) resumes with
    the groups it trained with; the user's own group choices still win."""
    from hydra import compose, initialize_config_dir

    from convnetlab.cli.hydra_app import config_dir, register_resolvers

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"x")
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=lenet5"]))
    choices = {"experiment": None, "callbacks": "default", "model": "lenet5", "data": "shapes", "debug": None,
               "callbacks/aux_heads": "none", "hydra/env": "default", "hydra": "default"}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    argv = resume_argv(["train", f"ckpt_path={ckpt}", "data=digits"])
    assert argv == ["train", "callbacks=default", "~debug", "~experiment", "model=lenet5", f"ckpt_path={ckpt}",
                    "data=digits", f"hydra.run.dir={run.resolve()}"]
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[a for a in argv[1:] if not a.startswith(("ckpt_path", "hydra."))],
                      return_hydra_config=True)
    assert cfg.hydra.runtime.choices.get("experiment") is None and "ema" not in cfg.callbacks
    assert (cfg.hydra.runtime.choices.model, cfg.hydra.runtime.choices.data) == ("lenet5", "digits")
    assert resume_argv(["train", f"ckpt_path={ckpt}", "experiment=lenet5_digits"])[1:4] == ["callbacks=default", "data=shapes",
                                                                                          "~debug"]
