"""Outputs of named sub-modules during a forward pass, with forward hooks that never outlive their use."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import Tensor, nn


@contextmanager
def capture_outputs(
    model: nn.Module, names: Iterable[str] | None = None, *, clone: bool = False, inputs: bool = False
) -> Iterator[dict[str, Tensor]]:
    """Within the ``with`` block, every forward of ``model`` records the outputs of the sub-modules
    ``names`` (default: every named sub-module) into the yielded dict; the hooks are removed on exit.

    The dict maps a module name to its latest output, in the order the modules last ran. A tuple or
    list output is recorded as its first element (GoogLeNet-style ``(logits, aux...)``); any other
    non-tensor output is not recorded. ``clone=True`` stores detached copies, safe from a following
    in-place op (ReLU) and from autograd; the default keeps the tensor itself, graph included.
    ``inputs=True`` records each module's first positional input instead (a forward pre-hook), e.g.
    what a classifier head sees.
    Unknown names raise ``AttributeError`` (from ``get_submodule``) before any hook is registered.
    """
    modules = ({name: module for name, module in model.named_modules() if name} if names is None
               else {name: model.get_submodule(name) for name in names})
    captured: dict[str, Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: object, output: object) -> None:
            if isinstance(output, tuple | list) and output:
                output = output[0]
            if isinstance(output, Tensor):
                captured.pop(name, None)  # re-inserted: the dict keeps the order of the latest calls
                captured[name] = output.detach().clone() if clone else output
        return record

    handles = [module.register_forward_pre_hook(lambda m, args, record=hook(name): record(m, args, args)) if inputs
               else module.register_forward_hook(hook(name)) for name, module in modules.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
