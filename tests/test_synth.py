"""The synthetic dataset: deterministic, labelled as documented, evidence where promised.

Rendered for real with the small TimGM6mb SoundFont (a few seconds for the
module); no part of the generator is mocked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
import pytest

from mer import ParameterError, tonality
from mer.data import synth

N_CLIPS = 24
N_PROBE = 8

# Krumhansl & Kessler (1982) key profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synth.load(tmp_path_factory.mktemp("synth") / "a", n_clips=N_CLIPS, soundfont="TimGM6mb",
                      seed=3, n_jobs=2, window_share=0.25)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    return synth.load_probe(tmp_path_factory.mktemp("probe") / "p", n_clips=N_PROBE, soundfont="TimGM6mb",
                            seed=3, n_jobs=2)


def _third_pitch_classes(tonic: int) -> set[int]:
    """Pitch classes that tell major from minor over the roots I, IV, V (3rds, 6ths, 7ths)."""
    return {(tonic + k) % 12 for k in (3, 4, 8, 9, 10, 11)}


def test_table_has_the_contract_columns(dataset):
    clips = dataset.clips
    for column in ("clip_id", "path", "label", "valence", "arousal", "split", "source", "midi_path",
                   "truth_path", "mode", "tonic", "tempo_bpm", "register", "articulation", "velocity",
                   "brightness", "transpose", "program_melody", "program_chords", "voicing", "windowed",
                   "window_start_s", "window_end_s"):
        assert column in clips.columns, column
    assert len(clips) == N_CLIPS and clips["clip_id"].is_unique
    assert set(clips["label"]) == {"happy", "sad"}
    assert set(clips["split"]) == {"train", "val", "test"}
    assert (clips["label"] == np.where(clips["valence"] > 0, "happy", "sad")).all()
    assert clips["windowed"].sum() == round(0.25 * N_CLIPS)
    assert clips.loc[~clips["windowed"], "window_start_s"].isna().all()


def test_audio_is_ten_seconds_mono_without_clipping(dataset):
    import soundfile

    for path in dataset.clips["path"][:6]:
        y, sr = soundfile.read(path, dtype="float32")
        assert sr == synth.SR and y.shape == (synth.N_SAMPLES,)
        assert 0.01 < np.abs(y).max() <= synth.PEAK + 1e-3


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    again = synth.load(tmp_path / "b", n_clips=N_CLIPS, soundfont="TimGM6mb", seed=3, n_jobs=1)
    # Compare digests: on a mismatch pytest would otherwise diff 300 KB byte strings for minutes.
    digest = lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()  # noqa: E731
    for a, b in zip(dataset.clips["path"], again.clips["path"]):
        assert digest(a) == digest(b), f"{a} and {b} differ"
    columns = [c for c in dataset.clips.columns if "path" not in c]
    pd.testing.assert_frame_equal(dataset.clips[columns], again.clips[columns])

    params = [synth.sample_params(rng=np.random.default_rng([seed, 0, 0])) for seed in (3, 4)]
    assert params[0] != params[1]
    ys = [synth.render(synth.compose(p)[0], soundfont="TimGM6mb") for p in params]
    assert not np.array_equal(*ys)


def test_existing_dataset_is_read_not_rendered_again(dataset):
    before = sorted(p.stat().st_mtime_ns for p in (dataset.root / "audio").iterdir())
    same = synth.load(dataset.root, n_clips=N_CLIPS, soundfont="TimGM6mb", seed=3, n_jobs=2,
                      window_share=0.25)
    assert sorted(p.stat().st_mtime_ns for p in (dataset.root / "audio").iterdir()) == before
    assert (same.root / "COMPLETE").exists()
    with pytest.raises(ParameterError, match="generated with"):
        synth.load(dataset.root, n_clips=N_CLIPS, soundfont="TimGM6mb", seed=4)


def test_generator_json_documents_the_true_weights(dataset):
    info = json.loads((dataset.root / "generator.json").read_text())
    assert info["weights"] == synth.WEIGHTS
    assert len(set(abs(w) for w in info["weights"].values())) == len(info["weights"])  # distinct
    assert info["noise_sd"] == synth.NOISE_SD
    assert 0.0 < info["mode_agreement"] < 1.0
    assert dataset.info["weights"] == synth.WEIGHTS


def test_major_audio_matches_the_major_key_profile(dataset):
    import librosa

    scores = {"major": [], "minor": []}
    for row in dataset.clips[~dataset.clips["windowed"]].itertuples():
        y, _ = librosa.load(row.path, sr=synth.SR)
        chroma = librosa.feature.chroma_stft(y=y, sr=synth.SR).mean(axis=1)
        chroma = np.roll(chroma, -row.tonic)  # tonic first
        scores[row.mode].append(np.corrcoef(chroma, KK_MAJOR)[0, 1] - np.corrcoef(chroma, KK_MINOR)[0, 1])
    assert scores["major"] and scores["minor"]
    assert np.mean(scores["major"]) > np.mean(scores["minor"]) + 0.1


def test_tempo_and_articulation_are_in_the_midi(dataset):
    for row in dataset.clips.itertuples():
        pm = pretty_midi.PrettyMIDI(row.midi_path)
        _, tempi = pm.get_tempo_changes()
        assert tempi[0] == pytest.approx(row.tempo_bpm, rel=1e-3)
        truth = json.loads(open(row.truth_path).read())
        assert truth["beats_s"][1] == pytest.approx(60.0 / row.tempo_bpm, abs=1e-4)
        melody = pm.instruments[0].notes
        ratios = [(a.end - a.start) / (b.start - a.start) for a, b in zip(melody[:-1], melody[1:])]
        assert np.mean(ratios) == pytest.approx(row.articulation, abs=0.01)
        # Every chord third is voiced at G3 or above.
        assert min(n.pitch for n in pm.instruments[1].notes) >= synth.CHORD_FLOOR


def test_chord_timeline_and_key_labels(dataset):
    row = dataset.clips[~dataset.clips["windowed"]].iloc[0]
    truth = json.loads(open(row["truth_path"]).read())
    assert truth["key"] == f"{tonality.PITCH_CLASSES[row['tonic']]}:{'maj' if row['mode'] == 'major' else 'min'}"
    starts = [c[0] for c in truth["chords"]]
    assert starts[0] == 0.0 and truth["chords"][-1][1] == pytest.approx(10.0)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(truth["chords"][:-1], truth["chords"][1:]))
    assert truth["chords"][0][2] == truth["key"]  # progressions start on the tonic chord


def test_windowed_clips_have_no_third_outside_the_window(dataset):
    windowed = dataset.clips[dataset.clips["windowed"]]
    assert len(windowed)
    for row in windowed.itertuples():
        assert 0 < row.window_end_s - row.window_start_s <= 0.3 * synth.DURATION + 1e-9
        pm = pretty_midi.PrettyMIDI(row.midi_path)
        thirds = _third_pitch_classes(row.tonic)
        inside = 0
        for inst in pm.instruments:
            for note in inst.notes:
                if inst.is_drum or note.pitch % 12 not in thirds:
                    continue
                assert row.window_start_s - 1e-3 <= note.start and note.end <= row.window_end_s + 1e-3
                inside += 1
        assert inside > 0


def test_probe_evidence_is_the_window_only(probe):
    clips = probe.clips
    assert set(clips["label"]) == {"happy", "sad"}
    assert (clips["label"] == np.where(clips["mode"] == "major", "happy", "sad")).all()
    assert clips["tempo_bpm"].eq(synth.NEUTRAL["tempo_bpm"]).all()
    assert clips["brightness"].eq(synth.NEUTRAL["brightness"]).all()
    for row in clips.itertuples():
        thirds = _third_pitch_classes(row.tonic)
        with_window = pretty_midi.PrettyMIDI(row.midi_path)
        without = pretty_midi.PrettyMIDI(row.midi_path_no_window)
        in_window = [n for inst in with_window.instruments if not inst.is_drum for n in inst.notes
                     if n.pitch % 12 in thirds]
        assert in_window and all(row.window_start_s - 1e-3 <= n.start and n.end <= row.window_end_s + 1e-3
                                 for n in in_window)
        # The mode's third is major (tonic + 4, 9, 11) or minor (3, 8, 10).
        offsets = {(n.pitch - row.tonic) % 12 for n in in_window}
        assert offsets <= ({4, 9, 11} if row.mode == "major" else {3, 8, 10})
        assert not [n for inst in without.instruments if not inst.is_drum for n in inst.notes
                    if n.pitch % 12 in thirds]
        # Outside the window the twins are the same score.
        def outside(pm):
            return sorted((round(n.start, 4), n.pitch) for inst in pm.instruments for n in inst.notes
                          if n.end <= row.window_start_s + 1e-3 or n.start >= row.window_end_s - 1e-3)
        assert outside(with_window) == outside(without)
    import soundfile

    y, _ = soundfile.read(clips["path"][0])
    y_no, _ = soundfile.read(clips["path_no_window"][0])
    start = int(clips["window_start_s"][0] * synth.SR)
    assert np.array_equal(y[:start - 10], y_no[:start - 10]) and not np.array_equal(y, y_no)


def test_keys_stay_in_c_unless_transposition_is_asked_for(dataset):
    assert (dataset.clips["tonic"] == 0).all() and dataset.info["options"]["max_transpose"] == 0
    drawn = {synth.sample_params(rng=np.random.default_rng([0, 0, i]), max_transpose=6)["transpose"]
             for i in range(200)}
    assert drawn == set(range(-6, 7))
    pm, truth = synth.compose(synth.sample_params(rng=np.random.default_rng(3), max_transpose=6) | {"transpose": 2})
    assert truth["tonic"] == 2 and truth["key"].startswith("D:")


def test_unknown_or_bad_options_raise(tmp_path):
    with pytest.raises(ParameterError, match="colour"):
        synth.load(tmp_path, n_clips=24, soundfont="TimGM6mb", colour="blue")
    with pytest.raises(ParameterError, match="window_share"):
        synth.load_probe(tmp_path, window_share=0.5)
    with pytest.raises(ParameterError, match="soundfont"):
        synth.load(tmp_path, soundfont="Nope")
    with pytest.raises(ParameterError, match="n_clips"):
        synth.load(tmp_path, n_clips=2)
    with pytest.raises(ParameterError, match="window_share"):
        synth.load(tmp_path, window_share=1.5)
    with pytest.raises(ParameterError, match="max_transpose"):
        synth.load(tmp_path, max_transpose=7)


def test_missing_soundfont_names_the_debian_package(monkeypatch):
    monkeypatch.setitem(synth.SOUNDFONTS, "FluidR3_GM", ("/nonexistent/FluidR3_GM.sf2", "fluid-soundfont-gm"))
    with pytest.raises(synth.SoundFontError, match="fluid-soundfont-gm.*make"):
        synth.soundfont_path("FluidR3_GM")


def test_render_does_not_depend_on_the_process_history():
    """FluidSynth's 16-bit output dithers from a table filled by the C library's
    rand() when a process creates its first synthesizer, so a clip's bytes
    depended on what that process had done before. Render the same clip in two
    fresh processes, one of which disturbs rand() first: the bytes must agree."""
    import subprocess
    import sys

    script = (
        "import ctypes, hashlib, sys, numpy as np\n"
        "if sys.argv[1] == 'disturb':\n"
        "    libc = ctypes.CDLL('libc.so.6'); libc.srand(12345); [libc.rand() for _ in range(11)]\n"
        "from mer.data import synth\n"
        "pm, _ = synth.compose(synth.sample_params(rng=np.random.default_rng([5, 0, 0])))\n"
        "print(hashlib.sha256(synth.render(pm, soundfont='TimGM6mb').tobytes()).hexdigest())\n"
    )
    digests = [subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                              check=True, timeout=120).stdout.strip() for mode in ("plain", "disturb")]
    assert digests[0] and digests[0] == digests[1]


def test_reference_scores_bracket_the_task(dataset):
    """Mode alone and the Bayes rule, scored from the truth columns, agree with generator.json."""
    info = json.loads((dataset.root / "generator.json").read_text())
    table = synth.reference_scores(dataset.clips).set_index("model")["balanced_accuracy"]
    mode, bayes = table.iloc[0], table.iloc[1]
    assert 0.5 <= mode <= bayes <= 1.0
    clips = dataset.clips
    assert np.mean((clips["mode"] == "major") == (clips["label"] == "happy")) == pytest.approx(info["mode_agreement"])
    with pytest.raises(ParameterError):
        synth.reference_scores(clips.drop(columns="valence_noiseless"))


def _random_cues(n: int, seed: int = 0) -> pd.DataFrame:
    """Cue columns drawn over the generator's ranges (no audio needed)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "mode": rng.choice(["major", "minor"], n),
        "tempo_bpm": rng.uniform(70, 160, n), "register": rng.uniform(62, 78, n),
        "articulation": rng.uniform(0.30, 0.95, n), "velocity": rng.uniform(55, 105, n),
        "brightness": rng.choice(synth.BRIGHTNESS_LEVELS, n)})


def test_implied_weights_give_back_the_weights_a_model_decides_by():
    clips = _random_cues(400)
    z = synth.standardised_cues(clips)
    # A model deciding exactly like the generator (any positive scale of the log-odds).
    truth_like = 1 / (1 + np.exp(-2.5 * (z * pd.Series(synth.WEIGHTS)).sum(axis=1)))
    table = synth.implied_weights(clips, truth_like, n_bootstrap=200).set_index("cue")
    np.testing.assert_allclose(table["implied_weight"], table["true_weight"], atol=1e-3)
    assert table.attrs["agreement"] == 1.0
    # The generator's own hard labels (sign of the weighted sum plus its small noise) read the same.
    labels = (z * pd.Series(synth.WEIGHTS)).sum(axis=1) + synth.NOISE_SD * np.random.default_rng(2).normal(size=len(z))
    table = synth.implied_weights(clips, (labels > 0).astype(float), n_bootstrap=0).set_index("cue")
    np.testing.assert_allclose(table["implied_weight"], table["true_weight"], atol=0.1)
    # A model deaf to the register (and louder on the velocity) is read as such, with intervals around it.
    deaf = dict(synth.WEIGHTS, register=0.0, velocity=0.6)
    noise = np.random.default_rng(1).normal(0, 0.3, len(clips))
    p = 1 / (1 + np.exp(-(2.0 * (z * pd.Series(deaf)).sum(axis=1) + noise)))
    table = synth.implied_weights(clips, p, n_bootstrap=200).set_index("cue")
    assert abs(table.loc["register", "implied_weight"]) < 0.05
    assert table.loc["velocity", "implied_weight"] == pytest.approx(0.6, abs=0.05)
    assert (table["ci_low"] <= table["implied_weight"]).all() and (table["implied_weight"] <= table["ci_high"]).all()
    assert (table["ci_high"] - table["ci_low"]).iloc[1:].between(1e-4, 0.2).all()
    assert table.loc["register", "true_weight"] == synth.WEIGHTS["register"]


def test_implied_weights_refuse_what_they_cannot_read():
    clips = _random_cues(40)
    with pytest.raises(ParameterError, match="probabilities"):
        synth.implied_weights(clips, np.full(39, 0.5))
    with pytest.raises(ParameterError, match="truth columns"):
        synth.implied_weights(clips.drop(columns="register"), np.full(40, 0.5))
    with pytest.raises(ParameterError, match="at least"):
        synth.implied_weights(clips.iloc[:10], np.full(10, 0.5))


def test_accuracy_by_evidence_splits_windowed_clips(dataset):
    clips = dataset.clips
    perfect = pd.DataFrame({"clip_id": clips["clip_id"], "p_happy": (clips["label"] == "happy").astype(float)})
    wrong = perfect.assign(p_happy=1 - perfect["p_happy"])
    table = synth.accuracy_by_evidence(clips, {"perfect": perfect, "always wrong": wrong.iloc[:-1]})
    windowed = clips["windowed"].astype(bool)
    # Only the clips every model predicted count: the last one is missing from "always wrong".
    assert table["n"].sum() == len(clips) - 1
    assert table.loc["mode in a window only", "n"] == windowed.iloc[:-1].sum()
    assert (table["perfect"] == 1.0).all() and (table["always wrong"] == 0.0).all()
    with pytest.raises(ParameterError, match="windowed"):
        synth.accuracy_by_evidence(clips.drop(columns="windowed"), {"perfect": perfect})
