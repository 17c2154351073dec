"""Datasets in one table shape.

Every dataset, the synthetic default or a corpus on the user's disk, comes out
of :func:`load_dataset` as a :class:`Dataset`: a table of clips with the
columns ``clip_id, path, label, valence, arousal, split, source`` (plus the
dataset's own), and a table of the files that were rejected, with the reason.
A bad file is reported there and the others go on; an empty or single-class
dataset is an error.

Notebook: notebooks/00_data.ipynb (the Data page) and every chapter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .. import MerError, ParameterError

log = logging.getLogger(__name__)

#: The columns every dataset's ``clips`` table has, in this order.
COLUMNS = ("clip_id", "path", "label", "valence", "arousal", "split", "source")
SPLITS = ("train", "val", "test")
REJECTED_COLUMNS = ("path", "reason")


class DatasetError(MerError):
    """A dataset cannot be used as a whole (missing, empty, one class only)."""


@dataclass
class Dataset:
    """A dataset's clips, the files it rejected, and where it lives.

    Attributes
    ----------
    name : str
        The adapter's name (``"synth"``, ``"manifest"``...).
    clips : pandas.DataFrame, shape (n_clips, >= 7)
        One row per usable clip, columns :data:`COLUMNS` first.
    rejected : pandas.DataFrame, shape (n_rejected, 2)
        ``path, reason`` of every file that was left out.
    root : pathlib.Path
        The folder the dataset was read from.
    info : dict
        Anything the adapter wants the Data page to show (label rule, source).
    """

    name: str
    clips: pd.DataFrame
    rejected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(REJECTED_COLUMNS)))
    root: Path = Path(".")
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> pd.DataFrame:
        """Rows of ``clips`` in split ``name`` (``"train"``, ``"val"``, ``"test"``)."""
        if name not in SPLITS:
            raise ParameterError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.clips[self.clips["split"] == name].reset_index(drop=True)


def check(dataset: Dataset) -> Dataset:
    """Validate the common table shape and class content of ``dataset``.

    Raises
    ------
    DatasetError
        If a required column is missing, no clip is left, or only one class is.
    """
    clips = dataset.clips
    missing = [c for c in COLUMNS if c not in clips.columns]
    if missing:
        raise DatasetError(f"dataset {dataset.name!r} lacks columns {missing}")
    if clips.empty:
        reasons = dataset.rejected["reason"].value_counts().to_dict() if len(dataset.rejected) else {}
        raise DatasetError(f"dataset {dataset.name!r} at {dataset.root} has no usable clip"
                           + (f" (rejected: {reasons})" if reasons else ""))
    classes = sorted(set(clips["label"]))
    if len(classes) < 2:
        raise DatasetError(f"dataset {dataset.name!r} at {dataset.root} has one class only "
                           f"({classes}); Happy vs Sad needs both")
    if clips["clip_id"].duplicated().any():
        dupes = clips.loc[clips["clip_id"].duplicated(), "clip_id"].tolist()[:5]
        raise DatasetError(f"dataset {dataset.name!r} has duplicate clip ids, e.g. {dupes}")
    if len(dataset.rejected):
        log.warning("dataset %s: %d file(s) rejected, see Dataset.rejected", dataset.name, len(dataset.rejected))
    return dataset


def _adapters() -> dict[str, Callable[..., Dataset]]:
    # Imported lazily: the synthetic generator pulls in pretty_midi and
    # FluidSynth, which a user of a real corpus does not need.
    from . import corpora, manifest, synth

    return {
        "synth": synth.load,
        "synth_probe": synth.load_probe,
        "manifest": manifest.load,
        "deam": corpora.load_deam,
        "pmemo": corpora.load_pmemo,
        "fourq": corpora.load_fourq,
        "soundtracks": corpora.load_soundtracks,
        "jamendo_mood": corpora.load_jamendo_mood,
    }


def synth_options(dataset: str, *, n_clips: int, writing: str, soundfont: str, seed: int) -> dict[str, Any]:
    """The options a chapter passes to :func:`load_dataset`: its synthetic-set parameters, or none for a corpus.

    ``soundfont=""`` means the writing's own (FluidR3_GM for the classic
    writing; for the tonal writing one of its three training SoundFonts per
    clip, :data:`mer.data.synth.TRAIN_SOUNDFONTS`).

    Notebook: every chapter's setup cell (notebooks/00_data.ipynb first).
    """
    if not dataset.startswith("synth"):
        return {}
    return dict(n_clips=n_clips, writing=writing, soundfont=soundfont or None, seed=seed)


def load_dataset(name: str = "synth", data_dir: str | Path | None = None, **options: Any) -> Dataset:
    """Load dataset ``name`` into the common table shape.

    Parameters
    ----------
    name : str
        ``"synth"`` (default: generated on first use into ``data/synth/``),
        ``"synth_probe"`` (the ground-truth probe clips), ``"manifest"`` (a CSV
        with at least ``path,label``), or a corpus adapter.
    data_dir : str or Path, optional
        Where the dataset lives (a manifest's CSV file or its folder, a
        corpus's root). ``None`` or ``""`` means the default location.
    **options
        Passed to the adapter (``n_clips``, ``soundfont``, ``seed`` for synth).

    Returns
    -------
    Dataset

    Raises
    ------
    ParameterError
        If ``name`` is unknown (the message lists the known names).
    DatasetError
        If the dataset is empty or has one class only.
    """
    adapters = _adapters()
    if name not in adapters:
        raise ParameterError(f"unknown dataset {name!r}; expected one of {sorted(adapters)}")
    data_dir = Path(data_dir) if data_dir not in (None, "") else None
    return check(adapters[name](data_dir, **options))
