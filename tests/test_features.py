"""Feature extractors on real rendered audio, and their validation against the synthetic truth.

Notebook: notebooks/01_features.ipynb
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
import pytest

from mer import features as F

SR = F.SR
SF2 = str(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")


def render(notes, *, program=0, duration=10.0, drums=()):
    """Render ``[(pitch, start, end), ...]`` on one GM programme with TimGM6mb."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=program)
    inst.notes = [pretty_midi.Note(95, p, s, e) for p, s, e in notes]
    pm.instruments.append(inst)
    if drums:
        kit = pretty_midi.Instrument(0, is_drum=True)
        kit.notes = [pretty_midi.Note(110, p, s, s + 0.05) for p, s in drums]
        pm.instruments.append(kit)
    y = pm.fluidsynth(fs=SR, synthesizer=SF2) if F._has_synthesizer_kw() else pm.fluidsynth(fs=SR, sf2_path=SF2)
    n = int(duration * SR)
    y = np.pad(y, (0, max(0, n - len(y))))[:n]
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def progression(chords, *, bar=1.25, duration=10.0):
    """Block triads (root-position, octave 4) cycling through ``chords`` (root pc, third)."""
    notes, t, i = [], 0.0, 0
    while t < duration:
        root, third = chords[i % len(chords)]
        for p in (60 + root, 60 + root + third, 60 + root + 7, 48 + root):
            notes.append((p, t, t + bar * 0.95))
        t, i = t + bar, i + 1
    return render(notes)


@pytest.fixture(scope="module")
def c_major():
    return progression([(0, 4), (5, 4), (7, 4), (0, 4)])  # C F G C


@pytest.fixture(scope="module")
def a_minor():
    return progression([(9, 3), (2, 3), (4, 3), (9, 3)])  # Am Dm Em Am


def test_c_major_progression_gives_c_major(c_major):
    out = F.key_features(c_major)
    assert out["key_tonic"] == 0 and out["key_minor"] == 0
    assert out["key_minorness"] < 0 < out["key_clarity"]
    chords = F.chord_sequence(c_major)
    assert chords["label"].isin(["C:maj", "F:maj", "G:maj"]).mean() > 0.8


def test_minor_progression_gives_minor(a_minor):
    out = F.key_features(a_minor)
    assert out["key_minor"] == 1 and out["key_tonic"] == 9
    assert F.midlevel_features(a_minor)["ml_minorness"] > 0
    rel = F.chroma_features(a_minor)
    assert rel["chroma_rel_b3"] > rel["chroma_rel_3"]


def test_tempo_of_a_click_track():
    bpm = 100.0
    clicks = [(76, t) for t in np.arange(0, 10, 60 / bpm)]
    y = render([], drums=clicks)
    assert abs(F.lowlevel_features(y)["tempo_bpm"] / bpm - 1) < F.TEMPO_TOLERANCE


def test_minor_second_is_rougher_than_fifth():
    second = render([(60, 0, 10), (61, 0, 10)], program=19)  # church organ: steady partials
    fifth = render([(60, 0, 10), (67, 0, 10)], program=19)
    assert F.midlevel_features(second)["ml_dissonance"] > F.midlevel_features(fifth)["ml_dissonance"]
    # The roughness formula itself: a semitone at 440 Hz beats, an octave does not.
    assert F.roughness([[440, 466]], [[1, 1]])[0] > F.roughness([[440, 880]], [[1, 1]])[0]


def test_silence_gives_nan_and_reasons_not_a_crash():
    out = F.clip_features(np.zeros(10 * SR, dtype=np.float32), families=F.FAMILIES)
    values = [v for k, v in out.items() if k not in ("nan_reasons", "chord_sequence")]
    assert np.isnan(values).all()
    for family in ("chroma", "key", "chords", "midlevel", "lowlevel", "symbolic"):
        assert family in out["nan_reasons"]


def test_every_family_names_its_columns(c_major):
    out = F.clip_features(c_major, families=F.AUDIO_FAMILIES)
    assert out["nan_reasons"] == ""
    table = pd.DataFrame([out])
    for family in F.AUDIO_FAMILIES:
        assert F.feature_columns(table, [family])
    assert len(F.feature_columns(table, ["midlevel"])) == 7


def test_chord_frame_accuracy_on_a_grid():
    ref = [(0.0, 5.0, "C:maj"), (5.0, 10.0, "A:min"), (10.0, 12.0, "C:5")]
    assert F.chord_frame_accuracy(ref, ref, duration=12.0) == 1.0
    half = [(0.0, 10.0, "C:maj")]
    assert F.chord_frame_accuracy(half, ref, duration=12.0) == pytest.approx(0.5)


# --------------------------------------------------------------------------- synthetic set


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from mer import data

    return data.load_dataset("synth", n_clips=24, soundfont="TimGM6mb", seed=0, n_jobs=2)


@pytest.fixture(scope="module")
def synth_features(synth):
    return F.extract(synth, n_jobs=1, progress=False)


def test_extractors_meet_validation_targets(synth, synth_features):
    summary = F.validation_summary(F.validate(synth, synth_features))
    for name, target in F.VALIDATION_TARGETS.items():
        assert summary.loc[name, "value"] >= target, summary


def test_extract_is_cached_and_reports_a_corrupt_file(synth, synth_features, tmp_path):
    clips = synth.clips.head(3).copy()
    bad = tmp_path / "corrupt.flac"
    bad.write_bytes(b"not audio at all")
    clips.loc[clips.index[1], "path"] = str(bad)
    table = F.extract(clips, families=("key", "lowlevel"), n_jobs=1, progress=False)
    assert list(table["status"]) == ["ok", "rejected", "ok"]
    assert "unreadable audio" in table.loc[1, "nan_reasons"]
    assert table.loc[[0, 2], "key_clarity"].notna().all()
    again = F.extract(clips, families=("key", "lowlevel"), n_jobs=1, progress=False)
    pd.testing.assert_frame_equal(table, again, check_dtype=False)
