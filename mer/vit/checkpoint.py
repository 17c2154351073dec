"""Checkpoint folders: written atomically as safetensors + JSON (never pickle), loaded, described.

A folder holds ``model.safetensors``, ``config.json`` and ``meta.json``
(log-mel settings, normalisation statistics, label map, training options,
history). :class:`Checkpoint` is a loaded one with the one path from audio to
the model's input (:meth:`Checkpoint.to_input`); :func:`load_checkpoint`
returns the model and its ``meta`` as a pair, for code that needs only those.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import ViTConfig

from .. import ParameterError, spectrogram, store
from ..metrics import LABELS
from .inputs import audio_input
from .model import CheckpointError, predict_proba, vit_from_config

log = logging.getLogger(__name__)


META_FILE = "meta.json"


WEIGHTS_FILE = "model.safetensors"


VALENCE_HEAD_FILE = "valence_head.safetensors"


#: Keys of ``meta.json`` a checkpoint cannot be used without.
REQUIRED_META = ("model_config", "logmel", "stats", "input_shape")


#: What to do about a broken checkpoint (the end of every :class:`CheckpointError` it raises).
CHECKPOINT_REMEDY = ("delete that folder and re-run chapter 2 (python -m mer run 02_vit --force), "
                     "or pass another --checkpoint DIR")


#: The code a checkpoint folder's name follows (:func:`checkpoint_dir`): the ViT's, and the data
#: package's, because the fingerprint names the clips while the generator's code decides their audio.
CHECKPOINT_CODE = ("mer.vit", "mer.data")


def dataset_fingerprint(clips: pd.DataFrame) -> str:
    return store.hash_params(clips[["clip_id", "label", "split"]].astype(str).values.tolist())


def checkpoint_dir(dataset, **params: Any) -> Path:
    """Default checkpoint folder: ``data/derived/vit/vit-<hash>`` of the dataset and parameters."""
    return store.artefact_path("vit", {"dataset": dataset.name, "clips": dataset_fingerprint(dataset.clips),
                                       **params}, code=CHECKPOINT_CODE)


def save_tensors(path: Path, tensors: dict, metadata: dict[str, str]) -> None:

    with store.atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def _optimizer_tensors(optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            tensors[f"optimizer.{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"]}


def restore_optimizer(optimizer, tensors: dict, groups: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


def commit_epoch(out: Path, epoch: int, tensors: dict, optimizer, meta: dict) -> None:
    """Write an epoch's resume state: ``tensors`` plus the AdamW moments as
    safetensors, then ``meta.json`` naming that file (the commit point), then
    drop older resume files. Shared by fine-tuning and pretraining."""
    optimizer_tensors, groups = _optimizer_tensors(optimizer)
    name = f"resume-e{epoch:04d}.safetensors"
    save_tensors(out / name, {**tensors, **optimizer_tensors}, {"epoch": str(epoch)})
    store.write_json(out / META_FILE, dict(meta, resume_file=name, optimizer=groups, epoch=epoch))
    drop_resume_files(out, keep=name)


def drop_resume_files(out: Path, keep: str | None = None) -> None:
    for old in out.glob("resume-e*.safetensors"):
        if old.name != keep:
            old.unlink()


def write_resume(out: Path, epoch: int, model, best_state, optimizer, scheduler, base, progress_state, *,
                  head=None, best_head=None) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_state.items()})
    if head is not None:
        tensors.update({f"head.{k}": v for k, v in head.state_dict().items()})
        tensors.update({f"best_head.{k}": v for k, v in best_head.items()})
    commit_epoch(out, epoch, tensors, optimizer,
                  dict(base, scheduler=scheduler.state_dict(), progress=progress_state,
                       history=progress_state["history"]))


def write_final(out: Path, model, base, progress_state) -> dict[str, Any]:
    save_tensors(out / WEIGHTS_FILE, model.state_dict(), {"format": "pt"})
    store.write_json(out / "config.json", model.config.to_dict())
    meta = dict(base, status="done", epoch=progress_state["next_epoch"], history=progress_state["history"],
                selected_epoch=progress_state["selected_epoch"], train_seconds=progress_state["train_seconds"],
                stopped=progress_state["stopped"])
    store.write_json(out / META_FILE, meta)
    drop_resume_files(out)
    return meta


def load_checkpoint(path: str | Path, *, attn_implementation: str = "eager"):
    """Load a finished checkpoint folder (safetensors and JSON only, no pickle).

    Returns
    -------
    model : transformers.ViTForImageClassification, in eval mode
    meta : dict
        ``meta.json``: ``stats`` (normalisation), ``logmel`` (parameters),
        ``id2label``, ``history``, ``train`` (hyper-parameters)...

    Raises
    ------
    CheckpointError
        If the folder has no finished model, or it is broken: ``meta.json``
        unreadable, truncated or without a key of :data:`REQUIRED_META`,
        ``model.safetensors`` truncated, not safetensors, or of another
        shape than ``meta.json``'s model. The message is one line naming the
        folder and saying what to do (:data:`CHECKPOINT_REMEDY`).

    Notebook: notebooks/02_vit.ipynb
    """

    path = Path(path)
    meta_path, weights = path / META_FILE, path / WEIGHTS_FILE

    def broken(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: {what}; {CHECKPOINT_REMEDY}")

    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path}: no such folder; run chapter 2 (python -m mer run 02_vit) "
                              f"or pass another --checkpoint DIR")
    if not meta_path.is_file() or not weights.is_file():
        absent = [name for name, file in ((META_FILE, meta_path), (WEIGHTS_FILE, weights)) if not file.is_file()]
        raise broken(f"not a finished ViT checkpoint ({' and '.join(absent)} missing)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise broken(f"{META_FILE} is unreadable or truncated ({one_line(error)})") from error
    if not isinstance(meta, dict):
        raise broken(f"{META_FILE} holds a {type(meta).__name__}, not an object")
    if meta.get("status", "done") != "done":
        raise broken(f"its training has not finished (status {meta.get('status')!r})")
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise broken(f"{META_FILE} lacks {', '.join(missing)}")
    try:
        config = ViTConfig.from_dict(meta["model_config"])
        config._attn_implementation = attn_implementation
        model = vit_from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError, ParameterError) as error:
        raise broken(f"{META_FILE}'s model_config does not describe a ViT ({one_line(error)})") from error
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise broken(f"{WEIGHTS_FILE} is damaged or truncated ({one_line(error)})") from error
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first_difference = [line for line in str(error).splitlines()[1:] if line.strip()] or [str(error)]
        raise broken(f"{WEIGHTS_FILE} does not fit {META_FILE}'s model_config "
                     f"({one_line(first_difference[0])})") from error
    model.eval()
    return model, meta


def one_line(error: BaseException, width: int = 120) -> str:
    """The first line of an error's message, shortened to ``width`` characters."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= width else text[:width - 3] + "..."


def weights_sha256(checkpoint: str | Path, *, length: int = 12) -> str:
    """Short SHA-256 of a checkpoint's ``model.safetensors``: which model spoke.

    Notebook: notebooks/02_vit.ipynb (``python -m mer predict`` and ``explain`` print it)
    """
    digest = hashlib.sha256()
    with open(Path(checkpoint) / WEIGHTS_FILE, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def describe_checkpoint(checkpoint: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """What identifies a model to a reader: its folder, weights, data and score.

    Parameters
    ----------
    checkpoint : str or Path
        The checkpoint folder.
    meta : dict
        Its ``meta.json`` (:func:`load_checkpoint`).

    Returns
    -------
    dict
        ``folder`` (relative to the repository when inside it),
        ``weights_sha256`` (:func:`weights_sha256`), ``size``, ``dataset``,
        ``n_train``, ``n_val``, ``test_balanced_accuracy`` (from the
        ``evaluation-test.json`` :func:`evaluate` wrote beside it; ``None``
        if the model was never scored).

    Notebook: notebooks/02_vit.ipynb (``python -m mer predict`` and ``explain`` show it)
    """
    folder = Path(checkpoint)
    try:
        shown = folder.resolve().relative_to(store.root().resolve()).as_posix()
    except ValueError:
        shown = str(folder)
    data = meta.get("dataset") or {}
    score = None
    evaluation = folder / "evaluation-test.json"
    if evaluation.is_file():
        try:
            rows = json.loads(evaluation.read_text(encoding="utf-8"))["metrics"]
            score = next(float(row["value"]) for row in rows if row["metric"] == "balanced_accuracy")
        except (OSError, ValueError, KeyError, TypeError, StopIteration) as error:
            log.warning("%s: no test score read (%s)", evaluation, one_line(error))
    return {"folder": shown, "weights_sha256": weights_sha256(folder),
            "size": (meta.get("train") or {}).get("size"), "dataset": data.get("name"),
            "n_train": data.get("n_train"), "n_val": data.get("n_val"), "test_balanced_accuracy": score}


def latest_checkpoint(size: str = "default") -> Path | None:
    """The most recently finished checkpoint of model ``size`` under ``data/derived/vit``.

    Not a default for anything: after chapter 2's seed spread it is the last
    seed's model, not the chapter's (:func:`recorded_chapter_model` is).
    """
    found = []
    for meta_path in (store.derived_dir() / "vit").glob(f"*/{META_FILE}"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("status") == "done" and meta.get("train", {}).get("size") == size \
                and (meta_path.parent / WEIGHTS_FILE).exists():
            found.append((meta_path.stat().st_mtime, meta_path.parent))
    return max(found)[1] if found else None


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model, what it was trained with, and the one way from audio to its input.

    Attributes
    ----------
    model : transformers.ViTForImageClassification
        In eval mode.
    meta : dict
        ``meta.json`` (see :func:`load_checkpoint`).
    folder : pathlib.Path

    Examples
    --------
    >>> checkpoint = Checkpoint.load("data/derived/vit/vit-...")   # doctest: +SKIP
    >>> x, db = checkpoint.to_input(audio_clips)                    # doctest: +SKIP
    >>> p_happy = checkpoint.predict_proba(audio_clips)[:, 1]       # doctest: +SKIP

    Notebook: notebooks/02_vit.ipynb
    """

    model: Any
    meta: dict[str, Any]
    folder: Path

    @classmethod
    def load(cls, folder: str | Path, *, attn_implementation: str = "eager") -> "Checkpoint":
        """:func:`load_checkpoint` of ``folder``, kept together."""
        model, meta = load_checkpoint(folder, attn_implementation=attn_implementation)
        return cls(model, meta, Path(folder))

    @property
    def logmel(self) -> spectrogram.LogMelParams:
        """The front end's parameters (``sr``, ``duration``, ``n_mels``, ``front_end``...)."""
        return spectrogram.LogMelParams(**self.meta["logmel"])

    @property
    def sr(self) -> int:
        """Sampling rate the model's input is computed at."""
        return int(self.meta["logmel"]["sr"])

    @property
    def duration(self) -> float:
        """Seconds of audio in one input (a window of a longer file)."""
        return float(self.meta["logmel"]["duration"])

    @property
    def frame_seconds(self) -> float:
        """Seconds of audio per column of the model's input (hop x time pooling / rate)."""
        logmel = self.meta["logmel"]
        return logmel["hop_length"] * logmel["pool"] / logmel["sr"]

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names in logit order (:data:`mer.metrics.LABELS`)."""
        id2label = self.meta.get("id2label") or {}
        return tuple(id2label.get(str(k), name) for k, name in enumerate(LABELS))

    def to_input(self, clips: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """:func:`mer.vit.audio_input` with this checkpoint: (model input, dB spectrograms)."""
        return audio_input(clips, self.meta)

    def predict_proba(self, clips: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities of audio clips, shape (n_clips, 2), columns :attr:`labels`."""
        return predict_proba(self.model, self.to_input(clips)[0])

    def describe(self) -> dict[str, Any]:
        """:func:`describe_checkpoint` of this checkpoint."""
        return describe_checkpoint(self.folder, self.meta)
