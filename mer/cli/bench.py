"""``python -m mer bench [GROUP...] [--profile NAME]``: speed figures into ``_build/bench.json``.

Hands the groups to :func:`mer.bench.run` and prints what is now in the file.

Notebook: book/reproducing.md reports them.
"""

from __future__ import annotations

import argparse
import json
import logging

from .. import bench


def main(argv: list[str] | None = None) -> int:
    """``python -m mer bench [GROUP...] [--profile NAME]``."""
    parser = argparse.ArgumentParser(prog="python -m mer bench", description=bench.__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help="synth, synth_classic, book, features, vit, lrp, sonify (default: all)")
    parser.add_argument("--profile", default="default")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    figures = bench.run(args.groups or None, profile=args.profile)
    print(json.dumps(figures, indent=2, sort_keys=True))
    return 0
