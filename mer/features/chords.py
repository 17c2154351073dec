"""The ``chords`` family: 24 triads and no-chord over beat-synchronous chroma, HMM-smoothed.

Also the chord sequence's text form in the feature table
(:func:`encode_chords`, :func:`decode_chords`) and its reading in scale
degrees (:func:`chord_degrees`).

Notebook: notebooks/01_features.ipynb
"""

from __future__ import annotations

from typing import Any

import librosa
import numpy as np
import pandas as pd

from ..tonality import PITCH_CLASSES
from .analysis import HOP, SILENCE_RMS, SR, Analysis, as_analysis, undefined

#: Chord vocabulary: 12 major, 12 minor triads, then no-chord ``"N"``.
CHORD_LABELS = tuple(f"{r}:maj" for r in PITCH_CLASSES) + tuple(f"{r}:min" for r in PITCH_CLASSES) + ("N",)


def chord_templates() -> np.ndarray:
    """Binary triad templates, rows :data:`CHORD_LABELS` (the last, ``N``, flat).

    Returns
    -------
    templates : np.ndarray, shape (25, 12)
        Unit-norm rows: root, third (4 or 3 semitones), fifth.

    Notebook: notebooks/01_features.ipynb
    """
    rows = []
    for third in (4, 3):
        for root in range(12):
            t = np.zeros(12)
            t[[root, (root + third) % 12, (root + 7) % 12]] = 1
            rows.append(t)
    rows.append(np.ones(12))
    templates = np.array(rows)
    return templates / np.linalg.norm(templates, axis=1, keepdims=True)


#: Sharpness of the emission softmax over cosine similarities, and the
#: probability of staying on a chord from one beat to the next.
CHORD_BETA = 25.0
CHORD_SELF_LOOP = 0.6
#: Cosine similarity credited to ``N`` on a sounding beat (below a clean triad's ~0.9).
CHORD_N_SIMILARITY = 0.55


def chord_sequence(y: np.ndarray | None = None, *, sr: int = SR, analysis: Analysis | None = None,
                   self_loop: float = CHORD_SELF_LOOP, beta: float = CHORD_BETA) -> pd.DataFrame:
    """Chord labels over beat-synchronous chroma, smoothed by an HMM.

    1. The chroma is averaged between consecutive beats (librosa.util.sync;
       segment bounds: 0, the beats, the end of the clip).
    2. Emission: ``P(chord k | segment) ∝ exp(beta * cos(c, t_k))`` over the
       24 triad templates ``t_k`` and no-chord (similarity
       :data:`CHORD_N_SIMILARITY` on sounding segments, 1 on silent ones).
    3. Viterbi decoding (librosa.sequence.viterbi) with a transition matrix
       that stays on the chord with probability ``self_loop`` and moves to
       any other uniformly (librosa.sequence.transition_loop).

    Returns
    -------
    chords : pandas.DataFrame, shape (n_segments, 3)
        ``start_s, end_s, label`` with labels from :data:`CHORD_LABELS`.

    References
    ----------
    Fujishima, T. (1999). Realtime chord recognition of musical sound. ICMC.
    Müller (2015), Fundamentals of Music Processing, sec. 5.2-5.3 (HMM chord recognition).

    Notebook: notebooks/01_features.ipynb
    """
    a = as_analysis(y, sr, analysis)
    n_frames = a.chroma.shape[1]
    if a.silent:
        return pd.DataFrame({"start_s": [0.0], "end_s": [a.duration], "label": ["N"]})
    beat_frames = np.round(np.asarray(a.beats) * a.sr / HOP).astype(int)
    beat_frames = beat_frames[(beat_frames > 0) & (beat_frames < n_frames)]
    if len(beat_frames) < 2:
        # No pulse: fall back to half-second segments so chords still get labels.
        beat_frames = np.arange(0, n_frames, max(1, int(round(0.5 * a.sr / HOP))))[1:]
    bounds = librosa.util.fix_frames(beat_frames, x_min=0, x_max=n_frames)
    synced = librosa.util.sync(a.chroma, bounds, aggregate=np.mean)  # (12, n_segments)
    energy = librosa.util.sync(a.rms[None, :n_frames], bounds, aggregate=np.mean)[0]
    unit = synced / np.maximum(np.linalg.norm(synced, axis=0, keepdims=True), 1e-12)
    similarity = chord_templates()[:24] @ unit  # (24, n_segments)
    silent = energy < SILENCE_RMS
    n_sim = np.where(silent, 1.0, CHORD_N_SIMILARITY)[None, :]
    similarity = np.vstack([np.where(silent[None, :], 0.0, similarity), n_sim])
    prob = np.exp(beta * (similarity - similarity.max(axis=0, keepdims=True)))
    prob /= prob.sum(axis=0, keepdims=True)
    transition = librosa.sequence.transition_loop(len(CHORD_LABELS), self_loop)
    states = librosa.sequence.viterbi(prob, transition)
    times = a.frames_to_time(bounds)
    labels = [CHORD_LABELS[s] for s in states]
    return pd.DataFrame({"start_s": times[:-1], "end_s": times[1:], "label": labels})


def encode_chords(chords: pd.DataFrame) -> str:
    """Chord table as one text cell ``"0.00 0.46 C:maj|0.46 ..."`` for the CSV.

    Parameters
    ----------
    chords : pandas.DataFrame, shape (n_segments, 3)
        ``start_s, end_s, label`` (:func:`chord_sequence`).

    Returns
    -------
    str
        ``"<start> <end> <label>"`` per segment, times to 0.01 s, joined by ``|``.

    Notebook: notebooks/01_features.ipynb
    """
    rows = chords[["start_s", "end_s", "label"]].itertuples(index=False)
    return "|".join(f"{s:.2f} {e:.2f} {lab}" for s, e, lab in rows)


def decode_chords(text: str) -> list[tuple[float, float, str]]:
    """Inverse of :func:`encode_chords`: ``[(start_s, end_s, label), ...]``.

    Parameters
    ----------
    text : str
        A ``chord_sequence`` cell; anything else (NaN, "") gives no segments.

    Returns
    -------
    list of (float, float, str)
        One tuple per segment.

    Notebook: notebooks/01_features.ipynb
    """
    if not isinstance(text, str) or not text:
        return []
    out = []
    for item in text.split("|"):
        s, e, lab = item.split(" ")
        out.append((float(s), float(e), lab))
    return out


def chord_features(y: np.ndarray | None = None, *, sr: int = SR, analysis: Analysis | None = None,
                   reasons: list | None = None) -> dict[str, Any]:
    """Summary of the chord sequence (:func:`chord_sequence`).

    ``chords_major_share`` and ``chords_minor_share``: fraction of the clip's
    time under a major / minor triad; ``chords_change_rate``: chord changes
    per second; ``chords_n_distinct``: number of different chords;
    ``chord_sequence``: the decoded sequence as text (not a model feature; the
    validation reads it).

    Notebook: notebooks/01_features.ipynb
    """
    a = as_analysis(y, sr, analysis)
    names = ("chords_major_share", "chords_minor_share", "chords_change_rate", "chords_n_distinct")
    if a.silent:
        out = undefined(names, "chords: silent clip", reasons)
        out["chord_sequence"] = ""
        return out
    seq = chord_sequence(analysis=a)
    length = (seq["end_s"] - seq["start_s"]).to_numpy()
    total = max(length.sum(), 1e-9)
    major = seq["label"].str.endswith(":maj").to_numpy()
    minor = seq["label"].str.endswith(":min").to_numpy()
    changes = int((seq["label"] != seq["label"].shift()).sum()) - 1
    sounding = seq.loc[seq["label"] != "N", "label"]
    return {"chords_major_share": float(length[major].sum() / total),
            "chords_minor_share": float(length[minor].sum() / total),
            "chords_change_rate": float(changes / a.duration),
            "chords_n_distinct": float(sounding.nunique()),
            "chord_sequence": encode_chords(seq)}


_NUMERALS = ("I", "bII", "II", "bIII", "III", "IV", "#IV", "V", "bVI", "VI", "bVII", "VII")


def chord_degrees(features: pd.DataFrame) -> pd.DataFrame:
    """Time spent on each chord as a Roman numeral relative to the estimated tonic.

    Upper case: major triad (``IV``), lower case: minor (``vi``); ``N``: no chord.

    Returns
    -------
    pandas.DataFrame
        ``clip_id, degree, seconds``, one row per clip and degree.

    Notebook: notebooks/01_features.ipynb
    """
    rows = []
    for clip_id, tonic, text in features[["clip_id", "key_tonic", "chord_sequence"]].itertuples(index=False):
        if not np.isfinite(tonic):
            continue
        for start, end, label in decode_chords(text):
            if label == "N":
                degree = "N"
            else:
                root, quality = label.split(":")
                numeral = _NUMERALS[(PITCH_CLASSES.index(root) - int(tonic)) % 12]
                degree = numeral if quality == "maj" else numeral.lower()
            rows.append({"clip_id": clip_id, "degree": degree, "seconds": end - start})
    table = pd.DataFrame(rows, columns=["clip_id", "degree", "seconds"])
    return table.groupby(["clip_id", "degree"], as_index=False)["seconds"].sum()
