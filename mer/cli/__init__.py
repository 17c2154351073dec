"""Command line of the companion: ``python -m mer COMMAND``, and what every command shares.

``python -m mer run [CHAPTER...] [--profile quick|default|thesis] [-p NAME VALUE]... [--force] [--no-build] [--debug]``
    Execute chapters with Papermill (cached) and build the book (:mod:`mer.cli.run`).
``python -m mer predict|explain|train|bench ...``
    :mod:`mer.cli.predict`, :mod:`mer.cli.explain`, :mod:`mer.cli.train`, :mod:`mer.cli.bench`.

Each command is a module of this package with ``main(argv) -> int``; it
parses arguments and prints, and leaves the computing to the rest of ``mer``.
:func:`main` dispatches to them.

A user of ``predict``, ``explain``, ``train`` or ``run`` sees, for a bad file,
a bad argument or a broken checkpoint, one line on stderr naming what was
wrong and what to do, and a non-zero exit status, never a traceback;
``--debug`` (:func:`add_debug`) shows the traceback as well. Numbers are
checked while the options are parsed (:func:`positive_int`...), so a bad one
is refused the way argparse refuses a bad choice (status 2).

Notebook: book/reproducing.md shows the commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from typing import Callable

from .. import MerError, ParameterError


def _number(kind: type, test: Callable[[float], bool], wanted: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}")
        return value

    parse.__name__ = wanted  # argparse names the type in some messages
    return parse


#: argparse ``type=`` for whole numbers >= 1.
positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1")
#: argparse ``type=`` for whole numbers >= 0.
non_negative_int = _number(int, lambda v: v >= 0, "a whole number >= 0")
#: argparse ``type=`` for numbers > 0.
positive_float = _number(float, lambda v: v > 0 and v < float("inf"), "a number > 0")
#: argparse ``type=`` for numbers >= 0.
non_negative_float = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
#: argparse ``type=`` for a share of a whole, 0 <= x < 1.
fraction = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
#: argparse ``type=`` for a percentage, 0 <= x <= 100 (0 meaning "off" where the option says so).
percent = _number(float, lambda v: 0 <= v <= 100, "a number in [0, 100]")


def add_debug(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug``: show the traceback of an error besides its one-line message."""
    parser.add_argument("--debug", action="store_true",
                        help="on an error, also show the Python traceback (for a bug report)")


def message(error: BaseException) -> str:
    """One line about ``error`` for a user: what was wrong, and what to do.

    A :class:`mer.MerError` says it itself (its first line); an ``OSError``
    names the file and the system's reason; anything else is a bug of ours,
    reported with its type and a pointer to ``--debug``.
    """
    if isinstance(error, MerError):
        lines = str(error).strip().splitlines()
        return lines[0] if lines else type(error).__name__
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}"
    first = (str(error).strip().splitlines() or [""])[0]
    return (f"unexpected {type(error).__name__}{': ' + first if first else ''} "
            f"(a bug: run again with --debug and report the traceback)")


def status_of(error: BaseException) -> int:
    """Exit status of ``error``: 2 for a bad parameter (as argparse), 1 otherwise."""
    return 2 if isinstance(error, ParameterError) else 1


def report(prog: str, error: BaseException, *, debug: bool = False) -> int:
    """Print ``error`` on stderr as one line (and, with ``debug``, its traceback first).

    Parameters
    ----------
    prog : str
        The command (``"python -m mer predict"``), the start of the line.
    error : BaseException
        The error being handled (called from an ``except`` block).
    debug : bool
        Also print the traceback.

    Returns
    -------
    int
        The exit status (:func:`status_of`).
    """
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    print(f"{prog}: {message(error)}", file=sys.stderr)
    return status_of(error)


def guarded(prog: str, action: Callable[[], int], *, debug: bool = False,
            interrupted: str = "interrupted") -> int:
    """Run ``action()`` and turn any error into :func:`report`'s line and an exit status.

    Parameters
    ----------
    prog : str
        The command, the start of every message.
    action : callable
        The command's work; returns its exit status.
    debug : bool
        Show tracebacks (``--debug``).
    interrupted : str
        What Ctrl-C leaves behind (exit status 130).

    Returns
    -------
    int
    """
    try:
        return int(action() or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
    except Exception as error:  # the last line of defence: a user sees a sentence, not a traceback
        return report(prog, error, debug=debug)


#: The commands: name -> help. ``python -m mer NAME ...`` runs ``mer.cli.NAME.main(argv)``.
COMMANDS = {
    "run": "execute chapters with Papermill and build the book",
    "predict": "predict Happy/Sad for audio files with a trained ViT",
    "explain": "explain a prediction (LRP relevance, sonification)",
    "train": "fine-tune the ViT on a dataset",
    "bench": "measure speed on this machine into _build/bench.json",
}


def parser() -> argparse.ArgumentParser:
    """The top-level parser: ``python -m mer --help`` and a refused unknown command.

    Each command parses its own options (its ``--help`` included); here a
    command only takes the rest of the line.
    """
    top = argparse.ArgumentParser(
        prog="python -m mer",
        description="Explainability Methods in Music Emotion Recognition: run the chapters, "
                    "build the book, predict and explain.")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, text in COMMANDS.items():
        sub = commands.add_parser(name, help=text, add_help=False,
                                  description=f"{text} (options: python -m mer {name} --help)")
        sub.add_argument("args", nargs=argparse.REMAINDER)
    return top


def dispatch(name: str, argv: list[str]) -> int:
    """Run the command ``name`` (a key of :data:`COMMANDS`) on ``argv``; its exit status.

    The command's module is imported only now: most of them import torch,
    pandas or librosa, and ``python -m mer --help`` or ``run`` should not wait
    for what they do not use.
    """
    module_name = f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:  # the module exists but one of its imports is missing
            raise
        print(f"python -m mer {name}: {module_name} is not available in this checkout "
              f"(no {module_name.replace('.', '/')}.py)", file=sys.stderr)
        return 2
    if not hasattr(module, "main"):
        print(f"python -m mer {name}: {module_name} has no main(argv)", file=sys.stderr)
        return 2
    return int(module.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    """``python -m mer COMMAND ...``: entry point; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``python -m mer`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The command's exit status (2 for an unknown command, as argparse).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # A command parses its own options (``--help`` included): argparse's REMAINDER
    # would not pass on a first argument that looks like an option (``run --force``).
    if argv and argv[0] in COMMANDS:
        return dispatch(argv[0], argv[1:])
    options = parser().parse_args(argv)  # --help, or an error: no command, an unknown one
    return dispatch(options.command, options.args)
