"""``python -m mer run``: execute chapters with Papermill (cached) and build the book.

``python -m mer run [CHAPTER...] [--profile quick|default|thesis] [-p NAME VALUE]... [--scheduler ADDRESS]
[--force] [--no-build] [-q] [--debug]`` hands its arguments to :func:`mer.runner.run` and prints
one line saying what was executed and what was up to date. An error is one line on stderr
(``--debug`` adds the traceback, see :mod:`mer.cli`).

Notebook: book/reproducing.md shows the commands.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from tqdm.contrib.logging import logging_redirect_tqdm

from .. import MerError, profiles, runner
from . import add_debug, report, status_of

PROG = "python -m mer run"


def parser() -> argparse.ArgumentParser:
    """The options of ``python -m mer run``."""
    run = argparse.ArgumentParser(
        prog=PROG,
        description="Execute notebooks/NN_*.ipynb into book/chapters/ (skipping chapters whose "
                    "notebook, parameters and mer code are unchanged), then build the book.")
    run.add_argument("chapters", nargs="*", metavar="CHAPTER",
                     help="01_features, 01 or features; none = every chapter, in order")
    run.add_argument("--profile", default="default", choices=sorted(profiles.PROFILES),
                     help="parameter set (default: %(default)s)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"),
                     help="override a parameter (value parsed as YAML: 3, 0.5, true, text); repeatable")
    run.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                     help="run feature and spectrogram extraction on this Dask cluster "
                          "(the same as -p scheduler ADDRESS)")
    run.add_argument("--force", action="store_true", help="execute even up-to-date chapters")
    run.add_argument("--no-build", dest="build", action="store_false", help="do not build the book")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    add_debug(run)
    return run


def main(argv: list[str] | None = None) -> int:
    """``python -m mer run ...``: run :func:`mer.runner.run`, print what it did.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``run`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0; for an error (one line on stderr): 2 for a bad parameter, 1 otherwise,
        130 when interrupted.
    """
    options = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if options.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    # Papermill logs each notebook's paths at INFO; the runner already says what it runs.
    logging.getLogger("papermill").setLevel(logging.WARNING)
    overrides = dict(options.parameter)
    if options.scheduler:
        overrides["scheduler"] = options.scheduler
    try:
        with logging_redirect_tqdm():
            done = runner.run(options.chapters or None, profile=options.profile,
                              overrides=overrides, force=options.force, build=options.build,
                              progress=not options.quiet)
    except MerError as error:  # a parameter, a chapter that failed (the runner names its cell), a dataset...
        if options.debug:
            traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        print(f"{PROG}: {error}", file=sys.stderr)
        return status_of(error)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to go on", file=sys.stderr)
        return 130
    except Exception as error:  # a user sees a sentence, not a traceback (unless --debug)
        return report(PROG, error, debug=options.debug)
    executed = ", ".join(f"{c} ({done.seconds[c]} s)" for c in done.executed) or "none"
    print(f"executed: {executed}; up to date: {', '.join(done.skipped) or 'none'}"
          + (f"; placeholders: {', '.join(done.placeholders)}" if done.placeholders else "")
          + ("; book built in %.1f s" % done.build_seconds if done.built else "")
          + ("; book up to date" if done.build_skipped else ""))
    return 0
