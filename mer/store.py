"""Where things live, what they are called, and how they are written.

Chapters hand artefacts to one another only through files under
``data/derived/``, named by a content hash of what produced them (parameters
and the source of the ``mer`` modules that compute them, :func:`code_hash`),
so that a chapter re-run alone never reads a stale artefact, and an edit of
unrelated code (a plot, an explainer) does not recompute them. Every write is atomic: a temporary file in the same
directory, then ``os.replace``.

Notebook: every chapter (through ``mer.data``, ``mer.report`` and the runner).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

#: Root of the repository (the folder holding ``_config.yml``). ``MER_ROOT``
#: overrides it, which the tests use to work on a scratch copy.
ROOT = Path(os.environ.get("MER_ROOT", Path(__file__).resolve().parent.parent))


def root() -> Path:
    """Return the repository root, honouring ``MER_ROOT`` set after import."""
    return Path(os.environ.get("MER_ROOT", ROOT))


def data_dir() -> Path:
    """``<root>/data``: datasets and derived artefacts (``MER_DATA`` overrides)."""
    return Path(os.environ.get("MER_DATA", root() / "data"))


def derived_dir() -> Path:
    """``<data>/derived``: content-hashed artefacts shared between chapters."""
    return data_dir() / "derived"


def build_dir() -> Path:
    """``<root>/_build``: the rendered book, results and benchmarks."""
    return Path(os.environ.get("MER_BUILD", root() / "_build"))


def results_dir() -> Path:
    """``<build>/results``: one JSON of headline numbers per chapter."""
    return build_dir() / "results"


def canonical_json(obj: Any) -> str:
    """Serialise ``obj`` the same way every time (sorted keys, no spaces).

    Used for content hashes and for results files that must be byte-identical
    across runs with the same parameters.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, paths: the types that reach us from chapters.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON: {obj!r}")


def hash_params(params: Any, *, length: int = 12) -> str:
    """Return a short SHA-256 of ``params`` (any JSON-serialisable value)."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:length]


def hash_files(paths: list[Path], *, base: Path | None = None) -> str:
    """SHA-256 over the names (relative to ``base``) and bytes of ``paths``."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        name = path.relative_to(base) if base else path.name
        digest.update(str(name).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def package_hash() -> str:
    """Hash of the ``mer`` package source (every ``.py`` file under it).

    Part of every artefact name and of the runner's chapter cache key, so a
    change of code invalidates what the code produced.
    """
    package = Path(__file__).resolve().parent
    return hash_files(list(package.rglob("*.py")), base=package)[:12]


def _module_file(package: Path, dotted: str) -> Path | None:
    """``mer.a.b`` -> ``<package>/a/b.py`` or ``<package>/a/b/__init__.py`` (None if neither)."""
    parts = dotted.split(".")[1:]
    candidate = package.joinpath(*parts)
    for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
        if parts and path.is_file():
            return path
    return package / "__init__.py" if not parts else None


def _imported_modules(path: Path, dotted: str) -> set[str]:
    """Dotted names of the ``mer`` modules a source file imports, anywhere in it
    (function-level imports included), read with ``ast`` without importing."""
    is_package = path.name == "__init__.py"
    here = dotted.split(".") if is_package else dotted.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "mer"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "mer":
                base = node.module.split(".")
            else:
                continue
            found.add(".".join(base))
            # ``from . import store`` imports a module; ``from .data import load`` a name.
            found |= {".".join(base + [alias.name]) for alias in node.names}
    return found


def code_hash(module: str | Sequence[str]) -> str:
    """Hash of the source of ``module`` and of every ``mer`` module it imports,
    transitively (parent packages' ``__init__`` included).

    An artefact keyed on this hash is rebuilt when code that can change it
    changes, and kept when only unrelated code does (editing the LRP rules
    does not retrain the ViT). Imports are read statically, so a module
    reached only through ``importlib`` would be missed: none is in ``mer``
    (``mer.cli`` and ``mer.bench`` import chapters' modules by name but produce
    no artefact). Several modules (a sequence) give one hash of everything
    any of them imports: an artefact whose content depends on code it does
    not import (a checkpoint on the generator of its audio) names both.
    """
    package = Path(__file__).resolve().parent
    seen: dict[str, Path] = {}
    wanted = [module] if isinstance(module, str) else list(module)
    todo = list(wanted)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # Importing ``mer.a.b`` runs ``mer/__init__.py`` and ``mer/a/__init__.py`` first.
        todo += [".".join(parts[:k]) for k in range(1, len(parts)) if ".".join(parts[:k]) not in seen]
        if name in seen:
            continue
        path = _module_file(package, name)
        if path is None:  # a name imported from a module, not a module
            continue
        seen[name] = path
        todo += [n for n in _imported_modules(path, name) if n not in seen]
    for name in wanted:
        if name not in seen:
            raise ValueError(f"{name!r} is not a module of the mer package")
    return hash_files(sorted(set(seen.values())), base=package)[:12]


#: Longest readable part of :func:`safe_name` (the hash follows it).
SAFE_NAME_LENGTH = 48


def safe_name(text: str, *, length: int = SAFE_NAME_LENGTH) -> str:
    """A file name made from any text (a clip id from a manifest): ASCII, no folders, never hidden.

    The readable part keeps ASCII letters, digits, ``.``, ``_`` and ``-``
    (accents dropped, every other run of characters becomes one ``-``, no
    leading dot or dash, no ``..``), cut to ``length``; then ``-`` and the
    first 10 hex digits of the SHA-256 of ``text`` follow, so two different ids
    never share a file even when their readable parts agree (``a/b``, ``a b``).
    ``../../x`` becomes ``x-<hash>``: a name, never a path out of its folder.

    Parameters
    ----------
    text : str
        Any text; ``str()`` of it is used.
    length : int
        Longest readable part.

    Returns
    -------
    str
        At most ``length + 11`` characters of ``[A-Za-z0-9._-]``.

    Notebook: notebooks/00_data.ipynb, 01_features, 02_vit and 04_sonification name
    their players' OGG files with it.
    """
    text = str(text)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text)
    slug = re.sub(r"\.{2,}", ".", slug)
    slug = slug[:length].strip(".-") or "id"
    return f"{slug}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:10]}"


def artefact_path(kind: str, params: Any, suffix: str = "", *, code: str | Sequence[str] | None = None) -> Path:
    """Path of a derived artefact named by ``kind`` and a hash of ``params``.

    Parameters
    ----------
    kind : str
        What the artefact is (``"features"``, ``"vit"``, ``"relevance"``...).
    params : JSON-serialisable
        Everything that determines the artefact's content. A hash of the code
        that produces it is added, so changed code never reuses an old artefact.
    suffix : str
        File suffix (``".csv"``) or ``""`` for a directory.
    code : str or sequence of str, optional
        The producing module (``__name__``), or modules: the key then holds
        :func:`code_hash` of them and of what they import, instead of the
        whole package's :func:`package_hash`.

    Returns
    -------
    pathlib.Path
        ``data/derived/<kind>/<kind>-<hash><suffix>``; the parent exists.
    """
    key = hash_params({"params": params, "code": package_hash() if code is None else code_hash(code)})
    folder = derived_dir() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{kind}-{key}{suffix}"


def clip_arrays(kind: str, clips, params: dict[str, Any], one_file, *, code: str, field: str, empty,
                desc: str, n_jobs: int = 2, cache: bool = True, progress: bool = True,
                before=None):
    """One array per clip file, computed in parallel and cached under ``data/derived/<kind>/``.

    The shared mechanism of :func:`mer.spectrogram.compute` (log-mels) and
    :func:`mer.tonality.chromas` (tonic chroma): the cache key is ``params``
    plus a hash of the clip ids, paths and file sizes, and the file is read
    back only if it holds the same clip ids in the same order.

    Parameters
    ----------
    kind : str
        The artefact kind (:func:`artefact_path`).
    clips : pandas.DataFrame
        Columns ``clip_id`` and ``path``.
    params : dict
        What else determines the arrays (front-end settings).
    one_file : callable
        ``one_file(path) -> np.ndarray``, picklable (it runs in joblib workers).
    code : str
        The producing module (``__name__``), for :func:`code_hash`.
    field : str
        The array's name in the ``.npz`` file.
    empty : np.ndarray
        The result for no clips.
    before : callable, optional
        Called once before computing (not on a cache hit): numba's compile.

    Returns
    -------
    values : np.ndarray, shape (n_clips, ...)
        In the order of ``clips``.
    clip_ids : np.ndarray of str, shape (n_clips,)
    """

    paths = [str(x) for x in clips["path"]]
    ids = np.asarray([str(x) for x in clips["clip_id"]])
    key = {**params, "clips": hash_params(
        [[i, path, Path(path).stat().st_size if Path(path).exists() else -1] for i, path in zip(ids, paths)])}
    target = artefact_path(kind, key, ".npz", code=code)
    if cache and target.exists():
        with np.load(target, allow_pickle=False) as stored:
            if list(stored["clip_ids"]) == list(ids):
                return stored[field], ids
    if not paths:
        return empty, ids
    if before is not None:
        before()
    jobs = (delayed(one_file)(path) for path in paths)
    bar = tqdm(jobs, total=len(paths), desc=desc, disable=not progress)
    values = np.stack(Parallel(n_jobs=n_jobs)(bar))
    if cache:
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **{field: values, "clip_ids": ids})
    return values, ids


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    If the block raises, the temporary file is removed and ``path`` is left
    as it was, so a reader never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); give it the mode a plain open()
    # would (0666 less the umask), so a web server or another user can read it.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, what: str = "dataset") -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; mark it complete and rename it onto ``path`` on success.

    A reader never sees a half-written folder: the block writes into the
    temporary one, which gets a ``COMPLETE`` file and then takes ``path``'s
    name in one rename. If another process completed ``path`` first, this
    one's folder is dropped; if the block raises, it is removed.

    Raises
    ------
    mer.ParameterError
        ``path`` exists, is not empty and is not complete (never overwritten).
    """
    from . import ParameterError

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        (tmp / "COMPLETE").write_text("")
        if path.exists():
            if (path / "COMPLETE").exists():  # another process finished first
                return
            if any(path.iterdir()):
                raise ParameterError(f"data_dir {path} exists, is not empty and holds no complete {what}; "
                                     f"remove it or choose another folder")
            path.rmdir()
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a dataset is for every reader
        try:
            os.replace(tmp, path)
        except OSError:
            # Another process renamed its complete folder onto `path` between the check above and this
            # rename (two test workers, or two notebooks, rendering the same dataset): theirs stands.
            if not (path / "COMPLETE").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (sorted keys) atomically and return the path."""
    text = json.dumps(obj, sort_keys=True, indent=indent, default=_json_default)
    return write_text(path, text + "\n")


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame to CSV atomically (no index) and return the path."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)
