"""What every Hydra entry point shares: the config dir, resolvers, resume and DDP-child arguments."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict, read_write

import convnetlab
from convnetlab.errors import MissingFileError


def config_dir() -> str:
    """``conf/`` shipped inside the wheel, or the repository's top-level ``conf/`` in a checkout."""
    packaged = Path(convnetlab.__file__).resolve().parent / "conf"
    if packaged.is_dir():
        return str(packaged)
    checkout = Path(convnetlab.__file__).resolve().parents[2] / "conf"
    if checkout.is_dir():
        return str(checkout)
    raise FileNotFoundError(f"convnetlab's Hydra configs are missing: looked in {packaged} and {checkout}; reinstall.")


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

    if not Path(ckpt).is_file():
        raise MissingFileError(f"ckpt_path={ckpt} does not exist; pass the path of an existing .ckpt file.")
    run_dir = run_dir_of_checkpoint(ckpt)
    if run_dir is None:
        return argv
    given = {_override_key(a) for a in args if "=" in a}
    saved = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    replay = [o for o in saved if _override_key(o) not in given and not _override_key(o).startswith("hydra.")]
    extra = [] if "hydra.run.dir" in given else [f"hydra.run.dir={run_dir}"]
    return [argv[0], *replay, *args, *extra]


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
