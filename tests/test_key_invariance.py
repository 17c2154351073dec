"""Key invariance: the log-frequency front end, transposition augmentation, canonicalisation.

A transposition must be a row shift of the log-frequency front end, the
augmentation at shift 0 must reproduce the model's plain input, relevance must
map back to STFT bins through the front end's own filterbank, and a tiny model
trained on a few keys must classify a key it never saw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer import ParameterError, sonify, spectrogram, tonality, vit
from mer.data import Dataset

SR = 22050
LOGFREQ = spectrogram.LogMelParams(front_end="logfreq", n_mels=192, duration=2.0)


def _tone(f0: float, seconds: float = 2.0, partials: int = 4) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.1 * sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, partials + 1))).astype(np.float32)


def _row_hz(params) -> np.ndarray:
    base = params.fmin if params.fmin > 0 else spectrogram.LOGFREQ_FMIN
    return base * 2.0 ** ((np.arange(params.n_rows) - params.margin) / params.bins_per_octave)


def test_default_parameters_keep_their_cache_keys():
    # The mel front end's dict is what it was before the front_end option (cache and checkpoint names).
    assert spectrogram.LogMelParams().to_dict() == {
        "sr": 22050, "n_fft": 2048, "hop_length": 512, "n_mels": 128, "pool": 4, "fmin": 0.0, "fmax": None,
        "top_db": 80.0, "duration": 10.0}
    assert spectrogram.LogMelParams(**spectrogram.LogMelParams().to_dict()) == spectrogram.LogMelParams()
    assert np.array_equal(spectrogram.filterbank(), spectrogram.mel_filterbank())


def test_logfreq_filterbank_rows_are_weighted_means_on_their_centres():
    bank = spectrogram.filterbank(LOGFREQ)
    assert bank.shape == (192, 1025)
    np.testing.assert_allclose(bank.sum(axis=1), 1.0, rtol=1e-5)  # every visible row is below Nyquist
    freqs = np.arange(1025) * SR / 2048
    centre_of_mass = bank @ freqs
    hz = _row_hz(LOGFREQ)
    well_resolved = hz > 400  # where the triangles are wider than an STFT bin
    np.testing.assert_allclose(centre_of_mass[well_resolved], hz[well_resolved], rtol=0.01)
    # Margins: extra rows on both sides, the visible ones unchanged in the middle; rows above Nyquist empty.
    tall = spectrogram.filterbank(spectrogram.LogMelParams(front_end="logfreq", n_mels=192, margin=12))
    np.testing.assert_array_equal(tall[12:-12], bank)
    assert tall[-1].sum() == 0
    with pytest.raises(ParameterError):
        spectrogram.LogMelParams(margin=4).n_rows and spectrogram.filterbank(spectrogram.LogMelParams(margin=4))


@pytest.mark.parametrize("semitones", [-5, -1, 2, 6])
def test_a_transposition_is_a_shift_of_bins_per_semitone_rows(semitones):
    shift = int(semitones * LOGFREQ.bins_per_semitone)
    hz = _row_hz(LOGFREQ)
    for f0 in (440.0, 587.33):
        a = spectrogram.logmel(_tone(f0), params=LOGFREQ)[0].mean(axis=1)
        b = spectrogram.logmel(_tone(f0 * 2 ** (semitones / 12)), params=LOGFREQ)[0].mean(axis=1)
        # Every partial's peak row moves by exactly 2k rows.
        peaks_a = [int(np.argmin(np.abs(hz - f0 * h))) for h in range(1, 5)]
        for row in peaks_a:
            window = slice(row + shift - 1, row + shift + 2)
            assert row + shift - 1 + int(np.argmax(b[window])) == row + shift
        # And each partial keeps its level there, within the STFT's resolution (a partial between two
        # bins leaks differently into a band than one on a bin).
        levels = np.array([b[row + shift] - a[row] for row in peaks_a])
        assert np.max(np.abs(levels)) < 2.0, levels


def test_crop_at_zero_is_the_visible_front_end_and_moves_by_whole_semitones():
    y = _tone(440.0)
    tall_params = spectrogram.LogMelParams(front_end="logfreq", n_mels=192, duration=2.0, margin=12, top_db=None)
    tall = spectrogram.logmel(y, params=tall_params)
    centred = spectrogram.floor_db(spectrogram.crop(tall, tall_params, 0), 80.0)
    # The same rows of a taller filterbank: equal up to float32 rounding, which differs with the matrix shape
    # on some CPUs (an AVX2 machine put 15 of 4,224 values 4e-6 dB apart; an AVX-512 one none).
    np.testing.assert_allclose(centred, spectrogram.logmel(y, params=LOGFREQ), rtol=0, atol=1e-4)
    up = spectrogram.crop(tall, tall_params, 3)
    np.testing.assert_array_equal(up[..., 6:, :], spectrogram.crop(tall, tall_params, 0)[..., :-6, :])
    with pytest.raises(ParameterError):
        spectrogram.crop(tall, tall_params, 7)


def test_transposed_mel_filterbank_is_the_mel_of_a_transposed_tone():
    params = spectrogram.LogMelParams(duration=2.0)
    np.testing.assert_allclose(spectrogram.transposed_filterbank(params, 0), spectrogram.mel_filterbank(), atol=1e-7)
    for semitones in (-4, 3):
        source = spectrogram.stft_power(_tone(660.0), params=params)
        warped = spectrogram.transposed_filterbank(params, semitones) @ source
        direct = spectrogram.mel_filterbank() @ spectrogram.stft_power(_tone(660.0 * 2 ** (semitones / 12)),
                                                                          params=params)
        a, b = 10 * np.log10(warped.mean(1) + 1e-10), 10 * np.log10(direct.mean(1) + 1e-10)
        assert np.argmax(a) == np.argmax(b)
        loud = b > b.max() - 40  # the bands the partials fill (not the leakage floor)
        assert np.corrcoef(a[loud], b[loud])[0, 1] > 0.95
        assert abs(a.max() - b.max()) < 1.5


def test_relevance_maps_back_to_stft_bins_through_the_front_end():
    params = LOGFREQ
    bank = spectrogram.filterbank(params)
    power = spectrogram.pool_frames(spectrogram.stft_power(_tone(330.0) + 0.01, params=params))
    n_frames = power.shape[1]
    rng = np.random.default_rng(0)
    relevance = rng.normal(size=(192, n_frames))
    per_bin = spectrogram.relevance_to_stft(relevance, power, params)
    # Conservation (LRP's z-rule through the linear filterbank): the totals agree per frame.
    np.testing.assert_allclose(per_bin.sum(axis=0), relevance.sum(axis=0), rtol=1e-6, atol=1e-9)
    # The sonification's mask follows the same filterbank: a constant relevance gives a constant mask,
    # and a relevance on one row reaches exactly that row's STFT bins.
    n_samples = 2 * SR
    flat = sonify.mel_relevance_to_stft_mask(np.ones((192, n_frames)), n_samples=n_samples, filterbank=bank,
                                             temporal_smoothing=0)
    np.testing.assert_allclose(flat, 1.0)
    one = np.zeros((192, n_frames))
    one[120] = 1.0
    mask = sonify.mel_relevance_to_stft_mask(one, n_samples=n_samples, filterbank=bank, temporal_smoothing=0)
    np.testing.assert_array_equal(np.flatnonzero(mask[:, 0] > 0), np.flatnonzero(bank[120] > 0))
    assert sonify.front_end_options({"logmel": params.to_dict()})["filterbank"].shape == bank.shape
    assert sonify.front_end_options({"logmel": spectrogram.LogMelParams().to_dict()}) == {}
    with pytest.raises(ParameterError):
        sonify.mel_relevance_to_stft_mask(np.ones((128, n_frames)), n_samples=n_samples, filterbank=bank)


def test_tonic_estimate_moves_with_the_input():
    """The canonical shift follows a transposition: every key of one cadence reaches one canonical key."""
    from mer import tonality

    cadence = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)]  # I IV V I
    moved = []
    for k in range(-5, 7):
        y = np.concatenate([sum(_tone(130.81 * 2 ** ((k + s) / 12), seconds=0.6) for s in chord)
                            for chord in cadence]).astype(np.float32)
        moved.append(int(tonality.canonical_semitones(tonality.tonic_chroma(y)[None])[0]))
    # The estimate names C as the tonic of the untransposed cadence, and each transposition lands on C again.
    assert moved[5] == 0
    assert [(m + k) % 12 for m, k in zip(moved, range(-5, 7))] == [0] * 12
    assert all(-6 <= m <= 5 for m in moved)


def test_a_flat_or_silent_chroma_has_no_tonic_preference():
    from mer import tonality

    assert not np.any(tonality.tonic_chroma(np.zeros(22050, np.float32)))
    assert np.all(tonality.tonic_scores(np.zeros((1, 12))) == 0)
    with pytest.raises(ParameterError):
        tonality.tonic_scores(np.ones(11))


# ---------------------------------------------------------------------------
# Training: augmentation at shift 0, metadata, and a key never seen in training
# ---------------------------------------------------------------------------

def _chord(root_hz: float, minor: bool, rng, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    y = sum(np.sin(2 * np.pi * root_hz * 2 ** (s / 12) * h * t + rng.uniform(0, 6)) / h
            for s in (0, 3 if minor else 4, 7) for h in (1, 2, 3))
    return (0.1 * y * np.exp(-(t % 0.5))).astype(np.float32)


@pytest.fixture(scope="module")
def chords(tmp_path_factory):
    """Major (happy) and minor (sad) chords: training and validation in C, D and E, test in A."""
    import os

    folder = tmp_path_factory.mktemp("keys")
    old = os.environ.get("MER_DATA")
    os.environ["MER_DATA"] = str(folder / "data")
    rng = np.random.default_rng(0)
    rows = []
    for split, keys, n in (("train", (0, 2, 4), 24), ("val", (0, 2, 4), 3), ("test", (9,), 6)):
        for label, minor in (("happy", False), ("sad", True)):
            for i in range(n):
                clip_id = f"{split}-{label}-{i:02d}"
                path = folder / f"{clip_id}.flac"
                sf.write(path, _chord(261.63 * 2 ** (keys[i % len(keys)] / 12), minor, rng), SR)
                rows.append({"clip_id": clip_id, "path": str(path), "label": label, "valence": np.nan,
                             "arousal": np.nan, "split": split, "source": "test"})
    yield Dataset(name="keys", clips=pd.DataFrame(rows), root=folder)
    if old is None:
        os.environ.pop("MER_DATA", None)
    else:
        os.environ["MER_DATA"] = old


@pytest.mark.parametrize("front_end", ["mel", "logfreq"])
def test_augmentation_at_shift_zero_is_the_plain_input(chords, front_end, monkeypatch):
    import torch

    logmel = {"duration": 2.0, "front_end": front_end, "n_mels": 64 if front_end == "mel" else 96}
    data = vit.prepare(chords, logmel=logmel, n_jobs=1, progress=False, transpose_augment=3)
    train = data["split"] == "train"
    transposer = vit.Transposer(data, vit.shift_set(3), train, 2)
    index = np.arange(6)
    monkeypatch.setattr(torch, "randint", lambda *args, **kwargs: torch.full((len(index),), 3, dtype=torch.long))
    batch = transposer.batch(index, generator=torch.Generator())
    np.testing.assert_allclose(batch.numpy(), data["specs"][train][index], atol=1e-4)
    assert data["stats"]["transpositions"] == [-3, -2, -1, 0, 1, 2, 3]
    assert vit.shift_set((7, 0, -5, 7)) == (-5, 0, 7)


@pytest.fixture(scope="module")
def tiny_model(chords):
    """A tiny canonicalising log-frequency ViT, trained on major and minor chords in C, D and E."""
    import time

    started = time.perf_counter()
    logmel = {"duration": 2.0, "front_end": "logfreq", "n_mels": 96, "fmin": 130.81}
    result = vit.train(chords, size="quick", epochs=12, batch_size=8, learning_rate=1e-3, seed=0, progress=False,
                       n_jobs=1, logmel=logmel, canonicalise="tonic", time_mask=0, freq_mask=0, patience=100)
    result.meta["train_wall_s"] = time.perf_counter() - started
    return result


def test_a_tiny_model_classifies_a_key_it_never_saw(chords, tiny_model):
    result = tiny_model
    assert result.meta["key_invariance"]["canonicalise"] == "tonic"
    assert result.meta["key_invariance"]["front_end"] == "logfreq"
    assert result.meta["key_invariance"]["tonic_profile"] == "albrecht-shanahan"
    test = chords.clips[chords.clips["split"] == "test"]
    p_happy = vit.predict_proba(result.model, vit.model_input(test, result.meta, progress=False))[:, 1]
    accuracy = float(((p_happy >= 0.5) == (test["label"] == "happy").to_numpy()).mean())
    assert accuracy >= 0.9, (accuracy, np.round(p_happy, 2))
    assert result.meta["train_wall_s"] < 60


def _chords_in_every_key(folder, *, seed: int) -> pd.DataFrame:
    """A major (happy) and a minor (sad) chord, each in the twelve keys C-5 .. C+6: a clips table with their truth."""
    rng = np.random.default_rng(seed)
    rows = []
    for score, minor in ((0, False), (1, True)):
        for shift in range(-5, 7):
            path = folder / f"s{score}-{shift:+d}.flac"
            sf.write(path, _chord(261.63 * 2 ** (shift / 12), minor, rng), SR)
            rows.append({"clip_id": path.stem, "path": str(path), "label": "sad" if minor else "happy",
                         "valence": np.nan, "arousal": np.nan, "split": "test", "source": "test", "score": score,
                         "shift": shift, "tonic": shift % 12, "mode": "minor" if minor else "major",
                         "valence_noiseless": -1.0 if minor else 1.0})
    return pd.DataFrame(rows)


def test_the_key_invariance_tables_come_from_the_models_own_predictions(chords, tiny_model, tmp_path):
    """One major and one minor chord in all twelve keys, scored by the tiny model: per key, spread, ranking."""
    from mer import carryover

    clips = _chords_in_every_key(tmp_path, seed=7)
    p_happy = vit.predict_proba(tiny_model.model, vit.model_input(clips, tiny_model.meta, progress=False))[:, 1]
    spread = carryover.transposition_spread(p_happy, clips)
    assert list(spread["score"]) == [0, 1]
    for score, group in clips.assign(p=p_happy).groupby("score"):
        assert spread.set_index("score").loc[score, "spread"] == pytest.approx(group["p"].max() - group["p"].min())
    assert spread.attrs["curves"].shape == (2, 12)
    # Canonicalised, the model hears each chord alike in every key, and ranks major above minor in all of them.
    assert spread["spread"].median() < 0.3, spread
    ranking = carryover.mode_ranking(p_happy, clips["mode"], n_bootstrap=200)
    assert ranking["value"] > 0.95 and ranking["n"] == 24
    keys = carryover.by_key(clips.assign(p_happy=p_happy), clips, n_bootstrap=200)
    assert list(keys["key"]) == list(tonality.KEY_NAMES) and set(keys["n"]) == {2}
    assert keys["balanced_accuracy"].min() >= 0.5
    # Each seed's spread from its own predictions; a flat model (every key alike) spreads by 0.
    seeds = carryover.spread_over_seeds(
        {"tiny": carryover.vit_predictor(tiny_model.model, tiny_model.meta, n_jobs=1),
         "flat": lambda table: np.full(len(table), 0.5)}, clips)
    assert seeds == {"tiny": pytest.approx(spread["spread"].median()), "flat": 0.0}
    # The tonic estimate follows each chord through the keys: all twelve renderings reach the model in one key.
    canonical = carryover.vit_canonical(tiny_model.meta, n_jobs=1)
    followed = carryover.transposition_spread(p_happy, clips, canonical=canonical(clips))
    assert followed["spread"].tolist() == spread["spread"].tolist()
    assert followed["canonical_keys"].tolist() == [1, 1]
    # A model that moves nothing hears each chord in twelve keys; one that does not canonicalise has no canonical().
    unmoved = carryover.transposition_spread(p_happy, clips, canonical=np.zeros(len(clips), dtype=int))
    assert unmoved["canonical_keys"].tolist() == [12, 12]
    assert carryover.vit_canonical({"key_invariance": {"canonicalise": None}}) is None


def test_the_carry_over_tables_set_the_vit_beside_chapter_1s_model(chords, tiny_model, tmp_path):
    """check() of two real models on the same held-out clips, and compare() side by side, target by target."""
    from mer import carryover, features, interpretable

    held = Dataset(name="held", clips=_chords_in_every_key(tmp_path, seed=11), root=tmp_path)
    sets = {name: held for name in ("transpositions", *carryover.HELDOUT_SETS)}
    test = chords.clips[chords.clips["split"] == "test"].assign(tempo_bpm=np.linspace(60, 180, 12),
                                                                 register=np.linspace(48, 72, 12))
    table = features.extract(chords, families=("chroma", "key"), n_jobs=1, progress=False)
    X, y = interpretable.design(chords, table, columns=features.feature_columns(table, ("chroma", "key")))
    baseline = interpretable.split_scores(X, y, chords.clips.set_index("clip_id")["split"], model="logreg",
                                          n_bootstrap=0)
    vit_test = test[["clip_id", "label"]].assign(
        p_happy=vit.predict_proba(tiny_model.model, vit.model_input(test, tiny_model.meta, progress=False))[:, 1])
    carries = {"ViT": carryover.check(carryover.vit_predictor(tiny_model.model, tiny_model.meta, n_jobs=1),
                                      vit_test, test, sets, canonical=carryover.vit_canonical(tiny_model.meta, n_jobs=1),
                                      n_bootstrap=50),
               "features": carryover.check(carryover.features_predictor(baseline, n_jobs=1), baseline["predictions"],
                                           test, sets, n_bootstrap=50)}
    for carry in carries.values():
        assert len(carry.predictions["keys"]) == 24 and carry.summary["mode_ranking_auc"] > 0.6
        assert set(carry.summary["balanced_accuracy_by_key"]) == set(tonality.KEY_NAMES)
        assert list(carry.edges["cue"]) == ["tempo_bpm", "tempo_bpm", "register", "register"]
    # Only the canonicalising model says whether the tonic estimate followed each score through the keys.
    vit_summary = carries["ViT"].summary
    assert vit_summary["transposition_scores_one_canonical_key"] == 2
    assert vit_summary["transposition_spread_median_one_canonical_key"] == pytest.approx(
        carries["ViT"].spread["spread"].median())
    assert "transposition_scores_one_canonical_key" not in carries["features"].summary
    low, high = vit_summary["transposition_spread_median_ci"]
    assert min(carries["ViT"].spread["spread"]) <= low <= vit_summary["transposition_spread_median"] <= high
    # Both chords keep their label in every key, and a reader of every cue is sure of it: whatever moves is the model.
    assert vit_summary["transposition_spread_median_bayes"] == pytest.approx(0.0, abs=1e-9)
    assert vit_summary["transposition_spread_median_label_holds"] == pytest.approx(vit_summary["transposition_spread_median"])
    text = carryover.reading(carries["ViT"], carryover.against_targets(vit_summary), test_balanced_accuracy=0.8)
    assert "followed 2 of the 2 scores through all twelve keys" in text
    assert "followed" not in carryover.reading(carries["features"], carryover.against_targets(
        carries["features"].summary), test_balanced_accuracy=0.8)
    targets, by_set = carryover.compare(carries)
    assert list(targets.columns) == ["measure", "target", "ViT", "features"]
    assert targets["features"].tolist() == carryover.against_targets(carries["features"].summary)["reached"].tolist()
    assert by_set.groupby("model").size().to_dict() == {"ViT": 4, "features": 4}


def test_the_spread_table_says_when_the_label_moves_with_the_key():
    """The generator's register cue is the melody's absolute pitch, so it moves with the key: the spread table
    counts the scores whose label changes across the twelve keys and how p(happy) follows the melody's pitch."""
    from mer import carryover

    shifts = np.arange(-5, 7)
    clips = pd.DataFrame({"score": np.repeat([0, 1], 12), "shift": np.tile(shifts, 2), "mode": "major",
                          "register": np.concatenate([60 + shifts, 70 + shifts]).astype(float),
                          "label": ["sad"] * 5 + ["happy"] * 7 + ["happy"] * 12})
    rising = np.concatenate([np.linspace(0.3, 0.6, 12), np.linspace(0.8, 0.9, 12)])
    table = carryover.transposition_spread(rising, clips).set_index("score")
    assert table["labels"].tolist() == [2, 1]
    assert table["rho_register"].tolist() == pytest.approx([1.0, 1.0])
    falling = carryover.transposition_spread(rising[::-1], clips)
    assert falling["rho_register"].tolist() == pytest.approx([-1.0, -1.0])
    flat = carryover.transposition_spread(np.full(24, 0.5), clips)
    assert flat["rho_register"].isna().all() and flat["spread"].tolist() == [0.0, 0.0]
    # Without the generator's columns (a set from elsewhere) the table has neither column.
    plain = carryover.transposition_spread(rising, clips[["score", "shift", "mode"]])
    assert "labels" not in plain and "rho_register" not in plain and "bayes_spread" not in plain


def test_the_spread_is_held_against_a_reader_that_hears_every_cue():
    """Where the label's rule is sure in every key (valence far from 0), a reader of every cue does not move, so
    a model's spread there is its own; where the valence crosses 0 within the twelve keys, that reader moves by
    almost 1. The chapter's sentences say which case the run is in."""
    from scipy.stats import norm

    from mer import carryover
    from mer.data import synth

    shifts = np.arange(-5, 7)
    step = 0.108  # the transposition set's valence per semitone of the melody (load_transpositions' docstring)
    valence = np.concatenate([1.5 + step * shifts, -2.0 + step * shifts, step * shifts])
    clips = pd.DataFrame({"score": np.repeat([0, 1, 2], 12), "shift": np.tile(shifts, 3), "mode": "major",
                          "register": np.tile(70.0 + shifts, 3), "valence_noiseless": valence,
                          "label": np.where(valence > 0, "happy", "sad")})
    bayes = synth.bayes_p_happy(clips)
    assert bayes == pytest.approx(norm.cdf(valence / synth.NOISE_SD))
    # A model that hears the register as the rule does, but unsure: p drifts 0.3 on every score.
    p_happy = np.tile(np.linspace(0.35, 0.65, 12), 3)
    table = carryover.transposition_spread(p_happy, clips).set_index("score")
    assert table.loc[0, "bayes_spread"] < 1e-6 and table.loc[1, "bayes_spread"] < 1e-6
    assert table.loc[2, "bayes_spread"] > 0.99 and table["labels"].tolist() == [1, 1, 2]
    with pytest.raises(ParameterError, match="valence_noiseless"):
        synth.bayes_p_happy(clips.drop(columns="valence_noiseless"))
    predictions = clips[["score", "shift", "mode", "label"]].assign(p_happy=p_happy)
    carry = carryover.CarryOver({"transposition_spread_median": 0.3, "transposition_spread_max": 0.3,
                                 "transposition_scores_label_changes": 1, "transposition_register_rho_median": 1.0,
                                 "transposition_spread_median_bayes": float(table["bayes_spread"].median()),
                                 "transposition_spread_median_label_holds": 0.3},
                                pd.DataFrame(columns=["key", "balanced_accuracy", "n"]), table.reset_index(),
                                pd.DataFrame({"set": ["keys"], "n": [36]}), pd.DataFrame(),
                                {"transpositions": predictions})
    s = {"keys_balanced_accuracy": 0.8, "keys_balanced_accuracy_ci": [0.7, 0.9],
         "heldout_soundfont_balanced_accuracy": 0.8, "heldout_texture_balanced_accuracy": 0.8,
         "mode_ranking_auc": 0.9, "balanced_accuracy_by_key_min": 0.7}
    carry.summary.update(s)
    text = carryover.reading(carry, carryover.against_targets(carry.summary), test_balanced_accuracy=0.8)
    assert "moves by 0.00 in median, so the label's own movement leaves the target within reach" in text
    carry.summary["transposition_spread_median_ci"] = [0.05, 0.4]
    text = carryover.reading(carry, carryover.against_targets(carry.summary), test_balanced_accuracy=0.8)
    assert "the median lies between 0.05 and 0.40 (95 %): the interval reaches both sides of the target" in text
    assert "On the 2 scores whose label holds in every key this model moves by 0.30 (median): that movement is " \
           "the model's uncertainty" in text


def test_carry_over_measures_are_the_textbook_ones():
    from mer import carryover

    labels = np.array(["happy"] * 4 + ["sad"] * 4)
    p = np.array([.9, .8, .7, .2, .1, .3, .6, .4])
    assert carryover.scored(labels, p, n_bootstrap=0)["value"] == pytest.approx((3 / 4 + 3 / 4) / 2)
    assert np.isnan(carryover.scored(labels[:4], p[:4], n_bootstrap=0)["value"])  # one class: undefined, not 0.75
    with pytest.raises(ParameterError, match="unknown labels"):
        carryover.scored(["happy", "glad"], [0.6, 0.7])
    assert carryover.mode_ranking(p, np.where(labels == "happy", "major", "minor"), n_bootstrap=0)["value"] \
        == pytest.approx(13 / 16)  # pairs ranked right: 4 + 4 + 4 + 1
    table = carryover.against_targets({"balanced_accuracy_by_key_min": 0.86, "transposition_spread_median": 0.2,
                                       "heldout_soundfont_balanced_accuracy": 0.8,
                                       "heldout_texture_balanced_accuracy": 0.9, "mode_ranking_auc": 0.95}, 0.88)
    row = table.set_index("key")
    assert not row.loc["balanced_accuracy", "met"] and row.loc["balanced_accuracy", "missed_by"] == pytest.approx(0.02)
    assert not row.loc["transposition_spread_median", "met"]
    assert row.loc["transposition_spread_median", "missed_by"] == pytest.approx(0.1)
    assert row.loc["mode_ranking_auc", "met"] and row.loc["balanced_accuracy_by_key_min", "met"]


def test_a_moved_clips_relevance_is_sonified_at_its_own_pitches(chords, tiny_model):
    """Chapter 4 hears a canonicalised model's relevance through the model's own front end: a map over the
    log-frequency rows the model saw (the clip moved to its tonic) must come back to the STFT bins the clip's own
    notes sound in, for the mask, the players and the faithfulness table alike."""
    import librosa

    from mer import explain, faithfulness

    model, meta = tiny_model.model, tiny_model.meta
    test = chords.clips[chords.clips["split"] == "test"]  # chords in A, moved to C by the model's front end
    clips = np.stack([sf.read(p, dtype="float32")[0] for p in test["path"][:4]])
    found = explain.explain_clips(model, meta, clips, explainer="lrp")
    assert (found["semitones"] != 0).all() and len(found["front_end"]) == len(clips)
    for y, db, own in zip(clips, found["logmel_db"], found["front_end"]):
        # Where the clip's energy lies, in the model's rows: a map whose truth is the clip's own spectrum.
        relevance = db - db.min()
        right = sonify.sonify(y, relevance, top_k_percent=15, exponent=0, **own)
        as_mel = sonify.sonify(y, relevance, top_k_percent=15, exponent=0)  # the rows misread as mel bands
        power = np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2

        def kept(mask):
            return float((power * mask).sum() / power.sum())

        assert kept(right.mask) > 0.9 and kept(right.mask) > kept(as_mel.mask) + 0.3, (kept(right.mask),
                                                                                       kept(as_mel.mask))
    # The faithfulness table builds the explanation's and the random mask through the same per-clip map.
    predict_proba = explain.audio_predictor(model, meta)
    table = faithfulness.faithfulness_table(clips, found["relevance"], predict_proba=predict_proba,
                                            front_end=found["front_end"], top_k_percent=15, exponent=0)
    assert len(table) == len(clips) and table["area"].between(0.1, 0.2).all()
    # Chapter 4's loop over explainers prepares each clip's input once and predicts the original once: the same
    # table as clip by clip.
    long = faithfulness.faithfulness_by_explainer(model, meta, clips, explainers=["lrp"], seed=0, progress=False,
                                                  top_k_percent=15, exponent=0)
    columns = ["p_orig", "p_kept", "p_complement", "p_random", "area"]
    np.testing.assert_allclose(long[columns].to_numpy(), table[columns].to_numpy(), atol=1e-5)
    assert long["pred_orig"].tolist() == table["pred_orig"].tolist()
    with pytest.raises(ParameterError, match="front_end"):
        faithfulness.faithfulness_table(clips, found["relevance"], predict_proba=predict_proba,
                                        front_end=found["front_end"][:1])


def test_the_worst_key_is_weighed_against_chance():
    """The worst key agrees with by_key; a key the model really fails is singled out, a uniform model's is not."""
    from mer import carryover

    rng = np.random.default_rng(3)
    n = 240  # 20 clips per key, half of each label
    clips = pd.DataFrame({"clip_id": [f"c{i}" for i in range(n)], "tonic": np.repeat(np.arange(12), n // 12)})
    labels = np.tile(["happy", "sad"], n // 2)
    right = rng.random(n) < 0.85  # the same skill in every key
    p = np.where(right == (labels == "happy"), 0.8, 0.2)
    uniform = pd.DataFrame({"clip_id": clips["clip_id"], "label": labels, "p_happy": p})
    chance = carryover.worst_key_by_chance(uniform, clips, n_draws=500)
    assert chance["worst"] == pytest.approx(carryover.by_key(uniform, clips, n_bootstrap=0)["balanced_accuracy"].min())
    assert chance["worst"] < 0.85 and chance["p_value"] > 0.05  # low, and just what chance gives
    assert chance["shuffled_low"] <= chance["shuffled_median"] <= chance["shuffled_high"] < 0.85
    assert chance["target_model_passes"] < 0.5  # at 20 clips a key, a 0.90 model rarely has no key below 0.85

    deaf = uniform.copy()
    in_b = (clips["tonic"] == 11).to_numpy()
    deaf.loc[in_b, "p_happy"] = np.where(labels[in_b] == "happy", 0.2, 0.8)  # every clip in B called wrong
    singled = carryover.worst_key_by_chance(deaf, clips, n_draws=500)
    assert singled["worst"] == 0.0 and singled["p_value"] < 0.01

    one_label_per_key = uniform.assign(label=np.where(clips["tonic"] % 2 == 0, "happy", "sad"))
    assert carryover.worst_key_by_chance(one_label_per_key, clips, n_draws=50) == {}  # no key to call worst
    # 16 clips over twelve keys (the quick profile): some shuffles leave no key with both labels; they are left out.
    few = carryover.worst_key_by_chance(uniform.iloc[::15], clips, n_draws=500)
    assert few and not np.isnan(few["shuffled_median"]) and 0 < few["n_draws"] < 500



def test_chapter_1s_model_reads_nothing_a_transposition_moves_but_through_the_audio():
    """The issue asks for chapter 1's model key-invariant by construction: move a clip's pitch content to each of
    the twelve keys (its chroma rotated, everything else as it was) and every column the model reads
    (mer.features.model_columns) stays exactly as it was, while the absolute pitch classes it leaves out move."""
    from mer import features

    rng = np.random.default_rng(5)
    y = np.concatenate([_chord(261.63 * 2 ** (s / 12), minor, rng) for s, minor in ((0, False), (5, False),
                                                                                   (7, False), (9, True))])
    chroma = features.analyse(y, sr=SR).chroma
    rows = []
    for k in range(12):
        analysis = features.analyse(y, sr=SR)
        analysis.chroma = np.roll(chroma, k, axis=0)  # the same music, k semitones up, as the chroma hears it
        row = {}
        for family in features.REGISTRY:
            if family.reads == "audio":
                row.update(family.compute(analysis=analysis, reasons=[]))
        rows.append(row)
    table = pd.DataFrame(rows)
    read = features.model_columns(table)
    assert {"chroma_rel_b3", "key_minor", "chords_major_share", "ml_minorness", "melody_pitch_midi"} <= set(read)
    assert not set(read) & set(features.ABSOLUTE_PITCH_COLUMNS)
    assert np.allclose(table[read].to_numpy(dtype=float), table[read].iloc[[0]].to_numpy(dtype=float), equal_nan=True), \
        table[read].std().sort_values().tail()
    assert table["key_tonic"].nunique() == 12 and table["chroma_C"].nunique() > 1  # left out: they follow the key
