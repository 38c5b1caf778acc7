"""Experiment loggers: CSV always, W&B offline when there are no credentials, TensorBoard on request."""

from __future__ import annotations

import netrc
import secrets
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_info

from convnetlab.csv_logger import AppendingCSVLogger
from convnetlab.errors import InputError

WANDB_ID_FILE = "wandb_run_id.txt"


def wandb_credentials_available() -> bool:
    """True if W&B could authenticate: an API key in the environment or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _wandb_run_id(run_dir: Path) -> str:
    """A W&B run id stored in the run dir, so resuming a run continues the same W&B run."""
    path = run_dir / WANDB_ID_FILE
    if path.exists():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)
    path.write_text(run_id + "\n")
    return run_id


def wandb_offline(cfg: Mapping[str, Any], run_dir: Path, is_rank_zero: bool = True) -> bool | None:
    """Whether W&B logs offline (None: disabled). ``mode: auto`` (the default) is online with credentials
    and offline without; an explicit online request (``logger.wandb.mode=online`` or ``WANDB_MODE=online``)
    without credentials is an error rather than a run that silently logs nowhere you look."""
    env_mode = os.environ.get("WANDB_MODE")
    mode = cfg.get("mode", "auto")
    if env_mode == "disabled" or mode == "disabled":
        return None
    if cfg.get("offline") or mode == "offline" or env_mode in ("offline", "dryrun"):
        return True
    if wandb_credentials_available():
        return False
    if mode == "online" or env_mode == "online":
        raise InputError("W&B online logging was requested (logger.wandb.mode=online or WANDB_MODE=online) but no "
                         "credentials were found; run `wandb login` or set WANDB_API_KEY, or use logger.wandb.mode=offline.")
    if is_rank_zero:
        rank_zero_info(f"W&B: no credentials found, logging offline; upload later with `wandb sync {run_dir}/wandb/offline-run-*`")
    return True


def build_loggers(
    logger_cfgs: Mapping[str, Any] | None, run_dir: Path, run_config: dict, is_rank_zero: bool = True
) -> list[Logger]:
    """Instantiate the selected loggers; a CSV logger writing ``run_dir/metrics.csv`` is always present.

    ``run_config`` (the resolved, nested run config) becomes the W&B run config.
    """
    loggers: list[Logger] = []
    for name, cfg in (logger_cfgs or {}).items():
        if not cfg:
            continue
        if "WandbLogger" in str(cfg.get("_target_", "")):
            offline = wandb_offline(cfg, run_dir, is_rank_zero)
            if offline is None:
                continue
            run_id = _wandb_run_id(run_dir) if is_rank_zero else None
            kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in ("_target_", "mode")}
            kwargs.update(offline=offline, id=run_id, resume="allow", config=run_config)  # `config` clashes with instantiate
            loggers.append(get_class(cfg["_target_"])(**kwargs))
        else:
            loggers.append(instantiate(cfg))
    if not any(isinstance(lg, CSVLogger) for lg in loggers):
        loggers.insert(0, AppendingCSVLogger(save_dir=str(run_dir), name="", version=""))
    return loggers


def finish_wandb(loggers: list[Logger], exit_code: int = 0) -> None:
    """Close the W&B run so the next multirun job starts its own; a failed job is marked failed."""
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=exit_code)


class LoggerSession:
    """The loggers of one job; ``failed`` marks its W&B run failed when the session closes."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers, self.failed = loggers, False


@contextmanager
def logger_session(
    logger_cfgs: Mapping[str, Any] | None, run_dir: Path, run_config: dict, is_rank_zero: bool = True
) -> Iterator[LoggerSession]:
    """:func:`build_loggers`, and W&B always closed at the end (one W&B run per Hydra job), failed on an error."""
    session = LoggerSession(build_loggers(logger_cfgs, run_dir, run_config, is_rank_zero=is_rank_zero))
    try:
        yield session
    except BaseException:
        session.failed = True
        raise
    finally:
        finish_wandb(session.loggers, exit_code=1 if session.failed else 0)
