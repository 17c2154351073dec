"""Which model is chapter 2's: the records chapters 3 and 4 and the commands read.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .. import ParameterError, store
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, one_line, weights_sha256
from .inputs import key_options
from .training import TrainOptions, train


#: Folder under ``data/derived`` of the records of chapter 2's model, one per profile.
CHAPTER_MODEL_DIR = "chapter-model"


#: The record naming the profile chapter 2 was last rendered with.
LAST_PROFILE_FILE = "last.json"


#: A profile's name is a file name of its record: a plain word, never a path.
PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def chapter_model_records() -> Path:
    """``data/derived/chapter-model``: where :func:`record_chapter_model` writes."""
    return store.derived_dir() / CHAPTER_MODEL_DIR


def _chapter_model_record(profile: str) -> Path:
    """``data/derived/chapter-model/<profile>.json``; a profile is a plain name, never a path."""
    if not PROFILE_NAME.fullmatch(str(profile)):
        raise ParameterError(f"profile must be a plain name (letters, digits, _ and -), got {profile!r}")
    return chapter_model_records() / f"{profile}.json"


def record_chapter_model(checkpoint: str | Path, *, profile: str) -> Path:
    """Record ``checkpoint`` as chapter 2's model for ``profile``, and ``profile`` as rendered last.

    ``python -m mer predict`` and ``explain`` use this model by default, the
    one chapters 3 and 4 explain (:func:`chapter_model` names the same
    folder), not the newest checkpoint on disk, which after the seed spread
    is the last seed's.

    Writes, each atomically, ``data/derived/chapter-model/<profile>.json``
    (``profile``, ``checkpoint`` relative to ``data/derived``,
    ``weights_sha256``, ``dataset``) and then ``last.json`` (``profile``).

    Parameters
    ----------
    checkpoint : str or Path
        A finished checkpoint folder under ``data/derived/vit`` (:func:`train`).
    profile : str
        The profile chapter 2 runs with.

    Returns
    -------
    pathlib.Path
        The profile's record.

    Notebook: notebooks/02_vit.ipynb
    """
    record_path = _chapter_model_record(profile)
    folder = Path(checkpoint).resolve()
    model, meta = load_checkpoint(folder)
    del model
    derived = store.derived_dir().resolve()
    try:
        relative = folder.relative_to(derived).as_posix()
    except ValueError:
        relative = str(folder)  # a checkpoint passed from elsewhere stays absolute
    record = {"profile": profile, "checkpoint": relative, "weights_sha256": weights_sha256(folder),
              "dataset": meta.get("dataset", {}).get("name")}
    path = store.write_json(record_path, record)
    store.write_json(chapter_model_records() / LAST_PROFILE_FILE, {"profile": profile})
    return path


def recorded_chapter_model(profile: str | None = None) -> dict[str, Any] | None:
    """What :func:`record_chapter_model` recorded for ``profile`` (default: the profile rendered last).

    Returns
    -------
    dict or None
        The record with ``checkpoint`` as an absolute :class:`~pathlib.Path`
        (it may no longer exist); ``None`` if chapter 2 has recorded no model
        for that profile (or none at all, for ``profile=None``).

    Raises
    ------
    CheckpointError
        If a record exists but cannot be read.

    Notebook: notebooks/02_vit.ipynb
    """
    records = chapter_model_records()

    def read(path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(record, dict):
                raise TypeError(f"a {type(record).__name__}, not an object")
            return record
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as error:
            raise CheckpointError(f"the record of chapter 2's model {path} is unreadable ({one_line(error)}); "
                                  f"re-run chapter 2 (python -m mer run 02_vit --force)") from error

    if profile is None:
        last = read(records / LAST_PROFILE_FILE)
        if last is None or not last.get("profile"):
            return None
        profile = str(last["profile"])
        if not PROFILE_NAME.fullmatch(profile):
            raise CheckpointError(f"the record {records / LAST_PROFILE_FILE} names no profile ({profile!r}); "
                                  f"re-run chapter 2 (python -m mer run 02_vit --force)")
    record = read(_chapter_model_record(profile))
    if record is None or "checkpoint" not in record:
        return None
    return dict(record, profile=profile, checkpoint=store.derived_dir() / record["checkpoint"])


def chapter_options(*, size: str = "default", epochs: int = 12, batch_size: int = 32, learning_rate: float = 3e-4,
                    seed: int = 0, time_budget_s: float | None = None, pretrained: str | None = None,
                    pretrain_epochs: int = 0, valence_weight: float = 0.0, front_end: str = "mel",
                    transpose_augment: int = 0, canonicalise: str | None = None,
                    input_channels: str = "spectrogram") -> TrainOptions:
    """The :class:`TrainOptions` of chapter 2's parameters: the one translation chapters 2-4 and ``mer train`` share.

    Empty values mean off (``time_budget_s`` 0, ``pretrained`` and
    ``canonicalise`` ``""``), as in a chapter's parameters cell; equal
    parameters give equal options, hence the same checkpoint folder.
    ``front_end``, ``transpose_augment`` and ``canonicalise`` are the
    key-invariance options (:func:`key_options`); their defaults, and
    ``input_channels="spectrogram"``, name the checkpoints of before them.

    Notebook: notebooks/02_vit.ipynb
    """
    return TrainOptions(size=size, epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate),
                        seed=int(seed), time_budget_s=time_budget_s or None, pretrained=pretrained or None,
                        pretrain_epochs=int(pretrain_epochs), valence_weight=float(valence_weight),
                        input_channels=input_channels,
                        **key_options(front_end, transpose_augment, canonicalise or None))


def chapter_model(dataset, *, checkpoint: str | Path = "", progress: bool = True, **parameters: Any) -> Checkpoint:
    """Chapter 2's model for ``dataset`` and these training parameters.

    Chapters 3 and 4 explain the model chapter 2 trained. They declare the
    same training parameters (``parameters``: those of :func:`chapter_options`),
    so this call names the same content-hashed checkpoint folder as chapter
    2's :func:`train` and returns that model without training; if chapter 2
    has not run (a chapter re-run alone), it trains it exactly as chapter 2
    would. ``checkpoint`` overrides all of it.

    Returns
    -------
    Checkpoint
        ``model`` (in eval mode), ``meta`` (its ``meta.json``), ``folder``.

    Notebook: notebooks/03_lrp.ipynb, notebooks/04_sonification.ipynb
    """
    if not checkpoint:
        checkpoint = train(dataset, chapter_options(**parameters), progress=progress).checkpoint
    return Checkpoint.load(checkpoint)
