"""Every console script is one `entry_point(config, task)`; bad input is one `error:` line and exit status 2.

Task functions are called in-process; one subprocess per command checks the real exit status.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image

from conftest import REPO
from convnetlab.cli.compare import run_compare
from convnetlab.cli.data import PROBLEMS_FOUND, run_action
from convnetlab.cli.hydra_app import entry_point
from convnetlab.errors import InputError, MissingFileError

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_scripts_go_through_the_front_door_to_a_main_of_their_cli_module(script):
    from convnetlab.cli.command_line import COMMANDS

    module, _, attribute = SCRIPTS[script].partition(":")
    if script not in COMMANDS:  # a command without the light front door calls its module's main directly
        assert module.startswith("convnetlab.cli.") and attribute == "main"
        return
    assert module == "convnetlab.cli.launch" and callable(getattr(importlib.import_module(module), attribute))
    real = f"convnetlab.cli.{COMMANDS[script].module}"
    if real != "convnetlab.cli.train":  # train imports the whole training stack; test_bad_input runs its main
        assert callable(getattr(importlib.import_module(real), "main"))


def test_entry_point_runs_task_and_report_in_the_job_dir_and_turns_bad_input_into_exit_2(tmp_path, monkeypatch, capsys):
    calls = []

    def task(cfg, output_dir: Path) -> float:
        calls.append((cfg.generations, output_dir))
        if cfg.generations == "bad":
            raise InputError("generations=bad is not a network")
        return 0.5

    reported = []
    main = entry_point("compare", task, report=lambda result, output_dir: reported.append((result, output_dir)))
    monkeypatch.setattr(sys, "argv", ["convnetlab-compare", "generations=alexnet", f"hydra.run.dir={tmp_path / 'ok'}"])
    main()
    assert calls == [("alexnet", tmp_path / "ok")] and reported == [(0.5, tmp_path / "ok")]
    hydra = yaml.safe_load((tmp_path / "ok" / ".hydra" / "hydra.yaml").read_text())["hydra"]
    assert hydra["job"]["name"] == "test_entry_points"  # named after the task's module, as each CLI is

    monkeypatch.setattr(sys, "argv", ["convnetlab-compare", "generations=bad", f"hydra.run.dir={tmp_path / 'bad'}"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: generations=bad is not a network"


def _data_cfg(**values) -> OmegaConf:
    return OmegaConf.create({"action": "generate", "root": None, "val_dir": None, "devkit": None, "out": None,
                             "num_workers": 1, "chunk_bytes": "64MB", "data": {"channels": 3}, **values})


@pytest.mark.parametrize("values, message", [
    ({"action": "bogus"}, "action=bogus is not one of generate, check"),
    ({"action": "prepare_imagenet_val", "root": "/r"}, "prepare_imagenet_val needs root="),
    ({"action": "optimize", "root": "/r"}, "optimize needs root="),
])
def test_data_refuses_bad_input_with_an_input_error(values, message, tmp_path):
    with pytest.raises(InputError, match=message):
        run_action(_data_cfg(**values), tmp_path)


def test_data_check_tells_a_missing_root_from_a_folder_with_bad_files(tmp_path, capsys):
    with pytest.raises(MissingFileError, match="nowhere does not exist"):
        run_action(_data_cfg(action="check", root=str(tmp_path / "nowhere")), tmp_path)
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (tmp_path / "ds" / split / label).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "ds" / split / label / "good.png")
    folder = tmp_path / "ds" / "train" / "cat"
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit) as stopped:
        run_action(_data_cfg(action="check", root=str(tmp_path / "ds")), tmp_path)
    assert stopped.value.code == PROBLEMS_FOUND == 1  # problems found, not bad input (2)
    assert "broken.png" in capsys.readouterr().out
    (folder / "broken.png").unlink()
    assert run_action(_data_cfg(action="check", root=str(tmp_path / "ds")), tmp_path) is None


def test_compare_refuses_no_runs_missing_runs_and_unfinished_runs(tmp_path):
    cfg = OmegaConf.create({"runs": "???", "generations": None, "wandb": {"enabled": False, "project": "x"}})
    with pytest.raises(InputError, match="give runs=DIR"):
        run_compare(cfg, tmp_path / "out")
    cfg.runs = str(tmp_path / "nowhere")
    with pytest.raises(MissingFileError, match="nowhere does not exist"):
        run_compare(cfg, tmp_path / "out")
    run = tmp_path / "runs" / "unfinished"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"model": {"arch": "lenet5"}, "data": {"name": "x"}}))
    cfg.runs = str(tmp_path / "runs")
    with pytest.raises(InputError, match="none of the 1 runs .* finished with test metrics .*unfinished"):
        run_compare(cfg, tmp_path / "out")


@pytest.mark.parametrize("command, args, named", [
    ("data", ["action=bogus"], "unknown action 'bogus'"),
    ("data", ["action=check", "root=/nonexistent"], "/nonexistent does not exist"),
    ("compare", [], "runs="),
    ("evaluate", ["ckpt_path=/nonexistent.ckpt"], "/nonexistent.ckpt"),
    ("embed", ["ckpt_path=/nonexistent.ckpt"], "/nonexistent.ckpt"),
    ("visualize", ["ckpt_path=/nonexistent.ckpt"], "/nonexistent.ckpt"),
    ("probe", ["ckpt_paths=[/nonexistent.ckpt]"], "/nonexistent.ckpt"),
    ("baseline", ["method=sift_svm"], "unknown method 'sift_svm'"),
])
def test_every_command_exits_2_with_one_error_line(command, args, named, tmp_path, data_dir, monkeypatch, capsys):
    """In this process (the console scripts' exit status is tested in test_command_line.py)."""
    import importlib

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [command, *args, f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'out'}"])
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(f"convnetlab.cli.{command}").main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and named in last, last
