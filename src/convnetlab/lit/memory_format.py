"""Choose NCHW or channels-last for a convolutional network by timing both on the machine that runs.

Which memory format is faster depends on the hardware (oneDNN's channels-last kernels win on some CPUs
and lose on others; on GPUs it depends on the tensor cores and the precision), on the model and on the
input size, so a default fixed from one machine is wrong on the next. ``module.channels_last=auto``
therefore measures: a copy of the backbone runs a few training steps (forward + backward, no optimizer
step; forward only for evaluation) on a random batch of the run's shape in each format, alternating,
and the faster median wins. The answer is cached per machine and model in ``memory_format.json`` under
the cache directory (``$CONVNETLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/convnetlab``, else
``~/.cache/convnetlab``), so only the first run of a model on a machine pays for the probe.
``module.channels_last=true|false`` skips it.

The probe leaves the run untouched: it works on a deep copy, draws its batch from its own generator and
so consumes no global random numbers.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ContextManager

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

log = logging.getLogger(__name__)
CACHE_FILE = "memory_format.json"
SLOW_STEP_S = 1.0  # a probe step slower than this: time one round only
# CPU features that decide which convolution kernels oneDNN picks.
_KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "asimd", "sve")


@dataclass(frozen=True)
class Choice:
    """The format chosen and what it was chosen from (median ms per step; None when read from the cache)."""

    channels_last: bool
    nchw_ms: float | None
    channels_last_ms: float | None
    source: str  # "probe" | "cache" | "no convolutions"

    def describe(self) -> str:
        name = "channels-last" if self.channels_last else "NCHW"
        if self.nchw_ms is None or self.channels_last_ms is None:
            return f"memory format {name} ({self.source})"
        return (f"memory format {name} ({self.source}: NCHW {self.nchw_ms:.1f} ms, channels-last "
                f"{self.channels_last_ms:.1f} ms per step); set module.channels_last=true|false to override")


def cache_dir() -> Path:
    if os.environ.get("CONVNETLAB_CACHE_DIR"):
        return Path(os.environ["CONVNETLAB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convnetlab"


def machine_key(device: torch.device) -> str:
    """What makes timings of this machine differ from another's: the processor and its kernel-relevant
    features, the accelerator, the threads and the torch build."""
    parts = [platform.machine(), _cpu_model(), ",".join(f for f in _KERNEL_FLAGS if f in _cpu_flags()),
             f"threads={torch.get_num_threads()}", f"torch={torch.__version__}", device.type]
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    return " | ".join(parts)


def model_key(spec: Mapping[str, Any], input_shape: tuple[int, ...], precision: str, train: bool) -> str:
    return json.dumps({"model": spec, "input": list(input_shape), "precision": str(precision),
                       "mode": "train" if train else "eval"}, sort_keys=True, default=str)


def input_shape(datamodule: Any, train: bool) -> tuple[int, int, int, int] | None:
    """(batch, channels, height, width) of the batches a datamodule feeds (None when it does not say)."""
    try:
        if train:
            return (int(datamodule.batch_size), int(datamodule.channels), int(datamodule.train_image_size),
                    int(datamodule.train_image_size))
        return (int(datamodule.eval_batch_size), int(datamodule.channels), int(datamodule.image_size),
                int(datamodule.image_size))
    except (AttributeError, TypeError):
        return None


def has_convolutions(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def probe(backbone: nn.Module, input_shape: tuple[int, ...], device: torch.device, train: bool = True,
          rounds: int = 3, context: Callable[[], ContextManager] = contextlib.nullcontext,
          timer: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """Median ms per step of (NCHW, channels-last) for a copy of ``backbone`` on ``input_shape``.

    One warm-up step per format (kernel selection, allocator), then ``rounds`` alternating timed steps;
    one round when a warm-up step took over ``SLOW_STEP_S`` (a large model on a CPU), so the probe stays
    a few steps long.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(input_shape, generator=generator).to(device)
    models = {fmt: copy.deepcopy(backbone).to(device=device, memory_format=fmt)
              for fmt in (torch.contiguous_format, torch.channels_last)}
    times: dict[torch.memory_format, list[float]] = {fmt: [] for fmt in models}

    def step(fmt: torch.memory_format) -> float:
        model, batch = models[fmt], images.contiguous(memory_format=fmt)
        _synchronize(device)
        start = timer()
        with context():
            if train:
                out = model.train()(batch)
                _first(out).float().sum().backward()
                model.zero_grad(set_to_none=True)
            else:
                with torch.no_grad():
                    model.eval()(batch)
        _synchronize(device)
        return timer() - start

    warmup = max(step(fmt) for fmt in models)
    for _ in range(1 if warmup > SLOW_STEP_S else rounds):
        for fmt in models:
            times[fmt].append(step(fmt))
    nchw, last = (statistics.median(times[f]) * 1e3 for f in models)
    return nchw, last


def choose(backbone: nn.Module, spec: Mapping[str, Any], input_shape: tuple[int, ...], device: torch.device,
           train: bool = True, precision: str = "32-true",
           context: Callable[[], ContextManager] = contextlib.nullcontext, use_cache: bool = True,
           measure: Callable[..., tuple[float, float]] | None = None) -> Choice:
    """The faster format for this backbone, input and machine: from the cache, else measured and cached."""
    if not has_convolutions(backbone):
        return Choice(False, None, None, "no convolutions")
    path = cache_dir() / CACHE_FILE
    machine, model = machine_key(device), model_key(spec, input_shape, precision, train)
    key = hashlib.sha1(f"{machine}\n{model}".encode()).hexdigest()
    cached = _read(path).get(key) if use_cache else None
    if cached is not None:
        return Choice(bool(cached["channels_last"]), cached.get("nchw_ms"), cached.get("channels_last_ms"), "cache")
    rank_zero_info("timing a few training steps in NCHW and in channels-last to choose the faster (once per machine "
             "and model; module.channels_last=true|false skips this)")
    nchw_ms, last_ms = (measure or probe)(backbone, input_shape, device, train=train, context=context)
    choice = Choice(last_ms < nchw_ms, round(nchw_ms, 3), round(last_ms, 3), "probe")
    if use_cache:
        stored = _add(path, key, {**asdict(choice), "machine": machine, "model": json.loads(model)})
        if bool(stored["channels_last"]) != choice.channels_last:  # another run measured first: agree with it
            return Choice(bool(stored["channels_last"]), stored.get("nchw_ms"), stored.get("channels_last_ms"), "cache")
    return choice


def _first(out: Any) -> torch.Tensor:
    """The main output of a backbone that may return (logits, aux...) tuples."""
    return out[0] if isinstance(out, tuple | list) else out


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown cpu"


def _cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: measure again


def _add(path: Path, key: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Store ``entry`` under ``key`` unless another run stored one first, and return the stored one, so runs
    sharing a cache always agree (a resumed or repeated run trains in the same format). Locked and atomic;
    an unwritable cache is skipped with a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = _read(path)
            if key in entries:
                return entries[key]
            with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
                json.dump({**entries, key: entry}, tmp, indent=1)
            os.replace(tmp.name, path)
    except OSError as error:
        log.warning("could not cache the memory-format choice in %s: %s", path, error)
    return entry


def choose_for_run(backbone: nn.Module, spec: Mapping[str, Any], trainer: Any, train: bool) -> bool:
    """Whether ``trainer``'s run should use channels-last: measured (or cached) on a batch of its datamodule's
    shape, on its device and under its precision; every DDP rank takes rank 0's answer. NCHW when the
    datamodule does not say its batch shape."""
    shape = input_shape(getattr(trainer, "datamodule", None), train=train)
    if shape is None:
        return False
    choice = choose(backbone, spec, shape, trainer.strategy.root_device, train=train,
                    precision=str(trainer.precision), context=trainer.precision_plugin.forward_context)
    rank_zero_info(choice.describe())
    return bool(trainer.strategy.broadcast(choice.channels_last, src=0))
