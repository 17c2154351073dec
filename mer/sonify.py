"""Hearing an explanation: relevance maps turned back into sound.

A relevance map over (mel band x log-mel frame) says which parts of the
spectrogram drove the ViT's decision. This module maps it back onto the
clip's own linear STFT as a soft time-frequency mask, resynthesises the
masked STFT with the clip's own phase, and loudness-matches the result to the
original so it plays at a normal volume::

    relevance (n_mels, n_frames)
      -> sign / contrast           relu(R), relu(-R) or R_target - R_other
      -> mel_relevance_to_stft_mask (1 + n_fft // 2, n_stft_frames) in [0, 1]
           frequency: each STFT bin takes the filterbank-weighted mean of the
                      bands that cover it (linear between band centres)
           time:      each STFT frame takes its pooled frame's value, then a
                      short Hann smoothing across frame borders
           threshold / top-k % / exponent
      -> apply_mask                istft(mask * stft(y)), exact length
      -> match_loudness            same integrated loudness (BS.1770), peak-limited

Because masking is linear, ``apply_mask(y, m) + apply_mask(y, 1 - m) == y``:
the *complement* ("what the model ignored") and the *kept* part add up to the
original before loudness matching.

Whether the model agrees with the sound (kept, complement, a random region
removed) is measured in :mod:`mer.faithfulness`.

Notebook: notebooks/04_sonification.ipynb
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.ndimage import convolve1d, minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

from . import ParameterError, audio
from . import spectrogram as spec
from .metrics import LABELS

log = logging.getLogger(__name__)

#: Default length (s) of the Hann window that smooths the mask across frame borders.
TEMPORAL_SMOOTHING = 0.1
#: Default ceiling of the loudness-matched clips, dBFS (4x oversampled peak,
#: an estimate of the true peak as in EBU R128's -1 dBTP).
CEILING_DB = -1.0
#: A sonified clip whose loudness is further than this from the target is
#: reported as "target not reached".
LOUDNESS_TOLERANCE_DB = 1.0
SIGNS = ("positive", "negative")


# ----------------------------------------------------------------------------
# Relevance -> STFT mask
# ----------------------------------------------------------------------------


def stft_band_weights(*, sr: int = spec.SR, n_fft: int = spec.N_FFT, n_mels: int = spec.N_MELS,
                      fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """How much each mel band speaks for each STFT bin.

    The model's mel filterbank (:func:`mer.spectrogram.mel_filterbank`), each
    row rescaled to a peak of one (undoing the Slaney area normalisation, so
    a wide high band does not count less than a narrow low one), then each
    column divided by its sum, so the weights of the overlapping bands that
    cover a bin add up to one: a constant relevance gives a constant mask, and
    the mask is linear in frequency between neighbouring band centres. Bins
    no band covers (0 Hz, and above ``fmax``) take the weights of the nearest
    covered bin.

    Returns
    -------
    np.ndarray, shape (n_mels, 1 + n_fft // 2), float64
        Column ``k`` sums to one.

    Notebook: notebooks/04_sonification.ipynb
    """
    return _band_weights(int(sr), int(n_fft), int(n_mels), float(fmin), fmax).copy()


_WEIGHTS_CACHE: dict[tuple, np.ndarray] = {}


def band_weights(filterbank: np.ndarray) -> np.ndarray:
    """:func:`stft_band_weights` of any front end's filterbank (rows = the model's rows).

    The same construction: rows rescaled to a peak of one, columns divided
    by their sums, uncovered bins copied from the nearest covered one. For the
    log-frequency front end pass :func:`mer.spectrogram.filterbank` of the
    checkpoint's ``meta["logmel"]``.

    Returns
    -------
    np.ndarray, shape filterbank.shape, float64
        Column ``k`` sums to one.

    Notebook: notebooks/04_sonification.ipynb
    """
    bank = np.asarray(filterbank, dtype=np.float64)
    return _normalized_band_weights(bank, what=f"the filterbank of shape {bank.shape}")


def front_end_options(meta: dict, semitones: int = 0) -> dict[str, Any]:
    """Mask options that make the STFT mask follow a checkpoint's front end.

    ``{}`` for the mel front end (the default maps); ``{"filterbank": ...}``
    for the log-frequency one, to pass to :func:`sonify`,
    :func:`mel_relevance_to_stft_mask` or :func:`random_mask_like`. For a
    checkpoint that moves each clip to a canonical key, ``semitones`` is that
    clip's move (``explain_clips(...)["semitones"]``): the rows the model saw
    are then other bands of the taller filterbank (:func:`mer.vit.input_filterbank`).

    Notebook: notebooks/04_sonification.ipynb
    """
    from . import vit  # torch and transformers load with it; only the log-frequency front end needs it

    params = spec.LogMelParams(**meta["logmel"])
    if params.front_end == "mel" and not semitones:
        return {}
    return {"filterbank": vit.input_filterbank(meta, semitones)}


def _band_weights(sr, n_fft, n_mels, fmin, fmax) -> np.ndarray:
    key = (sr, n_fft, n_mels, fmin, fmax)
    if key not in _WEIGHTS_CACHE:
        bank = spec.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float64)
        _WEIGHTS_CACHE[key] = _normalized_band_weights(
            bank, what=f"the mel filterbank (sr={sr}, n_fft={n_fft}, n_mels={n_mels})")
    return _WEIGHTS_CACHE[key]


def _normalized_band_weights(bank: np.ndarray, *, what: str) -> np.ndarray:
    if True:
        peak = bank.max(axis=1, keepdims=True)
        triangles = np.divide(bank, peak, out=np.zeros_like(bank), where=peak > 0)
        total = triangles.sum(axis=0)
        covered = np.flatnonzero(total > 0)
        if covered.size == 0:
            raise ParameterError(f"{what} covers no STFT bin")
        weights = np.zeros_like(triangles)
        weights[:, covered] = triangles[:, covered] / total[covered]
        # Bins outside every band: copy the nearest covered bin's column.
        uncovered = np.flatnonzero(total == 0)
        if uncovered.size:
            nearest = covered[np.abs(covered[None, :] - uncovered[:, None]).argmin(axis=1)]
            weights[:, uncovered] = weights[:, nearest]
    return weights


def patch_relevance_to_mel(relevance: np.ndarray, *, n_mels: int = spec.N_MELS,
                           n_frames: int, patch_size: tuple[int, int] = (16, 16)) -> np.ndarray:
    """Spread a relevance per ViT patch onto the (mel band x frame) grid.

    Bilinear interpolation between patch centres (values held beyond the
    outer centres), so patch borders leave no steps in the mask.

    Parameters
    ----------
    relevance : np.ndarray, shape (n_patch_rows, n_patch_cols)
        One value per patch; row 0 is the lowest mel patch.
    n_mels, n_frames : int
        Size of the log-mel grid.
    patch_size : (int, int)
        Mel bands and frames per patch.

    Returns
    -------
    np.ndarray, shape (n_mels, n_frames), float64

    Notebook: notebooks/04_sonification.ipynb
    """
    relevance = np.asarray(relevance, dtype=np.float64)
    if relevance.ndim != 2:
        raise ParameterError(f"patch relevance must have shape (n_patch_rows, n_patch_cols), got {relevance.shape}")
    rows, cols = relevance.shape
    ph, pw = patch_size
    row_centres = (np.arange(rows) + 0.5) * ph - 0.5
    col_centres = (np.arange(cols) + 0.5) * pw - 0.5
    along_mels = np.stack([np.interp(np.arange(n_mels), row_centres, relevance[:, j]) for j in range(cols)], axis=1)
    return np.stack([np.interp(np.arange(n_frames), col_centres, along_mels[i]) for i in range(n_mels)])


def contrastive_relevance(relevance_target: np.ndarray, relevance_other: np.ndarray) -> np.ndarray:
    """Class-contrastive relevance: what speaks for ``target`` *rather than* the other class.

    For two classes and LRP (which is linear in the output it starts from)
    this equals the relevance of the logit difference
    ``logit_target - logit_other``, the quantity the softmax decision depends on.

    Parameters
    ----------
    relevance_target, relevance_other : np.ndarray, shape (n_mels, n_frames)
        The same explainer run for each class.

    Returns
    -------
    np.ndarray, shape (n_mels, n_frames)

    Notebook: notebooks/04_sonification.ipynb
    """
    a, b = np.asarray(relevance_target, dtype=np.float64), np.asarray(relevance_other, dtype=np.float64)
    if a.shape != b.shape:
        raise ParameterError(f"relevances must have the same shape, got {a.shape} and {b.shape}")
    return a - b


def _smoothing_window(temporal_smoothing: float, *, sr: int, hop_length: int) -> np.ndarray:
    length = int(round(temporal_smoothing * sr / hop_length))
    if length < 2:
        return np.ones(1)
    length += 1 - length % 2  # odd, so the window is centred
    window = np.hanning(length + 2)[1:-1]  # no zero end points
    return window / window.sum()


def mel_relevance_to_stft_mask(relevance: np.ndarray, *, sr: int = spec.SR, n_fft: int = spec.N_FFT,
                               hop_length: int = spec.HOP_LENGTH, n_samples: int, pool: int = spec.POOL,
                               fmin: float = 0.0, fmax: float | None = None, sign: str = "positive",
                               threshold: float = 0.0, top_k_percent: float | None = None,
                               exponent: float = 1.0,
                               temporal_smoothing: float = TEMPORAL_SMOOTHING,
                               filterbank: np.ndarray | None = None) -> np.ndarray:
    """A time-frequency mask on the clip's linear STFT from a log-mel relevance map.

    Parameters
    ----------
    relevance : np.ndarray, shape (n_mels, n_frames)
        Relevance of each mel band and (pooled) log-mel frame, as the
        explainers return it (row 0 = lowest band). For a per-patch map use
        :func:`patch_relevance_to_mel` first.
    sr, n_fft, hop_length, pool, fmin, fmax : number
        The log-mel geometry the model saw (:mod:`mer.spectrogram` defaults).
    n_samples : int
        Length of the clip; the mask has ``1 + n_samples // hop_length`` frames.
    sign : {"positive", "negative"}
        Keep the evidence *for* the explained class (``relu(R)``) or against
        it (``relu(-R)``: for the other class when there are two).
    threshold : float in [0, 1)
        Cells below this fraction of the mask's maximum are set to 0.
    top_k_percent : float in (0, 100], optional
        Keep only the ``top_k_percent`` % of STFT cells with the largest mask
        values (the share of the time-frequency plane the explanation may
        occupy); the others are set to 0.
    exponent : float >= 0
        The kept cells are raised to this power after scaling to a maximum
        of one: > 1 sharpens, < 1 flattens, 0 gives a binary mask.
    temporal_smoothing : float
        Length in seconds of the Hann window smoothing the mask along time,
        across frame borders (0: none; each STFT frame then takes its pooled
        frame's value as is).
    filterbank : np.ndarray, shape (n_rows, 1 + n_fft // 2), optional
        The front end's filterbank when it is not the mel one
        (:func:`mer.spectrogram.filterbank`, or :func:`front_end_options` of a
        checkpoint); ``relevance`` then has ``n_rows`` rows and is mapped back
        through :func:`band_weights` of it. Default: the mel filterbank of
        ``sr, n_fft, fmin, fmax`` with ``relevance.shape[0]`` bands.

    Returns
    -------
    mask : np.ndarray, shape (1 + n_fft // 2, n_stft_frames), float64
        Values in [0, 1], maximum 1 unless the selected relevance is all zero
        (then all zero).

    Notebook: notebooks/04_sonification.ipynb
    """
    relevance = np.asarray(relevance, dtype=np.float64)
    n_frames = spec.n_frames(n_samples, hop_length=hop_length, pool=pool)
    n_stft = spec.n_stft_frames(n_samples, hop_length=hop_length)
    if relevance.ndim != 2 or relevance.shape[1] != n_frames:
        raise ParameterError(f"relevance must have shape (n_mels, {n_frames}) for {n_samples} samples "
                             f"(hop {hop_length}, pool {pool}); got {relevance.shape}")
    if not np.all(np.isfinite(relevance)):
        raise ParameterError("relevance contains NaN or infinite values")
    if sign not in SIGNS:
        raise ParameterError(f"sign must be one of {SIGNS}, got {sign!r}")
    if not 0.0 <= threshold < 1.0:
        raise ParameterError(f"threshold must be in [0, 1), got {threshold!r}")
    if top_k_percent is not None and not 0.0 < top_k_percent <= 100.0:
        raise ParameterError(f"top_k_percent must be in (0, 100] or None, got {top_k_percent!r}")
    if not exponent >= 0:
        raise ParameterError(f"exponent must be >= 0, got {exponent!r}")
    if not temporal_smoothing >= 0:
        raise ParameterError(f"temporal_smoothing must be >= 0 seconds, got {temporal_smoothing!r}")

    selected = np.maximum(relevance if sign == "positive" else -relevance, 0.0)
    if filterbank is None:
        weights = _band_weights(int(sr), int(n_fft), relevance.shape[0], float(fmin), fmax)
    else:
        if np.shape(filterbank) != (relevance.shape[0], 1 + int(n_fft) // 2):
            raise ParameterError(f"filterbank has shape {np.shape(filterbank)}; expected "
                                 f"({relevance.shape[0]}, {1 + int(n_fft) // 2}) for this relevance and n_fft")
        weights = band_weights(filterbank)
    per_bin = weights.T @ selected  # (n_bins, n_frames): frequency, linear between band centres
    per_stft = per_bin[:, np.arange(n_stft) // pool]  # each STFT frame <- its pooled frame
    window = _smoothing_window(temporal_smoothing, sr=sr, hop_length=hop_length)
    if window.size > 1:
        per_stft = convolve1d(per_stft, window, axis=1, mode="nearest")
    return _shape_mask(per_stft, threshold=threshold, top_k_percent=top_k_percent, exponent=exponent)


def _shape_mask(values: np.ndarray, *, threshold: float, top_k_percent: float | None,
                exponent: float) -> np.ndarray:
    peak = float(values.max()) if values.size else 0.0
    if peak <= 0:
        return np.zeros_like(values)
    mask = np.clip(values / peak, 0.0, 1.0)
    if threshold > 0:
        mask[mask < threshold] = 0.0
    if top_k_percent is not None and top_k_percent < 100:
        n_drop = mask.size - int(round(mask.size * top_k_percent / 100.0))
        if n_drop > 0:  # argpartition: the smallest n_drop cells in O(n), no full sort
            mask.flat[np.argpartition(mask, n_drop - 1, axis=None)[:n_drop]] = 0.0
    kept = mask > 0
    mask[kept] = mask[kept] ** exponent
    return mask


def mask_area(mask: np.ndarray) -> float:
    """Share of the time-frequency plane a mask keeps: its mean value in [0, 1].

    Notebook: notebooks/04_sonification.ipynb
    """
    return float(np.mean(mask))


def random_mask_like(mask: np.ndarray, *, seed: int = 0, n_mels: int = spec.N_MELS,
                     sr: int = spec.SR, hop_length: int = spec.HOP_LENGTH, n_fft: int = spec.N_FFT,
                     n_samples: int, pool: int = spec.POOL,
                     temporal_smoothing: float = TEMPORAL_SMOOTHING,
                     filterbank: np.ndarray | None = None) -> np.ndarray:
    """A random mask of the same area and the same value distribution as ``mask``.

    Uniform noise on the (mel band x frame) grid is mapped with
    :func:`mel_relevance_to_stft_mask` (so it has the same smoothness as an
    explanation's mask), then its cells are given the values of ``mask`` by
    rank: the largest value of ``mask`` goes to the random field's largest
    cell, and so on. The result holds exactly the values of ``mask``,
    rearranged: same area, same number of kept cells, random place.

    Parameters
    ----------
    mask : np.ndarray, shape (1 + n_fft // 2, n_stft_frames)
    seed : int
        Seed of the numpy Generator.

    Returns
    -------
    np.ndarray, shape of ``mask``

    Notebook: notebooks/04_sonification.ipynb
    """
    mask = np.asarray(mask, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n_frames = spec.n_frames(n_samples, hop_length=hop_length, pool=pool)
    rows = n_mels if filterbank is None else int(np.shape(filterbank)[0])
    field_ = mel_relevance_to_stft_mask(rng.random((rows, n_frames)), sr=sr, n_fft=n_fft,
                                        hop_length=hop_length, n_samples=n_samples, pool=pool,
                                        temporal_smoothing=temporal_smoothing, filterbank=filterbank)
    if field_.shape != mask.shape:
        raise ParameterError(f"mask has shape {mask.shape}; expected {field_.shape} for {n_samples} samples")
    # Tiny noise breaks the ties of constant stretches of the smoothed field.
    field_ = (field_ + 1e-9 * rng.random(field_.shape)).ravel()
    values = np.sort(mask, axis=None)
    n_kept = int(np.count_nonzero(values))
    result = np.zeros(mask.size)
    if n_kept:
        # Only the n_kept largest cells of the field need ranking (argpartition, then
        # a sort of those alone): a top-k mask is mostly zeros.
        top = np.argpartition(field_, mask.size - n_kept)[mask.size - n_kept:]
        result[top[np.argsort(field_[top])]] = values[mask.size - n_kept:]
    return result.reshape(mask.shape)


# ----------------------------------------------------------------------------
# Mask -> audio
# ----------------------------------------------------------------------------


def apply_mask(y: np.ndarray, mask: np.ndarray, *, n_fft: int = spec.N_FFT,
               hop_length: int = spec.HOP_LENGTH, stft: np.ndarray | None = None) -> np.ndarray:
    """Resynthesise ``y`` with its STFT multiplied by ``mask``, with the clip's own phase.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
    mask : np.ndarray, shape (1 + n_fft // 2, 1 + n_samples // hop_length)
        Real, usually in [0, 1].
    stft : np.ndarray, optional
        ``librosa.stft(y, n_fft=n_fft, hop_length=hop_length)`` if already
        computed (masking one clip several times).

    Returns
    -------
    np.ndarray, shape (n_samples,), float32
        ``istft(mask * stft(y))`` (centred Hann STFT as the model's, exact
        length). A mask of ones gives ``y`` back (error ~1e-7); masking is
        linear, so ``apply_mask(y, m) + apply_mask(y, 1 - m) == y``.

    Notebook: notebooks/04_sonification.ipynb
    """
    import librosa  # slow to import (numba); only the resampling and STFT steps need it

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio of shape (n_samples,), got {y.shape}")
    if stft is None:
        stft = librosa.stft(y, n_fft=n_fft, hop_length=hop_length, center=True)
    if np.shape(mask) != stft.shape:
        raise ParameterError(f"mask has shape {np.shape(mask)}; the STFT of {y.size} samples "
                             f"(n_fft {n_fft}, hop {hop_length}) has shape {stft.shape}")
    return librosa.istft(stft * mask, n_fft=n_fft, hop_length=hop_length, center=True,
                         length=y.size).astype(np.float32)


def _peak_4x(y: np.ndarray) -> np.ndarray:
    """Absolute peak per sample of ``y`` oversampled 4x (true-peak estimate, BS.1770-4 Annex 2)."""

    up = np.abs(resample_poly(y.astype(np.float64), 4, 1))
    return up[: 4 * y.size].reshape(-1, 4).max(axis=1)


def _limit(y: np.ndarray, *, ceiling: float, sr: int) -> tuple[np.ndarray, float]:
    """Smooth peak limiter: a gain envelope that stays below ``ceiling / peak``.

    Written by hand because none of our dependencies has one (pyloudnorm only
    measures). The needed gain per sample is min-filtered over 10 ms and then
    averaged over 5 ms: the average of minima over a window half as wide never
    exceeds the needed gain at a peak, and the envelope has no steps (no clicks).
    """

    if float(np.max(np.abs(y))) * np.sqrt(2) <= ceiling:  # inter-sample overs of music stay below +3 dB
        return y, 0.0
    peak = _peak_4x(y)
    needed = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    if needed.min() >= 1.0:
        return y, 0.0
    width = max(3, int(0.005 * sr))
    gain = uniform_filter1d(minimum_filter1d(needed, size=2 * width + 1, mode="nearest"),
                            size=width, mode="nearest")
    gain = np.minimum(gain, needed)  # numerical safety at the edges
    return (y * gain).astype(np.float32), float(-20 * np.log10(gain.min()))


@dataclass
class LoudnessMatch:
    """Result of :func:`match_loudness`.

    Attributes
    ----------
    y : np.ndarray, shape (n_samples,), float32
        The matched signal.
    gain_db : float
        Broadband gain applied before limiting (NaN if the input is silent).
    limiter_db : float
        Largest gain reduction of the peak limiter (0 if it did nothing).
    loudness : float
        Integrated loudness of ``y`` in LUFS.
    target : float
        The loudness aimed at.
    reached : bool
        ``|loudness - target| <= LOUDNESS_TOLERANCE_DB``.
    """

    y: np.ndarray
    gain_db: float
    limiter_db: float
    loudness: float
    target: float
    reached: bool


def match_loudness(y: np.ndarray, *, target: float, sr: int = spec.SR, ceiling_db: float = CEILING_DB,
                   max_iter: int = 6) -> LoudnessMatch:
    """Scale ``y`` to the integrated loudness ``target`` without clipping.

    Measures with :func:`mer.audio.loudness` (ITU-R BS.1770-4, pyloudnorm),
    applies the gain, and if the 4x-oversampled peak passes ``ceiling_db``
    runs a smooth peak limiter and re-measures (limiting lowers the loudness
    a little), up to ``max_iter`` times.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
    target : float
        LUFS to reach (the original clip's integrated loudness).
    sr : int
    ceiling_db : float
        Peak ceiling in dBFS.

    Returns
    -------
    LoudnessMatch
        ``reached`` is False (and a warning is logged) when the target cannot
        be met below the ceiling, or ``y`` is silent.

    Notebook: notebooks/04_sonification.ipynb
    """

    y = np.asarray(y, dtype=np.float32)
    ceiling = 10 ** (ceiling_db / 20)
    level = audio.loudness(y, sr=sr)
    if not np.isfinite(level) or not np.isfinite(target):
        return LoudnessMatch(y=y, gain_db=float("nan"), limiter_db=0.0, loudness=level, target=target,
                             reached=False)
    source, total_gain, limiter_db, out = y, 0.0, 0.0, y
    for _ in range(max_iter):
        step = target - level
        total_gain += step
        scaled = (source.astype(np.float64) * 10 ** (total_gain / 20)).astype(np.float32)
        out, limiter_db = _limit(scaled, ceiling=ceiling, sr=sr)
        level = audio.loudness(out, sr=sr)
        if abs(level - target) < 0.05 or limiter_db == 0.0:
            break
    reached = bool(abs(level - target) <= LOUDNESS_TOLERANCE_DB)
    if not reached:
        log.warning("loudness target %.1f LUFS not reached (%.1f LUFS after %.1f dB gain, "
                    "limiter %.1f dB)", target, level, total_gain, limiter_db)
    return LoudnessMatch(y=out, gain_db=float(total_gain), limiter_db=float(limiter_db),
                         loudness=float(level), target=float(target), reached=reached)


@dataclass
class SonifiedClip:
    """An explanation you can listen to.

    Attributes
    ----------
    kept : np.ndarray, shape (n_samples,), float32
        What the explanation keeps, loudness-matched to the original.
    complement : np.ndarray, shape (n_samples,), float32
        What it leaves out (mask ``1 - mask``), loudness-matched as well.
    mask : np.ndarray, shape (1 + n_fft // 2, n_stft_frames)
        The time-frequency mask in [0, 1].
    gain_db, complement_gain_db : float
        Gains applied to reach the original's loudness (NaN if silent).
    kept_raw, complement_raw : np.ndarray, shape (n_samples,), float32
        Before loudness matching; ``kept_raw + complement_raw == y``.
    loudness_original, loudness_kept, loudness_complement : float
        Integrated loudness, LUFS.
    limiter_db : float
        Largest peak-limiter gain reduction on ``kept``.
    reached : bool
        Both ``kept`` and ``complement`` are within 1 dB of the original's loudness.
    area : float
        :func:`mask_area` of ``mask``.
    options : dict
        The mask options used.
    """

    kept: np.ndarray
    complement: np.ndarray
    mask: np.ndarray
    gain_db: float
    complement_gain_db: float
    kept_raw: np.ndarray
    complement_raw: np.ndarray
    loudness_original: float
    loudness_kept: float
    loudness_complement: float
    limiter_db: float
    reached: bool
    area: float
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def loudness_diff_db(self) -> float:
        """``|loudness(kept) - loudness(original)|`` in dB."""
        return float(abs(self.loudness_kept - self.loudness_original))


def sonify(y: np.ndarray, relevance: np.ndarray, *, sr: int = spec.SR, n_fft: int = spec.N_FFT,
           hop_length: int = spec.HOP_LENGTH, pool: int = spec.POOL, sign: str = "positive",
           threshold: float = 0.0, top_k_percent: float | None = None, exponent: float = 1.0,
           temporal_smoothing: float = TEMPORAL_SMOOTHING, match: bool = True,
           ceiling_db: float = CEILING_DB, filterbank: np.ndarray | None = None) -> SonifiedClip:
    """Turn a relevance map into the sound it stands for, and its complement.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        The clip the model saw (22 050 Hz by default).
    relevance : np.ndarray, shape (n_mels, n_frames)
        Its relevance map (:func:`mer.lrp.explainers.explain` for one clip).
    sign, threshold, top_k_percent, exponent, temporal_smoothing, filterbank
        Mask options, see :func:`mel_relevance_to_stft_mask` (``filterbank``
        for a front end other than mel: :func:`front_end_options`).
    match : bool
        Loudness-match ``kept`` and ``complement`` to ``y`` (default).
    ceiling_db : float
        Peak ceiling of the matched clips, dBFS.

    Returns
    -------
    SonifiedClip

    Notebook: notebooks/04_sonification.ipynb
    """

    y = np.asarray(y, dtype=np.float32)
    options = dict(sign=sign, threshold=threshold, top_k_percent=top_k_percent, exponent=exponent,
                   temporal_smoothing=temporal_smoothing)
    mask = mel_relevance_to_stft_mask(relevance, sr=sr, n_fft=n_fft, hop_length=hop_length,
                                      n_samples=y.size, pool=pool, filterbank=filterbank, **options)
    kept_raw = apply_mask(y, mask, n_fft=n_fft, hop_length=hop_length)
    complement_raw = (y - kept_raw).astype(np.float32)  # = apply_mask(y, 1 - mask), by linearity
    original = audio.loudness(y, sr=sr)
    if match:
        kept_match = match_loudness(kept_raw, target=original, sr=sr, ceiling_db=ceiling_db)
        comp_match = match_loudness(complement_raw, target=original, sr=sr, ceiling_db=ceiling_db)
    else:
        kept_match = LoudnessMatch(kept_raw, 0.0, 0.0, audio.loudness(kept_raw, sr=sr), original, False)
        comp_match = LoudnessMatch(complement_raw, 0.0, 0.0, audio.loudness(complement_raw, sr=sr),
                                   original, False)
    return SonifiedClip(kept=kept_match.y, complement=comp_match.y, mask=mask, gain_db=kept_match.gain_db,
                        complement_gain_db=comp_match.gain_db, kept_raw=kept_raw,
                        complement_raw=complement_raw, loudness_original=float(original),
                        loudness_kept=kept_match.loudness, loudness_complement=comp_match.loudness,
                        limiter_db=kept_match.limiter_db,
                        reached=bool(kept_match.reached and comp_match.reached),
                        area=mask_area(mask), options=options)


#: Shares of the time-frequency plane (in %) a listening slider offers
#: (:func:`sonify_shares`, :func:`mer.display.listening_slider`): from a sliver
#: of the most relevant cells to well over the chapters' default of 15 %.
LISTENING_SHARES = (5.0, 10.0, 15.0, 25.0, 40.0)


def sonify_shares(y: np.ndarray, relevance: np.ndarray, *, shares: Sequence[float] = LISTENING_SHARES,
                  top_k_percent: float | None = None, **options) -> list[SonifiedClip]:
    """The same explanation sonified at a few shares of the plane kept, for a slider.

    A static page cannot sonify on demand, so a listening control offers a
    few settings computed in advance; each is an ordinary :func:`sonify`
    (loudness-matched, kept and complement).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
    relevance : np.ndarray, shape (n_mels, n_frames)
    shares : sequence of float
        Shares of the time-frequency plane kept, in % (``top_k_percent`` of
        :func:`mel_relevance_to_stft_mask`); default :data:`LISTENING_SHARES`.
    top_k_percent : float, optional
        The chapter's own share; added to ``shares`` so the slider can start
        on the setting the chapter's other players use.
    **options
        Other options of :func:`sonify` (``threshold``, ``exponent``, ``sr``...).

    Returns
    -------
    list of SonifiedClip
        One per share, in increasing order; ``clip.options["top_k_percent"]``
        says which.

    Raises
    ------
    ParameterError
        If a share is not in (0, 100].

    Notebook: notebooks/04_sonification.ipynb (each quadrant example) and
    notebooks/03_lrp.ipynb (the probe clip).
    """
    chosen = {float(s) for s in shares} | ({float(top_k_percent)} if top_k_percent else set())
    if not chosen or any(not 0 < s <= 100 for s in chosen):
        raise ParameterError(f"shares must be percentages in (0, 100], got {sorted(chosen)}")
    return [sonify(y, relevance, top_k_percent=share, **options) for share in sorted(chosen)]


def sonify_signed(y: np.ndarray, relevance: np.ndarray, *, target: int,
                  labels: Sequence[str] = LABELS, **options) -> dict[str, SonifiedClip]:
    """Two sonifications of a signed relevance map: the evidence for each class.

    With two classes, relevance for ``target`` that is positive speaks for
    ``target`` and negative relevance speaks for the other class.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
    relevance : np.ndarray, shape (n_mels, n_frames)
        Relevance for class ``target`` (or :func:`contrastive_relevance`).
    target : int
        Index of the explained class in ``labels``.
    labels : (str, str)
        Class names; :data:`mer.metrics.LABELS` order (sad = 0, happy = 1).
    **options
        Passed to :func:`sonify` (not ``sign``).

    Returns
    -------
    dict
        ``{labels[target]: SonifiedClip (sign "positive"),
        labels[1 - target]: SonifiedClip (sign "negative")}``.

    Notebook: notebooks/04_sonification.ipynb
    """
    if len(labels) != 2 or target not in (0, 1):
        raise ParameterError(f"sonify_signed needs two labels and target 0 or 1, got {labels!r}, {target!r}")
    if "sign" in options:
        raise ParameterError("sonify_signed sets sign itself; do not pass it")
    return {labels[target]: sonify(y, relevance, sign="positive", **options),
            labels[1 - target]: sonify(y, relevance, sign="negative", **options)}


# ----------------------------------------------------------------------------
# What the explanation is made of
# ----------------------------------------------------------------------------


def _long_term_spectrum(y: np.ndarray, *, sr: int, n_fft: int, hop_length: int) -> tuple[np.ndarray, np.ndarray]:
    """STFT bin frequencies (n_fft//2+1,) and the clip's power summed over frames (n_fft//2+1,)."""
    import librosa  # slow to import (numba); only the resampling and STFT steps need it

    power = np.abs(librosa.stft(np.asarray(y, dtype=np.float32), n_fft=n_fft, hop_length=hop_length)) ** 2
    return librosa.fft_frequencies(sr=sr, n_fft=n_fft), power.sum(axis=1)


def spectral_centroid_hz(y: np.ndarray, *, sr: int = spec.SR, n_fft: int = spec.N_FFT,
                         hop_length: int = spec.HOP_LENGTH) -> float:
    """Centroid of the clip's long-term power spectrum, Hz.

    One number per clip: where in frequency its energy sits (librosa's
    frame-wise centroid averaged with the frames' energy as weights equals
    this; computed directly so that quiet frames do not count as much as loud ones).

    Notebook: notebooks/04_sonification.ipynb
    """
    frequencies, spectrum = _long_term_spectrum(y, sr=sr, n_fft=n_fft, hop_length=hop_length)
    total = spectrum.sum()
    if total <= 0:
        return float("nan")
    return float(np.dot(frequencies, spectrum) / total)


def energy_share_above(y: np.ndarray, *, hz: float = 7000.0, sr: int = spec.SR,
                       n_fft: int = spec.N_FFT, hop_length: int = spec.HOP_LENGTH) -> float:
    """Share (0-1) of the clip's energy above ``hz`` (the thesis's examples: mostly above 7 kHz).

    Notebook: notebooks/04_sonification.ipynb
    """
    frequencies, spectrum = _long_term_spectrum(y, sr=sr, n_fft=n_fft, hop_length=hop_length)
    total = spectrum.sum()
    if total <= 0:
        return float("nan")
    return float(spectrum[frequencies > hz].sum() / total)


def positive_relevance_on_quiet_bins(relevance: np.ndarray, model_input: np.ndarray) -> float:
    """Share (0-1) of the positive relevance that lies on bins quieter than average.

    Gradient x input and LRP give a bin relevance in proportion to its input
    value. The model's input is normalised log-mel, ``(dB - mean) / std``,
    which is negative wherever a bin is quieter than the training average:
    near-silent bins (often the top bands) can then carry large relevance of
    either sign, meaning "the absence of energy here is evidence". No mask
    can make absence audible: sonified, such relevance keeps almost nothing,
    very quietly, which is how an explanation ends up 50 dB down and above
    7 kHz. This number says how much of a map is of that kind.

    Parameters
    ----------
    relevance : np.ndarray, shape (..., n_mels, n_frames)
    model_input : np.ndarray, same shape
        The normalised log-mel the model saw.

    Returns
    -------
    float
        ``sum(relu(R)[x < 0]) / sum(relu(R))`` (NaN if no relevance is positive).

    Notebook: notebooks/04_sonification.ipynb
    """
    relevance, model_input = np.asarray(relevance, dtype=np.float64), np.asarray(model_input)
    if relevance.shape != model_input.shape:
        raise ParameterError(f"relevance {relevance.shape} and model_input {model_input.shape} differ in shape")
    positive = np.maximum(relevance, 0.0)
    total = positive.sum()
    return float(positive[model_input < 0].sum() / total) if total > 0 else float("nan")


__all__: Sequence[str] = (
    "stft_band_weights", "band_weights", "front_end_options", "patch_relevance_to_mel", "contrastive_relevance", "mel_relevance_to_stft_mask",
    "mask_area", "random_mask_like", "apply_mask", "match_loudness", "LoudnessMatch", "SonifiedClip",
    "sonify", "sonify_signed", "spectral_centroid_hz", "energy_share_above", "positive_relevance_on_quiet_bins",
)
