"""mer.sonify: relevance -> STFT mask -> audio, loudness matching, faithfulness metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer import ParameterError, audio, faithfulness
from mer import sonify as so
from mer import spectrogram as spec
from mer.bench import sonify as sonify_bench

SR = spec.SR
N = SR * 10
N_FRAMES = spec.n_frames(N)
T = np.arange(N) / SR


def tones(*freqs, amplitude=0.1):
    return sum(amplitude * np.sin(2 * np.pi * f * T) for f in freqs).astype(np.float32)


@pytest.fixture(scope="module")
def music():
    """A chord with harmonics, a melody and a little noise: a stand-in for a clip."""
    rng = np.random.default_rng(1)
    y = np.zeros(N)
    for f0 in (220.0, 277.2, 329.6):
        for h in range(1, 6):
            y += 0.05 / h * np.sin(2 * np.pi * f0 * h * T)
    melody = np.repeat(rng.choice([440.0, 494.0, 554.0, 659.0, 880.0], size=20), N // 20)
    y += 0.08 * np.sin(2 * np.pi * np.cumsum(np.resize(melody, N)) / SR)
    y += 0.005 * rng.standard_normal(N)
    return y.astype(np.float32)


def band_energy(y, f, width=30.0):
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / SR)
    return spectrum[np.abs(freqs - f) < width].sum()


# --- mask geometry ----------------------------------------------------------------------------

def test_one_mel_band_keeps_only_its_frequency_range():
    band = 40
    bins, _ = spec.mel_band_bins(band)
    low, high = bins.min() * SR / spec.N_FFT, bins.max() * SR / spec.N_FFT
    inside = (low + high) / 2
    y = tones(inside, 150.0, 4000.0, 9000.0)
    relevance = np.zeros((spec.N_MELS, N_FRAMES))
    relevance[band] = 1.0
    mask = so.mel_relevance_to_stft_mask(relevance, n_samples=N)
    assert mask.shape == (1 + spec.N_FFT // 2, spec.n_stft_frames(N))
    # The mask is non-zero exactly on the STFT bins the band's filter covers.
    assert set(np.flatnonzero(mask.max(axis=1))) <= set(bins)
    kept = so.apply_mask(y, mask)
    assert band_energy(kept, inside) > 0.5 * band_energy(y, inside)
    for outside in (150.0, 4000.0, 9000.0):
        assert band_energy(kept, outside) < 1e-6 * band_energy(y, outside)


def test_one_frame_keeps_only_its_samples_and_fades_without_clicks():
    frame = 50
    y = tones(440.0, amplitude=0.5)
    relevance = np.zeros((spec.N_MELS, N_FRAMES))
    relevance[:, frame] = 1.0
    kept = so.apply_mask(y, so.mel_relevance_to_stft_mask(relevance, n_samples=N))
    start, stop = spec.frame_to_samples(frame, n_samples=N)
    # Smoothing (0.1 s) and the STFT window (n_fft) may reach a little beyond
    # the frame's samples, and nothing further.
    reach = spec.N_FFT + int(so.TEMPORAL_SMOOTHING * SR)
    outside = np.r_[kept[: max(0, start - reach)], kept[stop + reach:]]
    assert np.sum(outside ** 2) < 1e-8 * np.sum(kept ** 2)
    assert np.abs(kept[start:stop]).max() > 0.3
    # No click: the kept sine never moves faster than the sine itself (a hard
    # gate at an arbitrary phase would jump by up to the amplitude, 4x more).
    assert np.abs(np.diff(kept)).max() <= 1.01 * np.abs(np.diff(y)).max()


def test_band_weights_sum_to_one_so_constant_relevance_gives_a_flat_mask():
    weights = so.stft_band_weights()
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-9)
    mask = so.mel_relevance_to_stft_mask(np.full((spec.N_MELS, N_FRAMES), 3.0), n_samples=N)
    np.testing.assert_allclose(mask, 1.0, atol=1e-9)


def test_full_mask_reconstructs_the_clip(music):
    mask = np.ones((1 + spec.N_FFT // 2, spec.n_stft_frames(N)))
    assert np.abs(so.apply_mask(music, mask) - music).max() < 1e-4
    clip = so.sonify(music, np.ones((spec.N_MELS, N_FRAMES)))
    assert np.abs(clip.kept_raw - music).max() < 1e-4
    assert abs(clip.gain_db) < 0.01


def test_kept_and_complement_add_up_to_the_original(music):
    rng = np.random.default_rng(0)
    clip = so.sonify(music, rng.standard_normal((spec.N_MELS, N_FRAMES)), top_k_percent=20)
    assert np.abs(clip.kept_raw + clip.complement_raw - music).max() < 1e-5
    complement = so.apply_mask(music, 1.0 - clip.mask)
    assert np.abs(complement - clip.complement_raw).max() < 1e-4


def test_threshold_top_k_and_exponent_shape_the_mask():
    rng = np.random.default_rng(2)
    relevance = rng.standard_normal((spec.N_MELS, N_FRAMES))
    top = so.mel_relevance_to_stft_mask(relevance, n_samples=N, top_k_percent=10)
    assert np.mean(top > 0) == pytest.approx(0.10, abs=0.002)
    binary = so.mel_relevance_to_stft_mask(relevance, n_samples=N, top_k_percent=10, exponent=0)
    assert set(np.unique(binary)) == {0.0, 1.0}
    thresholded = so.mel_relevance_to_stft_mask(relevance, n_samples=N, threshold=0.5)
    assert thresholded[thresholded > 0].min() >= 0.5
    negative = so.mel_relevance_to_stft_mask(relevance, n_samples=N, sign="negative")
    positive = so.mel_relevance_to_stft_mask(relevance, n_samples=N)
    assert not np.allclose(negative, positive)
    with pytest.raises(ParameterError, match="shape"):
        so.mel_relevance_to_stft_mask(relevance[:, :50], n_samples=N)
    with pytest.raises(ParameterError, match="sign"):
        so.mel_relevance_to_stft_mask(relevance, n_samples=N, sign="both")


def test_all_negative_relevance_gives_an_empty_positive_mask(music):
    mask = so.mel_relevance_to_stft_mask(-np.ones((spec.N_MELS, N_FRAMES)), n_samples=N)
    assert not mask.any()


def test_patch_relevance_is_spread_without_steps():
    patches = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    grid = so.patch_relevance_to_mel(patches, n_mels=32, n_frames=48, patch_size=(16, 16))
    assert grid.shape == (32, 48)
    assert np.abs(np.diff(grid, axis=1)).max() <= 1 / 16 + 1e-9  # linear between centres
    # Row 0 lies below the first row of centres (held); column 24 is half a
    # frame past the centre of patch column 1 (23.5) towards column 2 (39.5).
    assert grid[0, 24] == pytest.approx(1.0 - 0.5 / 16)


def test_random_mask_has_equal_area_and_depends_only_on_the_seed(music):
    rng = np.random.default_rng(3)
    mask = so.mel_relevance_to_stft_mask(rng.standard_normal((spec.N_MELS, N_FRAMES)), n_samples=N,
                                         top_k_percent=15)
    random = so.random_mask_like(mask, seed=7, n_samples=N)
    np.testing.assert_array_equal(np.sort(random, axis=None), np.sort(mask, axis=None))
    assert so.mask_area(random) == pytest.approx(so.mask_area(mask))
    np.testing.assert_array_equal(random, so.random_mask_like(mask, seed=7, n_samples=N))
    assert not np.array_equal(random, so.random_mask_like(mask, seed=8, n_samples=N))
    assert np.mean((random > 0) & (mask > 0)) < 0.5 * np.mean(mask > 0)  # somewhere else


# --- loudness -------------------------------------------------------------------------------

@pytest.mark.parametrize("top_k", [None, 10.0, 2.0])
def test_sonified_clip_is_as_loud_as_the_original(music, top_k):
    rng = np.random.default_rng(4)
    relevance = rng.standard_normal((spec.N_MELS, N_FRAMES))
    relevance[100:] += 3  # relevance piled up in the top bands, as in the thesis's examples
    clip = so.sonify(music, relevance, top_k_percent=top_k)
    original = audio.loudness(music)
    assert abs(audio.loudness(clip.kept) - original) <= 1.0
    assert abs(audio.loudness(clip.complement) - original) <= 1.0
    assert clip.reached and clip.gain_db > 10  # the raw kept part is far quieter
    assert np.abs(clip.kept).max() <= 10 ** (so.CEILING_DB / 20) + 1e-3
    assert clip.loudness_diff_db <= 1.0


def test_loudness_match_limits_peaks_and_reports_when_the_target_is_out_of_reach():
    clicks = np.zeros(N, np.float32)
    clicks[:: SR // 4] = 0.5  # four clicks a second, nothing between
    match = so.match_loudness(clicks, target=-10.0)
    assert np.abs(match.y).max() <= 10 ** (so.CEILING_DB / 20) + 1e-3
    assert match.limiter_db > 0
    assert not match.reached
    silent = so.match_loudness(np.zeros(N, np.float32), target=-20.0)
    assert not silent.reached and np.isnan(silent.gain_db)


def test_signed_sonification_gives_one_clip_per_class(music):
    relevance = np.zeros((spec.N_MELS, N_FRAMES))
    relevance[10:30] = 1.0  # for the target (happy)
    relevance[60:80] = -1.0  # against it: for sad
    clips = so.sonify_signed(music, relevance, target=1, labels=("sad", "happy"))
    assert set(clips) == {"sad", "happy"}
    happy_bins = np.flatnonzero(clips["happy"].mask.max(axis=1) > 0.5)
    sad_bins = np.flatnonzero(clips["sad"].mask.max(axis=1) > 0.5)
    assert happy_bins.max() < sad_bins.min()


def test_quadrant_players_offer_original_sonified_complement_and_evidence_against(music, tmp_path, monkeypatch):
    from mer import display, explain

    monkeypatch.setenv("MER_ROOT", str(tmp_path))
    relevance = np.zeros((spec.N_MELS, N_FRAMES))
    relevance[10:30] = 1.0
    relevance[60:80] = -1.0
    clip = so.sonify(music, relevance)
    sounds = explain.sonification_sounds(music, relevance, clip, predicted="happy")
    assert [kind for _, kind, _ in sounds] == ["original", "sonified", "complement"]
    signed = explain.sonification_sounds(music, relevance, clip, predicted="happy", signed=True)
    assert [kind for _, kind, _ in signed][-1] == "against" and "sad" in signed[-1][2]
    against = so.sonify(music, relevance, sign="negative")
    np.testing.assert_array_equal(signed[-1][0], against.kept)
    row = display.player_row(signed, sr=SR, stem="04_sonification/TP-x")
    assert row.data.count("<audio") == 4
    assert len(list((tmp_path / "_static" / "audio" / "04_sonification").glob("TP-x-*.ogg"))) == 4


def test_listening_settings_are_each_loudness_matched_and_grow_with_the_share(music):
    relevance = np.linspace(0.0, 1.0, spec.N_MELS)[:, None] * np.ones((1, N_FRAMES))
    settings = so.sonify_shares(music, relevance, shares=(5, 25), top_k_percent=15, exponent=0.0)
    assert [s.options["top_k_percent"] for s in settings] == [5.0, 15.0, 25.0]
    areas = [s.area for s in settings]
    assert areas == sorted(areas) and abs(areas[1] - 0.15) < 0.02
    assert all(s.reached for s in settings), [s.loudness_diff_db for s in settings]
    np.testing.assert_array_equal(settings[1].kept, so.sonify(music, relevance, top_k_percent=15, exponent=0.0).kept)
    with pytest.raises(ParameterError, match="percentages"):
        so.sonify_shares(music, relevance, shares=(0, 50))


def test_listening_slider_offers_every_setting_as_files_beside_the_book(music, tmp_path, monkeypatch):
    import json
    import re

    from mer import display

    monkeypatch.setenv("MER_ROOT", str(tmp_path))
    relevance = np.zeros((spec.N_MELS, N_FRAMES))
    relevance[10:40] = 1.0
    settings = so.sonify_shares(music, relevance, shares=(5, 15, 40), exponent=0.0)
    markup = display.listening_slider(music, settings, sr=SR, stem="04_sonification/TP-x", explained="happy").data
    assert "cdn" not in markup.lower() and "require" not in markup
    assert "value='1'" in markup and "max='2'" in markup  # starts on 15 %
    data = json.loads(re.search(r"class='mer-listen-settings'>(.*?)</script>", markup).group(1))
    assert [d["label"] for d in data] == ["5 %", "15 %", "40 %"]
    files = sorted(p.name for p in (tmp_path / "_static" / "audio" / "04_sonification").glob("TP-x-*.ogg"))
    assert len(files) == 1 + 2 * len(settings), files
    for entry in data:
        for role in ("sonified", "complement"):
            assert entry[role].startswith("../../_static/audio/04_sonification/TP-x-keep")
            assert (tmp_path / "book" / "chapters" / entry[role]).resolve().is_file()


# --- faithfulness metrics (L-MAC, Paissan et al. 2024), hand-computed -----------------------

P_ORIG = [0.8, 0.6, 0.9, 0.7]
P_KEPT = [0.9, 0.3, 0.9, 0.7]
P_COMPLEMENT = [0.4, 0.6, 0.5, 0.8]
P_RANDOM = [0.5, 0.5, 0.6, 0.9]


def test_average_increase_drop_gain():
    assert faithfulness.average_increase(P_ORIG, P_KEPT) == pytest.approx(25.0)  # 1 of 4 clips rises
    assert faithfulness.average_drop(P_ORIG, P_KEPT) == pytest.approx(100 * (0.3 / 0.6) / 4)  # 12.5 %
    assert faithfulness.average_gain(P_ORIG, P_KEPT) == pytest.approx(100 * (0.1 / 0.2) / 4)  # 12.5 %
    assert faithfulness.average_gain([1.0], [1.0]) == 0.0


def test_faithfulness_fidelity_and_random_baseline():
    assert faithfulness.faithfulness_on_spectra(P_ORIG, P_COMPLEMENT) == pytest.approx((0.4 + 0 + 0.4 - 0.1) / 4)
    assert faithfulness.input_fidelity([1, 0, 1, 1], [1, 1, 1, 1]) == pytest.approx(0.75)
    assert faithfulness.complement_beats_random_share(P_COMPLEMENT, P_RANDOM) == pytest.approx(0.75)


def test_metrics_refuse_logits_and_mismatched_lengths():
    with pytest.raises(ParameterError, match="probabilities"):
        faithfulness.average_drop([2.3, -1.0], [0.5, 0.5])
    with pytest.raises(ParameterError, match="same length"):
        faithfulness.faithfulness_on_spectra([0.5, 0.6], [0.5])


def test_faithfulness_table_with_a_band_energy_classifier(music):
    """A transparent classifier: p(happy) rises with the energy share between
    1 and 2 kHz. An explanation that points at those bands must hold the
    prediction when kept and lose it when removed, more than a random region
    of equal area does."""
    import librosa

    freqs = np.fft.rfftfreq(N, 1 / SR)
    evidence = (freqs > 1000) & (freqs < 2000)

    def predict_proba(batch):
        spectra = np.abs(np.fft.rfft(batch, axis=1)) ** 2
        share = spectra[:, evidence].sum(axis=1) / spectra.sum(axis=1)
        p_happy = 1 / (1 + np.exp(-100 * (share - 0.02)))
        return np.stack([1 - p_happy, p_happy], axis=1)

    centres = librosa.mel_frequencies(n_mels=spec.N_MELS + 2, fmax=SR / 2)[1:-1]
    relevance = np.zeros((spec.N_MELS, N_FRAMES))
    relevance[(centres > 1100) & (centres < 1900)] = 1.0
    clips = np.stack([music, np.roll(music, SR)])
    table = faithfulness.faithfulness_table(clips, np.stack([relevance, relevance]), predict_proba=predict_proba,
                                            seed=0, clip_ids=["a", "b"])
    assert list(table["clip_id"]) == ["a", "b"]
    assert (table["pred_orig"] == 1).all()
    summary = faithfulness.faithfulness_summary(table)
    assert set(summary) >= {"ai", "ad", "ag", "ff", "fid_in", "complement_beats_random_share"}
    assert summary["fid_in"] == 1.0 and summary["ai"] == 100.0 and summary["ff"] > 0.5
    assert summary["complement_beats_random_share"] == 1.0
    assert table["loudness_diff_db"].max() <= 1.0


def test_faithfulness_by_class_separates_evidence_from_default():
    """Clips predicted Sad lose p(Sad) when their explanation is removed; clips
    predicted Happy (the default) do not. The pooled share hides it, the
    per-class table shows it."""
    table = pd.DataFrame({
        "explainer": ["lrp"] * 6,
        "pred_orig": [0, 0, 0, 1, 1, 1],
        "p_orig": [0.9, 0.8, 0.7, 0.9, 0.8, 0.85],
        "p_complement": [0.2, 0.3, 0.6, 0.9, 0.85, 0.8],
        "p_random": [0.8, 0.7, 0.5, 0.85, 0.8, 0.9],
    })
    by_class = faithfulness.faithfulness_by_class(table)
    assert by_class.loc[("lrp", "sad"), "complement_beats_random_share"] == pytest.approx(2 / 3)
    assert by_class.loc[("lrp", "happy"), "complement_beats_random_share"] == pytest.approx(1 / 3)
    assert by_class.loc[("lrp", "sad"), "ff"] == pytest.approx((0.7 + 0.5 + 0.1) / 3)
    assert by_class.loc[("lrp", "happy"), "n_clips"] == 3
    assert faithfulness.complement_beats_random_share(table["p_complement"], table["p_random"]) == pytest.approx(0.5)


def test_spectral_centroid_and_high_band_share():
    assert so.spectral_centroid_hz(tones(1000.0)) == pytest.approx(1000.0, rel=0.01)
    assert so.energy_share_above(tones(500.0, 8000.0), hz=7000) == pytest.approx(0.5, abs=0.01)


def test_positive_relevance_on_quiet_bins():
    model_input = np.array([[-1.0, 2.0], [-0.5, 1.0]])
    relevance = np.array([[3.0, 1.0], [-2.0, 0.0]])  # positive mass 4, of which 3 on quiet bins
    assert so.positive_relevance_on_quiet_bins(relevance, model_input) == pytest.approx(0.75)
    assert np.isnan(so.positive_relevance_on_quiet_bins(-np.abs(relevance), model_input))


def test_benchmark_reports_ms_per_clip():
    figures = sonify_bench.benchmark(n=1)
    assert figures["sonify_ms_per_clip"] > 0


# --- the sound is faithful on a model that learnt a known cue --------------------------------

def two_band_clip(label: int, rng, seconds: float = 2.0) -> np.ndarray:
    """A tone near 1.1 kHz and one near 330 Hz, the first louder for "happy" (1),
    the second for "sad" (0), over distractor tones at 2-5 kHz and a little noise."""
    t = np.arange(int(seconds * SR)) / SR
    loud, quiet = 0.12, 0.03
    high, low = (loud, quiet) if label == 1 else (quiet, loud)
    y = high * np.sin(2 * np.pi * rng.uniform(1050, 1200) * t) + low * np.sin(2 * np.pi * rng.uniform(300, 360) * t)
    for _ in range(4):
        start = rng.uniform(0, seconds - 0.4)
        on = (t >= start) & (t < start + 0.4)
        y += 0.05 * on * np.sin(2 * np.pi * rng.uniform(2000, 5000) * t)
    return (y + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def test_lrp_complement_beats_a_random_mask_on_a_trained_tiny_model():
    """The issue's criterion on a fixed tiny model: a quick-size ViT trained here on a
    cue we chose (which of two bands is louder), so we know what the explanation
    should remove. Removing the LRP explanation must lower p(predicted) more than
    removing a random region of equal area for at least 80 % of held-out clips."""
    import torch

    from mer import explain, vit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on 2 shared cores, intra-op threads cost 5-8x here
    try:
        check_tiny_model(torch, explain, vit)
    finally:
        torch.set_num_threads(threads)


def check_tiny_model(torch, explain, vit):
    rng = np.random.default_rng(0)
    params = spec.LogMelParams(duration=2.0)
    labels = np.array([0, 1] * 40)
    clips = np.stack([two_band_clip(int(label), rng) for label in labels])
    db = np.stack([spec.logmel(y, params=params) for y in clips])
    n_frames = db.shape[-1]
    train, test = slice(0, 56), slice(56, None)
    # One mean/std for all bins (scalar statistics, which normalize() accepts):
    # with the chapters' per-band statistics this toy's near-constant noise
    # bands are scaled up to the tones' variance, the tiny model then also
    # reads them (its LRP top bands: 9, 12, 15, 36 instead of the tones' 12-14
    # and 40-43) and the test would no longer know what the evidence is
    # (measured: 0.625 of clips instead of 1.0). The default chapter model,
    # per-band normalised, is measured by chapter 4 itself.
    stats = {"mean": float(db[train].mean()), "std": float(db[train].std())}
    meta = {"logmel": params.to_dict(), "stats": stats, "input_shape": [1, params.n_mels, n_frames]}
    torch.manual_seed(0)
    model = vit.build_model("quick", n_mels=params.n_mels, n_frames=n_frames, seed=0)
    x = torch.as_tensor(spec.normalize(db[train], stats))
    target = torch.as_tensor(labels[train])
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for epoch in range(12):
        for batch in torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).split(14):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(pixel_values=x[batch]).logits, target[batch]).backward()
            optimiser.step()
    model.eval()
    predict_proba = explain.audio_predictor(model, meta)
    assert np.mean(predict_proba(clips[test]).argmax(axis=1) == labels[test]) >= 0.9

    found = explain.explain_clips(model, meta, clips[test], explainer="lrp")
    table = faithfulness.faithfulness_table(clips[test], found["relevance"], predict_proba=predict_proba, seed=0,
                                            top_k_percent=15, exponent=0)
    summary = faithfulness.faithfulness_summary(table)
    assert summary["complement_beats_random_share"] >= 0.8, table
    assert summary["ff"] > 0.1
