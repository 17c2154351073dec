"""The ``symbolic`` family: features read from a clip's MIDI score, where it has one (the synthetic set).

Notebook: notebooks/01_features.ipynb
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pretty_midi

from .analysis import undefined


def symbolic_features(*, midi_path: str | Path | None = None, truth_path: str | Path | None = None,
                      reasons: list | None = None) -> dict[str, float]:
    """Features read from the clip's MIDI score (and truth file) where it has one.

    ``sym_minor`` (1 if the score's key is minor, from the truth file's
    ``key``); ``sym_tempo_bpm`` (the score's tempo); of the melody (the
    instrument named ``melody``, else the non-drum instrument with the highest
    mean pitch): ``sym_mean_pitch`` (mean MIDI pitch), ``sym_pitch_range``
    (max - min, semitones), ``sym_note_density`` (notes per second),
    ``sym_articulation`` (mean over notes of sounding duration / inter-onset
    interval to the next note; 1 = legato, small = staccato),
    ``sym_velocity`` (mean MIDI velocity of the melody).

    NaN with a reason where the clip has no score (real recordings).

    Notebook: notebooks/01_features.ipynb
    """
    names = ("sym_minor", "sym_tempo_bpm", "sym_mean_pitch", "sym_pitch_range", "sym_note_density",
             "sym_articulation", "sym_velocity")
    if midi_path is None or (isinstance(midi_path, float) and np.isnan(midi_path)) or not Path(midi_path).exists():
        return undefined(names, "symbolic: no score", reasons)
    out = {name: np.nan for name in names}
    pm = pretty_midi.PrettyMIDI(str(midi_path))
    truth = {}
    if truth_path is not None and isinstance(truth_path, (str, Path)) and Path(truth_path).exists():
        truth = json.loads(Path(truth_path).read_text())
    key = truth.get("key")
    if isinstance(key, str) and ":" in key:
        out["sym_minor"] = float(key.split(":")[1].startswith("min"))
    if "tempo_bpm" in truth:
        out["sym_tempo_bpm"] = float(truth["tempo_bpm"])
    else:
        _, tempi = pm.get_tempo_changes()
        out["sym_tempo_bpm"] = float(tempi[0]) if len(tempi) else np.nan
    pitched = [inst for inst in pm.instruments if not inst.is_drum and inst.notes]
    if not pitched:
        if reasons is not None:
            reasons.append("symbolic: score has no pitched notes")
        return out
    named = [inst for inst in pitched if inst.name.lower().startswith("melody")]
    melody = named[0] if named else max(pitched, key=lambda inst: np.mean([n.pitch for n in inst.notes]))
    notes = sorted(melody.notes, key=lambda n: n.start)
    pitches = np.array([n.pitch for n in notes])
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    span = max(pm.get_end_time(), 1e-9)
    out["sym_mean_pitch"] = float(pitches.mean())
    out["sym_pitch_range"] = float(pitches.max() - pitches.min())
    out["sym_note_density"] = float(len(notes) / span)
    if len(notes) >= 2:
        ioi = np.diff(starts)
        ok = ioi > 0
        out["sym_articulation"] = float(np.mean(np.minimum((ends[:-1] - starts[:-1])[ok] / ioi[ok], 1.0)))
    out["sym_velocity"] = float(np.mean([n.velocity for n in notes]))
    return out
