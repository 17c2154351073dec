"""Session set-up shared by every test.

* Matplotlib draws off-screen; numba caches compiled librosa kernels under
  ``.cache/numba`` so their ~20 s first compile happens once per machine, not
  once per test (once per pytest-xdist worker, each in a folder of its own).
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
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each pytest-xdist worker (make test runs two) gets a numba cache of its own. Tests call librosa
    # in-process, and numba writes the kernels a call compiles into the cache folder; two workers
    # compiling the same gufunc into one folder leave files that point at each other's symbols
    # (mer.numba_cache, numba issue 10128), and every later load of them segfaults. Seen on a fresh
    # clone: the quick book's chapters and a feature test crashed, and the run hung.
    _worker_cache = Path(os.environ["NUMBA_CACHE_DIR"]) / f"xdist-{os.environ['PYTEST_XDIST_WORKER']}"
    os.environ["NUMBA_CACHE_DIR"] = os.environ["MER_NUMBA_CACHE_ROOT"] = str(_worker_cache)
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


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """A tiny untrained ViT saved as a checkpoint folder (safetensors + meta.json): real
    loading and prediction code, meaningless probabilities."""
    from safetensors.torch import save_file

    from mer import metrics, spectrogram, store, vit

    folder = tmp_path_factory.mktemp("vit-quick")
    params = spectrogram.LogMelParams()
    model = vit.build_model("quick", n_mels=params.n_mels, n_frames=108, seed=0)
    save_file(model.state_dict(), str(folder / vit.WEIGHTS_FILE))
    meta = {"status": "done", "train": {"size": "quick"}, "logmel": params.to_dict(),
            "stats": {"mean": -45.0, "std": 20.0, "n_clips": 1}, "label2id": metrics.LABEL2ID,
            "id2label": {str(k): v for k, v in metrics.ID2LABEL.items()}, "model_config": model.config.to_dict(),
            "input_shape": [1, params.n_mels, 108]}
    store.write_json(folder / vit.META_FILE, meta)
    return folder
