"""Happy or Sad for any audio file: ``python -m mer predict song.mp3``.

A file is cut into consecutive 10 s windows (the clip length the ViT was
trained on). A tail of at least :data:`MIN_TAIL_S` seconds becomes one more,
zero-padded window (marked ``partial``); a shorter tail is left out. Each
window gets its own ``p_happy``; the whole file gets the mean over windows
weighted by the seconds of audio each holds (row ``window = "all"``).

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import MerError, ParameterError, spectrogram, vit

log = logging.getLogger(__name__)

#: Shortest tail (seconds) that still becomes a (zero-padded) window.
MIN_TAIL_S = 1.0


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


def window_signal(y: np.ndarray, *, sr: int, duration: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive windows of ``duration`` s, the tail zero-padded if >= MIN_TAIL_S.

    Returns
    -------
    windows : np.ndarray, shape (n_windows, round(duration * sr)), float32
    seconds : np.ndarray, shape (n_windows,)
        Seconds of real audio in each window.

    Notebook: notebooks/02_vit.ipynb
    """
    from . import audio

    length = int(round(duration * sr))
    n_whole = len(y) // length
    pieces = [y[i * length:(i + 1) * length] for i in range(n_whole)]
    seconds = [duration] * n_whole
    tail = y[n_whole * length:]
    if len(tail) >= MIN_TAIL_S * sr or not pieces:
        pieces.append(audio.fit_length(tail, n_samples=length))
        seconds.append(len(tail) / sr)
    return np.stack(pieces).astype(np.float32), np.asarray(seconds)


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

    Raises
    ------
    mer.audio.AudioError
        If the file is missing or cannot be decoded.
    NoCheckpoint
        If no checkpoint is given and none has been trained.

    Notebook: notebooks/02_vit.ipynb
    """
    from . import audio

    if window not in ("all", "first"):
        raise ParameterError(f"window must be 'all' or 'first', got {window!r}")
    if model_and_meta is None:
        model_and_meta = vit.load_checkpoint(checkpoint if checkpoint else default_checkpoint())
    model, meta = model_and_meta
    params = meta["logmel"]
    sr, duration = int(params["sr"]), float(params["duration"])
    y = audio.load(path, sr=sr, duration=duration if window == "first" else None)
    windows, seconds = window_signal(y, sr=sr, duration=duration)
    specs = np.stack([spectrogram.logmel(w, params=params) for w in windows])
    specs = vit.fit_input(spectrogram.normalize(specs, meta["stats"]), meta)
    p_happy = vit.predict_proba(model, specs)[:, 1]
    starts = np.arange(len(windows)) * duration
    rows = pd.DataFrame({"window": [str(i) for i in range(len(windows))], "start_s": starts,
                         "end_s": starts + seconds, "partial": seconds < duration,
                         "p_happy": p_happy.astype(float)})
    whole = float(np.average(p_happy, weights=seconds))
    rows.loc[len(rows)] = {"window": "all", "start_s": 0.0, "end_s": float(seconds.sum()),
                           "partial": bool((seconds < duration).any()), "p_happy": whole}
    rows["label"] = np.where(rows["p_happy"] >= 0.5, "happy", "sad")
    return rows


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
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return status
