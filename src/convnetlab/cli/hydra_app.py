"""What every Hydra entry point shares: the config dir, resolvers, resume and DDP-child arguments, and
:func:`entry_point`, which builds each console script's ``main`` from its task function."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from convnetlab.cli.command_line import config_dir, program_of
from convnetlab.checkpoint_file import check_checkpoint_path


def register_resolvers() -> None:
    """OmegaConf resolvers used by the configs (idempotent)."""
    from convnetlab.data.folder import register_resolvers as register_data_resolvers
    from convnetlab.recipes import register_recipe_resolvers

    register_data_resolvers()
    register_recipe_resolvers()


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_argv(argv: list[str]) -> list[str]:
    """Make ``ckpt_path=<run>/checkpoints/x.ckpt`` continue that run in place.

    The run's original overrides are replayed first (so the same model/data/trainer are composed),
    then the user's (which win), and Hydra writes into the original run directory.
    """
    args = argv[1:]
    if any(a in ("-m", "--multirun") for a in args):
        return argv
    ckpt = next((a.split("=", 1)[1] for a in args if _override_key(a) == "ckpt_path"), None)
    if not ckpt or ckpt in ("null", "last"):  # "last": Lightning resumes from the run dir's last.ckpt if any
        return argv
    from convnetlab.runs import run_dir_of_checkpoint

    check_checkpoint_path(ckpt)
    run_dir = run_dir_of_checkpoint(ckpt)
    if run_dir is None:
        return argv
    given = {_override_key(a) for a in args if "=" in a or a.startswith("~")}
    saved = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    replay = [o for o in saved if _override_key(o) not in given and not _override_key(o).startswith("hydra.")]
    replayed = {_override_key(o) for o in saved}
    pins = [o for o in group_choices(run_dir) if _override_key(o) not in given | replayed]
    extra = [] if "hydra.run.dir" in given else [f"hydra.run.dir={run_dir}"]
    return [argv[0], *pins, *replay, *args, *extra]


def group_choices(run_dir: Path) -> list[str]:
    """The run's top-level config-group choices as overrides (``~group`` where it chose none), from its
    ``.hydra/hydra.yaml``: a resume composes the groups the run trained with even when a default has changed
    since (e.g. the default run's ``experiment`` and ``callbacks``). Empty for a run dir without the file."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return []
    choices = ((yaml.safe_load(path.read_text()) or {}).get("hydra", {}).get("runtime", {}).get("choices")) or {}
    return [f"~{group}" if option is None else f"{group}={option}" for group, option in choices.items()
            if "/" not in group and "@" not in group and not group.startswith("hydra")]


CONFIG_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def _config_location_flags(args: list[str]) -> list[str]:
    """The ``--config-dir X``-style flags of a command line (both ``--flag X`` and ``--flag=X``)."""
    kept = []
    for i, arg in enumerate(args):
        if arg in CONFIG_FLAGS and i + 1 < len(args):
            kept += [arg, args[i + 1]]
        elif arg.split("=", 1)[0] in CONFIG_FLAGS and "=" in arg:
            kept.append(arg)
    return kept


def pin_ddp_children_to_this_job(output_dir: str) -> None:
    """Stop DDP child ranks from re-running a whole Hydra sweep (Lightning's subprocess launcher bug).

    Lightning starts each extra rank with ``sys.argv`` plus ``hydra.run.dir=<HydraConfig run.dir>``.
    Under ``-m`` that argv is the whole sweep and run.dir is not this job's directory, so each child
    would launch every job again. Rewriting argv to this job's own overrides and pointing run.dir at
    this job's output dir makes each child join exactly this job.
    """
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    search_path = [o for o in hydra_cfg.overrides.hydra if o.startswith("hydra.searchpath")]
    # hydra.mode=RUN: an Optuna overlay sets MULTIRUN itself, which would start a study per rank.
    sys.argv = [sys.argv[0], *_config_location_flags(sys.argv[1:]), *hydra_cfg.overrides.task, *search_path,
                "hydra.mode=RUN"]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = output_dir


Task = Callable[[DictConfig, Path], Any]


def entry_point(config_name: str, task: Task, *, report: Callable[[Any, Path], None] | None = None,
                resumable: bool = False) -> Callable[[], None]:
    """The console script ``main`` that runs ``task(cfg, output_dir)`` as a Hydra app on ``conf/<config_name>.yaml``.

    ``main`` registers the resolvers, checks the option names before Hydra starts, then lets Hydra compose
    ``cfg`` (once; its type check is the ``ConfigCheck`` Hydra callback of ``conf/hydra/default.yaml``) and
    call ``task`` with the job's output dir. Bad input at any of these steps, and a :class:`ConvnetlabError`
    from ``task``, becomes one ``error:`` line and exit status 2 (see :mod:`convnetlab.cli.input_checks`). ``report(result, output_dir)``, if given, prints what ``task`` returned; the
    result then goes back to Hydra (a sweeper's objective).
    ``resumable=True`` (training): ``ckpt_path=<run>/checkpoints/x.ckpt`` replays that run's overrides
    into its own dir (:func:`resume_argv`), and a resumed run that stops on bad input gets its
    ``.hydra/`` files back. Hydra names the job after ``task``'s module (``train``, ``evaluate``, ...).
    """
    from convnetlab.cli.input_checks import (check_command_line, exits_on_user_error, keep_run_config,
                                             report_composition_error)

    @functools.wraps(task)  # Hydra follows __wrapped__ to task's module for the job name
    def run_task(cfg: DictConfig) -> Any:
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        result = task(cfg, output_dir)
        if report is not None:
            report(result, output_dir)
        return result

    hydra_main = hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(
        exits_on_user_error(run_task))

    def main() -> None:
        register_resolvers()
        if resumable:
            sys.argv = exits_on_user_error(resume_argv)(sys.argv)
        check_command_line(program_of(config_name), sys.argv[1:])
        if resumable:
            keep_run_config(sys.argv[1:])
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # composition errors reach us instead of a printed page
        try:
            hydra_main()
        except (HydraException, OmegaConfBaseException) as error:
            report_composition_error(error, program_of(config_name))

    return main
