"""Session set-up shared by every test.

* Matplotlib draws off-screen; numba caches compiled librosa kernels under
  ``.cache/numba`` so their ~20 s first compile happens once per machine, not
  once per test.
* ``warm_librosa`` pays that compile once per session, through
  ``mer.numba_cache.prepare`` (one process compiles, under a lock), before any
  test that measures or times librosa work.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def warm_librosa():
    """Compile librosa's numba kernels once per machine (cached on disk, under a lock)."""
    from mer import numba_cache

    numba_cache.prepare()
    yield


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT
