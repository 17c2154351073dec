"""Happy or Sad for any audio file: ``python -m mer predict song.mp3``.

A file is judged by :func:`mer.audio.inspect` (the rule ``explain`` and the
datasets share) and read one 10 s window at a time (the clip length the ViT
was trained on) by :func:`mer.audio.iter_windows`, so a 2-hour file needs no
more memory than a song. A tail of at least :data:`mer.audio.MIN_DURATION_S`
seconds becomes one more, zero-padded window (marked ``partial``); a shorter
tail is left out. Each window gets its own ``p_happy``; the whole file gets
the mean over windows weighted by the seconds of audio each holds (row
``window = "all"``). What the user should know about a usable file (a low
sampling rate, a very long file) is printed as ``note:`` lines.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import MerError, ParameterError, audio, vit
from .metrics import called

log = logging.getLogger(__name__)

#: Windows turned into spectrograms and predicted together (the batch of
#: :func:`mer.vit.predict_proba`, so the numbers equal one call on all windows).
PREDICT_BATCH = 64


class NoCheckpoint(MerError):
    """No trained ViT is available to predict with."""


def choose_checkpoint(checkpoint: str | Path | None = None, *,
                      profile: str | None = None) -> tuple[Path, str | None]:
    """The model ``predict`` and ``explain`` use, and how it was chosen.

    By default chapter 2's model, the one chapters 3 and 4 explain, for the
    profile chapter 2 was rendered with last (:func:`mer.vit.record_chapter_model`
    records it); ``profile`` names another profile's, ``checkpoint`` any folder.

    Parameters
    ----------
    checkpoint : str or Path, optional
        A checkpoint folder (``--checkpoint DIR``).
    profile : str, optional
        Chapter 2's model for this profile (``--profile NAME``).

    Returns
    -------
    folder : pathlib.Path
    profile : str or None
        The profile whose chapter 2 model it is; ``None`` for ``checkpoint``.

    Raises
    ------
    NoCheckpoint
        If chapter 2 has recorded no model (for ``profile``), or the recorded
        folder is gone; the message says which command makes one.
    mer.ParameterError
        If both ``checkpoint`` and ``profile`` are given.

    Notebook: notebooks/02_vit.ipynb
    """
    if checkpoint and profile:
        raise ParameterError("give --checkpoint or --profile, not both")
    if checkpoint:
        return Path(checkpoint), None
    record = vit.recorded_chapter_model(profile)
    make = f"python -m mer run 02_vit{f' --profile {profile}' if profile else ''}"
    if record is None:
        which = f"for profile {profile!r}" if profile else "on this machine"
        raise NoCheckpoint(f"chapter 2 has recorded no trained ViT {which}; make one with `{make}` "
                           f"(add --force if it says up to date), or pass --checkpoint DIR")
    folder = record["checkpoint"]
    if not folder.is_dir():
        raise NoCheckpoint(f"chapter 2's model for profile {record['profile']!r} ({folder}) is gone; make it "
                           f"again with `python -m mer run 02_vit --profile {record['profile']} --force`, "
                           f"or pass --checkpoint DIR")
    return folder, record["profile"]


def default_checkpoint(profile: str | None = None) -> Path:
    """Chapter 2's model for ``profile`` (default: the profile rendered last), or a clear error.

    See :func:`choose_checkpoint`; the newest checkpoint on disk
    (:func:`mer.vit.latest_checkpoint`) is never taken silently.

    Raises
    ------
    NoCheckpoint
        If chapter 2 has not recorded a model on this machine.
    """
    return choose_checkpoint(profile=profile)[0]


def describe_model(card: dict) -> str:
    """One line naming a model: folder, how it was chosen, weights hash, data and score.

    Parameters
    ----------
    card : dict
        :func:`mer.vit.describe_checkpoint`, plus ``chosen_by``.

    Page: README.md, "Your own song" (what ``python -m mer predict`` and ``explain`` print first).
    """
    data = card.get("dataset") or "unrecorded data"
    if card.get("n_train") is not None:
        data += f" ({card['n_train']} training / {card.get('n_val')} validation clips)"
    score = card.get("test_balanced_accuracy")
    return (f"model: {card['folder']} ({card.get('chosen_by', 'given')}; {card.get('size') or 'unknown'}-size ViT), "
            f"weights sha256 {card['weights_sha256']}, trained on {data}, "
            + (f"test balanced accuracy {score:.3f}" if score is not None else "no test score recorded"))


def load_model(checkpoint: str | Path | None = None, *, profile: str | None = None
               ) -> tuple[vit.Checkpoint, dict]:
    """Choose (:func:`choose_checkpoint`), load and describe the model a command uses.

    Returns
    -------
    loaded : mer.vit.Checkpoint
        The model, its ``meta`` and its way from audio to input.
    card : dict
        :func:`mer.vit.describe_checkpoint` plus ``profile`` (``None`` for
        ``checkpoint``) and ``chosen_by`` (``"given with --checkpoint"`` or
        ``"chapter 2's model for profile NAME"``).

    Raises
    ------
    NoCheckpoint, mer.vit.CheckpointError
        No model recorded, or a broken checkpoint.

    Notebook: notebooks/02_vit.ipynb
    """
    folder, recorded_for = choose_checkpoint(checkpoint, profile=profile)
    loaded = vit.Checkpoint.load(folder)
    card = dict(loaded.describe(), profile=recorded_for,
                chosen_by="given with --checkpoint" if recorded_for is None
                else f"chapter 2's model for profile {recorded_for}")
    return loaded, card


def predict_file(path: str | Path, checkpoint: str | Path | vit.Checkpoint | None = None,
                 window: str = "all") -> pd.DataFrame:
    """Predict Happy/Sad for an audio file, per 10 s window and as a whole.

    Parameters
    ----------
    path : str or Path
        Any file ``mer.audio`` decodes (wav, flac, ogg, mp3...).
    checkpoint : str, Path or mer.vit.Checkpoint, optional
        A folder written by :func:`mer.vit.train`, or one already loaded;
        default: chapter 2's model for the profile rendered last
        (:func:`default_checkpoint`).
    window : {"all", "first"}
        Every window, or only the first 10 s.

    Returns
    -------
    pandas.DataFrame
        One row per window (``window`` index, ``start_s``, ``end_s``,
        ``partial``, ``p_happy``, ``label``), then a row ``window = "all"``
        with the duration-weighted mean ``p_happy`` over the windows.
        ``attrs["notes"]``: the file's :attr:`mer.audio.AudioInfo.notes`
        (list of str, empty for an ordinary file).

    Raises
    ------
    mer.audio.AudioError
        If the file is not usable (:func:`mer.audio.inspect`: missing,
        unreadable, undecodable, shorter than
        :data:`mer.audio.MIN_DURATION_S`, silent, NaN samples).
    NoCheckpoint
        If no checkpoint is given and none has been trained.

    Notebook: notebooks/02_vit.ipynb
    """
    if window not in ("all", "first"):
        raise ParameterError(f"window must be 'all' or 'first', got {window!r}")
    if not isinstance(checkpoint, vit.Checkpoint):
        checkpoint = vit.Checkpoint.load(checkpoint if checkpoint else default_checkpoint())
    sr, duration = checkpoint.sr, checkpoint.duration
    info = audio.inspect(path, sr=sr, window_s=duration)
    windows = audio.iter_windows(path, sr=sr, duration=duration, info=info,
                                 max_windows=1 if window == "first" else None)
    starts, ends, p_happy, batch = [], [], [], []
    for found in windows:  # one batch of windows at a time: memory does not grow with the file
        starts.append(found.start_s)
        ends.append(found.end_s)
        batch.append(found.samples)
        if len(batch) == PREDICT_BATCH:
            p_happy.append(checkpoint.predict_proba(batch)[:, 1])
            batch = []
    if batch:
        p_happy.append(checkpoint.predict_proba(batch)[:, 1])
    p_happy = np.concatenate(p_happy)
    starts, ends = np.asarray(starts), np.asarray(ends)
    seconds = ends - starts
    rows = pd.DataFrame({"window": [str(i) for i in range(len(starts))], "start_s": starts,
                         "end_s": ends, "partial": seconds < duration, "p_happy": p_happy.astype(float)})
    whole = float(np.average(p_happy, weights=seconds))
    rows.loc[len(rows)] = {"window": "all", "start_s": 0.0, "end_s": float(ends[-1]),
                           "partial": bool((seconds < duration).any()), "p_happy": whole}
    rows["label"] = called(rows["p_happy"])
    rows.attrs["notes"] = list(info.notes)
    return rows

