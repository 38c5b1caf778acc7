"""What can be said about a command line without importing torch: help, options, typos, positional words.

Importing torch and Lightning takes seconds; a typo (``model=resnet19``), an unknown option (``--foo``), a
positional word (``convnetlab-data check /data``) or ``--help`` is answered before that, from the config tree
alone. Only the standard library, yaml (the primary configs' keys and defaults lists), Hydra's argument
parser (:mod:`convnetlab.cli.hydra_options`) and :mod:`convnetlab.errors` are imported here.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import convnetlab
from convnetlab.cli.hydra_options import CommandLine, parse_command_line
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


def _groups(conf: Path, config_name: str | None = None) -> dict[str, list[str]]:
    """Top-level config groups and their options (nested folders appear as ``folder/option``); with
    ``config_name``, only the groups that primary config composes (``paths`` and ``hydra`` left out)."""
    names = None if config_name is None else set(default_groups(config_name)) - {"paths", "hydra"}
    return {d.name: group_options(d) for d in sorted(conf.iterdir())
            if d.is_dir() and not d.name.startswith("_") and d.name != "hydra" and group_options(d)
            and (names is None or d.name in names)}


# Groups whose task reads them with cfg.get (train.py: callbacks, logger): a run without them is a run.
DROPPABLE_GROUPS = ("callbacks", "logger")


def _drop_hint(group: str, config_name: str | None) -> str | None:
    """How to compose no ``group`` (Hydra refuses ``group=null`` for every group), or None when the primary
    config needs it: a non-null default that is neither an overlay (``# @package _global_``: experiment,
    debug, ...) nor droppable. A list default (``logger: [csv, wandb]``) empties with ``[]``, not ``~``."""
    defaults = default_groups(config_name) if config_name else {}
    default = defaults.get(group)
    overlay = any(p.read_text().startswith("# @package _global_") for p in (Path(config_dir()) / group).glob("*.yaml"))
    if group in defaults and default is not None and not overlay and group not in DROPPABLE_GROUPS:
        return None
    return f"{group}=[]" if isinstance(default, list) else f"~{group}"


def _config_name(program: str, options: dict[str, str | bool]) -> str | None:
    """The primary config the command line composes: ``--config-name`` if conf/ has it, else the program's."""
    name = options.get("--config-name")
    if isinstance(name, str) and primary_config(name.removesuffix(".yaml")):
        return name.removesuffix(".yaml")
    command = COMMANDS.get(program)
    return command.config if command else None


# --- overrides ----------------------------------------------------------------------------------------

# Options that existed once: what to do instead, answered as the one-line error.
REMOVED_OPTIONS = {
    ("data", "shards"): "data=shards was removed in 0.2: rewrite shards with `convnetlab-data action=optimize "
                        "root=<the original folder> out=<dir>` and train with data=streaming data.root=<dir>; "
                        "WebDataset tars can still be read with the webdataset library",
}


def check_group_choices(args: list[str], program: str = "convnetlab") -> None:
    """Every ``[+]group=option[,option...]`` names an existing ``conf/<group>/<option>.yaml`` that is not a
    base (``_*.yaml``, e.g. experiment=findings/_base: never complete on its own); a removed option says
    what replaced it. ``group=`` and ``group=null`` (Hydra: a one-line "Could not find" or a traceback) get
    the options, or how to compose none where ``program``'s primary config can do without the group;
    ``=x`` would otherwise be read as the group of every yaml in conf/."""
    conf = Path(config_dir())
    line = parse_command_line(program, args)
    config = _config_name(program, line.options)
    for _, arg in line.overrides:
        if "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        if not key.lstrip("+~"):
            raise InputError(f"{arg!r} has no key; write key=value")
        deletes, key = key.startswith("~"), key.lstrip("+~")
        group = conf / key
        if key.startswith("hydra") or "." in key or not group.is_dir():
            continue
        composed = config is None or key in default_groups(config)
        if value == "null" and not deletes and not composed:
            raise InputError(f"{key}=null: {program} composes no {key}; leave it out")
        if value in ("", "null") and not deletes:
            drop = _drop_hint(key, config) if composed else None
            choose = f"choose one of: {', '.join(group_options(group))}"
            if value == "":
                raise InputError(f"{key}= needs an option; {choose}{f' (or {drop} for none)' if drop else ''}")
            if drop is None:
                raise InputError(f"{key}=null drops a required group; {choose}")
            raise InputError(f"{key}=null: Hydra takes no null for a config group; write {drop} to compose none")
        for option in (o.strip() for o in value.strip("[]").split(",")):
            if (key, option) in REMOVED_OPTIONS:
                raise InputError(REMOVED_OPTIONS[key, option])
            if option and not any(c in option for c in "()*$") and option not in group_options(group):
                raise InputError(f"unknown {key} '{option}'; choose one of: {', '.join(group_options(group))}")


_INTEGER = re.compile(r"\s*[+-]?\d[\d_]*\s*")


def check_seed(program: str, args: list[str]) -> None:
    """A top-level ``seed`` is an integer: ``seed=abc`` or ``seed=`` would reach pl.seed_everything (or a
    probe's RNG) and stop there with a traceback. Sweeps (``1,2,3``, ``range(3)``) and ``${...}`` pass."""
    line = parse_command_line(program, args)
    config = _config_name(program, line.options)
    if config is None or "seed" not in primary_config(config):
        return
    for _, arg in line.overrides:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+") == "seed" and "${" not in value and "(" not in value \
                and not all(_INTEGER.fullmatch(v) for v in value.split(",")):
            raise InputError(f"seed={value} is not an integer; write seed=<n> (e.g. seed=0), or -m seed=0,1,2 "
                             "for one run per seed")


def refuse_secrets(args: list[str]) -> None:
    """API keys never go into overrides: Hydra saves those in the run's .hydra/ and W&B would log them."""
    for arg in args:
        if "=" in arg and "api_key" in arg.split("=", 1)[0].lower():
            raise InputError(f"{arg.split('=', 1)[0]} on the command line would be saved in the run's .hydra/; "
                             "set WANDB_API_KEY in the environment or run `wandb login` instead.")


# --- positional words ---------------------------------------------------------------------------------

def _choices(command: Command) -> dict[str, tuple[str, ...]]:
    """``key=a|b|c`` in a command's common overrides: the values that name their key when typed alone
    (``10crop`` -> ``protocol=10crop``); said once, for --help and for this."""
    tokens = (t.partition("=") for entry in command.common for t in entry.split())
    return {key: tuple(values.split("|")) for key, eq, values in tokens if eq and re.fullmatch(r"[\w-]+(\|[\w-]+)+", values)}


def _list_keys(command: Command) -> set[str]:
    """Keys whose common override is a list (``ckpt_paths=[<file>,...]``): they take every remaining path word."""
    return {t.split("=[", 1)[0] for entry in command.common for t in entry.split() if "=[" in t}


def _looks_like_path(word: str) -> bool:
    return bool(re.search(r"[/\\]|^\.|\.[A-Za-z]\w*$", word)) or Path(word).exists()


def _claims(command: Command, config: str | None, line: CommandLine,
            words: list[tuple[int, str]]) -> list[tuple[int, str, str]]:
    """(position, key, value) for each word: a dotted key asks for its value, a known value or group option
    names its key, a path given before the first positional key implies it (``command.implied``), and the
    rest fill the open positional keys in order (a list key, or any key under ``-m``, takes all of them)."""
    groups = {g: o for g, o in _groups(Path(config_dir()), config).items() if g != "callbacks"}
    keys = {*primary_config(config), *default_groups(config), "hydra"} - {"defaults"} if config else set(groups)
    choices, lists, sweep = _choices(command), _list_keys(command), "--multirun" in line.options
    claims: list[tuple[int, str, str]] = []
    loose: list[tuple[int, str]] = []
    for pos, word in words:
        bare = word.lstrip("+")
        key = next((k for k, values in choices.items() if bare in values), None) \
            or next((g for g, options in groups.items() if bare in options), None)
        if re.fullmatch(r"\w+(\.\w+)+", bare) and bare.split(".", 1)[0] in keys:
            claims.append((pos, word, "<value>"))
        elif key is not None:
            claims.append((pos, key, bare))
        else:
            loose.append((pos, word))
    given = {a.split("=", 1)[0].lstrip("+~") for _, a in line.overrides if "=" in a} | {k for _, k, _ in claims}
    open_keys = [k for k in command.positional if k not in given]
    paths = [w for _, w in loose if _looks_like_path(w)]
    if command.implied and open_keys[:1] == list(command.positional[:1]) and paths and loose[0][1] == paths[0]:
        key, _, value = command.implied[min(len(paths), len(command.implied)) - 1].partition("=")
        claims.append((loose[0][0], key, value))
        open_keys.remove(key)
    for key in open_keys:
        if not loose:
            break
        if key in lists or sweep:
            taken = [w for _, w in loose]
            claims.append((loose[0][0], key, f"[{','.join(taken)}]" if key in lists else ",".join(taken)))
            loose = []
        else:
            (pos, word), loose = loose[0], loose[1:]
            close = [] if _looks_like_path(word) else difflib.get_close_matches(word, choices.get(key, ()), n=1)
            claims.append((pos, key, close[0] if close else word))
    return sorted(claims + [(pos, "<key>", word) for pos, word in loose], key=lambda c: c[0])


def check_positional(program: str, args: list[str]) -> None:
    """Words without ``=`` (``convnetlab-data check /data``) get the ``key=value`` form they most likely meant,
    in place (see :func:`_claims`). Under ``-m`` the words of one key become a sweep (``-m model=resnet18,lenet5``);
    without it that is a conflict: the first word is suggested, then the sweep. ``~key`` (Hydra's delete,
    e.g. ``~callbacks.aux_heads``) is an override, not a word."""
    line = parse_command_line(program, args)
    words = [(i, a) for i, a in line.overrides if "=" not in a and not a.startswith("~")]
    if not words:
        return
    junk = next((w for _, w in words if not any(c.isalnum() for c in w)), None)
    if junk is not None:
        raise InputError(f"{junk!r} is not an override; write key=value (see {program} --help)")
    command = COMMANDS.get(program) or Command("", "", "", (), ("", ""))
    claims = _claims(command, _config_name(program, line.options), line, words)
    values: dict[str, list[str]] = {}
    for _, key, value in claims:
        if value not in values.setdefault(key, []):
            values[key].append(value)
    repeated = {k for k in values if [c[1] for c in claims].count(k) > 1 and k != "<key>" and "." not in k}
    sweep, positions = "--multirun" in line.options, {pos for pos, _ in words}

    def meant(as_sweep: bool) -> str:
        out: dict[int, list[str]] = {}
        done: set[str] = set()
        for pos, key, value in claims:
            if key in done:
                continue
            if key in repeated:
                done.add(key)
                value = ",".join(values[key]) if as_sweep else value
            out.setdefault(pos, []).append(f"{key}={value}")
        rest = [part for i, arg in enumerate(args) for part in (out.get(i, []) if i in positions else [arg])]
        return " ".join([program, *(["-m"] if as_sweep and not sweep else []), *rest])

    conflict = not sweep and any(len(values[k]) > 1 for k in repeated)
    raise InputError(f"{program} takes key=value overrides, not {' '.join(w for _, w in words)!r}; "
                     f"did you mean: {meant(sweep)}{f'; or, one run each: {meant(True)}' if conflict else ''}")


def check_value_choices(program: str, args: list[str]) -> None:
    """A key with a fixed set of values (``action=``, ``protocol=``, ``split=``, ``method=``: ``key=a|b`` in
    the command's common overrides) gets one of them, every option of a sweep included; a typo (``action=chek``)
    is answered here instead of after the imports, and before a run dir is made."""
    command = COMMANDS.get(program)
    choices = _choices(command) if command else {}
    for _, arg in parse_command_line(program, args).overrides:
        key, eq, value = arg.partition("=")
        key = key.lstrip("+")
        if not eq or key not in choices or (Path(config_dir()) / key).is_dir() or any(c in value for c in "($"):
            continue
        for option in (o.strip() for o in value.strip("[]").split(",")):
            if option not in choices[key]:
                close = difflib.get_close_matches(option, choices[key], n=1)
                raise InputError(f"unknown {key} '{option}'{f' (did you mean {close[0]}?)' if close else ''}; "
                                 f"choose one of: {', '.join(choices[key])}")


def check_names(program: str, args: list[str]) -> None:
    """All the checks that need no composed config: options, positional words, API keys, config-group
    options, values with a fixed set of choices, the seed."""
    parse_command_line(program, args)
    check_positional(program, args)
    refuse_secrets(args)
    check_group_choices(args, program)
    check_value_choices(program, args)
    check_seed(program, args)


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
