"""Bad input stops every entry point with one ``error: ...`` line and exit status 2, before work is lost.

Checked before Hydra starts (so nothing is written): unknown config-group options (``model=foo``) and,
for single runs, values of the wrong type for their ``_target_``. Errors raised later as
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

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from convnetlab.cli.hydra_app import config_dir
from convnetlab.config_types import check_config_types
from convnetlab.errors import ConvnetlabError, InputError, one_line
from convnetlab.runs import RESOLVED_CONFIG

EXIT_STATUS = 2
_saved_run_config: dict[Path, bytes] = {}


def fail(error: BaseException) -> None:
    print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
    sys.exit(EXIT_STATUS)


def _group_options(group: Path) -> list[str]:
    """The selectable options of a config group: ``_*.yaml`` files (and folders) are bases that others inherit."""
    options = (p.relative_to(group).with_suffix("") for p in group.rglob("*.yaml"))
    return sorted(str(o) for o in options if not any(part.startswith("_") for part in o.parts))


def check_group_choices(args: list[str]) -> None:
    """Every ``[+]group=option[,option...]`` names an existing ``conf/<group>/<option>.yaml`` that is not a
    base (``_*.yaml``, e.g. experiment=findings/_base: never complete on its own)."""
    conf = Path(config_dir())
    for arg in args:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        group = conf / key
        if key.startswith("hydra") or "." in key or not group.is_dir() or value in ("", "null"):
            continue
        for option in (o.strip() for o in value.strip("[]").split(",")):
            if option and not any(c in option for c in "()*$") and option not in _group_options(group):
                raise InputError(f"unknown {key} '{option}'; choose one of: {', '.join(_group_options(group))}")


def refuse_secrets(args: list[str]) -> None:
    """API keys never go into overrides: Hydra saves those in the run's .hydra/ and W&B would log them."""
    for arg in args:
        if "=" in arg and "api_key" in arg.split("=", 1)[0].lower():
            raise InputError(f"{arg.split('=', 1)[0]} on the command line would be saved in the run's .hydra/; "
                             "set WANDB_API_KEY in the environment or run `wandb login` instead.")


def check_command_line(config_name: str, args: list[str]) -> None:
    """Exit with one line if ``args`` name an unknown option or give a value of the wrong type."""
    try:
        refuse_secrets(args)
        check_group_choices(args)
        if any(a.startswith("-") for a in args):  # multirun sweeps are checked per job; -cd/-cn move the config
            return
        overrides = [a for a in args if not a.lstrip("+~").startswith("hydra")]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
        check_config_types(cfg)
    except ConvnetlabError as error:
        fail(error)
    except (HydraException, OmegaConfBaseException) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip() and "full_key" not in line]
        fail(InputError(" ".join(lines[:2])))


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
