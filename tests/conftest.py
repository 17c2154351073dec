"""Session set-up shared by every test.

* Matplotlib draws off-screen; numba caches compiled librosa kernels in
  ``.cache/numba`` so their ~20 s first compile happens once per machine, not
  once per test.
* ``warm_librosa`` pays that compile once per session, before any test that
  measures or times librosa work.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def warm_librosa():
    """Compile librosa's numba kernels once per session (cached on disk)."""
    import librosa

    sr = 22050
    t = np.arange(3 * sr) / sr
    y = (0.1 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    librosa.feature.chroma_cqt(y=y, sr=sr)
    librosa.feature.melspectrogram(y=y, sr=sr)
    librosa.onset.onset_strength(y=y, sr=sr)
    librosa.beat.beat_track(y=y, sr=sr)
    yield


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT
