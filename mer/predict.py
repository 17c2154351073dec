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

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import MerError, ParameterError, audio, spectrogram, vit

log = logging.getLogger(__name__)

#: Windows turned into spectrograms and predicted together (the batch of
#: :func:`mer.vit.predict_proba`, so the numbers equal one call on all windows).
PREDICT_BATCH = 64


class NoCheckpoint(MerError):
    """No trained ViT is available to predict with."""


def default_checkpoint() -> Path:
    """The latest finished default-size checkpoint, or a clear error.

    Raises
    ------
    NoCheckpoint
        If chapter 2 has not been run yet on this machine.
    """
    found = vit.latest_checkpoint("default")
    if found is None:
        raise NoCheckpoint("no trained ViT found under data/derived/vit; run chapter 2 first "
                           "(python -m mer run 02_vit) or pass --checkpoint DIR")
    return found


def predict_file(path: str | Path, checkpoint: str | Path | None = None, window: str = "all",
                 *, model_and_meta=None) -> pd.DataFrame:
    """Predict Happy/Sad for an audio file, per 10 s window and as a whole.

    Parameters
    ----------
    path : str or Path
        Any file ``mer.audio`` decodes (wav, flac, ogg, mp3...).
    checkpoint : str or Path, optional
        A folder written by :func:`mer.vit.train`; default: the latest
        default-size checkpoint (:func:`default_checkpoint`).
    window : {"all", "first"}
        Every window, or only the first 10 s.
    model_and_meta : (model, meta), optional
        An already loaded checkpoint (skips loading it again).

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
    if model_and_meta is None:
        model_and_meta = vit.load_checkpoint(checkpoint if checkpoint else default_checkpoint())
    model, meta = model_and_meta
    params = meta["logmel"]
    sr, duration = int(params["sr"]), float(params["duration"])
    info = audio.inspect(path, sr=sr, window_s=duration)
    windows = audio.iter_windows(path, sr=sr, duration=duration, info=info,
                                 max_windows=1 if window == "first" else None)
    starts, ends, p_happy, batch = [], [], [], []
    for found in windows:  # one batch of spectrograms at a time: memory does not grow with the file
        starts.append(found.start_s)
        ends.append(found.end_s)
        batch.append(spectrogram.logmel(found.samples, params=params))
        if len(batch) == PREDICT_BATCH:
            p_happy.append(_p_happy(model, meta, batch))
            batch = []
    if batch:
        p_happy.append(_p_happy(model, meta, batch))
    p_happy = np.concatenate(p_happy)
    starts, ends = np.asarray(starts), np.asarray(ends)
    seconds = ends - starts
    rows = pd.DataFrame({"window": [str(i) for i in range(len(starts))], "start_s": starts,
                         "end_s": ends, "partial": seconds < duration, "p_happy": p_happy.astype(float)})
    whole = float(np.average(p_happy, weights=seconds))
    rows.loc[len(rows)] = {"window": "all", "start_s": 0.0, "end_s": float(ends[-1]),
                           "partial": bool((seconds < duration).any()), "p_happy": whole}
    rows["label"] = np.where(rows["p_happy"] >= 0.5, "happy", "sad")
    rows.attrs["notes"] = list(info.notes)
    return rows


def _p_happy(model, meta, specs: list[np.ndarray]) -> np.ndarray:
    """p(happy) of log-mel spectrograms (each (1, n_mels, n_frames)), shape (n,)."""
    specs = vit.fit_input(spectrogram.normalize(np.stack(specs), meta["stats"]), meta)
    return vit.predict_proba(model, specs)[:, 1]


def main(argv: list[str] | None = None) -> int:
    """``python -m mer predict FILE... [--checkpoint DIR] [--first]``: print a table per file."""
    parser = argparse.ArgumentParser(prog="python -m mer predict",
                                     description="Happy or Sad per 10 s window and for the whole file.")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder (default: latest chapter 2 model)")
    parser.add_argument("--first", action="store_true", help="only the first 10 s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        loaded = vit.load_checkpoint(args.checkpoint or default_checkpoint())
    except MerError as error:
        print(f"python -m mer predict: {error}", file=sys.stderr)
        return 1
    status = 0
    for path in args.files:
        try:
            table = predict_file(path, window="first" if args.first else "all", model_and_meta=loaded)
        except MerError as error:
            print(f"python -m mer predict: {str(error).splitlines()[0]}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}")
        for note in table.attrs["notes"]:
            print(f"note: {path}: {note}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return status
