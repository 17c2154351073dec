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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import ParameterError, numba_cache, store

log = logging.getLogger(__name__)

SR = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
#: Average-pool factor in time used by the default ViT (431 -> 108 frames per 10 s).
POOL = 4
AMIN = 1e-10
TOP_DB = 80.0


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


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


def mel_power(y: np.ndarray, *, params: LogMelParams | dict | None = None) -> np.ndarray:
    """Pooled mel power of one clip, before the logarithm.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        Mono audio at ``params.sr``; fixed to ``params.duration`` seconds
        (zero-padded or cut) so every clip gives the same shape.

    Returns
    -------
    np.ndarray, shape (n_mels, n_frames), float32

    Notebook: notebooks/02_vit.ipynb
    """
    import librosa

    p = _params(params)
    _check(p)
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"expected mono audio of shape (n_samples,), got shape {y.shape}")
    y = librosa.util.fix_length(y, size=int(round(p.duration * p.sr)))
    power = np.abs(librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, center=True)) ** 2
    # The mel projection written out (rather than librosa.feature.melspectrogram)
    # so that it is visibly the matrix mel_filterbank returns.
    mel = _mel_filterbank(p.sr, p.n_fft, p.n_mels, p.fmin, p.fmax) @ power
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
    import librosa

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


def _logmel_file(path: str, params: LogMelParams) -> np.ndarray:
    from . import audio

    numba_cache.prepare()
    y = audio.load(path, sr=params.sr, duration=params.duration)
    return logmel(y, params=params)


def compute(clips, *, params: LogMelParams | dict | None = None, n_jobs: int = 2,
            cache: bool = True, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
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

    Returns
    -------
    specs : np.ndarray, shape (n_clips, 1, n_mels, n_frames), float32
        In dB, un-normalised, in the order of ``clips``.
    clip_ids : np.ndarray, shape (n_clips,), str

    Notebook: notebooks/02_vit.ipynb
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    p = _params(params)
    _check(p)
    paths = [str(x) for x in clips["path"]]
    ids = np.asarray([str(x) for x in clips["clip_id"]])
    key = {"logmel": p.to_dict(), "clips": store.hash_params(
        [[i, path, Path(path).stat().st_size if Path(path).exists() else -1] for i, path in zip(ids, paths)])}
    target = store.artefact_path("logmel", key, ".npz", code=__name__)
    if cache and target.exists():
        with np.load(target, allow_pickle=False) as stored:
            if list(stored["clip_ids"]) == list(ids):
                return stored["specs"], ids
    numba_cache.prepare()  # compile once here before workers load the kernels
    jobs = (delayed(_logmel_file)(path, p) for path in paths)
    bar = tqdm(jobs, total=len(paths), desc="log-mel", disable=not progress)
    specs = np.stack(Parallel(n_jobs=n_jobs)(bar)) if paths else np.zeros((0, 1, p.n_mels, 0), np.float32)
    if cache:
        with store.atomic_path(target) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, specs=specs, clip_ids=ids)
    return specs, ids


def benchmark_logmel_ms(n: int = 5) -> float:
    """Milliseconds for the log-mel of one 10 s clip (mean of ``n``)."""
    import time

    rng = np.random.default_rng(0)
    y = rng.standard_normal(int(SR * 10)).astype(np.float32) * 0.1
    logmel(y)
    start = time.perf_counter()
    for _ in range(n):
        logmel(y)
    return (time.perf_counter() - start) / n * 1000


__all__: Sequence[str] = (
    "LogMelParams", "mel_filterbank", "mel_band_bins", "n_stft_frames", "n_frames",
    "frame_to_stft_frames", "frame_to_samples", "mel_power", "pool_frames", "logmel",
    "fit_normalizer", "normalize", "compute",
)
