"""``python -m mer predict``: Happy or Sad per 10 s window and for the whole file.

``python -m mer predict FILE|FOLDER... [--checkpoint DIR | --profile NAME] [--first] [--debug]`` prints
the model it uses (:func:`mer.predict.describe_model`), then :func:`mer.predict.predict_file`'s
table for each file; a folder stands for its audio files (:func:`mer.audio.audio_files`), and the
files it skips by their names are listed on stderr. A file that cannot be used is one line on stderr
and the others go on.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import audio, profiles
from ..predict import describe_model, load_model, predict_file
from . import add_debug, report


def expand(paths: list[str], prog: str) -> tuple[list[str], int]:
    """Each folder among ``paths`` replaced by its audio files; what it skips is one line on stderr.

    Returns the paths to predict and a status (1 if a folder holds no audio file, else 0).
    """
    out, status = [], 0
    for path in paths:
        if not os.path.isdir(path):  # False too where it cannot look (EACCES): the file's own check says which
            out.append(path)
            continue
        try:
            found, others = audio.audio_files(path)
        except OSError as error:
            print(f"{prog}: {path}: cannot list this folder ({error.strerror or error}); check its permissions",
                  file=sys.stderr)
            status = 1
            continue
        if others:
            names = ", ".join(p.name for p in others[:5]) + (", ..." if len(others) > 5 else "")
            print(f"{prog}: {path}: skipped {len(others)} file{'s' if len(others) != 1 else ''} not named as "
                  f"audio ({names})", file=sys.stderr)
        if not found:
            print(f"{prog}: {path}: no audio file in this folder (looked for "
                  f"{', '.join(audio.AUDIO_SUFFIXES)}; sub-folders are not searched)", file=sys.stderr)
            status = 1
        out += [str(p) for p in found]
    return out, status


def main(argv: list[str] | None = None) -> int:
    """``python -m mer predict FILE... [--checkpoint DIR | --profile NAME] [--first] [--debug]``.

    Prints the model (:func:`mer.predict.describe_model`), then a table per file.
    Returns 0, 1 if a file, a folder or the model could not be used (one line
    on stderr each), 2 for bad options.
    """
    parser = argparse.ArgumentParser(prog="python -m mer predict",
                                     description="Happy or Sad per 10 s window and for the whole file.")
    parser.add_argument("files", nargs="+", metavar="FILE|FOLDER",
                        help="audio files (mp3, flac, wav, ogg, m4a...), or folders of them")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", default=None, metavar="DIR",
                       help="checkpoint folder (default: chapter 2's model for the profile rendered last)")
    which.add_argument("--profile", default=None, choices=sorted(profiles.PROFILES),
                       help="chapter 2's model for this profile")
    parser.add_argument("--first", action="store_true", help="only the first 10 s")
    add_debug(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    prog = "python -m mer predict"
    try:
        loaded, card = load_model(args.checkpoint, profile=args.profile)
    except Exception as error:
        return report(prog, error, debug=args.debug)
    print(describe_model(card))
    files, status = expand(args.files, prog)
    for path in files:
        try:
            table = predict_file(path, loaded, window="first" if args.first else "all")
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except Exception as error:  # one file's failure, however odd, is a line; the others go on
            status = max(status, report(prog, error, debug=args.debug))
            continue
        print(f"{path}")
        for note in table.attrs["notes"]:
            print(f"note: {path}: {note}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return status
