"""Test clips rendered with FluidSynth: the features benchmark's input and the tests'.

Notebook: notebooks/01_features.ipynb (make bench)
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pretty_midi

from .analysis import SR

#: pretty_midi's own General MIDI SoundFont.
TEST_SOUNDFONT = str(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")


def render_midi(pm: pretty_midi.PrettyMIDI, *, soundfont: str | None = None, sr: int = SR) -> np.ndarray:
    """Render ``pm`` with :meth:`pretty_midi.PrettyMIDI.fluidsynth`, whichever pretty_midi is installed.

    Newer pretty_midi versions take the SoundFont as ``synthesizer``, older ones as ``sf2_path``.

    Parameters
    ----------
    pm : pretty_midi.PrettyMIDI
    soundfont : str, optional
        Path of an .sf2 file; default :data:`TEST_SOUNDFONT` (TimGM6mb).
    sr : int
        Sampling rate in Hz.

    Returns
    -------
    y : np.ndarray, shape (n_samples,)
        As pretty_midi returns it (float64, not normalised).

    Notebook: notebooks/01_features.ipynb (make bench)
    """
    sf2 = soundfont or TEST_SOUNDFONT
    if "synthesizer" in inspect.signature(pretty_midi.PrettyMIDI.fluidsynth).parameters:
        return pm.fluidsynth(fs=sr, synthesizer=sf2)
    return pm.fluidsynth(fs=sr, sf2_path=sf2)


def render_test_clip(*, seed: int = 0, duration: float = 10.0, soundfont: str | None = None) -> np.ndarray:
    """Render a 10 s test clip (triads on a piano, a melody above) with FluidSynth.

    Parameters
    ----------
    seed : int
        Chooses key, mode, tempo and the progression.
    soundfont : str, optional
        Path of an .sf2 file; default pretty_midi's TimGM6mb.

    Returns
    -------
    y : np.ndarray, shape (round(duration * SR),), float32

    Notebook: notebooks/01_features.ipynb (make bench)
    """
    rng = np.random.default_rng(seed)
    tonic = int(rng.integers(12))
    minor = bool(rng.integers(2))
    bpm = float(rng.uniform(70, 160))
    beat = 60.0 / bpm
    third = 3 if minor else 4
    progression = [0, 5, 7, 0] if not minor else [0, 5, 7, 0]
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    chords = pretty_midi.Instrument(program=0, name="chords")
    melody = pretty_midi.Instrument(program=73, name="melody")
    scale = [0, 2, third, 5, 7, 8 if minor else 9, 10 if minor else 11]
    t, bar = 0.0, 0
    while t < duration:
        root = 48 + tonic + progression[bar % 4]
        q = third if progression[bar % 4] in (0, 5) else 4
        for p in (root, root + q, root + 7):
            chords.notes.append(pretty_midi.Note(80, p, t, t + 4 * beat * 0.95))
        for k in range(4):
            p = 72 + tonic + scale[int(rng.integers(len(scale)))]
            melody.notes.append(pretty_midi.Note(90, p, t + k * beat, t + (k + 0.8) * beat))
        t += 4 * beat
        bar += 1
    pm.instruments += [chords, melody]
    y = render_midi(pm, soundfont=soundfont)
    n = int(round(duration * SR))
    y = np.pad(y, (0, max(0, n - len(y))))[:n]
    return (0.5 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)
