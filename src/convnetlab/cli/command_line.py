"""What can be said about a command line without importing torch: help, option names, typos.

Importing torch and Lightning takes seconds; a typo (``model=resnet19``), a positional word
(``convnetlab-data check /data``) or ``--help`` is answered before that, from the config tree alone.
Only the standard library and :mod:`convnetlab.errors` are imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import convnetlab
from convnetlab.errors import InputError


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
    keys positional words most likely meant (``convnetlab-eval run/best.ckpt`` -> ``ckpt_path=``)."""

    module: str
    config: str
    does: str
    common: tuple[str, ...]
    examples: tuple[str, str]
    positional: tuple[str, ...] = ()


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
        positional=("action", "root")),
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


def _groups(conf: Path, config_name: str | None = None) -> dict[str, list[str]]:
    """Top-level config groups and their options (nested folders appear as ``folder/option``); with
    ``config_name``, only the groups that primary config composes (``paths`` and ``hydra`` left out)."""
    names = None
    if config_name is not None:
        import yaml  # light; read only for --help

        defaults = yaml.safe_load((conf / f"{config_name}.yaml").read_text()).get("defaults", [])
        names = {key for entry in defaults if isinstance(entry, dict) for key in entry} - {"paths", "hydra"}
    return {d.name: group_options(d) for d in sorted(conf.iterdir())
            if d.is_dir() and not d.name.startswith("_") and d.name != "hydra" and group_options(d)
            and (names is None or d.name in names)}


# Options that existed once: what to do instead, answered as the one-line error.
REMOVED_OPTIONS = {
    ("data", "shards"): "data=shards was removed in 0.2: rewrite shards with `convnetlab-data action=optimize "
                        "root=<the original folder> out=<dir>` and train with data=streaming data.root=<dir>; "
                        "WebDataset tars can still be read with the webdataset library",
}


def check_group_choices(args: list[str]) -> None:
    """Every ``[+]group=option[,option...]`` names an existing ``conf/<group>/<option>.yaml`` that is not a
    base (``_*.yaml``, e.g. experiment=findings/_base: never complete on its own); a removed option says
    what replaced it."""
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
            if (key, option) in REMOVED_OPTIONS:
                raise InputError(REMOVED_OPTIONS[key, option])
            if option and not any(c in option for c in "()*$") and option not in group_options(group):
                raise InputError(f"unknown {key} '{option}'; choose one of: {', '.join(group_options(group))}")


def refuse_secrets(args: list[str]) -> None:
    """API keys never go into overrides: Hydra saves those in the run's .hydra/ and W&B would log them."""
    for arg in args:
        if "=" in arg and "api_key" in arg.split("=", 1)[0].lower():
            raise InputError(f"{arg.split('=', 1)[0]} on the command line would be saved in the run's .hydra/; "
                             "set WANDB_API_KEY in the environment or run `wandb login` instead.")


FLAGS_WITH_VALUE = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn", "--cfg", "-c",
                    "--package", "-p", "--info", "-i", "--experimental-rerun")


def check_positional(program: str, args: list[str]) -> None:
    """Words without ``=`` (``convnetlab-data check /data``) get the ``key=value`` form they most likely meant;
    ``~key`` (Hydra's delete, e.g. ``~callbacks.aux_heads``) is an override, not a word."""
    words, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith(("-", "~")) and "=" not in arg:  # ~key: Hydra's delete
            words.append(arg)
    if not words:
        return
    command = COMMANDS.get(program)
    groups = _groups(Path(config_dir()))
    meant, keys = [], list(command.positional if command else ())
    for word in words:
        group = next((g for g, options in groups.items() if word in options and g not in ("callbacks",)), None)
        if group is not None and not (keys and keys[0] == "action"):
            meant.append(f"{group}={word}")
        elif keys:
            meant.append(f"{keys.pop(0)}={word}")
        else:
            meant.append(f"<key>={word}")
    rest = [a for a in args if a not in words]
    raise InputError(f"{program} takes key=value overrides, not {' '.join(words)!r}; did you mean: "
                     f"{' '.join([program, *meant, *rest])}")


def check_names(program: str, args: list[str]) -> None:
    """All the checks that need no composed config: positional words, API keys, config-group options."""
    check_positional(program, args)
    refuse_secrets(args)
    check_group_choices(args)


def help_text(program: str) -> str:
    """What ``<program> --help`` prints: what it does, the common overrides, two examples, the config groups."""
    command = COMMANDS[program]
    groups = _groups(Path(config_dir()), command.config)
    lines = [f"{program}: {command.does}", "", f"usage: {program} [key=value ...]   (Hydra overrides; -m sweeps)",
             "", "common overrides:", *(f"  {o}" for o in command.common), "", "examples:",
             *(f"  {e}" for e in command.examples)]
    if groups:
        lines += ["", "config groups (group=option):", *(f"  {g}: {', '.join(o)}" for g, o in groups.items())]
    lines += ["", "more: --cfg job prints the composed config; --hydra-help shows Hydra's own options; "
              "docs: README.md and conf/README.md"]
    return "\n".join(lines)
