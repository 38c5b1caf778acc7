"""The console scripts answer --help, unknown options and positional words before importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from convnetlab.cli.command_line import COMMANDS, check_group_choices, check_positional, help_text
from convnetlab.errors import InputError

# Runs each command line through the console-script front door in ONE fresh interpreter and reports the
# exit status, the output and whether torch or Lightning got imported.
PROBE = """
import contextlib, io, json, sys
from convnetlab.cli import launch
results = []
for argv in json.loads(sys.argv[1]):
    sys.argv = argv
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            launch.launch(argv[0])
            code = 0
        except SystemExit as stop:
            code = stop.code
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
heavy = sorted(m for m in ("torch", "pytorch_lightning", "hydra", "omegaconf") if m in sys.modules)
print(json.dumps({"results": results, "heavy": heavy}))
"""


def test_help_typos_and_positional_words_are_answered_without_importing_torch():
    argvs = [["convnetlab-train", "--help"], ["convnetlab-train", "model=resnet19"],
             ["convnetlab-data", "check", "/data"], ["convnetlab-compare", "-h"],
             ["convnetlab-train", "-m", "model=lenet5,vgg19x"]]
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs)], capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout)
    assert report["heavy"] == []  # nothing but the standard library, yaml and convnetlab's light modules
    help_, typo, positional, compare_help, sweep = report["results"]
    assert help_["code"] == 0 and help_["out"].startswith("convnetlab-train: Train a CNN")
    assert "examples:" in help_["out"] and "  model: " in help_["out"] and "resnet18_cpu" in help_["out"]
    assert typo["code"] == 2 and typo["err"].startswith("error: unknown model 'resnet19'; choose one of:")
    assert positional["code"] == 2
    assert positional["err"].strip().endswith("did you mean: convnetlab-data action=check root=/data")
    assert compare_help["code"] == 0 and "config groups" not in compare_help["out"]  # compare composes none
    assert sweep["code"] == 2 and "unknown model 'vgg19x'" in sweep["err"]  # every sweep option, before any job


@pytest.mark.parametrize("program, args, meant", [
    ("convnetlab-train", ["lenet5", "digits", "seed=3"], "convnetlab-train model=lenet5 data=digits seed=3"),
    ("convnetlab-eval", ["run/checkpoints/last.ckpt"], "convnetlab-eval ckpt_path=run/checkpoints/last.ckpt"),
    ("convnetlab-train", ["findings/depth"], "convnetlab-train experiment=findings/depth"),
])
def test_positional_words_get_the_key_value_form_they_meant(program, args, meant):
    with pytest.raises(InputError) as error:
        check_positional(program, args)
    assert str(error.value).endswith(f"did you mean: {meant}")


def test_flag_values_are_not_positional_words():
    check_positional("convnetlab-train", ["--cfg", "job", "-m", "model=lenet5", "--config-name", "train"])


def test_hydra_deletions_are_overrides_not_positional_words():
    """``~key`` deletes a key or a defaults entry (a resume replays ``~experiment`` for a run without one)."""
    check_positional("convnetlab-train", ["~callbacks.aux_heads", "~experiment", "model=lenet5"])
    check_group_choices(["~experiment", "~debug"])
    with pytest.raises(InputError, match="not 'lenet5'"):
        check_positional("convnetlab-train", ["~experiment", "lenet5"])


@pytest.mark.parametrize("program", COMMANDS)
def test_every_command_has_help_with_two_examples_that_start_with_its_name(program):
    text = help_text(program)
    examples = text.split("examples:\n")[1].split("\n\n")[0].splitlines()
    assert len(examples) == 2 and all(e.strip().startswith(program) for e in examples)


def test_data_shards_answers_with_the_one_line_migration_hint():
    with pytest.raises(InputError) as error:
        check_group_choices(["model=lenet5", "data=shards", "data.root=/s"])
    message = str(error.value)
    assert message.startswith("data=shards was removed in 0.2: rewrite shards with `convnetlab-data action=optimize "
                              "root=<the original folder> out=<dir>`") and "webdataset library" in message
    assert "\n" not in message
