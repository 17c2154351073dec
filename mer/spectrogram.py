"""Log-mel spectrograms: what the Vision Transformer sees, and the way back.

The chain, every step a linear map except the last two::

    y (n_samples,)
      -> STFT power |X|^2            (1 + n_fft // 2, n_stft_frames)   librosa.stft, centred
      -> mel power  M = F @ |X|^2     (n_mels, n_stft_frames)           F = mel_filterbank(...)
      -> pooled     P[:, k] = mean(M[:, k*pool:(k+1)*pool])              (n_mels, n_frames)
      -> dB         10 log10(max(P, amin)), floored at max - top_db
      -> normalised (dB - mean_b) / std_b per mel band b, statistics of the training split only

so a relevance given to mel band ``m`` and (pooled) frame ``k`` goes back to
the STFT bins ``mel_band_bins(m)`` (with the filterbank row's weights) and the
STFT frames ``frame_to_stft_frames(k)``, i.e. the samples
``frame_to_samples(k)``. Chapter 4 builds its masks from exactly these maps.

The log-frequency front end (``LogMelParams(front_end="logfreq")``) is the
same chain with :func:`logfreq_filterbank` in place of ``F``: triangles 24 per
octave from E1 (41 Hz), each row a weighted mean of STFT bins, so a
transposition by ``k`` semitones is a shift by ``2 k`` rows (exactly where the
triangles are wider than an STFT bin, above about 370 Hz at ``n_fft`` 2048).
Relevance per row goes back to STFT bins through :func:`filterbank` (masks) or
:func:`relevance_to_stft` (LRP's z-rule, conserving the total).

Frame geometry (``center=True``, librosa's default): STFT frame ``t`` is the
window of ``n_fft`` samples centred on sample ``t * hop_length`` (the signal is
padded by ``n_fft // 2`` at both ends); a clip of ``n`` samples has
``1 + n // hop_length`` STFT frames. A pooled frame ``k`` averages STFT frames
``k * pool .. k * pool + pool - 1`` (the last pooled frame may average fewer);
10 s at 22 050 Hz gives 431 STFT frames and, pooled 4x, 108 frames.

Notebook: notebooks/02_vit.ipynb (and notebooks/04_sonification.ipynb for the
inverse maps).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np

from . import ParameterError, audio, numba_cache, store

log = logging.getLogger(__name__)

SR = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
#: Average-pool factor in time used by the default ViT (431 -> 108 frames per 10 s).
POOL = 4
AMIN = 1e-10
TOP_DB = 80.0
#: Front ends: ``"mel"`` (librosa's Slaney mel filterbank, the default) and
#: ``"logfreq"`` (triangular filters equally spaced in log frequency, where a
#: transposition by k semitones is a shift by ``k * bins_per_octave / 12`` rows).
FRONT_ENDS = ("mel", "logfreq")
#: Lowest band centre of the log-frequency front end when ``fmin`` is 0: E1 (41.2 Hz),
#: a semitone of twelve-tone equal temperament at A4 = 440 Hz, so with 12 or 24
#: bands per octave every second (or every) row sits on a pitch.
LOGFREQ_FMIN = 440.0 * 2.0 ** (-41 / 12)


@dataclass(frozen=True)
class LogMelParams:
    """Every number that determines a log-mel spectrogram (part of cache keys).

    Notebook: notebooks/02_vit.ipynb
    """

    sr: int = SR
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    pool: int = POOL
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float | None = TOP_DB
    duration: float = 10.0
    #: ``"mel"`` or ``"logfreq"`` (:data:`FRONT_ENDS`). With ``"logfreq"``,
    #: ``n_mels`` is the number of log-frequency bands, ``fmin`` the lowest band
    #: centre (0: :data:`LOGFREQ_FMIN`) and ``fmax`` is unused.
    front_end: str = "mel"
    #: Log-frequency bands per octave (``"logfreq"`` only): 24 = two per semitone.
    bins_per_octave: int = 24
    #: Extra log-frequency bands computed below and above the visible ones
    #: (``"logfreq"`` only): the room a crop window needs to move for a
    #: transposition (12 bands = 6 semitones at 24 per octave). :func:`logmel`
    #: then returns ``n_mels + 2 * margin`` rows; :func:`crop` cuts the visible ones.
    margin: int = 0

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if self.front_end == "mel":  # the mel front end's keys as before (cache names unchanged)
            for name in ("front_end", "bins_per_octave", "margin"):
                values.pop(name)
        return values

    @property
    def n_rows(self) -> int:
        """Rows :func:`logmel` returns: ``n_mels``, plus both margins on the log-frequency front end."""
        return self.n_mels + (2 * self.margin if self.front_end == "logfreq" else 0)

    @property
    def bins_per_semitone(self) -> float:
        """Log-frequency rows per semitone (``bins_per_octave / 12``)."""
        return self.bins_per_octave / 12.0

    def visible(self) -> "LogMelParams":
        """The same front end without margins: what the model sees."""

        return replace(self, margin=0)


def _params(params: LogMelParams | dict | None) -> LogMelParams:
    if params is None:
        return LogMelParams()
    if isinstance(params, LogMelParams):
        return params
    try:
        return LogMelParams(**params)
    except TypeError as error:
        raise ParameterError(f"unknown log-mel parameter in {sorted(params)}: {error}") from None


def _check(p: LogMelParams) -> None:
    if p.pool < 1 or p.hop_length < 1 or p.n_fft < 2 or p.n_mels < 1:
        raise ParameterError(f"log-mel parameters must be positive, got {p}")
    if p.front_end not in FRONT_ENDS:
        raise ParameterError(f"front_end must be one of {FRONT_ENDS}, got {p.front_end!r}")
    if p.front_end == "logfreq" and (p.bins_per_octave < 1 or p.margin < 0 or p.fmin < 0):
        raise ParameterError(f"logfreq needs bins_per_octave >= 1, margin >= 0, fmin >= 0; got {p}")
    if p.front_end == "mel" and p.margin:
        raise ParameterError("margin is for the logfreq front end (the mel front end transposes by warping)")


def mel_filterbank(*, sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """The mel filterbank ``F`` with ``mel_power = F @ stft_power``.

    librosa's Slaney-style filterbank (``librosa.filters.mel``, triangular
    filters, area-normalised), the same matrix :func:`logmel` multiplies by.

    Returns
    -------
    np.ndarray, shape (n_mels, 1 + n_fft // 2), float32
        Row ``m`` holds the weight of every STFT bin in mel band ``m``.

    Notebook: notebooks/04_sonification.ipynb
    """
    return _mel_filterbank(sr, n_fft, n_mels, fmin, fmax).copy()


@functools.lru_cache(maxsize=8)
def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    import librosa  # slow to import (numba); only the analysing functions need it

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


def logfreq_filterbank(*, sr: int = SR, n_fft: int = N_FFT, n_bands: int = 192, bins_per_octave: int = 24,
                       fmin: float = 0.0, margin: int = 0) -> np.ndarray:
    """A log-frequency filterbank ``F`` with ``band_power = F @ stft_power``.

    Band ``i`` (of ``n_bands + 2 * margin``) is centred on
    ``fmin * 2 ** ((i - margin) / bins_per_octave)`` Hz and is a triangle in
    log frequency reaching zero at its neighbours' centres, evaluated at the
    STFT bin frequencies, like madmom's ``LogarithmicFilterbank`` and the
    24-per-octave front ends of key and chord recognition (Korzeniowski and
    Widmer 2017; Schreiber and Mueller 2019). Where the neighbours are closer
    than the STFT's bin spacing ``sr / n_fft`` (below about 370 Hz for 24 per
    octave and ``n_fft`` 2048) the triangle is widened to one bin spacing on
    either side, so every band covers STFT bins; there neighbouring bands
    overlap more and a transposition is a row shift only up to the STFT's
    resolution. Each row sums to one (a weighted mean of the bins' power), so
    a partial has the same level in every band it is centred on. Bands above
    the Nyquist frequency are all zero (empty rows, e.g. in the upper margin).

    Parameters
    ----------
    n_bands : int
        Visible bands (the model's input height).
    bins_per_octave : int
        24: two bands per semitone; a transposition by ``k`` semitones moves
        a partial by ``2 k`` rows.
    fmin : float
        Centre of visible band 0 in Hz; 0 means :data:`LOGFREQ_FMIN` (E1, 41.2 Hz).
    margin : int
        Extra bands below and above (for crop augmentation / canonicalisation).

    Returns
    -------
    np.ndarray, shape (n_bands + 2 * margin, 1 + n_fft // 2), float32

    Notebook: notebooks/04_sonification.ipynb
    """
    return _logfreq_filterbank(int(sr), int(n_fft), int(n_bands), int(bins_per_octave), float(fmin),
                               int(margin)).copy()


@functools.lru_cache(maxsize=8)
def _logfreq_filterbank(sr: int, n_fft: int, n_bands: int, bins_per_octave: int, fmin: float,
                        margin: int) -> np.ndarray:
    base = fmin if fmin > 0 else LOGFREQ_FMIN
    index = np.arange(-margin - 1, n_bands + margin + 1)
    centres = base * 2.0 ** (index / bins_per_octave)  # with one neighbour beyond each end
    freqs = np.arange(1 + n_fft // 2) * sr / n_fft
    spacing = sr / n_fft
    bank = np.zeros((len(centres) - 2, len(freqs)), dtype=np.float64)
    for row in range(len(bank)):
        lower, centre, upper = centres[row], centres[row + 1], centres[row + 2]
        if centre >= sr / 2:
            continue
        lower, upper = min(lower, centre - spacing), max(upper, centre + spacing)
        rising = (freqs - lower) / (centre - lower)
        falling = (upper - freqs) / (upper - centre)
        weights = np.maximum(0.0, np.minimum(rising, falling))
        if weights.sum() > 0:
            bank[row] = weights / weights.sum()
    return bank.astype(np.float32)


def filterbank(params: "LogMelParams | dict | None" = None) -> np.ndarray:
    """The front end's filterbank: the linear map from STFT power to the model's rows.

    ``mel_filterbank`` for ``front_end="mel"``, :func:`logfreq_filterbank`
    (with the margins, if any) for ``"logfreq"``. Chapters 3 and 4 map a
    relevance per row back to STFT bins through this matrix.

    Returns
    -------
    np.ndarray, shape (params.n_rows, 1 + n_fft // 2), float32

    Notebook: notebooks/04_sonification.ipynb
    """
    p = _params(params)
    _check(p)
    return _filterbank(p).copy()


def _filterbank(p: "LogMelParams") -> np.ndarray:
    if p.front_end == "logfreq":
        return _logfreq_filterbank(p.sr, p.n_fft, p.n_mels, p.bins_per_octave, float(p.fmin), p.margin)
    return _mel_filterbank(p.sr, p.n_fft, p.n_mels, p.fmin, p.fmax)


def transposed_filterbank(params: "LogMelParams | dict | None", semitones: float) -> np.ndarray:
    """The front end's filterbank applied to an STFT transposed by ``semitones``.

    Transposing the linear STFT power by a factor ``s = 2 ** (semitones / 12)``
    (Schlueter and Grill 2015: the bin at ``f`` takes the power found at
    ``f / s``, linearly interpolated; bins whose source lies above the Nyquist
    frequency are empty) and then applying the filterbank ``F`` is one linear
    map, ``F @ W_s``, so the augmentation costs one matrix product per
    example: the same work as the front end itself. For a partial well
    resolved by the STFT this moves its energy to ``s`` times its frequency;
    formants and drums move with it, as in a resampling pitch shift.

    Returns
    -------
    np.ndarray, shape (params.n_rows, 1 + n_fft // 2), float32

    Notebook: notebooks/02_vit.ipynb
    """
    p = _params(params)
    _check(p)
    n_bins = 1 + p.n_fft // 2
    source = np.arange(n_bins) / 2.0 ** (semitones / 12.0)  # fractional source bin of every target bin
    low = np.floor(source).astype(int)
    frac = source - low
    warp = np.zeros((n_bins, n_bins), dtype=np.float64)
    inside = low < n_bins - 1
    rows = np.flatnonzero(inside)
    warp[rows, low[inside]] = 1.0 - frac[inside]
    warp[rows, low[inside] + 1] = frac[inside]
    exact = np.flatnonzero(~inside & (source <= n_bins - 1))
    warp[exact, n_bins - 1] = 1.0
    return (_filterbank(p).astype(np.float64) @ warp).astype(np.float32)


def relevance_to_stft(relevance: np.ndarray, power: np.ndarray, params: "LogMelParams | dict | None" = None
                      ) -> np.ndarray:
    """Relevance per front-end row and frame, redistributed onto the STFT bins it was computed from.

    The front end is one linear map, ``rows = F @ power``, so LRP's rule for a
    linear layer (the z-rule; Bach et al. 2015) shares each row's relevance
    among its bins in proportion to their contribution ``F[r, b] * power[b]``:
    ``R[b, t] = sum_r R[r, t] * F[r, b] power[b, t] / (F @ power)[r, t]``.
    The total is conserved wherever a row has power (rows without any pass
    nothing). Works for any front end (:func:`filterbank` of ``params``).

    Parameters
    ----------
    relevance : np.ndarray, shape (n_rows, n_frames)
    power : np.ndarray, shape (1 + n_fft // 2, n_frames)
        The clip's linear STFT power pooled like the rows
        (:func:`stft_power` then :func:`pool_frames`).

    Returns
    -------
    np.ndarray, shape (1 + n_fft // 2, n_frames), float64

    Notebook: notebooks/04_sonification.ipynb
    """
    bank = _filterbank(_params(params)).astype(np.float64)
    relevance = np.asarray(relevance, dtype=np.float64)
    power = np.asarray(power, dtype=np.float64)
    if relevance.shape[0] != bank.shape[0] or power.shape[0] != bank.shape[1] \
            or relevance.shape[1] != power.shape[1]:
        raise ParameterError(f"relevance {relevance.shape} and power {power.shape} do not fit the front "
                             f"end's filterbank {bank.shape}")
    rows = bank @ power
    share = np.divide(relevance, rows, out=np.zeros_like(relevance), where=rows > 0)
    return power * (bank.T @ share)


def crop(spec: np.ndarray, params: "LogMelParams | dict", semitones: int = 0) -> np.ndarray:
    """The visible rows of a log-frequency spectrogram computed with margins, moved by ``semitones``.

    Row ``r`` of the result is row ``margin + r - semitones * bins_per_semitone``
    of ``spec``: with ``semitones = +k`` the content sits ``k`` semitones
    higher, as if the clip had been transposed up (Schreiber and Mueller 2019's
    crop augmentation); ``semitones = 0`` is the centre crop, equal to the
    spectrogram computed without margins.

    Parameters
    ----------
    spec : np.ndarray, shape (..., n_mels + 2 * margin, n_frames)
    params : LogMelParams or dict
        ``front_end="logfreq"`` with the margin ``spec`` was computed with.
    semitones : int
        ``|semitones| * bins_per_semitone <= margin``.

    Returns
    -------
    np.ndarray, shape (..., n_mels, n_frames)

    Notebook: notebooks/02_vit.ipynb
    """
    p = _params(params)
    if p.front_end != "logfreq":
        raise ParameterError("crop is for the logfreq front end")
    offset = p.margin - int(round(semitones * p.bins_per_semitone))
    if offset < 0 or offset > 2 * p.margin or spec.shape[-2] != p.n_rows:
        raise ParameterError(f"cannot move {semitones} semitones with a margin of {p.margin} rows "
                             f"(spectrogram of {spec.shape[-2]} rows, expected {p.n_rows})")
    return spec[..., offset:offset + p.n_mels, :]


def mel_band_bins(band: int, *, sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS,
                  fmin: float = 0.0, fmax: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The STFT bins mel band ``band`` covers, and their weights.

    Returns
    -------
    bins : np.ndarray, shape (n_bins,), int
        Indices into the ``1 + n_fft // 2`` STFT frequency bins where the
        filterbank row is non-zero (a contiguous run; bin ``b`` is at
        ``b * sr / n_fft`` Hz).
    weights : np.ndarray, shape (n_bins,), float32
        ``mel_filterbank(...)[band, bins]``.

    Notebook: notebooks/04_sonification.ipynb
    """
    if not 0 <= band < n_mels:
        raise ParameterError(f"mel band {band} out of range; expected 0 <= band < {n_mels}")
    row = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)[band]
    bins = np.flatnonzero(row)
    return bins, row[bins]


def n_stft_frames(n_samples: int, *, hop_length: int = HOP_LENGTH) -> int:
    """Number of centred STFT frames of a signal of ``n_samples`` samples."""
    return 1 + n_samples // hop_length


def n_frames(n_samples: int, *, hop_length: int = HOP_LENGTH, pool: int = POOL) -> int:
    """Number of (pooled) log-mel frames of a signal of ``n_samples`` samples.

    Notebook: notebooks/02_vit.ipynb
    """
    return -(-n_stft_frames(n_samples, hop_length=hop_length) // pool)  # ceil


def frame_to_stft_frames(frame: int, *, n_samples: int, hop_length: int = HOP_LENGTH,
                         pool: int = POOL) -> range:
    """The STFT frames pooled into log-mel frame ``frame``.

    Returns
    -------
    range
        ``range(frame * pool, min((frame + 1) * pool, n_stft_frames))``.

    Notebook: notebooks/04_sonification.ipynb
    """
    total = n_stft_frames(n_samples, hop_length=hop_length)
    if not 0 <= frame < n_frames(n_samples, hop_length=hop_length, pool=pool):
        raise ParameterError(f"frame {frame} out of range for {n_samples} samples "
                             f"(hop {hop_length}, pool {pool})")
    return range(frame * pool, min((frame + 1) * pool, total))


def frame_to_samples(frame: int, *, n_samples: int, hop_length: int = HOP_LENGTH, pool: int = POOL,
                     n_fft: int = N_FFT, support: str = "hop") -> tuple[int, int]:
    """The samples ``[start, stop)`` log-mel frame ``frame`` stands for.

    Parameters
    ----------
    frame : int
        Pooled frame index, ``0 <= frame < n_frames(n_samples)``.
    n_samples : int
        Length of the clip.
    support : {"hop", "window"}
        ``"hop"``: the samples nearest to this frame's STFT frame centres,
        i.e. STFT frame ``t`` owns ``[t*hop - hop//2, (t+1)*hop - hop//2)``,
        clipped to the clip. These spans tile the clip exactly (disjoint, in
        order, from 0 to ``n_samples``): the map to use for "which seconds".
        ``"window"``: every sample any of the frame's STFT windows touches,
        ``[t0*hop - n_fft//2, t1*hop + n_fft//2)`` clipped; neighbouring
        frames overlap by ``n_fft - hop`` samples.

    Returns
    -------
    (start, stop) : tuple of int

    Notebook: notebooks/04_sonification.ipynb
    """
    stft = frame_to_stft_frames(frame, n_samples=n_samples, hop_length=hop_length, pool=pool)
    first, last = stft[0], stft[-1]
    if support == "hop":
        start = 0 if first == 0 else first * hop_length - hop_length // 2
        is_last = last == n_stft_frames(n_samples, hop_length=hop_length) - 1
        stop = n_samples if is_last else (last + 1) * hop_length - hop_length // 2
    elif support == "window":
        start = max(0, first * hop_length - n_fft // 2)
        stop = min(n_samples, last * hop_length + n_fft // 2)
    else:
        raise ParameterError(f"support must be 'hop' or 'window', got {support!r}")
    return int(start), int(min(stop, n_samples))


def stft_power(y: np.ndarray, *, params: LogMelParams | dict | None = None) -> np.ndarray:
    """Linear STFT power of one clip (fixed to ``params.duration``), before any filterbank.

    Returns
    -------
    np.ndarray, shape (1 + n_fft // 2, n_stft_frames), float32

    Notebook: notebooks/02_vit.ipynb
    """
    import librosa  # slow to import (numba); only the analysing functions need it

    p = _params(params)
    _check(p)
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio of shape (n_samples,), got shape {y.shape}")
    y = librosa.util.fix_length(y, size=int(round(p.duration * p.sr)))
    return (np.abs(librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, center=True)) ** 2).astype(np.float32)


def mel_power(y: np.ndarray, *, params: LogMelParams | dict | None = None) -> np.ndarray:
    """Pooled mel power of one clip, before the logarithm.

    (With ``front_end="logfreq"``: the pooled log-frequency band power, the
    same chain with :func:`filterbank` in place of the mel filterbank.)

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``params.sr``; fixed to ``params.duration`` seconds
        (zero-padded or cut) so every clip gives the same shape.

    Returns
    -------
    np.ndarray, shape (n_rows, n_frames), float32

    Notebook: notebooks/02_vit.ipynb
    """
    p = _params(params)
    power = stft_power(y, params=p)
    # The mel projection written out (rather than librosa.feature.melspectrogram)
    # so that it is visibly the matrix mel_filterbank returns.
    mel = _filterbank(p) @ power
    return pool_frames(mel, pool=p.pool)


def pool_frames(mel: np.ndarray, *, pool: int = POOL) -> np.ndarray:
    """Average ``mel`` over groups of ``pool`` consecutive frames.

    Parameters
    ----------
    mel : np.ndarray, shape (n_mels, n_stft_frames)

    Returns
    -------
    np.ndarray, shape (n_mels, ceil(n_stft_frames / pool)), float32
        Column ``k`` is the mean of columns ``k*pool .. k*pool+pool-1``; the
        last one averages what is left.

    Notebook: notebooks/02_vit.ipynb
    """
    if pool == 1:
        return mel.astype(np.float32)
    n_mels, total = mel.shape
    n_out = -(-total // pool)
    padded = np.full((n_mels, n_out * pool), np.nan, dtype=np.float64)
    padded[:, :total] = mel
    return np.nanmean(padded.reshape(n_mels, n_out, pool), axis=2).astype(np.float32)


def logmel(y: np.ndarray, *, params: LogMelParams | dict | None = None) -> np.ndarray:
    """Log-mel spectrogram of one clip in dB, as the model's one-channel image.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``params.sr`` (22 050 Hz by default).
    params : LogMelParams or dict, optional
        ``n_fft`` 2048, ``hop_length`` 512, ``n_mels`` 128, ``pool`` 4 by default.

    Returns
    -------
    np.ndarray, shape (1, n_mels, n_frames), float32
        ``10 log10(max(P, 1e-10))`` of the pooled mel power ``P``, floored at
        ``top_db`` below the clip's maximum. (1, 128, 108) for 10 s by default.

    Notebook: notebooks/02_vit.ipynb
    """
    import librosa  # slow to import (numba); only the analysing functions need it

    p = _params(params)
    power = mel_power(y, params=p)
    db = librosa.power_to_db(power, ref=1.0, amin=AMIN, top_db=p.top_db)
    return db[np.newaxis].astype(np.float32)


#: Floor (dB) of a band's standard deviation in :func:`fit_normalizer`: a band
#: that sits at the -80 dB floor in almost every clip would otherwise have its
#: few faint values blown up to many units.
MIN_BAND_STD_DB = 1.0


def fit_normalizer(specs: np.ndarray) -> dict[str, Any]:
    """Per-band mean and standard deviation (dB) of the training spectrograms.

    One pair per mel band, over all training clips and frames: the bands of a
    log-mel differ by tens of dB in level and spread (the bass and the
    hi-hat), and a scalar pair left the low bands, where the chord thirds sit,
    compressed into a small part of the input range (measured here: per-band
    statistics raised the small ViT's mode accuracy by 0.18 after the same
    training). Normalising is still a fixed affine map per bin
    (``x = (db - mean_b) / std_b``), so LRP's input relevance and the
    sonification's mask refer to the same bins as the dB spectrogram.

    Parameters
    ----------
    specs : np.ndarray, shape (n_clips, 1, n_mels, n_frames)
        Spectrograms of the TRAINING split only.

    Returns
    -------
    dict
        ``{"mean": list of n_mels floats, "std": list of n_mels floats,
        "n_clips": int}``; each ``std`` at least :data:`MIN_BAND_STD_DB`.

    Notebook: notebooks/02_vit.ipynb
    """
    specs = np.asarray(specs)
    if specs.ndim != 4 or len(specs) == 0:
        raise ParameterError(f"expected spectrograms of shape (n_clips, 1, n_mels, n_frames), got {specs.shape}")
    mean = specs.mean(axis=(0, 1, 3), dtype=np.float64)
    std = np.maximum(specs.std(axis=(0, 1, 3), dtype=np.float64), MIN_BAND_STD_DB)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "n_clips": int(len(specs))}


def band_statistics(specs: np.ndarray) -> np.ndarray:
    """Per-band summary of each spectrogram: level, spread and change over time.

    A "bag of frames" description that keeps no order of events beyond one
    frame: for every mel band, the mean over frames, the standard deviation
    over frames, and the mean absolute difference between consecutive frames
    (a per-band spectral flux). Chapter 2 uses it as the simplest model of the
    ViT's own input.

    Parameters
    ----------
    specs : np.ndarray, shape (n_clips, 1, n_mels, n_frames) or (n_clips, n_mels, n_frames)
        Log-mel spectrograms (dB or normalised: any per-band affine map only
        rescales the columns).

    Returns
    -------
    np.ndarray, shape (n_clips, 3 * n_mels), float64
        Columns ``[mean_0 .. mean_{n_mels-1}, std_0 .., flux_0 ..]``.

    Notebook: notebooks/02_vit.ipynb
    """
    specs = np.asarray(specs, dtype=np.float64)
    if specs.ndim == 4 and specs.shape[1] == 1:
        specs = specs[:, 0]
    if specs.ndim != 3 or specs.shape[-1] < 2:
        raise ParameterError(f"expected spectrograms of shape (n_clips, [1,] n_mels, n_frames >= 2), "
                             f"got {specs.shape}")
    flux = np.abs(np.diff(specs, axis=-1)).mean(axis=-1)
    return np.concatenate([specs.mean(axis=-1), specs.std(axis=-1), flux], axis=1)


def normalize(spec: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """``(spec - mean_b) / std_b`` per mel band ``b`` (:func:`fit_normalizer`).

    Scalar statistics (checkpoints written before per-band normalisation) are
    applied to every band.

    Parameters
    ----------
    spec : np.ndarray, shape (..., n_mels, n_frames)
    stats : dict
        ``mean`` and ``std``: floats, or sequences of ``n_mels`` floats.

    Returns
    -------
    np.ndarray, same shape, float32

    Notebook: notebooks/02_vit.ipynb
    """
    spec = np.asarray(spec, dtype=np.float32)
    mean = np.asarray(stats["mean"], dtype=np.float32)
    std = np.asarray(stats["std"], dtype=np.float32)
    if mean.ndim == 1:
        if spec.ndim < 2 or spec.shape[-2] != len(mean):
            raise ParameterError(f"normalisation statistics have {len(mean)} bands, the spectrogram "
                                 f"shape is {spec.shape}")
        mean, std = mean[:, None], std[:, None]
    return (spec - mean) / std


def _logmel_file(path: str, params: LogMelParams, stft: bool = False) -> np.ndarray:
    numba_cache.prepare()
    y = audio.load(path, sr=params.sr, duration=params.duration)
    if stft:
        return pool_frames(stft_power(y, params=params), pool=params.pool)[np.newaxis]
    return logmel(y, params=params)


def compute(clips, *, params: LogMelParams | dict | None = None, n_jobs: int = 2,
            cache: bool = True, progress: bool = True, stft: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel spectrograms of every clip of a dataset table, cached.

    Parameters
    ----------
    clips : pandas.DataFrame
        A dataset's ``clips`` table (columns ``clip_id`` and ``path``).
    params : LogMelParams or dict, optional
    n_jobs : int
        joblib worker processes.
    cache : bool
        Read from / write to ``data/derived/logmel/logmel-<hash>.npz``; the
        hash covers ``params``, the clip ids, paths and file sizes.
    stft : bool
        Return the linear STFT power pooled in time (:func:`stft_power`, then
        :func:`pool_frames`) instead: shape (n_clips, 1, 1 + n_fft // 2,
        n_frames), the input of :func:`transposed_filterbank` (the mel
        front end's transposition augmentation).

    Returns
    -------
    specs : np.ndarray, shape (n_clips, 1, n_mels, n_frames), float32
        In dB, un-normalised, in the order of ``clips``.
    clip_ids : np.ndarray, shape (n_clips,), str

    Notebook: notebooks/02_vit.ipynb
    """
    p = _params(params)
    _check(p)
    return store.clip_arrays("logmel", clips, {"logmel": p.to_dict(), **({"stft": True} if stft else {})},
                             functools.partial(_logmel_file, params=p, stft=stft), code=__name__, field="specs",
                             empty=np.zeros((0, 1, p.n_rows, 0), np.float32), desc="log-mel", n_jobs=n_jobs,
                             cache=cache, progress=progress, before=numba_cache.prepare)


def floor_db(db: np.ndarray, top_db: float | None) -> np.ndarray:
    """``max(db, max - top_db)`` per spectrogram (the last two axes), as :func:`logmel` floors.

    For spectrograms computed with ``top_db=None`` and cut afterwards (:func:`crop`):
    the floor then refers to the visible rows, exactly as :func:`logmel` of the visible front end.
    """
    if top_db is None:
        return db
    peak = db.max(axis=(-2, -1), keepdims=True)
    return np.maximum(db, peak - float(top_db)).astype(np.float32)


__all__: Sequence[str] = (
    "LogMelParams", "mel_filterbank", "logfreq_filterbank", "filterbank", "transposed_filterbank", "crop",
    "relevance_to_stft", "floor_db", "stft_power", "mel_band_bins", "n_stft_frames", "n_frames",
    "frame_to_stft_frames", "frame_to_samples", "mel_power", "pool_frames", "logmel",
    "fit_normalizer", "normalize", "compute",
)
