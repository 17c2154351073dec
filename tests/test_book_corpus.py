"""A researcher's corpus, end to end: the whole quick book from the ``fourq`` fixture corpus.

Its own file so that ``make test`` (pytest-xdist, one file per worker at a
time) runs it beside the quick book of ``tests/test_book.py`` instead of
after it.
"""

from __future__ import annotations

import os

from mer import runner
from test_book import CHAPTERS, REPO, scratch_root


def test_whole_book_renders_from_the_fourq_fixture(tmp_path):
    """The command a researcher with a corpus types, as they type it: a relative
    data_dir, from the repository, the quick profile, every chapter and the build."""
    import subprocess
    import sys

    root = tmp_path / "root"
    root.mkdir()
    scratch_root(root)
    env = dict(os.environ, MER_ROOT=str(root), MER_DATA=os.environ.get("MER_DATA", str(REPO / "data")))
    env.pop("MER_BUILD", None)
    done = subprocess.run([sys.executable, "-m", "mer", "run", "--profile", "quick", "-p", "dataset", "fourq",
                           "-p", "data_dir", "tests/fixtures/fourq"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    for chapter in CHAPTERS:
        assert (root / "_build" / "html" / "book" / "chapters" / f"{chapter}.html").is_file(), chapter
        assert not runner.is_placeholder(root / "book" / "chapters" / f"{chapter}.ipynb")
        # prose written for the synthetic set may cite what a corpus run cannot record: refused, not empty
        assert runner.missing_glue_keys(root / "book" / "chapters" / f"{chapter}.ipynb") == [], chapter
    import json

    stamp = json.loads((root / "_build" / "results" / "00_data.json").read_text())
    assert stamp["parameters"]["dataset"] == "fourq"
    assert stamp["parameters"]["data_dir"] == str(REPO / "tests" / "fixtures" / "fourq")
