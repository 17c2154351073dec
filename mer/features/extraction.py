"""The families registry, one clip's features, and a dataset's feature table (parallel, cached).

:data:`REGISTRY` lists the feature families in column order; each is a
:class:`Family`: its name, the function that computes it, the column prefixes
it writes and what it reads (the audio, through a shared
:class:`mer.features.Analysis`, or the clip's score). :func:`clip_features`
runs the requested families on one clip, :func:`extract` on a dataset in
parallel (joblib) and caches the table as CSV under ``data/derived/features/``,
named by a content hash of the audio files and the parameters.

Adding a family: a module with its ``<name>_features`` function and one
:class:`Family` line in :data:`REGISTRY`.

Notebook: notebooks/01_features.ipynb
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from .. import ParameterError, audio, numba_cache, store
from ..tonality import PITCH_CLASSES
from .analysis import HOP, N_FFT, SR, analyse
from .chords import chord_features
from .chroma import chroma_features
from .key import key_features
from .lowlevel import lowlevel_features
from .midlevel import midlevel_features
from .symbolic import symbolic_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """One feature family: what computes it, which columns it writes, what it reads.

    Parameters
    ----------
    name : str
        The family's name (``"chroma"``), as callers pass it in ``families``.
    compute : callable
        ``compute(analysis=..., reasons=...)`` for an audio family (the clip's
        shared :class:`mer.features.Analysis`), ``compute(midi_path=...,
        truth_path=..., reasons=...)`` for a score family; returns a dict
        feature name -> value, NaN (and a reason appended) where undefined.
    prefixes : tuple of str
        The beginnings of its numeric column names (:func:`feature_columns`).
    reads : {"audio", "score"}
        What the family reads.

    Notebook: notebooks/01_features.ipynb
    """

    name: str
    compute: Callable[..., dict[str, Any]]
    prefixes: tuple[str, ...]
    reads: str = "audio"

    def __post_init__(self):
        if self.reads not in ("audio", "score"):
            raise ParameterError(f"family {self.name!r}: reads must be 'audio' or 'score', got {self.reads!r}")


#: The feature families, in column order. A new family is one module and one line here.
REGISTRY = (
    Family("chroma", chroma_features, ("chroma_",)),
    Family("key", key_features, ("key_",)),
    Family("chords", chord_features, ("chords_",)),
    Family("midlevel", midlevel_features, ("ml_",)),
    Family("lowlevel", lowlevel_features, ("tempo_bpm", "onset_rate", "rms_db", "rms_peak_db", "spectral_",
                                           "salient_pitch", "melody_pitch")),
    Family("symbolic", symbolic_features, ("sym_",), reads="score"),
)
#: Names of the families (:data:`REGISTRY`), in column order.
FAMILIES = tuple(family.name for family in REGISTRY)
#: Families computed from the audio (``symbolic`` reads the score).
AUDIO_FAMILIES = tuple(family.name for family in REGISTRY if family.reads == "audio")
_BY_NAME = {family.name: family for family in REGISTRY}


def _check_families(families) -> tuple[str, ...]:
    if isinstance(families, str):
        families = (families,)
    families = tuple(families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ParameterError(f"unknown feature families {unknown or families}; expected some of {FAMILIES}")
    return tuple(f for f in FAMILIES if f in families)


def clip_features(y: np.ndarray | None = None, *, sr: int = SR, families: Iterable[str] = FAMILIES,
                  midi_path=None, truth_path=None) -> dict[str, Any]:
    """All requested families for one clip, sharing one :class:`mer.features.Analysis`.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,), optional
        The clip (None if only ``symbolic`` is asked for).
    families : iterable of str
        Some of :data:`FAMILIES`.
    midi_path, truth_path : path, optional
        The clip's score and truth file (``symbolic``).

    Returns
    -------
    dict
        Feature name -> value, plus ``nan_reasons`` ("; "-joined, "" if none).

    Notebook: notebooks/01_features.ipynb
    """
    families = _check_families(families)
    reasons: list[str] = []
    out: dict[str, Any] = {}
    audio_families = [f for f in families if _BY_NAME[f].reads == "audio"]
    if audio_families:
        a = analyse(y, sr=sr)
        for family in audio_families:
            out.update(_BY_NAME[family].compute(analysis=a, reasons=reasons))
    for family in families:
        if _BY_NAME[family].reads == "score":
            out.update(_BY_NAME[family].compute(midi_path=midi_path, truth_path=truth_path, reasons=reasons))
    out["nan_reasons"] = "; ".join(reasons)
    return out


def _columns(families: tuple[str, ...]) -> list[str]:
    """Column names of the requested families, in order (from a silent clip)."""
    row = clip_features(np.zeros(SR, dtype=np.float32), families=families)
    return [c for c in row if c != "nan_reasons"]


def _one_clip(row: dict, families: tuple[str, ...], columns: list[str]) -> dict[str, Any]:
    numba_cache.prepare()  # a no-op once the parent compiled; a Dask worker may have its own disk
    out: dict[str, Any] = {"clip_id": row["clip_id"]}
    try:
        # Corpora cut long files into 10 s windows: offset_s says where this one starts.
        offset = row.get("offset_s")
        offset = 0.0 if offset is None or offset != offset else float(offset)
        reads_audio = any(_BY_NAME[f].reads == "audio" for f in families)
        y = audio.load(row["path"], offset=offset) if reads_audio else None
        out.update(clip_features(y, families=families, midi_path=row.get("midi_path"),
                                 truth_path=row.get("truth_path")))
        out["status"] = "ok"
    except audio.AudioError as err:
        out.update({c: np.nan for c in columns})
        out["nan_reasons"] = f"unreadable audio: {err.reason}"
        out["status"] = "rejected"
    except Exception as err:  # noqa: BLE001 - one bad clip must not stop a dataset
        out.update({c: np.nan for c in columns})
        out["nan_reasons"] = f"feature extraction failed: {type(err).__name__}: {err}"
        out["status"] = "rejected"
    return out


def _content_key(clips: pd.DataFrame) -> list[list[str]]:
    """``[clip_id, sha256 of the audio file, offset_s]`` per clip: the cache's content hash
    (the offset tells apart the 10 s windows a corpus cuts from one long file)."""
    key = []
    offsets = clips["offset_s"] if "offset_s" in clips.columns else pd.Series(0.0, index=clips.index)
    for (clip_id, path), offset in zip(clips[["clip_id", "path"]].itertuples(index=False), offsets):
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        except OSError:
            digest = "missing"
        key.append([str(clip_id), digest, 0.0 if offset != offset else float(offset)])
    return key


def extract(dataset, *, families: Iterable[str] = FAMILIES, n_jobs: int = 2, cache: bool = True,
            progress: bool = True) -> pd.DataFrame:
    """Extract feature families for every clip of ``dataset``, in parallel, cached.

    Parameters
    ----------
    dataset : mer.data.Dataset or pandas.DataFrame
        The clips (columns ``clip_id, path``, optionally ``midi_path,
        truth_path`` for the symbolic family).
    families : iterable of str
        Some of :data:`FAMILIES` (default all).
    n_jobs : int
        joblib workers (processes). 1 runs in this process.
    cache : bool
        Read/write the table at ``mer.store.artefact_path("features", ...)``,
        keyed by the audio files' content, the families and the code.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    features : pandas.DataFrame, shape (n_clips, n_features + 3)
        ``clip_id``, the feature columns, ``status`` (``"ok"`` or
        ``"rejected"``: the file could not be read, every feature NaN) and
        ``nan_reasons`` (why any feature of the row is NaN; "" if none).
        A corrupt file is logged and reported in its row; the others go on.

    Notebook: notebooks/01_features.ipynb
    """
    families = _check_families(families)
    if n_jobs < 1:
        raise ParameterError(f"n_jobs must be >= 1, got {n_jobs!r}")
    clips = dataset.clips if hasattr(dataset, "clips") else pd.DataFrame(dataset)
    if clips.empty:
        raise ParameterError("extract: the dataset has no clips")
    params = {"families": list(families), "sr": SR, "n_fft": N_FFT, "hop": HOP, "clips": _content_key(clips)}
    # Keyed on the code of the whole package (its __init__ imports every family module).
    path = store.artefact_path("features", params, ".csv", code="mer.features")
    if cache and path.exists():
        log.info("features: cached %s", path)
        return _read_table(path)
    columns = _columns(families)
    rows = [r._asdict() if hasattr(r, "_asdict") else r for r in clips.to_dict("records")]
    numba_cache.prepare()  # compile librosa's kernels here, once, before workers load them
    worker = delayed(_one_clip)
    if n_jobs == 1:
        iterator = (_one_clip(r, families, columns) for r in rows)
    else:
        iterator = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=4)(
            worker(r, families, columns) for r in rows)
    results = list(tqdm(iterator, total=len(rows), desc="features", disable=not progress))
    table = pd.DataFrame(results)
    table = table[["clip_id", *columns, "status", "nan_reasons"]]
    table["nan_reasons"] = table["nan_reasons"].fillna("")
    for _, bad in table[table["status"] == "rejected"].iterrows():
        log.warning("features: clip %s rejected: %s", bad["clip_id"], bad["nan_reasons"])
    if cache:
        store.write_csv(path, table)
    return table


def _read_table(path) -> pd.DataFrame:
    table = pd.read_csv(path, keep_default_na=True, dtype={"clip_id": str})
    for column in ("nan_reasons", "chord_sequence"):
        if column in table:
            table[column] = table[column].astype(object).where(table[column].notna(), "")
    return table


def extractable_families(clips: pd.DataFrame) -> tuple[str, ...]:
    """The families :func:`extract` can compute for a dataset: all of them when
    the clips have scores (``midi_path``), the audio families otherwise.

    Notebook: notebooks/01_features.ipynb
    """
    return FAMILIES if "midi_path" in clips else AUDIO_FAMILIES


#: Columns that name absolute pitch: the mean chroma of each of the twelve pitch classes and the
#: estimated tonic's number (0 = C .. 11 = B, not even an ordered quantity). A model reading them can
#: tie its evidence to one key, so the book's models leave them out (:func:`model_columns`).
ABSOLUTE_PITCH_COLUMNS = tuple(f"chroma_{pc}" for pc in PITCH_CLASSES) + ("key_tonic",)


def model_columns(features: pd.DataFrame, families: Iterable[str] | None = None) -> list[str]:
    """The columns the book's feature models read: :func:`feature_columns` without :data:`ABSOLUTE_PITCH_COLUMNS`.

    What is left reads pitch relative to the estimated key (the chroma by
    scale degree, the mode, the chords' qualities) or not at all, so the model
    is key-invariant by construction as far as the key estimate goes; the
    melody's pitch and the brightness still move with a transposition, as
    the synthetic label's register cue does. Chapter 1 fits its models on
    these columns and chapter 2 refits the same model beside the ViT.

    Notebook: notebooks/01_features.ipynb
    """
    return [c for c in feature_columns(features, families) if c not in ABSOLUTE_PITCH_COLUMNS]


def feature_columns(features: pd.DataFrame, families: Iterable[str] | None = None) -> list[str]:
    """Numeric feature columns of ``features``, optionally of some families only.

    Notebook: notebooks/01_features.ipynb
    """
    wanted = _check_families(families) if families is not None else FAMILIES
    keep = tuple(p for f in wanted for p in _BY_NAME[f].prefixes)
    return [c for c in features.columns
            if c.startswith(keep) and pd.api.types.is_numeric_dtype(features[c])]
