"""librosa's compiled kernels: a fresh machine's first parallel run cannot poison the cache.

numba#10128: two processes compiling the same gufunc at once can leave a
kernel from one and its wrapper from the other, and every later process that
loads them segfaults. These tests start real interpreters on an empty cache
folder, as a fresh machine's ``make book`` does with its two joblib workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mer import numba_cache

# The work a feature worker does: compile (or load) the kernels, then track beats
# and extract every audio family of a 10 s clip.
WORKER = r"""
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
import numpy as np
from mer import features, numba_cache
numba_cache.prepare()
sr = features.SR
t = np.arange(10 * sr) / sr
y = (0.1 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
features.clip_features(y, families=features.AUDIO_FAMILIES)
print("ok")
"""


def _env(cache_root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "MER_NUMBA_CACHE_ROOT")}
    env["NUMBA_CACHE_DIR"] = str(cache_root)
    return env


def _start(code: str, cache_root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], env=_env(cache_root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def _folder(cache_root: Path) -> Path:
    code = "from mer import numba_cache; print(numba_cache.folder())"
    done = subprocess.run([sys.executable, "-c", code], env=_env(cache_root), capture_output=True,
                          text=True, check=True)
    return Path(done.stdout.strip())


@pytest.fixture(scope="module")
def raced_cache(tmp_path_factory) -> Path:
    """An empty cache root that two workers filled at the same time."""
    root = tmp_path_factory.mktemp("numba-root")
    first, second = _start(WORKER, root), _start(WORKER, root)
    for process in (first, second):
        status, out, err = _finish(process)
        assert status == 0, f"a worker died ({status}) on an empty cache:\n{err[-2000:]}"
    return root


def test_two_workers_on_an_empty_cache_leave_one_a_third_process_can_load(raced_cache):
    status, out, err = _finish(_start(WORKER, raced_cache))
    assert status == 0, f"the third process died ({status}) on the cache two workers wrote:\n{err[-2000:]}"
    assert out.strip().endswith("ok")
    folder = _folder(raced_cache)
    assert numba_cache.check(folder) is None, "the cache changed after its one compile"
    assert "compiling" not in err  # it loaded, it did not compile again


def test_the_compile_covers_what_the_feature_spectrogram_and_tonality_code_calls(raced_cache, tmp_path):
    """After prepare(), the chapters' librosa work writes nothing to the cache.

    A kernel compiled outside the locked compile would be written by whichever
    worker met it first: the race again. So the compile must cover them all.
    """
    from mer import audio, features

    clip = tmp_path / "clip.wav"
    audio.write_wav(clip, features.render_test_clip(seed=3), sr=features.SR)
    code = f"""
import numpy as np
from mer import audio, features, numba_cache, spectrogram, tonality
numba_cache.prepare()
y = audio.load({str(clip)!r})
for signal in (y.astype(np.float32), y.astype(np.float64)):
    features.clip_features(signal, families=features.AUDIO_FAMILIES)
    spectrogram.logmel(signal)
    tonality.tonic_chroma(signal)
print("ok")
"""
    status, out, err = _finish(_start(code, raced_cache))
    assert status == 0, err[-2000:]
    assert numba_cache.check(_folder(raced_cache)) is None


def test_a_corrupted_cache_file_is_rebuilt_with_a_one_line_notice(raced_cache):
    folder = _folder(raced_cache)
    victim = sorted(folder.rglob("guf-beat.*.nbc"))[0]
    victim.write_bytes(np.random.default_rng(0).bytes(victim.stat().st_size))
    status, out, err = _finish(_start(WORKER, raced_cache))
    assert status == 0, f"a corrupted cache file crashed the run ({status}):\n{err[-2000:]}"
    notices = [line for line in err.splitlines() if line.startswith("WARNING mer.numba_cache")]
    assert len(notices) == 1, err[-2000:]
    assert victim.name in notices[0] and "compiling librosa's kernels again" in notices[0]
    assert numba_cache.check(folder) is None


def test_a_cache_poisoned_by_an_earlier_race_is_not_read(raced_cache):
    """What ee47d50 left on disk: librosa's own cache in the root, written by two racing processes."""
    root = raced_cache
    plain = ("import numpy as np, librosa; sr = 22050; t = np.arange(10 * sr) / sr; "
             "y = (0.1 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32); "
             "librosa.beat.beat_track(y=y, sr=sr)")
    env = _env(root)
    racers = [subprocess.Popen([sys.executable, "-c", plain], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) for _ in range(2)]
    for racer in racers:
        racer.wait(timeout=600)
    assert any(root.glob("librosa_*/guf-beat.*.nbc")), "the plain librosa runs cached nothing"
    status, out, err = _finish(_start(WORKER, root))
    assert status == 0, f"mer read the old, possibly poisoned cache ({status}):\n{err[-2000:]}"
    assert _folder(root).parent == root


def test_each_test_worker_compiles_into_a_cache_of_its_own():
    """``make test`` runs two pytest-xdist workers that call librosa in-process; sharing one numba cache
    folder they could compile the same gufunc into it at once (the race above) and crash each other."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        pytest.skip("not run by a pytest-xdist worker")
    assert numba_cache.folder().parent.name == f"xdist-{worker}"
    assert Path(os.environ["NUMBA_CACHE_DIR"]) == numba_cache.folder()  # where numba writes, in this process
