"""Bad input stops every entry point with one ``error: ...`` line and exit status 2, before work is lost.

The command line is composed once, by Hydra. Before Hydra starts: unknown config-group options
(``model=foo``, for every option of a sweep) and API keys. Malformed overrides and unknown keys fail in
Hydra's composition and are reported by :func:`report_composition_error`. Values of the wrong type for
their ``_target_`` are checked by :class:`ConfigCheck`, a Hydra callback that sees the composed config
before a single run writes anything (a multirun checks each job as it starts). Errors raised later as
:class:`ConvnetlabError` (missing data, mismatched checkpoints, ...) are printed the same way by
:func:`exits_on_user_error`, which also puts back a resumed run's ``.hydra/`` files that Hydra had
already overwritten with the failing command line, so the next resume replays the last good one.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from convnetlab.cli.command_line import check_names
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
    (:mod:`convnetlab.cli.command_line`; the console scripts already ran these checks before importing torch)."""
    try:
        check_names(program, args)
    except ConvnetlabError as error:
        fail(error)


def report_composition_error(error: BaseException) -> None:
    """One line from Hydra's/OmegaConf's composition error (malformed override, unknown key), exit status 2."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and "full_key" not in line]
    fail(InputError(" ".join(lines[:2])))


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
            check_config_types(task)
        except ConvnetlabError as error:
            fail(error)


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
            cause = _user_error(error)
            if cause is None:
                raise
            for path, content in _saved_run_config.items():
                path.write_bytes(content)
            fail(cause)

    return run


def _user_error(error: BaseException | None) -> ConvnetlabError | None:
    """The ConvnetlabError behind ``error``, also when a library wrapped it (e.g. an OmegaConf resolver)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ConvnetlabError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
