"""Command line of the companion: ``python -m mer``.

``python -m mer run [CHAPTER...] [--profile quick|default|thesis] [-p NAME VALUE]... [--force] [--no-build] [--debug]``
    Execute chapters with Papermill (cached) and build the book.
    An error is one line on stderr (``--debug`` adds the traceback, see :mod:`mer.cli`).
``python -m mer predict|explain|train|bench ...``
    Dispatched to ``mer.predict``, ``mer.explain``, ``mer.vit`` and ``mer.bench``.

Notebook: ``book/reproducing.md`` shows the commands.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from . import cli, profiles

#: Subcommands handled by another module's ``main(argv)``: name -> (module, help).
DELEGATED = {
    "predict": ("mer.predict", "predict Happy/Sad for audio files with a trained ViT"),
    "explain": ("mer.explain", "explain a prediction (LRP relevance, sonification)"),
    "train": ("mer.vit", "fine-tune the ViT on a dataset"),
    "bench": ("mer.bench", "measure speed on this machine into _build/bench.json"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mer",
        description="Explainability Methods in Music Emotion Recognition: run the chapters, "
                    "build the book, predict and explain.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    run = commands.add_parser(
        "run", help="execute chapters with Papermill and build the book",
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
    cli.add_debug(run)
    for name, (module, text) in DELEGATED.items():
        sub = commands.add_parser(name, help=text, add_help=False,
                                  description=f"{text} (options: python -m mer {name} --help)")
        sub.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _delegate(name: str, argv: list[str]) -> int:
    module_name = DELEGATED[name][0]
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
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Delegated subcommands parse their own options (``--help`` included).
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    options = _parser().parse_args(argv)

    from . import MerError, runner

    logging.basicConfig(level=logging.WARNING if options.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    # Papermill logs each notebook's paths at INFO; the runner already says what it runs.
    logging.getLogger("papermill").setLevel(logging.WARNING)
    overrides = dict(options.parameter)
    if options.scheduler:
        overrides["scheduler"] = options.scheduler
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            report = runner.run(options.chapters or None, profile=options.profile,
                                overrides=overrides, force=options.force, build=options.build,
                                progress=not options.quiet)
    except MerError as error:  # a parameter, a chapter that failed (the runner names its cell), a dataset...
        if options.debug:
            traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        print(f"python -m mer run: {error}", file=sys.stderr)
        return cli.status_of(error)
    except KeyboardInterrupt:
        print("python -m mer run: interrupted; run the same command again to go on", file=sys.stderr)
        return 130
    except Exception as error:  # a user sees a sentence, not a traceback (unless --debug)
        return cli.report("python -m mer run", error, debug=options.debug)
    executed = ", ".join(f"{c} ({report.seconds[c]} s)" for c in report.executed) or "none"
    print(f"executed: {executed}; up to date: {', '.join(report.skipped) or 'none'}"
          + (f"; placeholders: {', '.join(report.placeholders)}" if report.placeholders else "")
          + ("; book built in %.1f s" % report.build_seconds if report.built else "")
          + ("; book up to date" if report.build_skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
