"""mer.spectrogram: shapes, the exact inverse maps, train-only normalisation."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from mer import ParameterError, spectrogram

SR = 22050


@pytest.fixture(scope="module")
def tone():
    t = np.arange(SR * 10) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)).astype(np.float32)


def test_logmel_shape_is_one_channel_128_by_108_for_10_s(tone):
    spec = spectrogram.logmel(tone)
    assert spec.shape == (1, 128, 108)
    assert spec.dtype == np.float32
    assert spectrogram.n_frames(len(tone)) == 108
    unpooled = spectrogram.logmel(tone, params={"pool": 1, "n_mels": 64})
    assert unpooled.shape == (1, 64, 431)


def test_logmel_is_the_filterbank_times_stft_power_pooled(tone):
    power = np.abs(librosa.stft(tone, n_fft=2048, hop_length=512, center=True)) ** 2
    mel = spectrogram.mel_filterbank() @ power
    expected = np.stack([mel[:, k * 4:(k + 1) * 4].mean(axis=1) for k in range(108)], axis=1)
    np.testing.assert_allclose(spectrogram.mel_power(tone), expected, rtol=1e-5, atol=1e-8)
    # ... and the same as librosa's own melspectrogram before pooling
    np.testing.assert_allclose(mel, librosa.feature.melspectrogram(y=tone, sr=SR, n_fft=2048, hop_length=512,
                                                                   n_mels=128), rtol=1e-4, atol=1e-6)


def test_the_440_hz_tone_lands_in_the_band_whose_bins_hold_440_hz(tone):
    spec = spectrogram.logmel(tone)[0]
    loudest = int(spec.mean(axis=1).argmax())
    bins, weights = spectrogram.mel_band_bins(loudest)
    hz = bins * SR / 2048
    assert hz.min() <= 440 <= hz.max() or hz.min() <= 660 <= hz.max()
    assert np.all(weights > 0)


def test_mel_band_bins_are_the_filterbank_rows_support():
    bank = spectrogram.mel_filterbank()
    assert bank.shape == (128, 1025)
    for band in (0, 1, 40, 127):
        bins, weights = spectrogram.mel_band_bins(band)
        np.testing.assert_array_equal(bins, np.flatnonzero(bank[band]))
        np.testing.assert_array_equal(weights, bank[band, bins])
        assert np.all(np.diff(bins) == 1)  # a contiguous run of bins
    with pytest.raises(ParameterError, match="mel band 128"):
        spectrogram.mel_band_bins(128)


@pytest.mark.parametrize("n_samples,pool", [(SR * 10, 4), (SR * 10, 1), (SR * 3 + 17, 4), (1000, 3)])
def test_frame_spans_tile_the_clip_and_stft_frames_partition(n_samples, pool):
    n = spectrogram.n_frames(n_samples, pool=pool)
    spans = [spectrogram.frame_to_samples(k, n_samples=n_samples, pool=pool) for k in range(n)]
    assert spans[0][0] == 0 and spans[-1][1] == n_samples
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(start < stop for start, stop in spans)
    stft = [t for k in range(n) for t in spectrogram.frame_to_stft_frames(k, n_samples=n_samples, pool=pool)]
    assert stft == list(range(spectrogram.n_stft_frames(n_samples)))
    # the window support holds the hop support
    for k in range(n):
        w = spectrogram.frame_to_samples(k, n_samples=n_samples, pool=pool, support="window")
        assert w[0] <= spans[k][0] and spans[k][1] <= w[1]


def test_a_click_shows_up_in_the_frame_whose_span_holds_it():
    y = np.zeros(SR * 10, dtype=np.float32)
    y[SR * 6: SR * 6 + 64] = 1.0
    spec = spectrogram.logmel(y)[0]
    loudest = int(spec.mean(axis=0).argmax())
    start, stop = spectrogram.frame_to_samples(loudest, n_samples=len(y), support="window")
    assert start <= SR * 6 < stop


def test_normaliser_uses_only_the_specs_it_is_given():
    rng = np.random.default_rng(0)
    # bands at very different levels and spreads, as in a log-mel (bass vs hi-hat)
    level = np.linspace(-60, -10, 16)[:, None]
    spread = np.linspace(2, 12, 16)[:, None]
    train = (level + spread * rng.standard_normal((8, 1, 16, 20))).astype(np.float32)
    test = (level + 30 + spread * rng.standard_normal((4, 1, 16, 20))).astype(np.float32)
    stats = spectrogram.fit_normalizer(train)
    assert stats["n_clips"] == 8 and len(stats["mean"]) == len(stats["std"]) == 16
    assert np.allclose(stats["mean"], train.mean(axis=(0, 1, 3)), atol=1e-4)
    normed = spectrogram.normalize(train, stats)
    # every band centred and scaled on its own
    assert np.allclose(normed.mean(axis=(0, 1, 3)), 0, atol=1e-4)
    assert np.allclose(normed.std(axis=(0, 1, 3)), 1, atol=1e-3)
    assert spectrogram.normalize(test, stats).mean() > 2  # test data is not re-centred
    # a band stuck at the dB floor is not blown up
    flat = train.copy()
    flat[:, :, 0] = -80.0
    flat[0, 0, 0, 0] = -79.9
    assert np.abs(spectrogram.normalize(flat, spectrogram.fit_normalizer(flat))[:, :, 0]).max() < 1
    # scalar statistics (older checkpoints) still apply to every band
    old = spectrogram.normalize(train, {"mean": -35.0, "std": 10.0})
    assert np.allclose(old, (train + 35) / 10, atol=1e-5)
    with pytest.raises(ParameterError):
        spectrogram.normalize(train[:, :, :8], stats)
    with pytest.raises(ParameterError):
        spectrogram.fit_normalizer(train[0])


def test_band_statistics_are_level_spread_and_flux_per_band():
    n_mels, n_frames = 4, 6
    specs = np.zeros((2, 1, n_mels, n_frames), dtype=np.float32)
    specs[0, 0, 0] = -20.0                      # a steady band: level only
    specs[0, 0, 1] = [0, 10, 0, 10, 0, 10]      # a band that flickers every frame
    specs[1, 0, 2] = np.linspace(0, 5, n_frames)  # a slow rise
    stats = spectrogram.band_statistics(specs)
    assert stats.shape == (2, 3 * n_mels)
    mean, spread, flux = stats[:, :n_mels], stats[:, n_mels:2 * n_mels], stats[:, 2 * n_mels:]
    assert mean[0, 0] == -20.0 and spread[0, 0] == 0.0 and flux[0, 0] == 0.0
    assert mean[0, 1] == 5.0 and spread[0, 1] == 5.0 and flux[0, 1] == 10.0
    assert flux[1, 2] == pytest.approx(1.0)
    np.testing.assert_array_equal(stats, spectrogram.band_statistics(specs[:, 0]))
    with pytest.raises(ParameterError):
        spectrogram.band_statistics(specs[:, :, :, :1])
