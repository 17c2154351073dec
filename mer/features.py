"""Interpretable musical features: chroma, key, chords, mid-level descriptors.

One function per feature family. Each takes the clip's signal, or a shared
:class:`Analysis` of it (the STFT, the CQT, the chroma, the onset envelope and
the beats, computed once per clip and shared by every family), and returns a
``dict`` of named values, one row of the feature table. A value that is
undefined for a clip (a silent clip has no key, a clip without onsets has no
rhythm) is ``NaN``, and the reason is appended to ``reasons``; no family
raises on such a clip.

Families (:data:`FAMILIES`):

- ``chroma``: CQT chroma: mean per pitch class, entropy, key-relative profile
- ``key``: Krumhansl-Kessler key and mode: tonic, mode, clarity, minorness
- ``chords``: 24 triads + no-chord over beat-synchronous chroma, HMM-smoothed
- ``midlevel``: the seven perceptual descriptors of Aljanaki & Soleymani
  (2018) as signal proxies
- ``lowlevel``: tempo, onset rate, loudness, spectral centroid and rolloff,
  salient pitch (register)
- ``symbolic``: from the MIDI score where a clip has one (the synthetic set)

:func:`extract` runs the families over a dataset in parallel (joblib) and
caches the table as CSV under ``data/derived/features/``, named by a content
hash of the audio files and the parameters. :func:`validate` checks the
extractors against the synthetic set's truth, :func:`benchmark` measures
their speed.

Notebook: notebooks/01_features.ipynb
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from . import ParameterError, numba_cache, store
from .tonality import key_profiles  # the Krumhansl-Kessler profiles live with the key vocabulary

log = logging.getLogger(__name__)

#: Sampling rate the extractors assume (the data contract's).
SR = 22050
#: STFT size and hop (samples) of the spectral features and the chroma.
N_FFT = 2048
HOP = 512
#: Hop of the onset envelope: finer than ``HOP`` so that the tempo of a
#: 10 s clip is resolved to about 2 % (one lag step at 120 BPM).
ONSET_HOP = 256
#: Lowest CQT bin (C1) and the CQT size: 7 octaves, 12 bins per octave.
CQT_FMIN_MIDI = 24
CQT_BINS = 84
#: A clip whose RMS never exceeds this has no features (-80 dBFS).
SILENCE_RMS = 1e-4

FAMILIES = ("chroma", "key", "chords", "midlevel", "lowlevel", "symbolic")
#: Families computed from the audio (``symbolic`` reads the score).
AUDIO_FAMILIES = FAMILIES[:-1]

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: Scale-degree names of the key-relative chroma (semitones above the tonic).
DEGREES = ("1", "b2", "2", "b3", "3", "4", "#4", "5", "b6", "6", "b7", "7")

#: Chord vocabulary: 12 major, 12 minor triads, then no-chord ``"N"``.
CHORD_LABELS = tuple(f"{r}:maj" for r in PITCH_CLASSES) + tuple(f"{r}:min" for r in PITCH_CLASSES) + ("N",)


# ----------------------------------------------------------------------------
# The shared analysis of one clip
# ----------------------------------------------------------------------------


class Analysis:
    """Time-frequency representations of one clip, each computed once, on first use.

    The families share them, so the CQT and the STFT of a clip are computed
    once however many families are extracted (state is real here: a cache).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono signal.
    sr : int
        Sampling rate in Hz.

    Attributes (computed lazily)
    ----------------------------
    stft : np.ndarray, shape (1 + N_FFT // 2, n_frames)
        Magnitude STFT (Hann, ``N_FFT``, ``HOP``).
    cqt : np.ndarray, shape (CQT_BINS, n_frames)
        Magnitude CQT, C1..B7, 12 bins per octave, hop ``HOP``.
    chroma : np.ndarray, shape (12, n_frames)
        CQT chroma, each frame max-normalised (librosa ``chroma_cqt``).
    rms : np.ndarray, shape (n_frames,)
        Frame RMS from the STFT.
    onset_envelope : np.ndarray, shape (n_onset_frames,)
        Spectral flux of the log-mel spectrogram, hop ``ONSET_HOP``.
    tempo_bpm, beats : float, np.ndarray shape (n_beats,)
        Beat tracker's tempo (refined by a line fit to the beat times) and
        beat times in seconds.
    onsets : np.ndarray, shape (n_onsets,)
        Onset times in seconds.

    Notebook: notebooks/01_features.ipynb
    """

    def __init__(self, y: np.ndarray, *, sr: int = SR):
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1:
            raise ParameterError(f"y must be mono, shape (n_samples,), got shape {y.shape}")
        if sr <= 0:
            raise ParameterError(f"sr must be a positive sampling rate in Hz, got {sr!r}")
        self.y = y
        self.sr = int(sr)
        self.duration = len(y) / sr

    @cached_property
    def silent(self) -> bool:
        """True if the clip never rises above :data:`SILENCE_RMS`."""
        return len(self.y) == 0 or not np.isfinite(self.y).all() or float(self.rms.max(initial=0)) < SILENCE_RMS

    @cached_property
    def stft(self) -> np.ndarray:
        import librosa

        return np.abs(librosa.stft(self.y, n_fft=N_FFT, hop_length=HOP))

    @cached_property
    def freqs(self) -> np.ndarray:
        return np.fft.rfftfreq(N_FFT, d=1.0 / self.sr)

    @cached_property
    def rms(self) -> np.ndarray:
        # Parseval on the Hann-windowed frame (librosa.feature.rms does the same from S).
        import librosa

        return librosa.feature.rms(S=self.stft, frame_length=N_FFT)[0]

    @cached_property
    def cqt(self) -> np.ndarray:
        import librosa

        fmin = librosa.midi_to_hz(CQT_FMIN_MIDI)
        return np.abs(librosa.cqt(self.y, sr=self.sr, hop_length=HOP, fmin=fmin, n_bins=CQT_BINS,
                                  bins_per_octave=12))

    @cached_property
    def chroma(self) -> np.ndarray:
        import librosa

        # Folding the CQT we already have: chroma_cqt(C=...) skips a second CQT.
        return librosa.feature.chroma_cqt(C=self.cqt, sr=self.sr, hop_length=HOP,
                                          fmin=librosa.midi_to_hz(CQT_FMIN_MIDI), bins_per_octave=12)

    @cached_property
    def onset_envelope(self) -> np.ndarray:
        import librosa

        # A second, finer-hop STFT is cheap (a few ms); the mel spectrogram
        # from it feeds librosa's spectral-flux onset strength.
        spec = np.abs(librosa.stft(self.y, n_fft=1024, hop_length=ONSET_HOP)) ** 2
        mel = librosa.feature.melspectrogram(S=spec, sr=self.sr, n_mels=64)
        return librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=self.sr, hop_length=ONSET_HOP)

    @cached_property
    def onsets(self) -> np.ndarray:
        import librosa

        return librosa.onset.onset_detect(onset_envelope=self.onset_envelope, sr=self.sr,
                                          hop_length=ONSET_HOP, units="time")

    @cached_property
    def _beat_track(self) -> tuple[float, np.ndarray]:
        import librosa

        # Global tempo from one autocorrelation of the whole onset envelope
        # (librosa.beat.beat_track would compute a 384-frame tempogram at every
        # frame and average it: the same estimate for a 10 s clip at ~50x the
        # cost). Then the dynamic-programming tracker at that tempo.
        start_bpm = global_tempo(onset_envelope=self.onset_envelope, sr=self.sr, hop_length=ONSET_HOP)
        if not np.isfinite(start_bpm):
            return np.nan, np.zeros(0)
        _, beats = librosa.beat.beat_track(onset_envelope=self.onset_envelope, sr=self.sr,
                                           hop_length=ONSET_HOP, bpm=start_bpm, units="time")
        tempo = start_bpm
        if len(beats) >= 4:
            # The autocorrelation tempo is quantised to one lag (2-4 % at
            # ONSET_HOP); a least-squares line through the beat times gives
            # the period to a fraction of a frame.
            slope = np.polyfit(np.arange(len(beats)), beats, 1)[0]
            if slope > 0:
                tempo = 60.0 / slope
        return float(tempo), np.asarray(beats)

    @property
    def tempo_bpm(self) -> float:
        return self._beat_track[0]

    @property
    def beats(self) -> np.ndarray:
        return self._beat_track[1]

    def frames_to_time(self, frames, *, hop: int = HOP) -> np.ndarray:
        return np.asarray(frames) * hop / self.sr


#: Log-normal tempo prior of :func:`global_tempo` (librosa's defaults).
TEMPO_PRIOR_BPM, TEMPO_PRIOR_OCTAVES = 120.0, 1.0


def global_tempo(*, onset_envelope: np.ndarray, sr: int = SR, hop_length: int = ONSET_HOP,
                 fmin_bpm: float = 40.0, fmax_bpm: float = 240.0) -> float:
    """Tempo of a whole clip from the autocorrelation of its onset envelope.

    ``T = 60 / (lag* hop / sr)`` with ``lag* = argmax_l A(l) w(l)``, ``A`` the
    autocorrelation of the onset envelope (mean removed) and ``w`` a
    log-normal prior over BPM centred on 120 with one octave of spread, the
    weighting of librosa.feature.tempo (Ellis 2007), which this equals for a
    single window covering the clip. The peak is refined by parabolic
    interpolation over the neighbouring lags.

    Parameters
    ----------
    onset_envelope : np.ndarray, shape (n_frames,)

    Returns
    -------
    tempo : float
        BPM, NaN if the envelope is flat (no onsets).

    Notebook: notebooks/01_features.ipynb
    """
    import librosa

    env = np.asarray(onset_envelope, dtype=float)
    env = env - env.mean()
    ac = librosa.autocorrelate(env)
    if len(ac) < 3 or ac[0] <= 0:
        return np.nan
    lags = np.arange(1, len(ac))
    bpm = 60.0 * sr / (hop_length * lags)
    valid = (bpm >= fmin_bpm) & (bpm <= fmax_bpm)
    if not valid.any():
        return np.nan
    prior = np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)
    score = np.where(valid, ac[1:] * prior, -np.inf)
    k = int(np.argmax(score))
    if score[k] <= 0:
        return np.nan
    lag = float(lags[k])
    if 0 < k < len(score) - 1 and np.isfinite(score[k - 1]) and np.isfinite(score[k + 1]):
        left, mid, right = score[k - 1], score[k], score[k + 1]
        denom = left - 2 * mid + right
        if denom < 0:
            lag += float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))
    return 60.0 * sr / (hop_length * lag)


def analyse(y: np.ndarray, *, sr: int = SR) -> Analysis:
    """Wrap ``y`` in an :class:`Analysis` that the families share.

    Notebook: notebooks/01_features.ipynb
    """
    return Analysis(y, sr=sr)


def _as_analysis(y, sr, analysis) -> Analysis:
    if analysis is not None:
        return analysis
    if y is None:
        raise ParameterError("give the signal y=... or a shared analysis=...")
    return Analysis(y, sr=sr)


def _undefined(names: Iterable[str], reason: str, reasons: list | None) -> dict[str, float]:
    if reasons is not None:
        reasons.append(reason)
    return {name: np.nan for name in names}


def _entropy(p: np.ndarray) -> float:
    p = np.asarray(p, dtype=float)
    total = p.sum()
    if not np.isfinite(total) or total <= 0:
        return np.nan
    p = p[p > 0] / total
    return float(-(p * np.log2(p)).sum())


# ----------------------------------------------------------------------------
# Chroma and key
# ----------------------------------------------------------------------------


def key_correlations(chroma_mean: np.ndarray) -> np.ndarray:
    """Pearson correlation of a chroma vector with each of the 24 key profiles.

    ``r_k = corr(c, p_k)`` with ``p_k`` the Krumhansl-Kessler profile rotated
    to tonic ``k mod 12`` (major for k < 12, minor from 12), the
    Krumhansl-Schmuckler key-finding algorithm (Krumhansl 1990, ch. 4).

    Parameters
    ----------
    chroma_mean : np.ndarray, shape (12,)

    Returns
    -------
    r : np.ndarray, shape (24,)
        NaN where the chroma is constant (no pitch information).

    Notebook: notebooks/01_features.ipynb
    """
    c = np.asarray(chroma_mean, dtype=float)
    if c.shape != (12,):
        raise ParameterError(f"chroma_mean must have shape (12,), got {c.shape}")
    c = c - c.mean()
    norm = np.linalg.norm(c)
    if norm == 0 or not np.isfinite(norm):
        return np.full(24, np.nan)
    profiles = key_profiles()
    profiles = profiles - profiles.mean(axis=1, keepdims=True)
    return profiles @ c / (np.linalg.norm(profiles, axis=1) * norm)


def key_features(y: np.ndarray | None = None, *, sr: int = SR, analysis: Analysis | None = None,
                 reasons: list | None = None) -> dict[str, float]:
    """Key and mode by Krumhansl-Kessler profile correlation.

    The mean CQT chroma ``c`` is correlated with the 24 rotated probe-tone
    profiles (:func:`key_correlations`); the best one is the key.

    Returns
    -------
    dict
        ``key_tonic`` (0 = C .. 11 = B), ``key_minor`` (1 if the best key is
        minor), ``key_clarity = max_k r_k`` (how well any key fits, in [-1, 1]),
        ``key_minorness = max_minor r - max_major r`` (> 0: sounds minor).

    References
    ----------
    Krumhansl, C. L., & Kessler, E. J. (1982). Tracing the dynamic changes in
    perceived tonal organization. Psychological Review, 89(4), 334-368.

    Notebook: notebooks/01_features.ipynb
    """
    a = _as_analysis(y, sr, analysis)
    names = ("key_tonic", "key_minor", "key_clarity", "key_minorness")
    if a.silent:
        return _undefined(names, "key: silent clip", reasons)
    r = key_correlations(a.chroma.mean(axis=1))
    if not np.isfinite(r).all():
        return _undefined(names, "key: flat chroma, no pitch content", reasons)
    best = int(np.argmax(r))
    return {"key_tonic": float(best % 12), "key_minor": float(best >= 12), "key_clarity": float(r[best]),
            "key_minorness": float(r[12:].max() - r[:12].max())}


def chroma_features(y: np.ndarray | None = None, *, sr: int = SR, analysis: Analysis | None = None,
                    reasons: list | None = None) -> dict[str, float]:
    """Chroma statistics: pitch-class profile, its entropy, its key-relative form.

    ``chroma_<pc> = mean_t c[pc, t]`` with ``c`` the CQT chroma (each frame
    max-normalised, Müller 2015, sec. 3.1.2); ``chroma_entropy = -sum_p q_p
    log2 q_p`` of the normalised mean chroma ``q`` (0 bits: one pitch class,
    log2 12 = 3.58 bits: all equal); ``chroma_rel_<degree>`` is the mean
    chroma rotated so that the estimated tonic (:func:`key_features`) is
    degree ``1``: the profile in scale degrees, comparable across transposed
    clips (``chroma_rel_b3`` vs ``chroma_rel_3`` is the minor vs major third).

    References
    ----------
    Müller, M. (2015). Fundamentals of Music Processing. Springer, ch. 3.
    Schörkhuber, C., & Klapuri, A. (2010). Constant-Q transform toolbox for
    music processing. SMC.

    Notebook: notebooks/01_features.ipynb
    """
    a = _as_analysis(y, sr, analysis)
    names = ([f"chroma_{pc}" for pc in PITCH_CLASSES] + ["chroma_entropy"]
             + [f"chroma_rel_{d}" for d in DEGREES])
    if a.silent:
        return _undefined(names, "chroma: silent clip", reasons)
    mean = a.chroma.mean(axis=1)
    out = {f"chroma_{pc}": float(v) for pc, v in zip(PITCH_CLASSES, mean)}
    out["chroma_entropy"] = _entropy(mean)
    r = key_correlations(mean)
    if np.isfinite(r).all():
        tonic = int(np.argmax(r)) % 12
        rel = np.roll(mean, -tonic)
        out.update({f"chroma_rel_{d}": float(v) for d, v in zip(DEGREES, rel)})
    else:
        out.update(_undefined([f"chroma_rel_{d}" for d in DEGREES], "chroma: no tonic (flat chroma)", reasons))
    return out


# ----------------------------------------------------------------------------
# Chords
# ----------------------------------------------------------------------------


def chord_templates() -> np.ndarray:
    """Binary triad templates, rows :data:`CHORD_LABELS` (the last, ``N``, flat).

    Returns
    -------
    templates : np.ndarray, shape (25, 12)
        Unit-norm rows: root, third (4 or 3 semitones), fifth.

    Notebook: notebooks/01_features.ipynb
    """
    rows = []
    for third in (4, 3):
        for root in range(12):
            t = np.zeros(12)
            t[[root, (root + third) % 12, (root + 7) % 12]] = 1
            rows.append(t)
    rows.append(np.ones(12))
    templates = np.array(rows)
    return templates / np.linalg.norm(templates, axis=1, keepdims=True)


#: Sharpness of the emission softmax over cosine similarities, and the
#: probability of staying on a chord from one beat to the next.
CHORD_BETA = 25.0
CHORD_SELF_LOOP = 0.6
#: Cosine similarity credited to ``N`` on a sounding beat (below a clean triad's ~0.9).
CHORD_N_SIMILARITY = 0.55


def chord_sequence(y: np.ndarray | None = None, *, sr: int = SR, analysis: Analysis | None = None,
                   self_loop: float = CHORD_SELF_LOOP, beta: float = CHORD_BETA) -> pd.DataFrame:
    """Chord labels over beat-synchronous chroma, smoothed by an HMM.

    1. The chroma is averaged between consecutive beats (librosa.util.sync;
       segment bounds: 0, the beats, the end of the clip).
    2. Emission: ``P(chord k | segment) ∝ exp(beta * cos(c, t_k))`` over the
       24 triad templates ``t_k`` and no-chord (similarity
       :data:`CHORD_N_SIMILARITY` on sounding segments, 1 on silent ones).
    3. Viterbi decoding (librosa.sequence.viterbi) with a transition matrix
       that stays on the chord with probability ``self_loop`` and moves to
       any other uniformly (librosa.sequence.transition_loop).

    Returns
    -------
    chords : pandas.DataFrame, shape (n_segments, 3)
        ``start_s, end_s, label`` with labels from :data:`CHORD_LABELS`.

    References
    ----------
    Fujishima, T. (1999). Realtime chord recognition of musical sound. ICMC.
    Müller (2015), Fundamentals of Music Processing, sec. 5.2-5.3 (HMM chord recognition).

    Notebook: notebooks/01_features.ipynb
    """
    import librosa

    a = _as_analysis(y, sr, analysis)
    n_frames = a.chroma.shape[1]
    if a.silent:
        return pd.DataFrame({"start_s": [0.0], "end_s": [a.duration], "label": ["N"]})
    beat_frames = np.round(np.asarray(a.beats) * a.sr / HOP).astype(int)
    beat_frames = beat_frames[(beat_frames > 0) & (beat_frames < n_frames)]
    if len(beat_frames) < 2:
        # No pulse: fall back to half-second segments so chords still get labels.
        beat_frames = np.arange(0, n_frames, max(1, int(round(0.5 * a.sr / HOP))))[1:]
    bounds = librosa.util.fix_frames(beat_frames, x_min=0, x_max=n_frames)
    synced = librosa.util.sync(a.chroma, bounds, aggregate=np.mean)  # (12, n_segments)
    energy = librosa.util.sync(a.rms[None, :n_frames], bounds, aggregate=np.mean)[0]
    unit = synced / np.maximum(np.linalg.norm(synced, axis=0, keepdims=True), 1e-12)
    similarity = chord_templates()[:24] @ unit  # (24, n_segments)
    silent = energy < SILENCE_RMS
    n_sim = np.where(silent, 1.0, CHORD_N_SIMILARITY)[None, :]
    similarity = np.vstack([np.where(silent[None, :], 0.0, similarity), n_sim])
    prob = np.exp(beta * (similarity - similarity.max(axis=0, keepdims=True)))
    prob /= prob.sum(axis=0, keepdims=True)
    transition = librosa.sequence.transition_loop(len(CHORD_LABELS), self_loop)
    states = librosa.sequence.viterbi(prob, transition)
    times = a.frames_to_time(bounds)
    labels = [CHORD_LABELS[s] for s in states]
    return pd.DataFrame({"start_s": times[:-1], "end_s": times[1:], "label": labels})


def encode_chords(chords: pd.DataFrame) -> str:
    """Chord table as one text cell ``"0.00 0.46 C:maj|0.46 ..."`` for the CSV."""
    return "|".join(f"{s:.2f} {e:.2f} {lab}" for s, e, lab in chords[["start_s", "end_s", "label"]].itertuples(index=False))


def decode_chords(text: str) -> list[tuple[float, float, str]]:
    """Inverse of :func:`encode_chords`: ``[(start_s, end_s, label), ...]``."""
    if not isinstance(text, str) or not text:
        return []
    out = []
    for item in text.split("|"):
        s, e, lab = item.split(" ")
        out.append((float(s), float(e), lab))
    return out


def chord_features(y: np.ndarray | None = None, *, sr: int = SR, analysis: Analysis | None = None,
                   reasons: list | None = None) -> dict[str, Any]:
    """Summary of the chord sequence (:func:`chord_sequence`).

    ``chords_major_share`` and ``chords_minor_share``: fraction of the clip's
    time under a major / minor triad; ``chords_change_rate``: chord changes
    per second; ``chords_n_distinct``: number of different chords;
    ``chord_sequence``: the decoded sequence as text (not a model feature; the
    validation reads it).

    Notebook: notebooks/01_features.ipynb
    """
    a = _as_analysis(y, sr, analysis)
    names = ("chords_major_share", "chords_minor_share", "chords_change_rate", "chords_n_distinct")
    if a.silent:
        out = _undefined(names, "chords: silent clip", reasons)
        out["chord_sequence"] = ""
        return out
    seq = chord_sequence(analysis=a)
    length = (seq["end_s"] - seq["start_s"]).to_numpy()
    total = max(length.sum(), 1e-9)
    major = seq["label"].str.endswith(":maj").to_numpy()
    minor = seq["label"].str.endswith(":min").to_numpy()
    changes = int((seq["label"] != seq["label"].shift()).sum()) - 1
    sounding = seq.loc[seq["label"] != "N", "label"]
    return {"chords_major_share": float(length[major].sum() / total),
            "chords_minor_share": float(length[minor].sum() / total),
            "chords_change_rate": float(changes / a.duration),
            "chords_n_distinct": float(sounding.nunique()),
            "chord_sequence": encode_chords(seq)}


# ----------------------------------------------------------------------------
# Mid-level perceptual descriptors (Aljanaki & Soleymani 2018), signal proxies
# ----------------------------------------------------------------------------

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
    import librosa

    a = _as_analysis(y, sr, analysis)
    names = ("ml_melodiousness", "ml_articulation", "ml_rhythmic_stability", "ml_rhythmic_complexity",
             "ml_dissonance", "ml_tonal_stability", "ml_minorness")
    if a.silent:
        return _undefined(names, "midlevel: silent clip", reasons)
    out: dict[str, float] = {}
    sounding = a.rms > max(SILENCE_RMS, 0.05 * a.rms.max())
    n = min(a.cqt.shape[1], len(sounding))
    cqt, sounding_cqt = a.cqt[:, :n], sounding[:n]
    salience = cqt.max(axis=0) / np.maximum(cqt.sum(axis=0), 1e-12)
    out["ml_melodiousness"] = float(salience[sounding_cqt].mean())

    # Articulation over beat intervals of the pitched band's energy (frames, hop HOP).
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
        out["ml_articulation"] = 1.0 - float(np.mean(shares)) if shares else np.nan
    else:
        out["ml_articulation"] = np.nan
    if not np.isfinite(out["ml_articulation"]) and reasons is not None:
        reasons.append("ml_articulation: fewer than two onsets")

    # Pulse clarity.
    env = a.onset_envelope - a.onset_envelope.mean()
    ac = librosa.autocorrelate(env)
    fps = a.sr / ONSET_HOP
    lo, hi = int(0.25 * fps), min(int(1.5 * fps), len(ac) - 1)
    if ac[0] > 0 and hi > lo:
        out["ml_rhythmic_stability"] = float(np.max(ac[lo:hi]) / ac[0])
    else:
        out["ml_rhythmic_stability"] = np.nan
        if reasons is not None:
            reasons.append("ml_rhythmic_stability: flat onset envelope")

    # IOI entropy in beats.
    beat_s = 60.0 / a.tempo_bpm if np.isfinite(a.tempo_bpm) and a.tempo_bpm > 0 else np.nan
    if len(a.onsets) >= 3 and np.isfinite(beat_s):
        ioi = np.diff(a.onsets) / beat_s
        hist, _ = np.histogram(ioi, bins=32, range=(0, 4))
        out["ml_rhythmic_complexity"] = _entropy(hist) / np.log2(32) if hist.sum() else np.nan
    else:
        out["ml_rhythmic_complexity"] = np.nan
    if not np.isfinite(out["ml_rhythmic_complexity"]) and reasons is not None:
        reasons.append("ml_rhythmic_complexity: fewer than three onsets or no beat")

    # Roughness over spectral peaks, every second frame (adjacent frames overlap by 3/4).
    stft = a.stft[:, ::2]
    loud = sounding[::2][:stft.shape[1]]
    freqs, amps = spectral_peaks(stft[:, loud], a.freqs)
    out["ml_dissonance"] = float(roughness(freqs, amps).mean()) if loud.any() else np.nan

    # Tonal stability and minorness from the chroma.
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
        out["ml_tonal_stability"] = float(np.mean(corrs)) if corrs else np.nan
        tonic = best % 12
        m3, M3 = mean[(tonic + 3) % 12], mean[(tonic + 4) % 12]
        out["ml_minorness"] = float((m3 - M3) / (m3 + M3)) if m3 + M3 > 0 else np.nan
    else:
        out["ml_tonal_stability"] = out["ml_minorness"] = np.nan
        if reasons is not None:
            reasons.append("ml_tonal_stability, ml_minorness: flat chroma, no tonic")
    return out


# ----------------------------------------------------------------------------
# Low-level context
# ----------------------------------------------------------------------------


def lowlevel_features(y: np.ndarray | None = None, *, sr: int = SR, analysis: Analysis | None = None,
                      reasons: list | None = None) -> dict[str, float]:
    """Low-level context: tempo, onset rate, loudness, brightness, register.

    ``tempo_bpm``: beat tracker (Ellis 2007, librosa.beat.beat_track) on the
    spectral-flux onset envelope, refined by a least-squares line through the
    beat times (period = slope); ``onset_rate``: onsets per second;
    ``rms_db = 20 log10(mean_t RMS_t)`` (dBFS); ``spectral_centroid_hz``:
    energy-weighted mean over frames of ``sum_k f_k |X_k| / sum_k |X_k|``;
    ``spectral_rolloff_hz``: median over frames of the frequency below which
    85 % of the magnitude lies; ``salient_pitch_midi``: median over sounding
    frames of the MIDI pitch of the strongest CQT bin above C3 (the loudest
    pitch: often a chord tone or a partial, a poor register measure).

    Proxies of the cues of the synthetic set's label rule (chapter 1,
    ground-truth recovery), each the audio measure of one musical cue:

    ``rms_peak_db = 20 log10 q95_t(RMS_t)`` (dBFS): how loud the clip gets,
    the level of its struck notes (velocity), not lowered by rests or short
    notes as the mean ``rms_db`` is;
    ``melody_pitch_midi``: the register of the notes that start, the melody's
    (chords move once per bar, the melody on every beat or eighth). The
    positive change of the CQT magnitude from frame to frame,
    ``D[p, t] = max(0, C[p, t+1] - C[p, t])``, is summed over harmonics,
    ``S[p, t] = D[p] + D[p+12] / 2 + D[p+19] / 3`` (fundamental, octave,
    twelfth; Klapuri 2006's harmonic summation), for pitches G3..B6; in the
    quarter of frames where the strongest new note is strongest (note starts),
    its pitch ``argmax_p S[p, t]`` is averaged, weighted by ``max_p S[p, t]``;
    ``spectral_centroid_pitched_hz``: the energy-weighted spectral centroid
    over 100-5000 Hz only, the instruments' timbre without the hi-hat's
    noise above (whose density follows the tempo) and the kick below.

    References
    ----------
    Ellis, D. P. W. (2007). Beat tracking by dynamic programming. JNMR 36(1).
    Peeters, G. (2004). A large set of audio features for sound description. IRCAM.
    Klapuri, A. (2006). Multiple fundamental frequency estimation by summing
    harmonic amplitudes. ISMIR.

    Notebook: notebooks/01_features.ipynb
    """
    import librosa

    a = _as_analysis(y, sr, analysis)
    names = ("tempo_bpm", "onset_rate", "rms_db", "spectral_centroid_hz", "spectral_rolloff_hz",
             "salient_pitch_midi", "rms_peak_db", "melody_pitch_midi", "spectral_centroid_pitched_hz")
    if a.silent:
        return _undefined(names, "lowlevel: silent clip", reasons)
    out: dict[str, float] = {}
    if len(a.onsets) >= 2 and len(a.beats) >= 2:
        out["tempo_bpm"] = float(a.tempo_bpm)
    else:
        out["tempo_bpm"] = np.nan
        if reasons is not None:
            reasons.append("tempo_bpm: no pulse (fewer than two onsets or beats)")
    out["onset_rate"] = float(len(a.onsets) / a.duration)
    out["rms_db"] = float(20 * np.log10(max(a.rms.mean(), 1e-10)))
    centroid = librosa.feature.spectral_centroid(S=a.stft, freq=a.freqs)[0]
    weight = a.rms[:len(centroid)]
    out["spectral_centroid_hz"] = float(np.sum(centroid * weight) / np.sum(weight))
    rolloff = librosa.feature.spectral_rolloff(S=a.stft, freq=a.freqs, roll_percent=0.85)[0]
    sounding = a.rms > max(SILENCE_RMS, 0.05 * a.rms.max())
    out["spectral_rolloff_hz"] = float(np.median(rolloff[sounding[:len(rolloff)]]))
    upper = a.cqt[48 - CQT_FMIN_MIDI:]  # from C3 up
    n = min(upper.shape[1], len(sounding))
    top = np.argmax(upper[:, :n], axis=0) + 48
    out["salient_pitch_midi"] = float(np.median(top[sounding[:n]]))
    out["rms_peak_db"] = float(20 * np.log10(max(np.quantile(a.rms, 0.95), 1e-10)))
    out["melody_pitch_midi"] = melody_pitch(a.cqt)
    band = (a.freqs >= PITCHED_BAND_HZ[0]) & (a.freqs < PITCHED_BAND_HZ[1])
    spec = a.stft[band]
    centroid = (a.freqs[band, None] * spec).sum(axis=0) / np.maximum(spec.sum(axis=0), 1e-12)
    out["spectral_centroid_pitched_hz"] = float(np.sum(centroid * weight) / np.sum(weight))
    return out


#: Band (Hz) of :func:`lowlevel_features`' ``spectral_centroid_pitched_hz``.
PITCHED_BAND_HZ = (100.0, 5000.0)
#: Pitch range (MIDI) of :func:`melody_pitch`: G3 .. B6.
MELODY_RANGE_MIDI = (55, 96)


def melody_pitch(cqt: np.ndarray, *, note_start_share: float = 0.25) -> float:
    """Mean MIDI pitch of the strongest note starts: the register of the moving voice.

    ``D = max(0, diff_t C)`` (new energy per CQT bin); harmonic summation
    ``S[p] = D[p] + D[p + 12] / 2 + D[p + 19] / 3`` over pitches
    :data:`MELODY_RANGE_MIDI`; over the ``note_start_share`` of frames with the
    largest ``max_p S``, the mean of ``argmax_p S`` weighted by ``max_p S``.
    Written by hand because librosa's ``salience`` works on a linear STFT
    grid and costs about ten times as much here; pyin tracks one voice and
    costs about 1 s per 10 s clip.

    Parameters
    ----------
    cqt : np.ndarray, shape (CQT_BINS, n_frames)
        Magnitude CQT from C1, 12 bins per octave (:class:`Analysis`).

    Returns
    -------
    pitch : float
        MIDI pitch (fractional: a weighted mean), NaN if nothing starts.

    Notebook: notebooks/01_features.ipynb
    """
    lo, hi = (m - CQT_FMIN_MIDI for m in MELODY_RANGE_MIDI)
    new = np.maximum(0.0, np.diff(np.asarray(cqt, dtype=float), axis=1))
    new = np.vstack([new, np.zeros((max(0, hi + 19 - new.shape[0]), new.shape[1]))])
    salience = new[lo:hi] + new[lo + 12:hi + 12] / 2 + new[lo + 19:hi + 19] / 3
    strength = salience.max(axis=0)
    if strength.size == 0 or strength.max() <= 0:
        return np.nan
    starts = strength > np.quantile(strength, 1 - note_start_share)
    if not starts.any():
        return np.nan
    pitch = np.argmax(salience, axis=0) + MELODY_RANGE_MIDI[0]
    return float(np.average(pitch[starts], weights=strength[starts]))


# ----------------------------------------------------------------------------
# Symbolic features from the score
# ----------------------------------------------------------------------------


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
        return _undefined(names, "symbolic: no score", reasons)
    import pretty_midi

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


# ----------------------------------------------------------------------------
# One clip, a dataset
# ----------------------------------------------------------------------------

_AUDIO_FUNCTIONS = {
    "chroma": chroma_features,
    "key": key_features,
    "chords": chord_features,
    "midlevel": midlevel_features,
    "lowlevel": lowlevel_features,
}


def _check_families(families) -> tuple[str, ...]:
    if isinstance(families, str):
        families = (families,)
    families = tuple(families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ParameterError(f"unknown feature families {unknown or families}; expected some of {FAMILIES}")
    return tuple(f for f in FAMILIES if f in families)


def clip_features(y: np.ndarray | None = None, *, sr: int = SR, families: Iterable[str] = FAMILIES,
                  midi_path=None, truth_path=None) -> dict[str, Any]:
    """All requested families for one clip, sharing one :class:`Analysis`.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,), optional
        The clip (None if only ``symbolic`` is asked for).
    families : iterable of str
        Some of :data:`FAMILIES`.
    midi_path, truth_path : path, optional
        The clip's score and truth file (``symbolic``).

    Returns
    -------
    dict
        Feature name -> value, plus ``nan_reasons`` ("; "-joined, "" if none).

    Notebook: notebooks/01_features.ipynb
    """
    families = _check_families(families)
    reasons: list[str] = []
    out: dict[str, Any] = {}
    audio = [f for f in families if f in _AUDIO_FUNCTIONS]
    if audio:
        a = analyse(y, sr=sr)
        for family in audio:
            out.update(_AUDIO_FUNCTIONS[family](analysis=a, reasons=reasons))
    if "symbolic" in families:
        out.update(symbolic_features(midi_path=midi_path, truth_path=truth_path, reasons=reasons))
    out["nan_reasons"] = "; ".join(reasons)
    return out


def _columns(families: tuple[str, ...]) -> list[str]:
    """Column names of the requested families, in order (from a silent clip)."""
    row = clip_features(np.zeros(SR, dtype=np.float32), families=families)
    return [c for c in row if c != "nan_reasons"]


def _one_clip(row: dict, families: tuple[str, ...], columns: list[str]) -> dict[str, Any]:
    from . import audio

    numba_cache.prepare()  # a no-op once the parent compiled; a Dask worker may have its own disk
    out: dict[str, Any] = {"clip_id": row["clip_id"]}
    try:
        # Corpora cut long files into 10 s windows: offset_s says where this one starts.
        offset = row.get("offset_s")
        offset = 0.0 if offset is None or offset != offset else float(offset)
        y = audio.load(row["path"], offset=offset) if any(f in _AUDIO_FUNCTIONS for f in families) else None
        out.update(clip_features(y, families=families, midi_path=row.get("midi_path"),
                                 truth_path=row.get("truth_path")))
        out["status"] = "ok"
    except audio.AudioError as err:
        out.update({c: np.nan for c in columns})
        out["nan_reasons"] = f"unreadable audio: {err.reason}"
        out["status"] = "rejected"
    except Exception as err:  # noqa: BLE001 - one bad clip must not stop a dataset
        out.update({c: np.nan for c in columns})
        out["nan_reasons"] = f"feature extraction failed: {type(err).__name__}: {err}"
        out["status"] = "rejected"
    return out


def _content_key(clips: pd.DataFrame) -> list[list[str]]:
    """``[clip_id, sha256 of the audio file, offset_s]`` per clip: the cache's content hash
    (the offset tells apart the 10 s windows a corpus cuts from one long file)."""
    key = []
    offsets = clips["offset_s"] if "offset_s" in clips.columns else pd.Series(0.0, index=clips.index)
    for (clip_id, path), offset in zip(clips[["clip_id", "path"]].itertuples(index=False), offsets):
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        except OSError:
            digest = "missing"
        key.append([str(clip_id), digest, 0.0 if offset != offset else float(offset)])
    return key


def extract(dataset, *, families: Iterable[str] = FAMILIES, n_jobs: int = 2, cache: bool = True,
            progress: bool = True) -> pd.DataFrame:
    """Extract feature families for every clip of ``dataset``, in parallel, cached.

    Parameters
    ----------
    dataset : mer.data.Dataset or pandas.DataFrame
        The clips (columns ``clip_id, path``, optionally ``midi_path,
        truth_path`` for the symbolic family).
    families : iterable of str
        Some of :data:`FAMILIES` (default all).
    n_jobs : int
        joblib workers (processes). 1 runs in this process.
    cache : bool
        Read/write the table at ``mer.store.artefact_path("features", ...)``,
        keyed by the audio files' content, the families and the code.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    features : pandas.DataFrame, shape (n_clips, n_features + 3)
        ``clip_id``, the feature columns, ``status`` (``"ok"`` or
        ``"rejected"``: the file could not be read, every feature NaN) and
        ``nan_reasons`` (why any feature of the row is NaN; "" if none).
        A corrupt file is logged and reported in its row; the others go on.

    Notebook: notebooks/01_features.ipynb
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    families = _check_families(families)
    if n_jobs < 1:
        raise ParameterError(f"n_jobs must be >= 1, got {n_jobs!r}")
    clips = dataset.clips if hasattr(dataset, "clips") else pd.DataFrame(dataset)
    if clips.empty:
        raise ParameterError("extract: the dataset has no clips")
    params = {"families": list(families), "sr": SR, "n_fft": N_FFT, "hop": HOP, "clips": _content_key(clips)}
    path = store.artefact_path("features", params, ".csv", code=__name__)
    if cache and path.exists():
        log.info("features: cached %s", path)
        return _read_table(path)
    columns = _columns(families)
    rows = [r._asdict() if hasattr(r, "_asdict") else r for r in clips.to_dict("records")]
    numba_cache.prepare()  # compile librosa's kernels here, once, before workers load them
    worker = delayed(_one_clip)
    if n_jobs == 1:
        iterator = (_one_clip(r, families, columns) for r in rows)
    else:
        iterator = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=4)(
            worker(r, families, columns) for r in rows)
    results = list(tqdm(iterator, total=len(rows), desc="features", disable=not progress))
    table = pd.DataFrame(results)
    table = table[["clip_id", *columns, "status", "nan_reasons"]]
    table["nan_reasons"] = table["nan_reasons"].fillna("")
    for _, bad in table[table["status"] == "rejected"].iterrows():
        log.warning("features: clip %s rejected: %s", bad["clip_id"], bad["nan_reasons"])
    if cache:
        store.write_csv(path, table)
    return table


def _read_table(path) -> pd.DataFrame:
    table = pd.read_csv(path, keep_default_na=True, dtype={"clip_id": str})
    for column in ("nan_reasons", "chord_sequence"):
        if column in table:
            table[column] = table[column].astype(object).where(table[column].notna(), "")
    return table


def extractable_families(clips: pd.DataFrame) -> tuple[str, ...]:
    """The families :func:`extract` can compute for a dataset: all of them when
    the clips have scores (``midi_path``), the audio families otherwise.

    Notebook: notebooks/01_features.ipynb
    """
    return FAMILIES if "midi_path" in clips else AUDIO_FAMILIES


def feature_columns(features: pd.DataFrame, families: Iterable[str] | None = None) -> list[str]:
    """Numeric feature columns of ``features``, optionally of some families only.

    Notebook: notebooks/01_features.ipynb
    """
    prefixes = {"chroma": ("chroma_",), "key": ("key_",), "chords": ("chords_",), "midlevel": ("ml_",),
                "lowlevel": ("tempo_bpm", "onset_rate", "rms_db", "rms_peak_db", "spectral_", "salient_pitch",
                             "melody_pitch"),
                "symbolic": ("sym_",)}
    wanted = _check_families(families) if families is not None else FAMILIES
    keep = tuple(p for f in wanted for p in prefixes[f])
    return [c for c in features.columns
            if c.startswith(keep) and pd.api.types.is_numeric_dtype(features[c])]


# ----------------------------------------------------------------------------
# Validation against the synthetic set's truth
# ----------------------------------------------------------------------------

#: Tempo tolerance of the validation (relative).
TEMPO_TOLERANCE = 0.04


def chord_frame_accuracy(estimated, reference, *, duration: float, rate: float = 10.0) -> float:
    """Share of a ``rate``-Hz grid on which estimated and reference chords agree.

    Both are lists of ``(start_s, end_s, label)`` with labels ``<root>:maj|min``
    or ``N``; a frame counts when root and quality agree (mir_eval's
    ``majmin`` comparison, written here because mir_eval is not a dependency).
    Frames where the reference has no chord, or a chord outside the major /
    minor vocabulary (the open fifths ``X:5`` of the windowed clips), are
    left out, as mir_eval's ``majmin`` does.

    Notebook: notebooks/01_features.ipynb
    """
    grid = (np.arange(int(round(duration * rate))) + 0.5) / rate

    def sample(segments):
        labels = np.full(len(grid), "N", dtype=object)
        for start, end, label in segments:
            labels[(grid >= start) & (grid < end)] = _normalise_chord(label)
        return labels

    est, ref = sample(estimated), sample(reference)
    scored = (ref != "N") & (ref != "X")
    return float((est[scored] == ref[scored]).mean()) if scored.any() else np.nan


_ENHARMONIC = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}


def _normalise_chord(label: str) -> str:
    if label in ("N", "X", "", None):
        return "N"
    root, _, quality = str(label).partition(":")
    root = _ENHARMONIC.get(root, root)
    if quality in ("", "maj") or quality.startswith("maj"):
        return f"{root}:maj"
    if quality.startswith("min"):
        return f"{root}:min"
    return "X"  # outside the maj/min vocabulary (e.g. an open fifth "C:5"): not scored


def validate(dataset, features: pd.DataFrame) -> pd.DataFrame:
    """Compare the extractors with the synthetic set's truth, clip by clip.

    Parameters
    ----------
    dataset : mer.data.Dataset
        With ``truth_path`` (and ``mode``, ``tempo_bpm``) columns.
    features : pandas.DataFrame
        From :func:`extract` with the ``key``, ``chords`` and ``lowlevel`` families.

    Returns
    -------
    per_clip : pandas.DataFrame
        ``clip_id, mode_true, mode_est, mode_correct, tempo_true, tempo_est,
        tempo_ratio, tempo_correct`` (within :data:`TEMPO_TOLERANCE`),
        ``tempo_octave_error`` (within tolerance of 1/2, 2, 1/3 or 3 times the
        truth), ``chord_frame_accuracy`` (:func:`chord_frame_accuracy`).
        :func:`validation_summary` turns it into the chapter's table.

    Notebook: notebooks/01_features.ipynb
    """
    clips = dataset.clips if hasattr(dataset, "clips") else dataset
    if "truth_path" not in clips:
        raise ParameterError("validate needs a dataset with truth files (the synthetic set)")
    merged = clips.merge(features, on="clip_id", how="inner", suffixes=("", "_est"))
    merged = merged[merged["status"] == "ok"]
    rows = []
    for r in merged.to_dict("records"):
        truth = json.loads(Path(r["truth_path"]).read_text())
        key = truth.get("key", "")
        mode_true = "minor" if ":min" in key else "major"
        tempo_true = float(truth.get("tempo_bpm", np.nan))
        tempo_est = r.get("tempo_bpm_est", r.get("tempo_bpm"))
        ratio = tempo_est / tempo_true if tempo_true else np.nan
        octave = any(abs(ratio / m - 1) <= TEMPO_TOLERANCE for m in (0.5, 2.0, 1 / 3, 3.0))
        duration = float(truth.get("duration_s", 10.0))
        chords = chord_frame_accuracy(decode_chords(r.get("chord_sequence", "")), truth.get("chords", []),
                                      duration=duration)
        rows.append({"clip_id": r["clip_id"], "mode_true": mode_true,
                     "mode_est": "minor" if r.get("key_minor") == 1 else "major",
                     "tonic_true": _tonic(key), "tonic_est": r.get("key_tonic"),
                     "tempo_true": tempo_true, "tempo_est": tempo_est, "tempo_ratio": ratio,
                     "tempo_correct": bool(abs(ratio - 1) <= TEMPO_TOLERANCE),
                     "tempo_octave_error": bool(octave), "chord_frame_accuracy": chords,
                     "windowed": bool(r.get("windowed", False))})
    per_clip = pd.DataFrame(rows)
    if not per_clip.empty:
        per_clip["mode_correct"] = per_clip["mode_true"] == per_clip["mode_est"]
    return per_clip


def _tonic(key: str) -> float:
    root = _ENHARMONIC.get(key.split(":")[0], key.split(":")[0]) if key else ""
    return float(PITCH_CLASSES.index(root)) if root in PITCH_CLASSES else np.nan


#: The extractor-validation targets of the chapter (and the tests).
VALIDATION_TARGETS = {"mode_accuracy": 0.90, "tempo_accuracy": 0.85, "chord_frame_accuracy": 0.70}


def validation_summary(per_clip: pd.DataFrame) -> pd.DataFrame:
    """The chapter's validation table: measured value, target, met, per quantity.

    ``mode_accuracy`` is measured on the clips whose score states the mode
    throughout (not ``windowed``): a windowed clip has thirds in a 2-3 s
    window only and open fifths elsewhere, so a whole-clip key estimate is
    at chance there by design; ``mode_accuracy_windowed`` and
    ``mode_accuracy_all`` show that part and the total.

    Returns
    -------
    pandas.DataFrame
        Rows ``mode_accuracy``, ``mode_accuracy_windowed``,
        ``mode_accuracy_all``, ``tempo_accuracy`` (within 4 %),
        ``tempo_octave_errors`` (share of clips off by a factor 2 or 3),
        ``chord_frame_accuracy`` (mean over clips); columns ``value, target,
        met, n_clips``.

    Notebook: notebooks/01_features.ipynb
    """
    full = ~per_clip["windowed"].astype(bool)
    values = {
        "mode_accuracy": per_clip.loc[full, "mode_correct"].mean(),
        "mode_accuracy_windowed": per_clip.loc[~full, "mode_correct"].mean(),
        "mode_accuracy_all": per_clip["mode_correct"].mean(),
        "tempo_accuracy": per_clip["tempo_correct"].mean(),
        "tempo_octave_errors": per_clip["tempo_octave_error"].mean(),
        "chord_frame_accuracy": per_clip["chord_frame_accuracy"].mean(),
    }
    counts = {"mode_accuracy": int(full.sum()), "mode_accuracy_windowed": int((~full).sum())}
    rows = []
    for name, value in values.items():
        target = VALIDATION_TARGETS.get(name, np.nan)
        rows.append({"quantity": name, "value": float(value), "target": target,
                     "met": bool(value >= target) if np.isfinite(target) else None,
                     "n_clips": counts.get(name, int(len(per_clip)))})
    return pd.DataFrame(rows).set_index("quantity")


# ----------------------------------------------------------------------------
# Speed
# ----------------------------------------------------------------------------


def benchmark(n_clips: int = 8, *, seed: int = 0) -> dict[str, float]:
    """Throughput of the full audio feature set on 10 s clips, one core.

    Clips are rendered with FluidSynth (TimGM6mb, random triads and a melody),
    so the measure does not depend on a dataset on disk. The first clip is a
    warm-up whose time, numba's JIT compilation mostly, is reported apart.

    Returns
    -------
    dict
        ``features_realtime_factor_per_core`` (audio seconds per second of one
        core, full feature set), ``features_clips_per_second``,
        ``features_chroma_cqt_realtime_factor`` (librosa.feature.chroma_cqt
        alone: the floor any chroma-based extractor pays),
        ``features_first_call_s`` (warm-up incl. numba compilation),
        ``features_n_clips``.

    Notebook: notebooks/01_features.ipynb (make bench)
    """
    import librosa

    clips = [render_test_clip(seed=seed + i) for i in range(n_clips + 1)]
    start = time.process_time()
    clip_features(clips[0], families=AUDIO_FAMILIES)
    first = time.process_time() - start
    # process_time: CPU seconds of this process, so the figure is per core
    # even when other jobs share the machine (BLAS threads would inflate it;
    # the extractors are single-threaded numpy/numba).
    start = time.process_time()
    for y in clips[1:]:
        clip_features(y, families=AUDIO_FAMILIES)
    full = time.process_time() - start
    librosa.feature.chroma_cqt(y=clips[0], sr=SR)
    start = time.process_time()
    for y in clips[1:]:
        librosa.feature.chroma_cqt(y=y, sr=SR)
    floor = time.process_time() - start
    audio_s = n_clips * len(clips[1]) / SR
    return {"features_realtime_factor_per_core": round(audio_s / full, 1),
            "features_clips_per_second": round(n_clips / full, 2),
            "features_chroma_cqt_realtime_factor": round(audio_s / floor, 1),
            "features_first_call_s": round(first, 2),
            "features_n_clips": n_clips}


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
    import pretty_midi

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
    sf2 = soundfont or str(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")
    y = pm.fluidsynth(fs=SR, synthesizer=sf2) if _has_synthesizer_kw() else pm.fluidsynth(fs=SR, sf2_path=sf2)
    n = int(round(duration * SR))
    y = np.pad(y, (0, max(0, n - len(y))))[:n]
    return (0.5 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


def _has_synthesizer_kw() -> bool:
    import inspect

    import pretty_midi

    return "synthesizer" in inspect.signature(pretty_midi.PrettyMIDI.fluidsynth).parameters


_NUMERALS = ("I", "bII", "II", "bIII", "III", "IV", "#IV", "V", "bVI", "VI", "bVII", "VII")


def chord_degrees(features: pd.DataFrame) -> pd.DataFrame:
    """Time spent on each chord as a Roman numeral relative to the estimated tonic.

    Upper case: major triad (``IV``), lower case: minor (``vi``); ``N``: no chord.

    Returns
    -------
    pandas.DataFrame
        ``clip_id, degree, seconds``, one row per clip and degree.

    Notebook: notebooks/01_features.ipynb
    """
    rows = []
    for clip_id, tonic, text in features[["clip_id", "key_tonic", "chord_sequence"]].itertuples(index=False):
        if not np.isfinite(tonic):
            continue
        for start, end, label in decode_chords(text):
            if label == "N":
                degree = "N"
            else:
                root, quality = label.split(":")
                numeral = _NUMERALS[(PITCH_CLASSES.index(root) - int(tonic)) % 12]
                degree = numeral if quality == "maj" else numeral.lower()
            rows.append({"clip_id": clip_id, "degree": degree, "seconds": end - start})
    table = pd.DataFrame(rows, columns=["clip_id", "degree", "seconds"])
    return table.groupby(["clip_id", "degree"], as_index=False)["seconds"].sum()
