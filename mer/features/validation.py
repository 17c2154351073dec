"""The extractors checked against the synthetic set's truth: mode, tempo, chords.

Notebook: notebooks/01_features.ipynb
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import ParameterError
from ..tonality import PITCH_CLASSES
from .chords import decode_chords

#: Tempo tolerance of the validation (relative).
TEMPO_TOLERANCE = 0.04


def chord_frame_accuracy(estimated, reference, *, duration: float, rate: float = 10.0) -> float:
    """Share of a ``rate``-Hz grid on which estimated and reference chords agree.

    Both are lists of ``(start_s, end_s, label)`` with labels ``<root>:maj|min``
    or ``N``; a frame counts when root and quality agree (mir_eval's
    ``majmin`` comparison, written here because mir_eval is not a dependency).
    Frames where the reference has no chord, or a chord outside the major /
    minor vocabulary (the open fifths ``X:5`` of the windowed clips), are
    left out, as mir_eval's ``majmin`` does.

    Notebook: notebooks/01_features.ipynb
    """
    grid = (np.arange(int(round(duration * rate))) + 0.5) / rate

    def sample(segments):
        labels = np.full(len(grid), "N", dtype=object)
        for start, end, label in segments:
            labels[(grid >= start) & (grid < end)] = _normalize_chord(label)
        return labels

    est, ref = sample(estimated), sample(reference)
    scored = (ref != "N") & (ref != "X")
    return float((est[scored] == ref[scored]).mean()) if scored.any() else np.nan


_ENHARMONIC = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}


def _normalize_chord(label: str) -> str:
    if label in ("N", "X", "", None):
        return "N"
    root, _, quality = str(label).partition(":")
    root = _ENHARMONIC.get(root, root)
    if quality in ("", "maj") or quality.startswith("maj"):
        return f"{root}:maj"
    if quality.startswith("min"):
        return f"{root}:min"
    return "X"  # outside the maj/min vocabulary (e.g. an open fifth "C:5"): not scored


def validate(dataset, features: pd.DataFrame) -> pd.DataFrame:
    """Compare the extractors with the synthetic set's truth, clip by clip.

    Parameters
    ----------
    dataset : mer.data.Dataset
        With ``truth_path`` (and ``mode``, ``tempo_bpm``) columns.
    features : pandas.DataFrame
        From :func:`mer.features.extract` with the ``key``, ``chords`` and ``lowlevel`` families.

    Returns
    -------
    per_clip : pandas.DataFrame
        ``clip_id, mode_true, mode_est, mode_correct, tempo_true, tempo_est,
        tempo_ratio, tempo_correct`` (within :data:`TEMPO_TOLERANCE`),
        ``tempo_octave_error`` (within tolerance of 1/2, 2, 1/3 or 3 times the
        truth), ``chord_frame_accuracy`` (:func:`chord_frame_accuracy`).
        :func:`validation_summary` turns it into the chapter's table.

    Notebook: notebooks/01_features.ipynb
    """
    clips = dataset.clips if hasattr(dataset, "clips") else dataset
    if "truth_path" not in clips:
        raise ParameterError("validate needs a dataset with truth files (the synthetic set)")
    merged = clips.merge(features, on="clip_id", how="inner", suffixes=("", "_est"))
    merged = merged[merged["status"] == "ok"]
    rows = []
    for r in merged.to_dict("records"):
        truth = json.loads(Path(r["truth_path"]).read_text())
        key = truth.get("key", "")
        mode_true = "minor" if ":min" in key else "major"
        tempo_true = float(truth.get("tempo_bpm", np.nan))
        tempo_est = r.get("tempo_bpm_est", r.get("tempo_bpm"))
        ratio = tempo_est / tempo_true if tempo_true else np.nan
        octave = any(abs(ratio / m - 1) <= TEMPO_TOLERANCE for m in (0.5, 2.0, 1 / 3, 3.0))
        duration = float(truth.get("duration_s", 10.0))
        chords = chord_frame_accuracy(decode_chords(r.get("chord_sequence", "")), truth.get("chords", []),
                                      duration=duration)
        rows.append({"clip_id": r["clip_id"], "mode_true": mode_true,
                     "mode_est": "minor" if r.get("key_minor") == 1 else "major",
                     "tonic_true": _tonic(key), "tonic_est": r.get("key_tonic"),
                     "tempo_true": tempo_true, "tempo_est": tempo_est, "tempo_ratio": ratio,
                     "tempo_correct": bool(abs(ratio - 1) <= TEMPO_TOLERANCE),
                     "tempo_octave_error": bool(octave), "chord_frame_accuracy": chords,
                     "windowed": bool(r.get("windowed", False))})
    per_clip = pd.DataFrame(rows)
    if not per_clip.empty:
        per_clip["mode_correct"] = per_clip["mode_true"] == per_clip["mode_est"]
    return per_clip


def _tonic(key: str) -> float:
    root = _ENHARMONIC.get(key.split(":")[0], key.split(":")[0]) if key else ""
    return float(PITCH_CLASSES.index(root)) if root in PITCH_CLASSES else np.nan


#: The extractor-validation targets of the chapter (and the tests).
VALIDATION_TARGETS = {"mode_accuracy": 0.90, "tempo_accuracy": 0.85, "chord_frame_accuracy": 0.70}


def validation_summary(per_clip: pd.DataFrame) -> pd.DataFrame:
    """The chapter's validation table: measured value, target, met, per quantity.

    ``mode_accuracy`` is measured on the clips whose score states the mode
    throughout (not ``windowed``): a windowed clip has thirds in a 2-3 s
    window only and open fifths elsewhere, so a whole-clip key estimate is
    at chance there by design; ``mode_accuracy_windowed`` and
    ``mode_accuracy_all`` show that part and the total.

    Returns
    -------
    pandas.DataFrame
        Rows ``mode_accuracy``, ``mode_accuracy_windowed``,
        ``mode_accuracy_all``, ``tempo_accuracy`` (within 4 %),
        ``tempo_octave_errors`` (share of clips off by a factor 2 or 3),
        ``chord_frame_accuracy`` (mean over clips); columns ``value, target,
        met, n_clips``.

    Notebook: notebooks/01_features.ipynb
    """
    full = ~per_clip["windowed"].astype(bool)
    values = {
        "mode_accuracy": per_clip.loc[full, "mode_correct"].mean(),
        "mode_accuracy_windowed": per_clip.loc[~full, "mode_correct"].mean(),
        "mode_accuracy_all": per_clip["mode_correct"].mean(),
        "tempo_accuracy": per_clip["tempo_correct"].mean(),
        "tempo_octave_errors": per_clip["tempo_octave_error"].mean(),
        "chord_frame_accuracy": per_clip["chord_frame_accuracy"].mean(),
    }
    counts = {"mode_accuracy": int(full.sum()), "mode_accuracy_windowed": int((~full).sum())}
    rows = []
    for name, value in values.items():
        target = VALIDATION_TARGETS.get(name, np.nan)
        rows.append({"quantity": name, "value": float(value), "target": target,
                     "met": bool(value >= target) if np.isfinite(target) else None,
                     "n_clips": counts.get(name, int(len(per_clip)))})
    return pd.DataFrame(rows).set_index("quantity")
