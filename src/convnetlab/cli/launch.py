"""The console scripts: answer ``--help`` and bad input (options, typos, words) at once, then start the command.

Each ``convnetlab-<name>`` first runs the checks of :mod:`convnetlab.cli.command_checks`, which import
neither torch nor Lightning, and only then imports ``convnetlab.cli.<module>`` (the Hydra app) and runs it.
``python -m convnetlab.cli.<module>`` skips this front door and behaves the same apart from ``--help``.
"""

from __future__ import annotations

import importlib
import os
import sys

from convnetlab.cli.command_checks import check_names
from convnetlab.cli.command_line import COMMANDS, help_text
from convnetlab.cli.hydra_options import parse_command_line
from convnetlab.errors import ConvnetlabError, one_line
from convnetlab.stop_signals import stop_cleanly_until_training


def launch(program: str) -> None:
    """Answer ``--help`` (also as argparse reads it: ``--he``, ``-mh``) or bad input at once, else run the app."""
    args = sys.argv[1:]
    try:
        if any(a in ("-h", "--help") for a in args) or "--help" in parse_command_line(program, args).options:
            print(help_text(program))
            sys.exit(0)
        check_names(program, args)
    except ConvnetlabError as error:
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
        sys.exit(2)
    if program == "convnetlab-train":
        stop_cleanly_until_training()  # the imports below take seconds; a SIGTERM in them ends cleanly too
    importlib.import_module(f"convnetlab.cli.{COMMANDS[program].module}").main()


def _script(program: str):
    def main() -> None:
        launch(program)

    main.__name__ = program.removeprefix("convnetlab-").replace("-", "_")
    return main


train = _script("convnetlab-train")
eval = _script("convnetlab-eval")  # noqa: A001 - the console script's name
data = _script("convnetlab-data")
embed = _script("convnetlab-embed")
visualize = _script("convnetlab-visualize")
probe = _script("convnetlab-probe")
compare = _script("convnetlab-compare")
baseline = _script("convnetlab-baseline")

if __name__ == "__main__":
    launch(os.path.basename(sys.argv[0]))
