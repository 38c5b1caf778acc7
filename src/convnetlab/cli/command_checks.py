"""What can be said about a command line without importing torch: options, typos, positional words.

Importing torch and Lightning takes seconds; a typo (``model=resnet19``), an unknown option (``--foo``), a
positional word (``convnetlab-data check /data``) or an empty group (``model=``) is answered before that,
from the config tree alone (:mod:`convnetlab.cli.command_line`), as one :class:`InputError` line that says
what to type. :func:`check_names` runs every check.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from convnetlab.cli.command_line import (COMMANDS, Command, config_dir, config_groups, default_groups,
                                         group_options, primary_config)
from convnetlab.cli.hydra_options import CommandLine, parse_command_line
from convnetlab.errors import InputError


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
    groups = {g: o for g, o in config_groups(Path(config_dir()), config).items() if g != "callbacks"}
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
