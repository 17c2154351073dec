"""Where librosa's numba-compiled kernels are cached, and how they are compiled once.

librosa compiles its inner loops (beat tracking, zero crossings, pitch) with
numba and caches the machine code on disk (``NUMBA_CACHE_DIR``), so the ~20 s
compile is paid once per machine. That cache is not safe when two processes
compile the same ``@guvectorize`` function at once (numba issue #10128, open
in numba 0.68): a gufunc is cached as two files, the kernel
(``beat.__dp_backtrack-686.py311.1.nbc``) and its wrapper
(``guf-beat.__dp_backtrack-686.py311.1.nbc``), which refer to each other by a
symbol name that carries a per-process counter (``...B4v174...``). When the
two files come from different processes, every later process that loads them
calls a function pointer that does not exist and dies with a segmentation
fault; the folder stays poisoned until someone deletes it. Two joblib workers
extracting features on a fresh machine lose that race about every time.

What this module does about it, at the root:

1. **Compile once, alone.** :func:`prepare` takes an exclusive lock on the
   cache folder and, if the folder holds no complete cache, compiles every
   kernel ``mer`` uses in a *fresh* interpreter (:func:`compile_kernels`), so
   no second process writes the folder while it is filled and nothing this
   process compiled earlier is missing from it. Fan-out points
   (:func:`mer.parallel.map`, :func:`mer.features.extract`) call it before
   they start workers; workers call it too (a Dask worker may have its own
   disk), and find the cache ready.
2. **Know what was written.** The compile ends by recording the SHA-256 of
   every file in the folder (``manifest.json``). A later :func:`prepare`
   checks them; a file that changed (corrupted, truncated, or rewritten by
   a process outside this protocol) gets a one-line warning and the folder
   is rebuilt instead of crashing.
3. **One folder per version and CPU.** The folder is named after Python,
   numba and librosa versions, the CPU numba compiles for (its name and a
   hash of its features: a shared disk seen by an AVX2 and an AVX-512
   machine holds two folders) and this module's :data:`LAYOUT`, so a cache
   left by other versions, another machine or an earlier ``mer`` that raced
   is never read, and never written outside the lock.

``NUMBA_CACHE_DIR`` (as the Makefile sets it) or ``MER_NUMBA_CACHE_ROOT``
names the root; default ``<repository>/.cache/numba``. :func:`configure`
runs when ``mer`` is imported, before librosa is, and points numba at the
versioned folder.

Notebook: book/reproducing.md (a fresh machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

#: Bump when the folder's layout or the compile protocol changes.
LAYOUT = 2
#: Name of the file that lists every cache file and its SHA-256.
MANIFEST = "manifest.json"
#: Seconds the compile of every kernel may take before it is called stuck.
COMPILE_TIMEOUT_S = 900

_ROOT_VARIABLE = "MER_NUMBA_CACHE_ROOT"
_prepared: Path | None = None


def root() -> Path:
    """The folder under which versioned cache folders live.

    ``MER_NUMBA_CACHE_ROOT`` if set (the value :func:`configure` hands down to
    child processes), else ``NUMBA_CACHE_DIR``, else ``<repository>/.cache/numba``.
    """
    for variable in (_ROOT_VARIABLE, "NUMBA_CACHE_DIR"):
        if os.environ.get(variable):
            return Path(os.environ[variable])
    return Path(__file__).resolve().parent.parent / ".cache" / "numba"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def folder() -> Path:
    """The cache folder of this Python, numba, librosa and :data:`LAYOUT`.

    Returns
    -------
    pathlib.Path
        ``<root>/py3.11-numba0.68.1-librosa0.11.0-znver4.1a2b3c4d-layout2`` for example.
    """
    tag = (f"py{sys.version_info[0]}.{sys.version_info[1]}-numba{_version('numba')}"
           f"-librosa{_version('librosa')}-{_cpu()}-layout{LAYOUT}")
    return root() / tag


def _cpu() -> str:
    """The CPU numba compiles for: its name and a short hash of its features."""
    try:
        from llvmlite import binding  # numba's own view of the host (~30 ms to import)
    except ImportError:
        return "cpu-unknown"
    name = os.environ.get("NUMBA_CPU_NAME") or binding.get_host_cpu_name()
    features = os.environ.get("NUMBA_CPU_FEATURES") or binding.get_host_cpu_features().flatten()
    return f"{name}.{hashlib.sha256(features.encode()).hexdigest()[:8]}"


def configure() -> Path:
    """Point numba's cache at :func:`folder` (called when ``mer`` is imported).

    Sets ``NUMBA_CACHE_DIR`` (and ``numba.config.CACHE_DIR`` if numba is
    already imported) and remembers the root in ``MER_NUMBA_CACHE_ROOT``, so
    child processes (joblib and Papermill kernels) resolve the same folder.

    Returns
    -------
    pathlib.Path
        The folder numba now caches in.
    """
    base = root()
    os.environ[_ROOT_VARIABLE] = str(base)
    target = folder()
    os.environ["NUMBA_CACHE_DIR"] = str(target)
    if "numba" in sys.modules:
        sys.modules["numba"].config.CACHE_DIR = str(target)
    if "librosa" in sys.modules:
        # librosa's functions chose their cache folder when it was imported.
        log.debug("librosa was imported before mer: its kernels may cache outside %s", target)
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cache_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".nbi", ".nbc"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_manifest(path: Path) -> None:
    files = {str(p.relative_to(path)): _sha256(p) for p in _cache_files(path)}
    tmp = path / f".{MANIFEST}.{os.getpid()}"
    tmp.write_text(json.dumps({"files": files}, indent=1, sort_keys=True))
    os.replace(tmp, path / MANIFEST)


def check(path: Path | None = None) -> str | None:
    """Why the cache folder cannot be trusted, or ``None`` if it can.

    Parameters
    ----------
    path : pathlib.Path, optional
        The folder; default :func:`folder`.

    Returns
    -------
    str or None
        ``"empty"`` (nothing compiled yet), a sentence naming the first file
        that is missing, new or changed since the compile recorded it, or
        ``None`` when every file is as recorded.
    """
    path = folder() if path is None else path
    present = _cache_files(path) if path.exists() else []
    manifest = path / MANIFEST
    if not manifest.exists():
        return "empty" if not present else f"{len(present)} files but no record of a complete compile"
    try:
        recorded = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    names = {str(p.relative_to(path)) for p in present}
    for name in sorted(set(recorded) | names):
        if name not in names:
            return f"{name} is missing"
        if name not in recorded:
            return f"{name} was written after the compile"
        if _sha256(path / name) != recorded[name]:
            return f"{name} changed since it was written"
    return None


def _clear(path: Path) -> None:
    for child in path.iterdir():
        if child.name == ".lock":
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def prepare() -> Path:
    """Make sure the cache folder holds every kernel, compiled by one process.

    Cheap after the first call in a process. Holds an exclusive lock on the
    folder while it checks (and, if needed, fills) it, so concurrent callers
    wait for one compile and then find it done.

    Returns
    -------
    pathlib.Path
        The cache folder.

    Raises
    ------
    mer.MerError
        If the kernels cannot be compiled (the message holds the last line
        the compiling interpreter printed).

    Notebook: book/reproducing.md (a fresh machine).
    """
    global _prepared
    path = folder()
    if _prepared == path:
        return path
    with _locked(path):
        reason = check(path)
        if reason is not None:
            if reason != "empty":
                log.warning("numba cache %s: %s; compiling librosa's kernels again", path, reason)
            else:
                log.info("compiling librosa's kernels once into %s (about 20 s)", path)
            _clear(path)
            _compile_in_fresh_interpreter(path)
            _write_manifest(path)
    _prepared = path
    return path


def _compile_in_fresh_interpreter(path: Path) -> None:
    from . import MerError

    env = dict(os.environ, NUMBA_CACHE_DIR=str(path), **{_ROOT_VARIABLE: str(root())})
    code = "from mer import numba_cache; numba_cache.compile_kernels()"
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MerError(f"compiling librosa's kernels into {path} took over {COMPILE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise MerError(f"compiling librosa's kernels into {path} failed: {last}")


def compile_kernels() -> None:
    """Call every numba-compiled librosa path ``mer`` uses, in float32 and float64.

    Run by :func:`prepare` in a fresh interpreter, so that each kernel is
    compiled here and written to the cache by this process alone.
    ``tests/test_numba_cache.py`` checks that the chapters' feature and
    spectrogram code then compiles nothing more.
    """
    import importlib  # the kernels' modules are imported by name, in the compiling interpreter only

    import numpy as np  # `import mer` imports this module: numpy only when compiling

    # Imported by name, not `from . import`: mer.store.code_hash follows the
    # package's import statements, and features' artefact keys must not change
    # when spectrogram.py does just because both are compiled here.
    features = importlib.import_module("mer.features")
    spectrogram = importlib.import_module("mer.spectrogram")
    tonality = importlib.import_module("mer.tonality")

    sr = features.SR
    t = np.arange(int(4 * sr)) / sr
    # A pulsed chord, so onset and beat tracking, chroma and pitch all have work to do.
    pulse = (np.sin(2 * np.pi * 2.0 * t) > 0).astype(float)
    y = sum(np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)) * 0.1 * pulse
    for dtype in (np.float32, np.float64):
        signal = y.astype(dtype)
        features.clip_features(signal, sr=sr, families=features.AUDIO_FAMILIES)
        spectrogram.logmel(signal)
        tonality.tonic_chroma(signal, sr=sr)


__all__ = ["LAYOUT", "MANIFEST", "root", "folder", "configure", "check", "prepare", "compile_kernels"]
