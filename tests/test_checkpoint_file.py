"""A checkpoint the user names that is a folder, cut short or not a checkpoint at all is one line that names
it; a resume that fails in any way puts the run's .hydra/ files back."""

from __future__ import annotations

import pytest
import torch

from convnetlab.checkpoint_file import check_checkpoint_path, load_classifier, read_checkpoint
from convnetlab.cli import input_checks
from convnetlab.errors import InputError, MissingFileError


@pytest.fixture
def truncated(tmp_path):
    whole = tmp_path / "whole.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.randn(64, 64)}, "hyper_parameters": {}}, whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # a copy interrupted half-way
    return cut


def test_a_truncated_checkpoint_is_one_line_naming_it(truncated):
    with pytest.raises(InputError, match=f"cannot read checkpoint {truncated}.*damaged") as error:
        read_checkpoint(truncated)
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match=f"cannot read checkpoint {truncated}"):
        load_classifier(truncated)


def test_a_file_that_is_no_checkpoint_is_named(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(InputError, match=f"cannot read checkpoint {text}"):
        load_classifier(text)
    plain = tmp_path / "plain.pt"
    torch.save([1, 2, 3], plain)  # loads, but holds no state_dict
    with pytest.raises(InputError, match="no state_dict"):
        read_checkpoint(plain)


def test_a_folder_or_a_missing_path_says_which(tmp_path):
    with pytest.raises(InputError, match=f"ckpt_path={tmp_path} is a folder"):
        check_checkpoint_path(tmp_path)
    with pytest.raises(MissingFileError, match="does not exist"):
        check_checkpoint_path(tmp_path / "nope.ckpt")


def test_a_resume_that_crashes_still_gets_its_run_config_back(tmp_path, monkeypatch):
    saved = tmp_path / ".hydra" / "overrides.yaml"
    saved.parent.mkdir()
    saved.write_text("- model=lenet5\n")
    monkeypatch.setattr(input_checks, "_saved_run_config", {})
    input_checks.keep_run_config([f"hydra.run.dir={tmp_path}"])

    def crashing_task():
        saved.write_text("- model=lenet5\n- ckpt_path=cut.ckpt\n")  # what Hydra writes before the task runs
        raise RuntimeError("a bug, not bad input")

    with pytest.raises(RuntimeError, match="a bug"):  # bugs keep their traceback...
        input_checks.exits_on_user_error(crashing_task)()
    assert saved.read_text() == "- model=lenet5\n"  # ...and the next resume still replays the good command line
