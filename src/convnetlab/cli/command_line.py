"""The console scripts and what they read without importing torch: their config tree and ``--help``.

Importing torch and Lightning takes seconds; ``--help`` and the checks of :mod:`convnetlab.cli.command_checks`
are answered before that, from the config tree alone. Only the standard library, yaml (the primary configs'
keys and defaults lists) are imported here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import convnetlab


def config_dir() -> str:
    """``conf/`` shipped inside the wheel, or the repository's top-level ``conf/`` in a checkout."""
    packaged = Path(convnetlab.__file__).resolve().parent / "conf"
    if packaged.is_dir():
        return str(packaged)
    checkout = Path(convnetlab.__file__).resolve().parents[2] / "conf"
    if checkout.is_dir():
        return str(checkout)
    raise FileNotFoundError(f"convnetlab's Hydra configs are missing: looked in {packaged} and {checkout}; reinstall.")


@dataclass(frozen=True)
class Command:
    """A console script: its module and primary config, what it does, the overrides people type, two examples, and which
    keys positional words most likely meant (``convnetlab-eval run/best.ckpt`` -> ``ckpt_path=``). ``key=a|b`` and
    ``key=[...]`` in ``common`` also say which words name a key (``10crop``) and which keys take a list."""

    module: str
    config: str
    does: str
    common: tuple[str, ...]
    examples: tuple[str, str]
    positional: tuple[str, ...] = ()
    implied: tuple[str, ...] = ()  # what 1, 2, ... path words without the first positional key meant


COMMANDS = {
    "convnetlab-train": Command(
        "train", "train", "Train a CNN, then validate and test its best checkpoint; the run dir gets metrics.json.",
        ("model=<arch>", "data=<dataset> data.root=<folder>", "trainer=cpu|gpu|ddp|ddp_cpu", "experiment=<name>",
         "optimizer.lr=<lr>", "trainer.max_epochs=<n>", "seed=<n>", "ckpt_path=<run>/checkpoints/last.ckpt (resume)",
         "-m <key>=<a>,<b> (sweep)"),
        ("convnetlab-train model=vgg11_bn data=digits", "convnetlab-train -m model=lenet5,resnet18_cpu seed=1,2")),
    "convnetlab-eval": Command(
        "evaluate", "eval", "Test metrics of a checkpoint (protocol=center|10crop|multiscale), added to its run's metrics.json.",
        ("ckpt_path=<file>", "protocol=center|10crop|multiscale", "split=test|val", "data=<dataset>"),
        ("convnetlab-eval ckpt_path=outputs/train/<date>/<time>/checkpoints/last.ckpt",
         "convnetlab-eval ckpt_path=<file> protocol=10crop"), positional=("ckpt_path",)),
    "convnetlab-data": Command(
        "data", "data_tools", "Dataset chores: generate the embedded data, check a folder for bad images, prepare ILSVRC val, "
        "optimize a folder into litdata chunks (data=streaming).",
        ("action=generate|check|prepare_imagenet_val|optimize", "root=<dataset folder>", "out=<dir or s3://...>",
         "data=shapes|digits"),
        ("convnetlab-data action=check root=/data/imagenet", "convnetlab-data data=digits"),
        positional=("action", "root", "out"), implied=("action=check", "action=optimize")),
    "convnetlab-embed": Command(
        "embed", "embed", "Export a checkpoint's embeddings and report linear-probe and k-NN accuracy.",
        ("ckpt_path=<file>", "data=<dataset>", "knn_k=<k>"),
        ("convnetlab-embed ckpt_path=<file>", "convnetlab-embed ckpt_path=<file> data=shapes data.class_offset=8"),
        positional=("ckpt_path",)),
    "convnetlab-visualize": Command(
        "visualize", "visualize", "Filters, feature maps, saliency, SmoothGrad and Grad-CAM of a checkpoint, with a sanity check.",
        ("ckpt_path=<file>", "n_images=<n>", "grad_cam_layer=<module>", "layers=[<module>,...]"),
        ("convnetlab-visualize ckpt_path=<file>", "convnetlab-visualize ckpt_path=<file> grad_cam_layer=layer3"),
        positional=("ckpt_path",)),
    "convnetlab-probe": Command(
        "probe", "probe", "Accuracy of checkpoints under controlled distortions (translation, scale, rotation, noise, ...).",
        ("ckpt_paths=[<file>,...]", "labels=[<name>,...]"),
        ("convnetlab-probe ckpt_paths=[<file>]", "convnetlab-probe ckpt_paths=[<a>,<b>] labels=[plain,augmented]"),
        positional=("ckpt_paths",)),
    "convnetlab-compare": Command(
        "compare", "compare", "An ILSVRC-style table and plots (error vs GFLOPs vs params) from finished runs or sweeps.",
        ("runs=<dir> or runs=[<dir>,...]", "generations=[<arch>,...]"),
        ("convnetlab-compare runs=multirun/train/<date>/<time>",
         "convnetlab-compare 'generations=[lenet5,alexnet,vgg16,googlenet,resnet50]' runs=null"),
        positional=("runs",)),
    "convnetlab-baseline": Command(
        "baseline", "baseline", "A pre-CNN pipeline (HOG or pixels + linear SVM, RBF SVM or random forest) on the CNNs' data; "
        "metrics.json as convnetlab-train writes it.",
        ("method=hog_svm|hog_rf|pixels_rf|pixels_svm", "data=<dataset>", "data.train_per_class=<n>", "seed=<n>",
         "linear_svm.C=<C>", "forest.n_estimators=<n>", "hog.pixels_per_cell=<px>"),
        ("convnetlab-baseline method=hog_svm data=digits",
         "convnetlab-baseline -m method=hog_svm,pixels_svm data=shapes data.train_per_class=20 seed=0,1,2")),
}


def program_of(config_name: str) -> str:
    """The console script whose Hydra app has the primary config ``config_name``."""
    return next((p for p, c in COMMANDS.items() if c.config == config_name), f"convnetlab-{config_name}")


def group_options(group: Path) -> list[str]:
    """The selectable options of a config group: ``_*.yaml`` files (and folders) are bases that others inherit."""
    options = (p.relative_to(group).with_suffix("") for p in group.rglob("*.yaml"))
    return sorted(str(o) for o in options if not any(part.startswith("_") for part in o.parts))


@functools.cache
def primary_config(config_name: str) -> dict:
    """``conf/<config_name>.yaml`` as a mapping; ``{}`` for a primary config outside conf/ (``-cd``)."""
    import yaml  # light, but only where a primary config is read

    path = Path(config_dir()) / f"{config_name}.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def default_groups(config_name: str) -> dict[str, object]:
    """The groups of a primary config's defaults list and their default option (None for ``group: null``)."""
    return {key: value for entry in primary_config(config_name).get("defaults", []) if isinstance(entry, dict)
            for key, value in entry.items()}


def config_groups(conf: Path, config_name: str | None = None) -> dict[str, list[str]]:
    """Top-level config groups and their options (nested folders appear as ``folder/option``); with
    ``config_name``, only the groups that primary config composes (``paths`` and ``hydra`` left out)."""
    names = None if config_name is None else set(default_groups(config_name)) - {"paths", "hydra"}
    return {d.name: group_options(d) for d in sorted(conf.iterdir())
            if d.is_dir() and not d.name.startswith("_") and d.name != "hydra" and group_options(d)
            and (names is None or d.name in names)}


def help_text(program: str) -> str:
    """What ``<program> --help`` prints: what it does, the common overrides, two examples, the config groups."""
    command = COMMANDS[program]
    groups = config_groups(Path(config_dir()), command.config)
    lines = [f"{program}: {command.does}", "", f"usage: {program} [key=value ...]   (Hydra overrides; -m sweeps)",
             "", "common overrides:", *(f"  {o}" for o in command.common), "", "examples:",
             *(f"  {e}" for e in command.examples)]
    if groups:
        lines += ["", "config groups (group=option):", *(f"  {g}: {', '.join(o)}" for g, o in groups.items())]
    lines += ["", "more: --cfg job prints the composed config; --hydra-help shows Hydra's own options; "
              "docs: README.md and conf/README.md"]
    return "\n".join(lines)
