"""Bad input stops every entry point with one ``error: ...`` line and exit status 2, before work is lost.

The command line is composed once, by Hydra. Before Hydra starts: unknown config-group options
(``model=foo``, for every option of a sweep) and API keys. Malformed overrides and unknown keys fail in
Hydra's composition and are reported by :func:`report_composition_error`. Values of the wrong type for
their ``_target_`` are checked by :class:`ConfigCheck`, a Hydra callback that sees the composed config
before a single run writes anything (a multirun checks each job as it starts). Errors raised later as
:class:`ConvnetlabError` (missing data, mismatched checkpoints, ...) are printed the same way by
:func:`exits_on_user_error`, which also puts back a resumed run's ``.hydra/`` files that Hydra had
already overwritten with the failing command line (after any error, a bug's traceback included), so the next
resume replays the last good one.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from convnetlab.cli.command_checks import check_names
from convnetlab.cli.command_line import COMMANDS, config_dir, default_groups, group_options, primary_config
from convnetlab.config_types import check_config_types
from convnetlab.errors import ConvnetlabError, InputError, one_line
from convnetlab.runs import RESOLVED_CONFIG

EXIT_STATUS = 2
_saved_run_config: dict[Path, bytes] = {}


def fail(error: BaseException) -> None:
    print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
    sys.exit(EXIT_STATUS)


def check_command_line(program: str, args: list[str]) -> None:
    """Exit with one line if ``args`` hold a positional word, an API key or an unknown config-group option
    (:mod:`convnetlab.cli.command_checks`; the console scripts already ran these checks before importing torch)."""
    try:
        check_names(program, args)
    except ConvnetlabError as error:
        fail(error)


def report_composition_error(error: BaseException, program: str = "this command") -> None:
    """One line from Hydra's/OmegaConf's composition error (malformed override, unknown key), exit status 2."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and "full_key" not in line]
    fail(InputError(_unselected_group(lines[0] if lines else "", program) or " ".join(lines[:2])))


def _unselected_group(message: str, program: str) -> str | None:
    """Hydra answers an override of a config group the command has not chosen (``convnetlab-eval data.root=x``,
    whose data default is the checkpoint's) or does not use (``convnetlab-compare model=x``) with "use +key",
    which would not work either; say what would."""
    found = re.match(r"Could not override '([^']+)'", message)
    group = found and found.group(1).split(".")[0].lstrip("+~")
    if not group or not group_options(Path(config_dir()) / group):
        return None
    config = COMMANDS[program].config if program in COMMANDS else None
    defaults = default_groups(config) if config else {}
    if group not in defaults:
        return f"{program} has no {group} option; its settings are listed by {program} --help"
    if defaults[group] is not None:  # chosen: the key itself is unknown, as Hydra says
        return None
    reads_checkpoints = "???" in (primary_config(config).get("ckpt_path"), primary_config(config).get("ckpt_paths"))
    own = f" (without one, {program} uses the checkpoint's own {group})" if reads_checkpoints else ""
    choices = ", ".join(group_options(Path(config_dir()) / group))
    return f"{found.group(1)} needs a {group} chosen first: add {group}=<one of: {choices}>{own}"


class ConfigCheck(Callback):
    """Hydra callback: the composed config's values against their ``_target_``'s type hints.

    ``on_run_start`` runs after composition and before Hydra creates the run dir, so a single run with a
    bad value writes nothing. Hydra turns a callback's exception into a warning, so the error exits here.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # for ${hydra:...} interpolations; run_job sets it again
        self._check(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            self._check(config)

    @staticmethod
    def _check(config: DictConfig) -> None:
        task = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
        try:
            check_required_values(task)
            check_config_types(task)
        except ConvnetlabError as error:
            fail(error)


# What a required value (``???`` in conf/) holds, for the error that asks for it.
_REQUIRED_HINTS = {"root": "<dataset folder>", "ckpt_path": "<file.ckpt>", "ckpt_paths": "[<file.ckpt>,...]",
                   "runs": "<run or sweep dir>"}


def check_required_values(cfg: DictConfig) -> None:
    """A required value left unset (``data=imagefolder`` without ``data.root``) is named with the override
    that sets it, before the run starts, instead of OmegaConf's "Missing mandatory value" from inside it."""
    missing = sorted(_missing_keys(OmegaConf.to_container(cfg, resolve=False)))  # resolving needs a run dir
    if missing:
        sets = " ".join(f"{key}={_REQUIRED_HINTS.get(key.rsplit('.', 1)[-1], '<value>')}" for key in missing)
        raise InputError(f"{', '.join(missing)} must be set: add {sets} to the command line")


def _missing_keys(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict):
        return [key for name, value in node.items() for key in _missing_keys(value, f"{path}{name}.")]
    if isinstance(node, list):
        return [key for i, value in enumerate(node) for key in _missing_keys(value, f"{path}{i}.")]
    return [path.rstrip(".")] if node == "???" else []


def keep_run_config(args: list[str]) -> None:
    """Remember a resumed run's ``.hydra/*.yaml`` and resolved config before they are rewritten
    (restored by exits_on_user_error if the run then stops on bad input)."""
    run_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), None)
    if run_dir and (Path(run_dir) / ".hydra").is_dir():
        files = [*(Path(run_dir) / ".hydra").glob("*.yaml"), Path(run_dir) / RESOLVED_CONFIG]
        _saved_run_config.update({p: p.read_bytes() for p in files if p.is_file()})


def exits_on_user_error(task: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Hydra task: a ConvnetlabError becomes one line and exit status 2 (real bugs keep tracebacks)."""

    @functools.wraps(task)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as error:
            for path, content in _saved_run_config.items():  # a resume that failed for any reason
                path.write_bytes(content)
            cause = _user_error(error)
            if cause is None:
                raise
            _discard_unstarted_run()
            fail(cause)

    return run


def _discard_unstarted_run() -> None:
    """Remove the run dir of a new single run stopped by bad input before it wrote anything but Hydra's
    ``.hydra/`` and log: an empty run among the real ones only misleads (compare, ls). Only Hydra's own
    dated dirs go; a dir the user named (``hydra.run.dir=``), a resumed run's, a sweep's job dirs and
    anything with results in it are kept."""
    try:
        hydra = HydraConfig.get()
        run_dir = Path(hydra.runtime.output_dir)
    except (ValueError, OmegaConfBaseException):  # not inside a Hydra job (resume_argv)
        return
    named = any(o.startswith("hydra.run.dir=") for o in hydra.overrides.hydra)
    if named or _saved_run_config or hydra.mode != RunMode.RUN or not run_dir.is_dir():
        return
    if all(p.name == ".hydra" or (p.is_file() and p.suffix == ".log") for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            run_dir.parent.rmdir()  # the day's folder, if this was its only run


def _user_error(error: BaseException | None) -> ConvnetlabError | None:
    """The ConvnetlabError behind ``error``, also when a library wrapped it (e.g. an OmegaConf resolver)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ConvnetlabError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
