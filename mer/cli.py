"""What every ``python -m mer`` command shares: checked numbers and errors as messages.

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
import sys
import traceback
from typing import Callable

from . import MerError, ParameterError


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
