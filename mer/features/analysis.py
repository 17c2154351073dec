"""The shared analysis of one clip: its STFT, CQT, chroma, onsets and beats, computed once.

Every feature family reads a clip through one :class:`Analysis` (built by
:func:`analyse`), so the CQT and the STFT of a clip are computed once however
many families are extracted. This module also holds the settings every family
shares (sampling rate, FFT size, hops, the silence threshold) and the small
helpers the families use to report an undefined value.

Notebook: notebooks/01_features.ipynb
"""

from __future__ import annotations

from functools import cached_property
from typing import Iterable

import librosa
import numpy as np

from .. import ParameterError

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
        return np.abs(librosa.stft(self.y, n_fft=N_FFT, hop_length=HOP))

    @cached_property
    def freqs(self) -> np.ndarray:
        return np.fft.rfftfreq(N_FFT, d=1.0 / self.sr)

    @cached_property
    def rms(self) -> np.ndarray:
        # Parseval on the Hann-windowed frame (librosa.feature.rms does the same from S).
        return librosa.feature.rms(S=self.stft, frame_length=N_FFT)[0]

    @cached_property
    def cqt(self) -> np.ndarray:
        fmin = librosa.midi_to_hz(CQT_FMIN_MIDI)
        return np.abs(librosa.cqt(self.y, sr=self.sr, hop_length=HOP, fmin=fmin, n_bins=CQT_BINS,
                                  bins_per_octave=12))

    @cached_property
    def chroma(self) -> np.ndarray:
        # Folding the CQT we already have: chroma_cqt(C=...) skips a second CQT.
        return librosa.feature.chroma_cqt(C=self.cqt, sr=self.sr, hop_length=HOP,
                                          fmin=librosa.midi_to_hz(CQT_FMIN_MIDI), bins_per_octave=12)

    @cached_property
    def onset_envelope(self) -> np.ndarray:
        # A second, finer-hop STFT is cheap (a few ms); the mel spectrogram
        # from it feeds librosa's spectral-flux onset strength.
        spec = np.abs(librosa.stft(self.y, n_fft=1024, hop_length=ONSET_HOP)) ** 2
        mel = librosa.feature.melspectrogram(S=spec, sr=self.sr, n_mels=64)
        return librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=self.sr, hop_length=ONSET_HOP)

    @cached_property
    def onsets(self) -> np.ndarray:
        return librosa.onset.onset_detect(onset_envelope=self.onset_envelope, sr=self.sr,
                                          hop_length=ONSET_HOP, units="time")

    @cached_property
    def _beat_track(self) -> tuple[float, np.ndarray]:
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


def as_analysis(y: np.ndarray | None, sr: int, analysis: Analysis | None) -> Analysis:
    """The shared ``analysis`` if a family was given one, else a new :class:`Analysis` of ``y``.

    Every audio family takes either the signal or a shared analysis; this is
    how it gets the one it works on.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,), or None
        The clip, used when ``analysis`` is None.
    sr : int
        Its sampling rate in Hz.
    analysis : Analysis or None
        A shared analysis (returned as it is).

    Returns
    -------
    Analysis

    Notebook: notebooks/01_features.ipynb
    """
    if analysis is not None:
        return analysis
    if y is None:
        raise ParameterError("give the signal y=... or a shared analysis=...")
    return Analysis(y, sr=sr)


def undefined(names: Iterable[str], reason: str, reasons: list | None) -> dict[str, float]:
    """Every feature of ``names`` as NaN, with ``reason`` appended to ``reasons``.

    How a family answers a clip on which its features are undefined (a
    silent clip has no key) instead of raising.

    Parameters
    ----------
    names : iterable of str
        The feature names.
    reason : str
        Why they are undefined (``"key: silent clip"``).
    reasons : list of str or None
        The clip's list of reasons; None to record nothing.

    Returns
    -------
    dict
        name -> NaN.

    Notebook: notebooks/01_features.ipynb
    """
    if reasons is not None:
        reasons.append(reason)
    return {name: np.nan for name in names}


def entropy(p: np.ndarray) -> float:
    """Shannon entropy in bits of a histogram or unnormalised distribution.

    ``H = -sum_i q_i log2 q_i`` with ``q = p / sum(p)`` over the non-zero entries.

    Parameters
    ----------
    p : np.ndarray, shape (n,)
        Non-negative weights.

    Returns
    -------
    float
        Bits; NaN if ``p`` sums to zero or is not finite.

    Notebook: notebooks/01_features.ipynb
    """
    p = np.asarray(p, dtype=float)
    total = p.sum()
    if not np.isfinite(total) or total <= 0:
        return np.nan
    p = p[p > 0] / total
    return float(-(p * np.log2(p)).sum())
