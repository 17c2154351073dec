"""The tonal writing of the synthetic set: keys, grammar, textures, SoundFonts, windows, held-out sets.

Rendered for real (mostly with the small TimGM6mb SoundFont); the checks read
the written MIDI files and FLAC bytes, nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from mer import ParameterError
from mer.data import synth, tonal

N_CLIPS = 24
N_DRAWS = 400

# Pitch classes (above the tonic) that tell major from minor over I, IV, V: thirds, sixths, sevenths.
THIRDS = {3, 4, 8, 9, 10, 11}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synth.load(tmp_path_factory.mktemp("tonal") / "a", n_clips=N_CLIPS, writing="tonal",
                      soundfonts=("TimGM6mb",), seed=3, n_jobs=2, window_share=0.5)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    return synth.load_probe(tmp_path_factory.mktemp("tonal-probe") / "p", n_clips=8, writing="tonal",
                            soundfonts=("TimGM6mb",), seed=3, n_jobs=2)


@pytest.fixture(scope="module")
def draws():
    return [synth.sample_params(rng=np.random.default_rng([0, 10, 0, i]), writing="tonal") for i in range(N_DRAWS)]


def _params(i: int, **fixed) -> dict:
    """A clip's parameters with some of them fixed (texture, mode, windowed...)."""
    params = synth.sample_params(rng=np.random.default_rng([5, i]), writing="tonal",
                                 windowed=fixed.pop("windowed", False))
    params = {**params, **fixed}
    params["drums"] = bool(fixed.get("drums", params["drums"] and params["texture"] in tonal.DRUM_TEXTURES))
    return params


def _sounding(pm, start: float, end: float) -> list:
    return [n for inst in pm.instruments if not inst.is_drum for n in inst.notes
            if n.start < end - 1e-6 and n.end > start + 1e-6]


def test_draws_every_key_texture_and_training_soundfont_never_the_held_out(draws):
    assert {p["transpose"] for p in draws} == set(range(12))
    assert {p["texture"] for p in draws} == set(synth.TRAIN_TEXTURES)
    assert {p["soundfont"] for p in draws} == set(synth.TRAIN_SOUNDFONTS)
    assert synth.HELDOUT_TEXTURE not in synth.TRAIN_TEXTURES and synth.HELDOUT_TEXTURE in synth.TEXTURES
    assert synth.HELDOUT_SOUNDFONT not in synth.TRAIN_SOUNDFONTS and synth.HELDOUT_SOUNDFONT in synth.SOUNDFONTS
    assert {p["accomp_register"] for p in draws} == set(tonal.ACCOMP_FLOORS)
    # Drums: in about half of the clips of a drum texture, never in a hymn or a solo line.
    drums = [p["drums"] for p in draws if p["texture"] in tonal.DRUM_TEXTURES]
    assert 0.35 < np.mean(drums) < 0.65
    assert not any(p["drums"] for p in draws if p["texture"] in ("hymn", "solo"))
    # Every texture can be drawn when asked for, the held-out one included.
    asked = {synth.sample_params(rng=np.random.default_rng([1, i]), writing="tonal", textures=tonal.TEXTURES,
                                 soundfonts=tuple(synth.SOUNDFONTS))["texture"] for i in range(200)}
    assert asked == set(tonal.TEXTURES)


def test_every_named_soundfont_loads_and_sounds():
    pm, _ = synth.compose(_params(0, texture="block", drums=True))
    for name in synth.SOUNDFONTS:
        y = synth.render(pm, soundfont=name)
        assert y.shape == (synth.N_SAMPLES,) and 0.02 < np.abs(y).max() <= synth.PEAK + 1e-6, name


def test_table_has_the_nuisance_columns_and_the_documented_label(dataset):
    clips = dataset.clips
    for column in ("tonic", "texture", "soundfont", "drums", "accomp_register", "windowed", "split"):
        assert column in clips.columns, column
    assert set(clips["soundfont"]) == {"TimGM6mb"} and set(clips["split"]) == {"train", "val", "test"}
    assert set(clips["texture"]) <= set(synth.TRAIN_TEXTURES)
    # The label is the documented function of the realised cues (weights, scales, noise).
    z = synth.standardised_cues(clips)
    noise = [json.loads(Path(p).read_text())["params"]["noise_valence"] for p in clips["truth_path"]]
    valence = (z * pd_series(synth.WEIGHTS)).sum(axis=1) + synth.NOISE_SD * np.asarray(noise)
    np.testing.assert_allclose(valence, clips["valence"], atol=1e-9)
    assert (clips["label"] == np.where(valence > 0, "happy", "sad")).all()
    info = dataset.info
    assert info["weights"] == synth.WEIGHTS and info["writing"] == "tonal"
    assert info["options"]["textures"] == list(synth.TRAIN_TEXTURES)
    assert info["heldout_texture"] == synth.HELDOUT_TEXTURE
    # Opened again with the same options, the folder is read, not rendered again; other options are refused.
    before = sorted(p.stat().st_mtime_ns for p in (dataset.root / "audio").iterdir())
    synth.load(dataset.root, n_clips=N_CLIPS, writing="tonal", soundfonts=("TimGM6mb",), seed=3, window_share=0.5)
    assert sorted(p.stat().st_mtime_ns for p in (dataset.root / "audio").iterdir()) == before
    with pytest.raises(ParameterError, match="generated with"):
        synth.load(dataset.root, n_clips=N_CLIPS, soundfont="TimGM6mb", seed=3, window_share=0.5)


def pd_series(mapping):
    import pandas as pd

    return pd.Series(mapping)


def test_same_seed_same_bytes(dataset, tmp_path):
    again = synth.load(tmp_path / "b", n_clips=N_CLIPS, writing="tonal", soundfonts=("TimGM6mb",), seed=3,
                       n_jobs=1, window_share=0.5)
    digest = lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()  # noqa: E731
    for column in ("path", "midi_path"):
        for a, b in zip(dataset.clips[column], again.clips[column]):
            assert digest(a) == digest(b), f"{a} and {b} differ"
    assert synth.sample_params(rng=np.random.default_rng(1), writing="tonal") != \
        synth.sample_params(rng=np.random.default_rng(2), writing="tonal")


def test_minor_cadences_raise_the_leading_tone():
    checked = 0
    for i in range(60):
        params = _params(i, mode="minor")
        pm, truth = synth.compose(params)
        leading = (truth["tonic"] + 11) % 12
        for (start, end, numeral) in truth["numerals"]:
            cadence = [c for c in truth["cadences"] if c[0] - 1e-6 <= start < c[1] - 1e-6 and c[2] != "plagal"]
            if cadence and numeral.startswith("V") and not numeral.startswith("V/"):
                assert leading in {n.pitch % 12 for n in _sounding(pm, start, end)}, (i, params["texture"], numeral)
                checked += 1
    assert checked > 30
    # Natural minor elsewhere: the subtonic (tonic - 2) is written too; the major third only in V/iv.
    pcs = set()
    for i in range(20):
        pm, truth = synth.compose(_params(i, mode="minor", texture="block"))
        for start, end, numeral in truth["numerals"]:
            if not numeral.startswith("V/iv"):
                pcs |= {(n.pitch - truth["tonic"]) % 12 for n in _sounding(pm, start, end)
                        if n.start >= start - 1e-6}
    assert {10, 11, 3, 8} <= pcs and 4 not in pcs


def test_grammar_writes_cadences_inversions_sevenths_and_secondary_dominants():
    numerals, cadences, labels = set(), set(), set()
    for i in range(80):
        _, truth = synth.compose(_params(i))
        numerals |= {n for _, _, n in truth["numerals"]}
        cadences |= {c for _, _, c in truth["cadences"]}
        labels |= {c for _, _, c in truth["chords"]}
    assert cadences == {"authentic", "half", "plagal"}
    assert {"V7", "V/V"} <= numerals or {"V7", "V/V"} <= {n.rstrip("6543 2") for n in numerals}
    assert any(n.endswith("64") for n in numerals) and any(n.endswith("6") for n in numerals)
    assert any(lab.split(":")[1].startswith(q) for lab in labels for q in ("min7", "hdim7", "maj7"))
    assert any("/" in lab for lab in labels)


def test_windowed_clips_have_no_third_outside_the_window(dataset):
    windowed = dataset.clips[dataset.clips["windowed"]]
    assert len(windowed) == N_CLIPS // 2
    for row in windowed.itertuples():
        pm = pretty_midi.PrettyMIDI(row.midi_path)
        inside = set()
        for inst in pm.instruments:
            for note in inst.notes:
                offset = (note.pitch - row.tonic) % 12
                if inst.is_drum or offset not in THIRDS:
                    continue
                assert row.window_start_s - 1e-3 <= note.start and note.end <= row.window_end_s + 1e-3, \
                    (row.clip_id, row.texture, note)
                inside.add(offset)
        # The window holds the mode's third (or sixth).
        assert inside & ({4, 9} if row.mode == "major" else {3, 8}), (row.clip_id, row.texture, inside)


def test_probe_evidence_is_the_window_only(probe):
    clips = probe.clips
    assert (clips["label"] == np.where(clips["mode"] == "major", "happy", "sad")).all()
    assert clips["tempo_bpm"].eq(synth.NEUTRAL["tempo_bpm"]).all()
    for row in clips.itertuples():
        with_window = pretty_midi.PrettyMIDI(row.midi_path)
        without = pretty_midi.PrettyMIDI(row.midi_path_no_window)
        offsets = {(n.pitch - row.tonic) % 12 for inst in with_window.instruments if not inst.is_drum
                   for n in inst.notes}
        assert offsets & THIRDS <= ({4, 9, 11} if row.mode == "major" else {3, 8, 10, 11})
        assert not {(n.pitch - row.tonic) % 12 for inst in without.instruments if not inst.is_drum
                    for n in inst.notes} & THIRDS

        def outside(pm):
            return sorted((round(n.start, 4), n.pitch, inst.name) for inst in pm.instruments for n in inst.notes
                          if n.end <= row.window_start_s + 1e-3 or n.start >= row.window_end_s - 1e-3)
        assert outside(with_window) == outside(without), (row.clip_id, row.texture)


def test_windows_of_every_texture_hold_their_evidence_and_keep_thirds_visible():
    for texture in synth.TEXTURES:
        for i in range(6):
            params = _params(i, windowed=True, texture=texture, drums=False)
            assert params["accomp_register"] != "low"
            pm, truth = synth.compose(params)
            start, end = truth["window_start_s"], truth["window_end_s"]
            thirds = [n for n in _sounding(pm, start, end) if (n.pitch - truth["tonic"]) % 12 in
                      ({4, 9} if params["mode"] == "major" else {3, 8})]
            assert thirds and max(n.pitch for n in thirds) >= synth.CHORD_FLOOR, (texture, i)


def test_hymn_has_four_voices_and_solo_one():
    for i in range(10):
        pm, truth = synth.compose(_params(i, texture="hymn"))
        voices = [inst for inst in pm.instruments if not inst.is_drum]
        assert [v.name for v in voices] == ["melody", "alto", "tenor", "bass"] and len(pm.instruments) == 4
        for voice in voices:   # each voice sings one note at a time
            notes = sorted(voice.notes, key=lambda n: n.start)
            assert all(a.end <= b.start + 1e-9 for a, b in zip(notes[:-1], notes[1:]))
        # Soprano above alto above tenor above bass at every chord.
        for start, _, _ in truth["chords"]:
            at = [next(n.pitch for n in v.notes if abs(n.start - start) < 1e-6) for v in voices]
            assert at == sorted(at, reverse=True), (i, at)
        pm, _ = synth.compose(_params(i, texture="solo"))
        assert len(pm.instruments) == 1 and pm.instruments[0].name == "melody"


def test_accompaniment_registers_put_thirds_low_middle_and_high():
    lowest = {}
    for register in tonal.ACCOMP_FLOORS:
        pm, truth = synth.compose(_params(1, texture="block", accomp_register=register))
        chords = next(inst for inst in pm.instruments if inst.name == "chords")
        lowest[register] = min(n.pitch for n in chords.notes)
        assert lowest[register] >= tonal.ACCOMP_FLOORS[register]
    assert lowest["low"] < synth.CHORD_FLOOR <= lowest["middle"] < lowest["high"]


def test_heldout_sets_use_only_what_training_does_not(tmp_path):
    by_texture = synth.load_heldout(tmp_path / "t", kind="texture", n_clips=8, seed=1, n_jobs=2)
    assert set(by_texture.clips["texture"]) == {synth.HELDOUT_TEXTURE}
    assert set(by_texture.clips["soundfont"]) <= set(synth.TRAIN_SOUNDFONTS)
    assert set(by_texture.clips["split"]) == {"test"}
    by_font = synth.load_heldout(tmp_path / "s", kind="soundfont", n_clips=8, seed=1, n_jobs=2)
    assert set(by_font.clips["soundfont"]) == {synth.HELDOUT_SOUNDFONT}
    assert set(by_font.clips["texture"]) <= set(synth.TRAIN_TEXTURES)
    with pytest.raises(ParameterError, match="kind"):
        synth.load_heldout(tmp_path / "x", kind="timbre")


def test_transposition_set_is_one_score_in_twelve_keys(tmp_path):
    keys = synth.load_transpositions(tmp_path / "k", n_scores=1, soundfont="TimGM6mb", n_jobs=2)
    clips = keys.clips.sort_values("shift")
    assert len(clips) == 12 and set(clips["tonic"]) == set(range(12)) and set(clips["score"]) == {0}
    scores = [pretty_midi.PrettyMIDI(p) for p in clips["midi_path"]]
    base = scores[list(clips["shift"]).index(0)]
    for shift, pm in zip(clips["shift"], scores):
        for a, b in zip(base.instruments, pm.instruments):
            assert [n.pitch + (0 if a.is_drum else shift) for n in a.notes] == [n.pitch for n in b.notes]
    np.testing.assert_allclose(clips["register"] - clips["shift"], clips["register"].iloc[0] - clips["shift"].iloc[0])


def test_classic_stays_the_default_and_options_are_checked(tmp_path):
    assert synth.load.__kwdefaults__["writing"] == "classic"
    assert "writing" not in synth.sample_params(rng=np.random.default_rng(0))
    with pytest.raises(ParameterError, match="writing"):
        synth.load(tmp_path, writing="modal")
    with pytest.raises(ParameterError, match="writing='tonal'"):
        synth.load(tmp_path, textures=("hymn",))
    with pytest.raises(ParameterError, match="max_transpose"):
        synth.load(tmp_path, writing="tonal", max_transpose=3)
    with pytest.raises(ParameterError, match="textures"):
        synth.load(tmp_path, writing="tonal", textures=("polka",))
    with pytest.raises(ParameterError, match="soundfonts"):
        synth.load(tmp_path, writing="tonal", soundfonts=("Nope",))
    with pytest.raises(ParameterError, match="not both"):
        synth.load(tmp_path, writing="tonal", soundfont="TimGM6mb", soundfonts=("TimGM6mb",))


# Krumhansl & Kessler (1982) key profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def test_audio_sounds_the_mode_in_its_key_and_the_midi_the_cues(dataset):
    import librosa

    scores = {"major": [], "minor": []}
    for row in dataset.clips[~dataset.clips["windowed"]].itertuples():
        y, _ = librosa.load(row.path, sr=synth.SR)
        chroma = np.roll(librosa.feature.chroma_stft(y=y, sr=synth.SR).mean(axis=1), -row.tonic)
        scores[row.mode].append(np.corrcoef(chroma, KK_MAJOR)[0, 1] - np.corrcoef(chroma, KK_MINOR)[0, 1])
        pm = pretty_midi.PrettyMIDI(row.midi_path)
        assert pm.get_tempo_changes()[1][0] == pytest.approx(row.tempo_bpm, rel=1e-3)
        melody = pm.instruments[0].notes
        assert pm.instruments[0].name == "melody"
        assert np.mean([n.pitch for n in melody]) == pytest.approx(row.register)
        ratios = [(a.end - a.start) / (b.start - a.start) for a, b in zip(melody[:-1], melody[1:])]
        assert np.mean(ratios) == pytest.approx(row.articulation, abs=0.01)
    assert scores["major"] and scores["minor"]
    assert np.mean(scores["major"]) > np.mean(scores["minor"]) + 0.1


def test_a_solo_window_in_a_low_register_keeps_its_octave():
    """A solo line below G3 found no chord tone to move to in its window (a 2,400-clip render stopped there)."""
    segs = [{"in_window": True, "start": 0.0, "beats": 4.0, "root": 0, "quality": "min"}]
    notes = [(0.0, 1.0, 40, 80.0), (1.0, 1.0, 43, 80.0)]
    moved = tonal._solo_window(notes, segs, segs, tonic=0, evidence=True)
    assert moved[0][2] % 12 in (0, 7) and moved[1][2] % 12 == 3  # root or fifth, then the third of C minor
    assert all(abs(a[2] - b[2]) <= 7 for a, b in zip(notes, moved))
