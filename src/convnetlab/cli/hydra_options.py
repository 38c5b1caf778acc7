"""Read a command line with Hydra's own argument parser, so a bad option is one line before torch is imported.

Hydra parses ``sys.argv`` only after the app module (torch, Lightning: ~10 s) is imported, and answers an
unknown option with argparse's 9-line usage. Its parser itself is light (hydra-core is pinned, so its
``get_args_parser`` is the one the app will use): running it first gives the same reading of every command
line, with its errors turned into one :class:`InputError` line that says what to type.
"""

from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass

from convnetlab.errors import InputError


@dataclass(frozen=True)
class CommandLine:
    """Hydra's reading of a command line: the options given, by long name (True for a flag), and the
    overrides with their positions in it."""

    options: dict[str, str | bool]
    overrides: list[tuple[int, str]]


class _ParseError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str) -> None:
        raise _ParseError(message)

    parser.error = error  # argparse would print its usage and exit
    return parser


def _option_names(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings]


def _long_names(parser: argparse.ArgumentParser) -> list[str]:
    return [action.option_strings[0] for action in parser._actions if action.option_strings]


def parse_command_line(program: str, args: list[str]) -> CommandLine:
    """``args`` as Hydra will read them; an unknown option, a bad option value or overrides split by an
    option (Hydra keeps the first run of them and refuses the rest) are one InputError line."""
    parser = _parser()
    try:
        namespace = parser.parse_args(args)
    except _ParseError as error:
        raise _explain(program, args, str(error), parser) from None
    options = {action.option_strings[0]: getattr(namespace, action.dest) for action in parser._actions
               if action.option_strings and getattr(namespace, action.dest, None) not in (None, False)}
    overrides, start = [], 0
    for override in namespace.overrides:
        start = args.index(override, start)
        overrides.append((start, override))
        start += 1
    return CommandLine(options, overrides)


def _explain(program: str, args: list[str], message: str, parser: argparse.ArgumentParser) -> InputError:
    """argparse's error as what to do: name an unknown option (and the close one), reorder split overrides."""
    if message.startswith("unrecognized arguments: "):
        unknown = next((a for a in message.split(": ", 1)[1].split() if a.startswith("-")), None)
        if unknown is not None:
            close = difflib.get_close_matches(unknown.partition("=")[0], _option_names(parser), n=1, cutoff=0.75)
            return InputError(f"unknown option {unknown}{f' (did you mean {close[0]}?)' if close else ''}; {program} "
                              f"takes key=value overrides and Hydra's options {', '.join(_long_names(parser))} "
                              f"(see {program} --help)")
        try:  # overrides on both sides of an option: the same line with them together
            overrides = parser.parse_intermixed_args(args).overrides
        except _ParseError:
            return InputError(f"{message}; see {program} --help")
        options = list(args)
        for override in overrides:
            options.remove(override)
        return InputError("options go before or after the overrides, not between them (Hydra's parser refuses the "
                          f"overrides after an option); did you mean: {' '.join([program, *options, *overrides])}")
    if "invalid choice" in message and "=" in message:
        message += " (an option reads the word after it as its value: put the option after the overrides)"
    return InputError(f"{message}; see {program} --help")
