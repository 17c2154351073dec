"""The ``midlevel`` family: the seven perceptual descriptors of Aljanaki & Soleymani (2018), as signal proxies.

Also the two measurements the dissonance rests on: Sethares' roughness of a
set of partials (:func:`roughness`) and the spectral peaks of each frame
(:func:`spectral_peaks`).

Notebook: notebooks/01_features.ipynb
"""

from __future__ import annotations

import librosa
import numpy as np

from ..tonality import key_profiles
from .analysis import HOP, ONSET_HOP, SILENCE_RMS, SR, Analysis, as_analysis, entropy, undefined
from .key import key_correlations

#: Band (Hz) whose energy envelope measures articulation: the pitched
#: instruments' fundamentals and first partials, above the kick, below the hi-hat.
ARTICULATION_BAND_HZ = (250.0, 4000.0)

#: Sethares' fit of the Plomp-Levelt curve.
_SETHARES = {"b1": 3.5, "b2": 5.75, "s1": 0.0207, "s2": 18.96, "dstar": 0.24}


def roughness(freqs: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """Sethares' sensory roughness of sets of partials (Plomp-Levelt curve).

    ``R = sum_{i<j} min(a_i, a_j) (exp(-b1 s |f_j - f_i|) - exp(-b2 s |f_j - f_i|))``
    with ``s = d* / (s1 min(f_i, f_j) + s2)``, ``b1 = 3.5``, ``b2 = 5.75``,
    ``d* = 0.24``, ``s1 = 0.0207``, ``s2 = 18.96``.

    Parameters
    ----------
    freqs, amps : np.ndarray, shape (n_sets, n_partials)
        Frequencies in Hz and linear amplitudes of the partials of each set
        (e.g. the spectral peaks of each frame). Zero amplitude = absent.

    Returns
    -------
    roughness : np.ndarray, shape (n_sets,)

    References
    ----------
    Plomp, R., & Levelt, W. J. M. (1965). Tonal consonance and critical
    bandwidth. JASA 38, 548-560. Sethares, W. A. (2005). Tuning, Timbre,
    Spectrum, Scale (2nd ed.), Springer, app. E.

    Notebook: notebooks/01_features.ipynb
    """
    f = np.atleast_2d(np.asarray(freqs, dtype=float))
    amp = np.atleast_2d(np.asarray(amps, dtype=float))
    fi, fj = f[:, :, None], f[:, None, :]
    s = _SETHARES["dstar"] / (_SETHARES["s1"] * np.minimum(fi, fj) + _SETHARES["s2"])
    d = np.abs(fj - fi)
    curve = np.exp(-_SETHARES["b1"] * s * d) - np.exp(-_SETHARES["b2"] * s * d)
    weight = np.minimum(amp[:, :, None], amp[:, None, :])
    upper = np.triu(np.ones(f.shape[1], dtype=bool), k=1)
    return (weight * curve)[:, upper].sum(axis=1)


#: Spectral peaks per frame entering the roughness, and their frequency range.
ROUGHNESS_PEAKS = 16
ROUGHNESS_FMIN, ROUGHNESS_FMAX = 50.0, 5000.0


def spectral_peaks(stft: np.ndarray, freqs: np.ndarray, *, n_peaks: int = ROUGHNESS_PEAKS,
                   fmin: float = ROUGHNESS_FMIN, fmax: float = ROUGHNESS_FMAX) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_peaks`` strongest local maxima of each STFT frame.

    Peak frequency is refined by parabolic interpolation of the log magnitude
    over the three bins around the maximum (Smith & Serra 1987), which
    resolves partials closer than the bin spacing would suggest.

    Parameters
    ----------
    stft : np.ndarray, shape (n_bins, n_frames)
        Magnitude spectrogram.
    freqs : np.ndarray, shape (n_bins,)

    Returns
    -------
    peak_freqs, peak_amps : np.ndarray, shape (n_frames, n_peaks)
        Amplitudes are normalised to sum to 1 per frame (0 where fewer peaks).

    Notebook: notebooks/01_features.ipynb
    """
    band = (freqs >= fmin) & (freqs <= fmax)
    idx = np.flatnonzero(band)
    lo, hi = idx[0], idx[-1]
    mag = stft[lo - 1:hi + 2].T  # (n_frames, n_band + 2)
    centre = mag[:, 1:-1]
    is_peak = (centre > mag[:, :-2]) & (centre >= mag[:, 2:])
    score = np.where(is_peak, centre, 0.0)
    k = min(n_peaks, score.shape[1])
    top = np.argpartition(-score, k - 1, axis=1)[:, :k]  # (n_frames, k) in band coordinates
    amps = np.take_along_axis(score, top, axis=1)
    log_mag = np.log(mag + 1e-10)
    rows = np.arange(mag.shape[0])[:, None]
    left, mid, right = log_mag[rows, top], log_mag[rows, top + 1], log_mag[rows, top + 2]
    denom = left - 2 * mid + right
    delta = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    bin_hz = freqs[1] - freqs[0]
    peak_freqs = freqs[lo + top] + np.clip(delta, -0.5, 0.5) * bin_hz
    total = amps.sum(axis=1, keepdims=True)
    amps = np.where(total > 0, amps / np.where(total > 0, total, 1), 0.0)
    return peak_freqs, amps


def midlevel_features(y: np.ndarray | None = None, *, sr: int = SR, analysis: Analysis | None = None,
                      reasons: list | None = None) -> dict[str, float]:
    """The seven mid-level perceptual descriptors of Aljanaki & Soleymani (2018), as signal proxies.

    Aljanaki & Soleymani collected listener ratings of seven descriptors;
    here each is replaced by a transparent signal measure of what the
    listeners were asked to judge (a proxy, not a model trained on ratings):

    ``ml_melodiousness``
        How clearly one pitch stands out at a time: mean over sounding frames
        of ``max_b C[b, t] / sum_b C[b, t]`` on the CQT ``C`` (pitch salience
        of the most salient note; a singable line is a prominent single pitch).
    ``ml_articulation``
        Staccato (1) vs legato (0): for each beat interval (onsets if the
        clip has fewer than three beats), the share of frames whose energy in
        the pitched band 250-4000 Hz stays above half the interval's peak;
        the descriptor is ``1 - mean share`` (notes that die before the next
        beat). The band leaves out the kick drum below and the hi-hat above,
        which are short whatever the players' articulation; the beat grid
        leaves out the hi-hat's extra onsets between beats.
    ``ml_rhythmic_stability``
        Pulse clarity (Lartillot et al. 2008): the highest peak of the
        normalised autocorrelation of the onset envelope at lags of 0.25-1.5 s
        (a steady, clear beat repeats exactly).
    ``ml_rhythmic_complexity``
        Entropy (bits) of the histogram of inter-onset intervals measured in
        beats, bins of 1/8 beat up to 4 beats, over ``log2(n_bins)``
        (one repeated duration: 0; many different durations: near 1).
    ``ml_dissonance``
        Sethares' roughness (:func:`roughness`) of the 16 strongest spectral
        peaks per frame, amplitudes normalised per frame, mean over sounding
        frames (the Plomp-Levelt sensory dissonance).
    ``ml_tonal_stability``
        Mean over 2 s windows of the correlation of the window's chroma with
        the clip's global key profile (:func:`key_correlations`): a tonal
        centre that holds throughout the clip.
    ``ml_minorness``
        Minor against major third above the estimated tonic, on the mean
        chroma: ``(c[t+3] - c[t+4]) / (c[t+3] + c[t+4])`` in [-1, 1]
        (the single interval that decides major vs minor).

    References
    ----------
    Aljanaki, A., & Soleymani, M. (2018). A data-driven approach to mid-level
    perceptual musical feature modeling. ISMIR, 615-621.
    Lartillot, O., Eerola, T., Toiviainen, P., & Fornari, J. (2008). Multi-
    feature modeling of pulse clarity. ISMIR.

    Notebook: notebooks/01_features.ipynb
    """
    a = as_analysis(y, sr, analysis)
    names = ("ml_melodiousness", "ml_articulation", "ml_rhythmic_stability", "ml_rhythmic_complexity",
             "ml_dissonance", "ml_tonal_stability", "ml_minorness")
    if a.silent:
        return undefined(names, "midlevel: silent clip", reasons)
    out: dict[str, float] = {}
    sounding = a.rms > max(SILENCE_RMS, 0.05 * a.rms.max())
    out["ml_melodiousness"] = _melodiousness(a, sounding)
    out["ml_articulation"] = _articulation(a, reasons)
    out["ml_rhythmic_stability"] = _pulse_clarity(a, reasons)
    out["ml_rhythmic_complexity"] = _rhythmic_complexity(a, reasons)
    out["ml_dissonance"] = _dissonance(a, sounding)
    out["ml_tonal_stability"], out["ml_minorness"] = _tonal_stability_and_minorness(a, reasons)
    return out


def _melodiousness(a: Analysis, sounding: np.ndarray) -> float:
    """``ml_melodiousness``: mean CQT salience of the strongest bin over sounding frames."""
    n = min(a.cqt.shape[1], len(sounding))
    cqt, sounding_cqt = a.cqt[:, :n], sounding[:n]
    salience = cqt.max(axis=0) / np.maximum(cqt.sum(axis=0), 1e-12)
    return float(salience[sounding_cqt].mean())


def _articulation(a: Analysis, reasons: list | None) -> float:
    """``ml_articulation`` over beat intervals of the pitched band's energy (frames, hop HOP)."""
    band = (a.freqs >= ARTICULATION_BAND_HZ[0]) & (a.freqs < ARTICULATION_BAND_HZ[1])
    band_energy = np.sqrt((a.stft[band] ** 2).sum(axis=0))
    grid = a.beats if len(a.beats) >= 3 else a.onsets
    onset_frames = np.unique(np.round(np.asarray(grid) * a.sr / HOP).astype(int))
    onset_frames = onset_frames[onset_frames < len(band_energy)]
    if len(onset_frames) >= 2:
        shares = []
        for start, stop in zip(onset_frames[:-1], onset_frames[1:]):
            seg = band_energy[start:stop]
            if len(seg) >= 2:
                shares.append(float((seg >= 0.5 * seg.max()).mean()))
        value = 1.0 - float(np.mean(shares)) if shares else np.nan
    else:
        value = np.nan
    if not np.isfinite(value) and reasons is not None:
        reasons.append("ml_articulation: fewer than two onsets")
    return value


def _pulse_clarity(a: Analysis, reasons: list | None) -> float:
    """``ml_rhythmic_stability``: highest normalised autocorrelation of the onset envelope at 0.25-1.5 s."""
    env = a.onset_envelope - a.onset_envelope.mean()
    ac = librosa.autocorrelate(env)
    fps = a.sr / ONSET_HOP
    lo, hi = int(0.25 * fps), min(int(1.5 * fps), len(ac) - 1)
    if ac[0] > 0 and hi > lo:
        return float(np.max(ac[lo:hi]) / ac[0])
    if reasons is not None:
        reasons.append("ml_rhythmic_stability: flat onset envelope")
    return np.nan


def _rhythmic_complexity(a: Analysis, reasons: list | None) -> float:
    """``ml_rhythmic_complexity``: normalised entropy of the inter-onset intervals in beats."""
    beat_s = 60.0 / a.tempo_bpm if np.isfinite(a.tempo_bpm) and a.tempo_bpm > 0 else np.nan
    if len(a.onsets) >= 3 and np.isfinite(beat_s):
        ioi = np.diff(a.onsets) / beat_s
        hist, _ = np.histogram(ioi, bins=32, range=(0, 4))
        value = entropy(hist) / np.log2(32) if hist.sum() else np.nan
    else:
        value = np.nan
    if not np.isfinite(value) and reasons is not None:
        reasons.append("ml_rhythmic_complexity: fewer than three onsets or no beat")
    return value


def _dissonance(a: Analysis, sounding: np.ndarray) -> float:
    """``ml_dissonance``: roughness over spectral peaks, every second frame (adjacent frames overlap by 3/4)."""
    stft = a.stft[:, ::2]
    loud = sounding[::2][:stft.shape[1]]
    freqs, amps = spectral_peaks(stft[:, loud], a.freqs)
    return float(roughness(freqs, amps).mean()) if loud.any() else np.nan


def _tonal_stability_and_minorness(a: Analysis, reasons: list | None) -> tuple[float, float]:
    """``ml_tonal_stability`` and ``ml_minorness`` from the chroma."""
    mean = a.chroma.mean(axis=1)
    r = key_correlations(mean)
    if np.isfinite(r).all():
        best = int(np.argmax(r))
        profile = key_profiles()[best]
        win = max(1, int(round(2.0 * a.sr / HOP)))
        corrs = []
        for start in range(0, a.chroma.shape[1] - win + 1, win):
            local = a.chroma[:, start:start + win].mean(axis=1)
            if np.ptp(local) > 0:
                corrs.append(np.corrcoef(local, profile)[0, 1])
        stability = float(np.mean(corrs)) if corrs else np.nan
        tonic = best % 12
        m3, M3 = mean[(tonic + 3) % 12], mean[(tonic + 4) % 12]
        minorness = float((m3 - M3) / (m3 + M3)) if m3 + M3 > 0 else np.nan
        return stability, minorness
    if reasons is not None:
        reasons.append("ml_tonal_stability, ml_minorness: flat chroma, no tonic")
    return np.nan, np.nan
