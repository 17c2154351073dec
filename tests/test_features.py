"""Feature extractors on real rendered audio, and their validation against the synthetic truth.

Notebook: notebooks/01_features.ipynb
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
import pytest

from mer import features as F

SR = F.SR
SF2 = F.TEST_SOUNDFONT


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
    y = F.render_midi(pm, soundfont=SF2)
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


def test_every_column_belongs_to_exactly_one_registered_family(c_major):
    """REGISTRY is the one list of families: each family's prefixes claim its own columns and no other's."""
    assert F.FAMILIES == tuple(family.name for family in F.REGISTRY)
    assert F.AUDIO_FAMILIES == tuple(family.name for family in F.REGISTRY if family.reads == "audio")
    table = pd.DataFrame([F.clip_features(c_major, families=F.FAMILIES)])
    for family in F.REGISTRY:
        own = pd.DataFrame([F.clip_features(c_major if family.reads == "audio" else None, families=[family.name])])
        numeric = [c for c in own.columns if pd.api.types.is_numeric_dtype(own[c])]
        assert numeric and F.feature_columns(table, [family.name]) == numeric, family.name


# The cache key of extract() is store.code_hash("mer.features"): it must follow every module
# the features are computed by, and no other (the synthetic set's generator, the models, the plots).
FEATURE_MODULES = sorted(f"features/{p.name}" for p in Path(F.__file__).parent.glob("*.py"))


def test_the_cache_key_follows_every_module_the_features_depend_on(tmp_path):
    shutil.copytree(Path(F.__file__).parent.parent, tmp_path / "mer", ignore=shutil.ignore_patterns("__pycache__"))
    edited = [*FEATURE_MODULES, "tonality.py", "audio.py", "store.py", "data/synth.py", "interpretable.py",
              "plots.py"]
    code = ("import json, sys; from pathlib import Path; from mer import store\n"
            "base, changed = store.code_hash('mer.features'), {}\n"
            "for rel in sys.argv[1:]:\n"
            "    path = Path('mer') / rel; text = path.read_text()\n"
            "    path.write_text(text + '\\n# edited\\n')\n"
            "    changed[rel] = store.code_hash('mer.features') != base\n"
            "    path.write_text(text)\n"
            "print(json.dumps(changed))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code, *edited], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=True)
    changed = json.loads(out.stdout)
    assert {rel for rel, moved in changed.items() if moved} == {*FEATURE_MODULES, "tonality.py", "audio.py",
                                                                "store.py"}


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
