"""The console scripts answer --help, unknown options and positional words before importing torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from convnetlab.cli import launch
from convnetlab.cli.command_checks import (_choices, check_group_choices, check_names, check_positional,
                                           check_seed)
from convnetlab.cli.command_line import COMMANDS, config_dir, help_text
from convnetlab.cli.hydra_options import parse_command_line
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
heavy = sorted(m for m in ("torch", "pytorch_lightning", "lightning", "torchvision") if m in sys.modules)
print(json.dumps({"results": results, "heavy": heavy}))
"""


def test_help_typos_and_positional_words_are_answered_without_importing_torch():
    argvs = [["convnetlab-train", "--help"], ["convnetlab-train", "model=resnet19"],
             ["convnetlab-data", "check", "/data"], ["convnetlab-compare", "-h"],
             ["convnetlab-train", "-m", "model=lenet5,vgg19x"], ["convnetlab-train", "--foo"],
             ["convnetlab-train", "--cfg", "jobb"], ["convnetlab-train", "seed=abc"]]
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs)], capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout)
    assert report["heavy"] == []  # the standard library, yaml, Hydra's parser and convnetlab's light modules
    help_, typo, positional, compare_help, sweep, *bad_lines = report["results"]
    for bad in bad_lines:  # unknown options, bad --cfg values and seeds: one line, not Hydra's usage or a traceback
        assert bad["code"] == 2 and bad["err"].startswith("error: ") and bad["err"].count("\n") == 1
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
    ("convnetlab-train", ["model.width", "seed=1"], "convnetlab-train model.width=<value> seed=1"),
    ("convnetlab-data", ["/data/x"], "convnetlab-data action=check root=/data/x"),
    ("convnetlab-data", ["optimize", "/src", "/out"], "convnetlab-data action=optimize root=/src out=/out"),
    ("convnetlab-data", ["/src", "/out"], "convnetlab-data action=optimize root=/src out=/out"),
    ("convnetlab-data", ["chek", "/d"], "convnetlab-data action=check root=/d"),
    ("convnetlab-baseline", ["hog_svm", "data=digits"], "convnetlab-baseline method=hog_svm data=digits"),
    ("convnetlab-probe", ["a.ckpt", "b.ckpt"], "convnetlab-probe ckpt_paths=[a.ckpt,b.ckpt]"),
    ("convnetlab-eval", ["x.ckpt", "10crop"], "convnetlab-eval ckpt_path=x.ckpt protocol=10crop"),
    ("convnetlab-eval", ["val", "x.ckpt", "gpu"], "convnetlab-eval split=val ckpt_path=x.ckpt trainer=gpu"),
    ("convnetlab-train", ["-m", "resnet18", "lenet5"], "convnetlab-train -m model=resnet18,lenet5"),
    ("convnetlab-eval", ["-m", "a.ckpt", "b.ckpt", "center", "10crop"],
     "convnetlab-eval -m ckpt_path=a.ckpt,b.ckpt protocol=center,10crop"),
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


def test_two_options_of_one_group_without_m_suggest_the_first_then_the_sweep():
    with pytest.raises(InputError) as error:
        check_positional("convnetlab-train", ["resnet18", "lenet5", "seed=1"])
    assert str(error.value).endswith("did you mean: convnetlab-train model=resnet18 seed=1; "
                                     "or, one run each: convnetlab-train -m model=resnet18,lenet5 seed=1")


@pytest.mark.parametrize("word", ["+", "++", ",", "-"])
def test_a_word_that_is_no_override_at_all_is_called_that(word):
    with pytest.raises(InputError, match=f"^'{re.escape(word)}' is not an override; write key=value"):
        check_positional("convnetlab-train", [word, "model=lenet5"])


@pytest.mark.parametrize("args, message", [
    (["--foo"], "unknown option --foo; convnetlab-train takes key=value overrides and Hydra's options --help, "),
    (["-x", "model=lenet5"], "unknown option -x; "),
    (["--mutlirun"], "unknown option --mutlirun (did you mean --multirun?); "),
    (["-mx"], "argument --multirun/-m: ignored explicit argument 'x'; see convnetlab-train --help"),
    (["--cfg", "jobb"], "argument --cfg/-c: invalid choice: 'jobb' (choose from 'job', 'hydra', 'all')"),
    (["-cjobb"], "argument --cfg/-c: invalid choice: 'jobb' (choose from 'job', 'hydra', 'all')"),
    (["--cfg"], "argument --cfg/-c: expected one argument"),
    (["--c", "job"], "ambiguous option: --c could match --cfg, --config-path, --config-name, --config-dir"),
    (["--multirun=yes"], "argument --multirun/-m: ignored explicit argument 'yes'"),
    (["--info", "model=lenet5"], "argument --info/-i: invalid choice: 'model=lenet5' (choose from 'all', "),
    (["--info", "model=lenet5"], "(an option reads the word after it as its value: put the option after the "
                                 "overrides); see convnetlab-train --help"),
    (["model=lenet5", "-m", "seed=1,2"], "options go before or after the overrides, not between them (Hydra's parser "
                                         "refuses the overrides after an option); did you mean: "
                                         "convnetlab-train -m model=lenet5 seed=1,2"),
    (["a=1", "-cn", "train", "b=2"], "options go before or after the overrides, not between them (Hydra's parser "
                                     "refuses the overrides after an option); did you mean: "
                                     "convnetlab-train -cn train a=1 b=2"),
])
def test_bad_options_get_one_line_before_hydra(args, message):
    with pytest.raises(InputError) as error:
        check_names("convnetlab-train", args)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_options_and_overrides_are_read_as_hydra_reads_them():
    line = parse_command_line("convnetlab-train", ["-cjob", "-mr", "--info", "--", "a=1", "b=2"])
    assert line.options == {"--cfg": "job", "--multirun": True, "--run": True, "--info": "all"}
    assert line.overrides == [(4, "a=1"), (5, "b=2")]


def test_help_is_answered_for_an_abbreviated_or_combined_help_option(monkeypatch, capsys):
    for argv in (["convnetlab-compare", "--he"], ["convnetlab-compare", "-mh"]):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as stop:
            launch.launch("convnetlab-compare")
        assert stop.value.code == 0 and capsys.readouterr().out.startswith("convnetlab-compare: ")


@pytest.mark.parametrize("program, arg, message", [
    ("convnetlab-train", "model=", "model= needs an option; choose one of: alexnet, "),
    ("convnetlab-train", "model=null", "model=null drops a required group; choose one of: alexnet, "),
    ("convnetlab-baseline", "data=null", "data=null drops a required group; choose one of: "),
    ("convnetlab-eval", "data=null", "data=null: Hydra takes no null for a config group; write ~data to compose none"),
    ("convnetlab-train", "debug=null", "debug=null: Hydra takes no null for a config group; write ~debug"),
    ("convnetlab-train", "experiment=null", "experiment=null: Hydra takes no null for a config group; write ~experiment"),
    ("convnetlab-train", "logger=null", "logger=null: Hydra takes no null for a config group; write logger=[]"),
    ("convnetlab-train", "debug=", "debug= needs an option; choose one of: fdr, limit, overfit, profiler (or ~debug for none)"),
    ("convnetlab-eval", "model=null", "model=null: convnetlab-eval composes no model; leave it out"),
    ("convnetlab-train", "=x", "'=x' has no key; write key=value"),
    ("convnetlab-train", "+=x", "'+=x' has no key; write key=value"),
])
def test_empty_and_null_group_values_and_empty_keys_get_one_line(program, arg, message):
    with pytest.raises(InputError) as error:
        check_group_choices(["seed=1", arg], program)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_deleting_groups_and_callbacks_still_passes():
    check_names("convnetlab-train", ["~callbacks.ema", "callbacks.step_checkpoint=null", "~experiment", "~debug",
                                     "model=lenet5", "hydra.output_subdir=null"])


@pytest.mark.parametrize("program", [p for p, c in COMMANDS.items() if c.config not in ("compare", "data_tools")])
@pytest.mark.parametrize("value", ["abc", "", "1.5", "null", "[1,2]", "1,x"])
def test_a_seed_that_is_not_an_integer_is_refused_up_front(program, value):
    with pytest.raises(InputError, match=r"^seed=.* is not an integer; write seed=<n>"):
        check_seed(program, [f"seed={value}"])


@pytest.mark.parametrize("value", ["0", "-3", "1_000", "1,2,3", "range(0,3)", "choice(1,2)", "${oc.env:SEED}"])
def test_integer_seeds_sweeps_and_interpolations_pass(value):
    check_seed("convnetlab-train", ["-m", f"seed={value}"])
    check_seed("convnetlab-compare", ["seed=abc"])  # compare has no seed: Hydra answers that one


@pytest.mark.parametrize("program, arg, message", [
    ("convnetlab-data", "action=chek", "unknown action 'chek' (did you mean check?); choose one of: generate, check, "),
    ("convnetlab-eval", "protocol=10crops", "unknown protocol '10crops' (did you mean 10crop?); "),
    ("convnetlab-eval", "split=train", "unknown split 'train'; choose one of: test, val"),
    ("convnetlab-baseline", "method=hogsvm", "unknown method 'hogsvm' (did you mean hog_svm?); "),
    ("convnetlab-baseline", "method=hog_svm,svm", "unknown method 'svm'"),  # every option of a sweep
])
def test_a_value_outside_a_keys_fixed_choices_is_named_before_any_import(program, arg, message):
    with pytest.raises(InputError) as error:
        check_names(program, ["-m", arg] if "," in arg else [arg])
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("program, args", [
    ("convnetlab-data", ["action=check"]), ("convnetlab-eval", ["protocol=10crop", "split=val"]),
    ("convnetlab-baseline", ["-m", "method=hog_svm,pixels_rf"]),
])
def test_values_inside_the_fixed_choices_pass(program, args):
    check_names(program, args)


def test_the_fixed_choices_are_the_ones_the_commands_accept():
    from convnetlab.cli.data import ACTIONS
    from convnetlab.data.multicrop import PROTOCOLS

    assert _choices(COMMANDS["convnetlab-data"])["action"] == ACTIONS
    assert _choices(COMMANDS["convnetlab-eval"])["protocol"] == PROTOCOLS
    documented = (Path(config_dir()) / "baseline.yaml").read_text().split("\nmethod: ", 1)[1].split("\n", 1)[0]
    assert set(_choices(COMMANDS["convnetlab-baseline"])["method"]) == set(documented.split("#", 1)[1].replace(" ", "").split("|"))
