"""Key profiles and the tonic of a clip: the key vocabulary, defined once.

Chapter 1 names a clip's key with the Krumhansl-Kessler profiles
(:func:`mer.features.key_features`); chapter 2's every-key ViT moves each
clip to a canonical key before the model sees it (:func:`mer.vit.train`'s
``canonicalise="tonic"``), and for that it needs a tonic estimate that
*follows a transposition*: the same score in another key must land on the
same canonical input.

Two choices decide how well the estimate follows (measured on the tonal
writing, 1,200 clips and one score in twelve keys x 16 scores; numbers in
issue 17's note):

- **The chroma.** librosa's ``chroma_cqt`` resolves every semitone down to
  the bass; a chroma folded from the ViT's own log-frequency rows (STFT of
  2,048 samples) smears everything below about 200 Hz, and the estimate then
  agreed between two transpositions of a score only 75 % of the time, against
  98 % from ``chroma_cqt``.
- **The profile.** The mode-free mean of the major and minor profiles (so the
  estimate cannot carry the mode, the label's main cue). The Albrecht &
  Shanahan (2013) corpus profiles weight the tonic and fifth less evenly than
  Krumhansl-Kessler's probe tones, which halves the confusions with the
  dominant.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import functools

import numpy as np

from . import ParameterError, audio, numba_cache, store

#: Sampling rate of the tonic chroma (the data contract's).
SR = 22050
#: Hop (samples) of the chroma frames averaged into one profile.
HOP = 512

#: Krumhansl-Kessler probe-tone profiles, C major and C minor (Krumhansl & Kessler 1982).
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
#: Albrecht & Shanahan (2013) corpus profiles, C major and C minor (pitch-class shares).
AS_MAJOR = np.array([.238, .006, .111, .006, .137, .094, .016, .214, .009, .080, .008, .081])
AS_MINOR = np.array([.220, .006, .104, .123, .019, .103, .012, .214, .062, .022, .061, .052])

#: Mode-free profiles for :func:`estimate_tonic`: the mean of a major and a minor profile.
PROFILES = {"albrecht-shanahan": (AS_MAJOR + AS_MINOR) / 2, "krumhansl-kessler": (KK_MAJOR + KK_MINOR) / 2}
#: The profile the every-key ViT canonicalises with.
DEFAULT_PROFILE = "albrecht-shanahan"

#: The twelve pitch classes from C, as chroma rows and MIDI pitch % 12 count them (sharps).
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: The same twelve as keys are usually named (flats where a key signature has them), for tables and figures.
KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def key_profiles() -> np.ndarray:
    """The 24 Krumhansl-Kessler key profiles, rows C..B major then C..B minor.

    Returns
    -------
    profiles : np.ndarray, shape (24, 12)

    Notebook: notebooks/01_features.ipynb
    """
    return np.stack([np.roll(KK_MAJOR, k) for k in range(12)] + [np.roll(KK_MINOR, k) for k in range(12)])


def tonic_scores(chroma: np.ndarray, *, profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """Pearson correlation of each chroma with the mode-free profile on each of the twelve tonics.

    Parameters
    ----------
    chroma : np.ndarray, shape (..., 12)
    profile : {"albrecht-shanahan", "krumhansl-kessler"}

    Returns
    -------
    np.ndarray, shape (..., 12)
        Column ``k``: the profile rotated to tonic ``k`` (C = 0). A flat chroma
        (no pitch content) scores 0 everywhere.

    Notebook: notebooks/02_vit.ipynb
    """
    if profile not in PROFILES:
        raise ParameterError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    chroma = np.asarray(chroma, dtype=np.float64)
    if chroma.shape[-1:] != (12,):
        raise ParameterError(f"chroma must end in 12 pitch classes, got shape {chroma.shape}")
    centred = chroma - chroma.mean(axis=-1, keepdims=True)
    centred = centred / np.maximum(np.linalg.norm(centred, axis=-1, keepdims=True), 1e-12)
    rotated = np.stack([np.roll(PROFILES[profile], k) for k in range(12)])
    rotated = rotated - rotated.mean(axis=1, keepdims=True)
    rotated = rotated / np.linalg.norm(rotated, axis=1, keepdims=True)
    return centred @ rotated.T


def estimate_tonic(chroma: np.ndarray, *, profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """The tonic (pitch class 0-11, C = 0) whose mode-free profile fits each chroma best.

    Rolling ``chroma`` by ``k`` moves the estimate by ``k`` (mod 12) exactly;
    ties go to the lowest pitch class.

    Returns
    -------
    np.ndarray of int, shape chroma.shape[:-1]

    Notebook: notebooks/02_vit.ipynb
    """
    return tonic_scores(chroma, profile=profile).argmax(axis=-1)


def tonic_chroma(y: np.ndarray, *, sr: int = SR) -> np.ndarray:
    """Mean CQT chroma of a signal: the pitch-class profile the tonic is estimated from.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)

    Returns
    -------
    np.ndarray, shape (12,), float64
        librosa ``chroma_cqt`` (hop :data:`HOP`, tuning estimated from the
        signal, so a band tuned to A = 435 or 445 folds onto the same pitch
        classes), averaged over frames; zeros for a silent signal.

    Notebook: notebooks/02_vit.ipynb
    """
    import librosa  # slow to import (numba); only the analysing functions need it

    # No numba_cache.prepare() here: numba_cache.compile_kernels() calls this inside the locked compile
    # (file-level callers, _chroma_file and chromas, prepare the cache as spectrogram and features do).
    y = np.asarray(y, dtype=np.float32)
    if not np.any(y):
        return np.zeros(12)
    return librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=HOP).mean(axis=1).astype(np.float64)


def _chroma_file(path: str, duration: float | None) -> np.ndarray:
    numba_cache.prepare()  # a no-op once the parent compiled; a Dask worker may have its own disk
    return tonic_chroma(audio.load(path, sr=SR, duration=duration))


def chromas(clips, *, duration: float | None = None, n_jobs: int = 2, cache: bool = True,
            progress: bool = True) -> np.ndarray:
    """:func:`tonic_chroma` of every clip of a dataset table, cached.

    Parameters
    ----------
    clips : pandas.DataFrame
        Columns ``clip_id`` and ``path``.
    duration : float, optional
        Seconds read from each file (the spectrogram's ``duration``).
    cache : bool
        Read from / write to ``data/derived/tonic-chroma/tonic-chroma-<hash>.npz``;
        the hash covers the clip ids, paths, file sizes and this module's code.

    Returns
    -------
    np.ndarray, shape (n_clips, 12), in the order of ``clips``

    Notebook: notebooks/02_vit.ipynb
    """
    values, _ = store.clip_arrays("tonic-chroma", clips, {"duration": duration, "sr": SR, "hop": HOP},
                                  functools.partial(_chroma_file, duration=duration), code=__name__,
                                  field="chroma", empty=np.zeros((0, 12)), desc="tonic chroma", n_jobs=n_jobs,
                                  cache=cache, progress=progress, before=numba_cache.prepare)
    return values


def canonical_semitones(chroma: np.ndarray, *, profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """The transposition that brings each clip to the canonical key (tonic C), estimated from the clip.

    The tonic ``t`` (:func:`estimate_tonic`) is wrapped into -5..6 and the
    clip is moved by ``-t`` semitones, so no clip moves more than six. The rule
    moves with its input (a canonicalisation function, Kaba et al. 2023): a
    clip transposed by ``k`` gets ``t + k``, and every transposition of a score
    reaches the same canonical input wherever the estimate follows it. An
    estimate on the dominant becomes a shifted input, not a wrong label.

    Parameters
    ----------
    chroma : np.ndarray, shape (n_clips, 12)

    Returns
    -------
    np.ndarray of int, shape (n_clips,)
        Semitones in -6..5 (:func:`mer.spectrogram.crop`).

    Notebook: notebooks/02_vit.ipynb
    """
    tonic = estimate_tonic(chroma, profile=profile)
    return -np.where(tonic > 6, tonic - 12, tonic)


__all__ = ["KK_MAJOR", "KK_MINOR", "AS_MAJOR", "AS_MINOR", "PROFILES", "DEFAULT_PROFILE", "key_profiles",
           "tonic_scores", "estimate_tonic", "tonic_chroma", "chromas", "canonical_semitones"]
