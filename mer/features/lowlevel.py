"""The ``lowlevel`` family: tempo, onset rate, loudness, spectral centroid and rolloff, register.

Notebook: notebooks/01_features.ipynb
"""

from __future__ import annotations

import librosa
import numpy as np

from .analysis import CQT_FMIN_MIDI, SILENCE_RMS, SR, Analysis, as_analysis, undefined

#: Band (Hz) of :func:`lowlevel_features`' ``spectral_centroid_pitched_hz``.
PITCHED_BAND_HZ = (100.0, 5000.0)
#: Pitch range (MIDI) of :func:`melody_pitch`: G3 .. B6.
MELODY_RANGE_MIDI = (55, 96)


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
    a = as_analysis(y, sr, analysis)
    names = ("tempo_bpm", "onset_rate", "rms_db", "spectral_centroid_hz", "spectral_rolloff_hz",
             "salient_pitch_midi", "rms_peak_db", "melody_pitch_midi", "spectral_centroid_pitched_hz")
    if a.silent:
        return undefined(names, "lowlevel: silent clip", reasons)
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
        Magnitude CQT from C1, 12 bins per octave (:class:`mer.features.Analysis`).

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
