"""What the model sees: spectrograms of a dataset or of audio, normalised, and the key-invariance options.

:func:`prepare` turns a dataset into the normalised training inputs (with
what key augmentation needs); :func:`model_input` and :func:`audio_input`
turn clips of a dataset table or raw audio into the input a checkpoint
expects, the one path every chapter and command takes. :func:`key_options`
and :func:`key_invariance_record` name the every-key designs (log-frequency
front end, transposition augmentation, canonicalisation to an estimated
tonic, :func:`canonical_semitones`).

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .. import ParameterError, spectrogram, tonality
from ..metrics import label_codes


#: Canonicalisation rules (:func:`train`'s ``canonicalise``).
CANONICALISE = ("tonic",)


#: The log-frequency front end's parameters for :func:`key_options` (chapters, command line):
#: 192 bands at 24 per octave, E1 (41 Hz) to 10.2 kHz.
LOGFREQ_LOGMEL = {"front_end": "logfreq", "n_mels": 192, "bins_per_octave": 24}


def shift_set(transpose_augment) -> tuple[int, ...]:
    """The semitone shifts :func:`train`'s ``transpose_augment`` draws from (uniformly).

    An int ``K`` means ``-K .. +K``; a sequence of ints is taken as given
    (e.g. ``(-7, -5, 0, 5, 7)``: the fifth and fourth a tonic estimate confuses).
    0 or an empty sequence: none.
    """
    if isinstance(transpose_augment, (int, np.integer)) and not isinstance(transpose_augment, bool):
        if not 0 <= transpose_augment <= 12:
            raise ParameterError(f"transpose_augment must be 0..12 semitones, got {transpose_augment!r}")
        return tuple(range(-int(transpose_augment), int(transpose_augment) + 1)) if transpose_augment else ()
    try:
        shifts = tuple(sorted({int(k) for k in transpose_augment}))
    except (TypeError, ValueError):
        raise ParameterError(f"transpose_augment must be an int or a sequence of ints, got {transpose_augment!r}") \
            from None
    if any(abs(k) > 12 for k in shifts):
        raise ParameterError(f"transpose_augment shifts must be within -12..12 semitones, got {shifts}")
    return shifts


def augment_record(transpose_augment):
    """``transpose_augment`` as recorded (an int stays an int, so its checkpoint names do not move)."""
    if isinstance(transpose_augment, (int, np.integer)):
        return int(transpose_augment)
    return list(shift_set(transpose_augment))


def key_options(front_end: str = "mel", transpose_augment: int = 0, canonicalise: str | None = None
                ) -> dict[str, Any]:
    """:func:`train` keywords for a key-invariance design; ``{}`` for the default (mel, none).

    Notebook: notebooks/02_vit.ipynb
    """
    if front_end not in spectrogram.FRONT_ENDS:
        raise ParameterError(f"front_end must be one of {spectrogram.FRONT_ENDS}, got {front_end!r}")
    options: dict[str, Any] = {}
    if front_end == "logfreq":
        options["logmel"] = dict(LOGFREQ_LOGMEL)
    if shift_set(transpose_augment):
        options["transpose_augment"] = augment_record(transpose_augment)
    if canonicalise:
        options["canonicalise"] = str(canonicalise)
    return options


def key_invariance_record(logmel: dict, transpose_augment, canonicalise: str | None) -> dict[str, Any]:
    """The design that makes a checkpoint (in)sensitive to the key, as stored in ``meta["key_invariance"]``."""
    params = spectrogram.LogMelParams(**logmel)
    method = None
    if transpose_augment:
        method = "stft-rescale before the mel filterbank" if params.front_end == "mel" else "log-frequency crop offset"
    return {"front_end": params.front_end,
            "bins_per_semitone": params.bins_per_semitone if params.front_end == "logfreq" else None,
            "transpose_augment_semitones": augment_record(transpose_augment),
            "augment_shifts": list(shift_set(transpose_augment)), "augment_method": method,
            "canonicalise": canonicalise,
            "tonic_profile": tonality.DEFAULT_PROFILE if canonicalise else None,
            "canonical_rule": (f"tonic of the best-correlating mode-free {tonality.DEFAULT_PROFILE} profile on "
                               "librosa's chroma_cqt of the clip; clip moved by -tonic (-6..+5)")
            if canonicalise else None}


def tall_logmel_params(params: "spectrogram.LogMelParams", semitones: int) -> "spectrogram.LogMelParams":
    """The log-frequency front end with room for ``semitones`` either way, un-floored (top_db None)."""

    return replace(params, margin=int(math.ceil(semitones * params.bins_per_semitone)), top_db=None)


def canonical_semitones(clips: pd.DataFrame, meta_or_logmel: dict[str, Any], *, n_jobs: int = 2,
                        progress: bool = True) -> np.ndarray:
    """The transposition that brings each clip of a dataset table to the canonical key.

    :func:`mer.tonality.canonical_semitones` of the clips' CQT chroma
    (:func:`mer.tonality.chromas`, cached): the mode-free tonic estimate,
    wrapped into -5..6, and the clip moved by ``-tonic``. A clip transposed by
    ``k`` gets ``tonic + k``, so the twelve transpositions of a score reach
    the model as one input wherever the estimate follows them (98 % of pairs
    on the tonal writing). Errors (a tonic estimated on the dominant, mostly)
    become shifted inputs, not wrong labels.

    Parameters
    ----------
    clips : pandas.DataFrame
        Columns ``clip_id`` and ``path``.
    meta_or_logmel : dict
        A checkpoint's ``meta`` (its recorded profile is used) or the
        front end's parameters (the default profile).

    Returns
    -------
    np.ndarray of int, shape (n_clips,)
        Semitones to move each clip by (:func:`mer.spectrogram.crop`), in -6..5.

    Notebook: notebooks/02_vit.ipynb
    """
    logmel = meta_or_logmel.get("logmel", meta_or_logmel)
    chroma = tonality.chromas(clips, duration=spectrogram.LogMelParams(**logmel).duration, n_jobs=n_jobs,
                              progress=progress)
    return tonality.canonical_semitones(chroma, profile=tonic_profile(meta_or_logmel))


def clip_moves(clips: pd.DataFrame, meta: dict[str, Any], *, n_jobs: int = 2, progress: bool = True) -> np.ndarray:
    """How far a checkpoint's front end moves each clip of a dataset table: :func:`canonical_semitones`
    for a canonicalising checkpoint, 0 otherwise.

    Returns
    -------
    np.ndarray of int, shape (n_clips,)
        Pass a clip's value as ``semitones`` to the figures of :mod:`mer.plots`, so their ticks name the
        clip's own pitches while the image stays the model's input.

    Notebook: notebooks/03_lrp.ipynb
    """
    if not canonicalises(meta):
        return np.zeros(len(clips), dtype=int)
    return np.asarray(canonical_semitones(clips, meta, n_jobs=n_jobs, progress=progress), dtype=int)


def canonicalises(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint moves each clip to its estimated tonic before the model (its ``key_invariance`` record)."""
    return bool((meta.get("key_invariance") or {}).get("canonicalise"))


def tonic_profile(meta: dict[str, Any]) -> str:
    """The key profile a checkpoint canonicalises with (recorded in its meta; the default before it was)."""
    return (meta.get("key_invariance") or {}).get("tonic_profile") or tonality.DEFAULT_PROFILE


def audio_canonical_semitones(clips: np.ndarray, meta: dict[str, Any]) -> np.ndarray | None:
    """:func:`canonical_semitones` of audio clips for a canonicalising checkpoint; ``None`` otherwise.

    Parameters
    ----------
    clips : np.ndarray, shape (n_clips, n_samples)
        At the front end's sampling rate.
    """
    if not canonicalises(meta):
        return None
    clips = clips if isinstance(clips, (list, tuple)) else np.atleast_2d(clips)
    chroma = np.stack([tonality.tonic_chroma(y, sr=int(meta["logmel"].get("sr", tonality.SR)))
                       for y in clips])
    return tonality.canonical_semitones(chroma, profile=tonic_profile(meta))


def input_filterbank(meta: dict[str, Any], semitones: int = 0) -> np.ndarray:
    """The linear map from a clip's STFT power to the rows the model saw, for a clip moved by ``semitones``.

    The front end's filterbank (:func:`mer.spectrogram.filterbank`); when a
    canonicalising checkpoint moved the clip, the rows of the taller
    log-frequency filterbank that the crop kept (:func:`mer.spectrogram.crop`
    applied to the filterbank itself). Relevance per input row maps back to
    STFT bins through this matrix.

    Returns
    -------
    np.ndarray, shape (n_rows, 1 + n_fft // 2), float32

    Notebook: notebooks/04_sonification.ipynb
    """
    params = spectrogram.LogMelParams(**meta["logmel"])
    if not semitones:
        return spectrogram.filterbank(params)
    if params.front_end != "logfreq":
        raise ParameterError("only the logfreq front end moves a clip by whole semitones")
    tall_params = tall_logmel_params(params, abs(int(semitones)))
    return spectrogram.crop(spectrogram.filterbank(tall_params), tall_params, int(semitones)).copy()


def crop_each(tall: np.ndarray, tall_params, semitones: np.ndarray, top_db: float | None) -> np.ndarray:
    rows = [spectrogram.crop(tall[i], tall_params, int(k)) for i, k in enumerate(semitones)]
    out = np.stack(rows) if rows else tall[:, :, :0]
    return spectrogram.floor_db(out, top_db)


def prepare(dataset, *, logmel: dict | None = None, n_jobs: int = 2, progress: bool = True,
            patch_frames: int = 2, transpose_augment=0, canonicalise: str | None = None) -> dict[str, Any]:
    """Spectrograms of a dataset, normalised with training-split statistics.

    With ``transpose_augment`` (see :func:`train`) it also keeps what the
    augmentation needs: for the mel front end the training clips' linear STFT
    power pooled in time (``stft_train``, shape (n_train, 1, 1 + n_fft // 2,
    n_frames)); for the log-frequency front end every clip's spectrogram
    computed with margins and no dB floor (``tall``, with ``tall_logmel``).
    With ``canonicalise`` the log-frequency spectrograms are first moved to
    the canonical key (:func:`canonical_semitones`, ``canonical_semitones``).

    Returns
    -------
    dict
        ``specs`` (n_clips, 1, n_mels, n_frames) normalised float32, ``labels``
        (n_clips,) int, ``split`` (n_clips,) str, ``clip_ids``, ``stats``
        (from the training split only), ``logmel`` (parameters as dict).

    Notebook: notebooks/02_vit.ipynb
    """
    params = spectrogram.LogMelParams(**(logmel or {}))
    if params.margin:
        raise ParameterError("logmel's margin is set by train (transpose_augment, canonicalise), not by hand")
    if canonicalise is not None and (canonicalise not in CANONICALISE or params.front_end != "logfreq"):
        raise ParameterError(f"canonicalise must be one of {CANONICALISE} with front_end='logfreq', "
                             f"got {canonicalise!r} with {params.front_end!r}")
    shifts_drawn = shift_set(transpose_augment)
    reach = max((abs(k) for k in shifts_drawn), default=0)
    clips = dataset.clips.reset_index(drop=True)
    extra: dict[str, Any] = {}
    room = max(reach, 6 if canonicalise else 0) + (reach if canonicalise else 0)
    if params.front_end == "logfreq" and room:
        tall_params = tall_logmel_params(params, room)
        tall, ids = spectrogram.compute(clips, params=tall_params, n_jobs=n_jobs, progress=progress)
        shifts = (canonical_semitones(clips, params.to_dict(), n_jobs=n_jobs, progress=progress) if canonicalise
                  else np.zeros(len(clips), dtype=int))
        specs = crop_each(tall, tall_params, shifts, params.top_db)
        extra.update(tall=tall, tall_logmel=tall_params, canonical_semitones=shifts)
    else:
        specs, ids = spectrogram.compute(clips, params=params, n_jobs=n_jobs, progress=progress)
    split = clips["split"].astype(str).to_numpy()
    if not (split == "train").any():
        raise ParameterError(f"dataset {dataset.name!r} has no clip in split 'train'")
    if shifts_drawn and params.front_end == "mel":
        extra["stft_train"], _ = spectrogram.compute(clips[split == "train"], params=params, n_jobs=n_jobs,
                                                     progress=progress, stft=True)
    if shifts_drawn:
        stats = _transposed_stats(specs[split == "train"], params, shifts_drawn, extra,
                                  split == "train")
    else:
        stats = spectrogram.fit_normalizer(specs[split == "train"])
    specs = spectrogram.normalize(specs, stats)
    remainder = specs.shape[-1] % patch_frames
    if remainder:  # pad with the training mean (0 after normalising) to whole patches
        specs = np.pad(specs, [(0, 0)] * 3 + [(0, patch_frames - remainder)])
    return {"specs": specs, "labels": label_codes(clips["label"]).to_numpy(), "split": split,
            "clip_ids": ids, "stats": stats, "logmel": params.to_dict(), "clips": clips, **extra}


#: At most this many training clips (every n-th) estimate the band statistics of the transposed inputs.
STATS_CLIPS = 240


def _transposed_stats(train_specs: np.ndarray, params, shifts: tuple[int, ...], extra: dict, train_rows: np.ndarray
                      ) -> dict[str, Any]:
    """Per-band mean and spread of the training inputs over every transposition the augmentation draws.

    Statistics of the untransposed clips alone would normalise a band that
    the training keys leave nearly empty by a spread of a decibel or so, and a
    transposition that fills it would then reach tens of units. Fitted over
    the drawn ``shifts`` (each equally weighted, every n-th
    training clip up to :data:`STATS_CLIPS`), the statistics describe what the
    model is trained on; validation and test inputs use them unchanged.
    """

    n_train = len(train_specs)
    pick = np.arange(0, n_train, max(1, -(-n_train // STATS_CLIPS)))
    total = total_sq = 0.0
    count = 0
    for k in shifts:
        if params.front_end == "mel":
            bank = torch.as_tensor(spectrogram.transposed_filterbank(params, k))
            power = torch.einsum("mf,bft->bmt", bank, torch.as_tensor(extra["stft_train"][pick, 0])).numpy()
            db = spectrogram.floor_db(10.0 * np.log10(np.maximum(power, spectrogram.AMIN)), params.top_db)
        else:
            tall = extra["tall"][train_rows][pick]
            db = crop_each(tall, extra["tall_logmel"], extra["canonical_semitones"][train_rows][pick] + k,
                            params.top_db)[:, 0]
        db = db.astype(np.float64)
        total = total + db.sum(axis=(0, 2))
        total_sq = total_sq + (db ** 2).sum(axis=(0, 2))
        count += db.shape[0] * db.shape[2]
    mean = total / count
    std = np.maximum(np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0)), spectrogram.MIN_BAND_STD_DB)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "n_clips": int(len(pick)),
            "transpositions": [int(k) for k in shifts]}


def model_input(clips: pd.DataFrame, meta: dict[str, Any], *, n_jobs: int = 2, progress: bool = True) -> np.ndarray:
    """Normalised, patch-padded log-mel of ``clips`` as a checkpoint expects them.

    Returns
    -------
    np.ndarray, shape (n_clips, 1, n_mels, n_frames)

    Notebook: notebooks/02_vit.ipynb
    """
    if canonicalises(meta):
        params = spectrogram.LogMelParams(**meta["logmel"])
        tall_params = tall_logmel_params(params, 6)
        tall, _ = spectrogram.compute(clips, params=tall_params, n_jobs=n_jobs, progress=progress)
        specs = crop_each(tall, tall_params, canonical_semitones(clips, meta, n_jobs=n_jobs, progress=progress),
                           params.top_db)
    else:
        specs, _ = spectrogram.compute(clips, params=meta["logmel"], n_jobs=n_jobs, progress=progress)
    return fit_input(spectrogram.normalize(specs, meta["stats"]), meta)


def fit_input(specs: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Pad normalised spectrograms with 0 to the checkpoint's input width."""
    width = meta["input_shape"][-1]
    if specs.shape[-1] < width:
        specs = np.pad(specs, [(0, 0)] * (specs.ndim - 1) + [(0, width - specs.shape[-1])])
    return specs[..., :width]


def audio_input(clips: np.ndarray | Sequence[np.ndarray], meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Audio clips as a checkpoint's model input: the one path from samples to the ViT.

    The log-mel (or log-frequency) spectrogram of each clip with the
    checkpoint's settings; for a canonicalising checkpoint, moved to the key
    estimated from the clip itself, as in training (:func:`audio_canonical_semitones`);
    normalised with the training statistics and padded to the model's width.
    ``mer predict``, ``mer explain`` and chapter 4 all call this.

    Parameters
    ----------
    clips : np.ndarray, shape (n_clips, n_samples), or a sequence of 1-D arrays
        Mono audio at the checkpoint's rate (``meta["logmel"]["sr"]``); a
        clip shorter than the front end's duration is padded by the front end.
    meta : dict
        The checkpoint's ``meta.json`` (:func:`mer.vit.load_checkpoint`).

    Returns
    -------
    model_input : np.ndarray, shape (n_clips, 1, n_rows, input_frames), float32
        Normalised with the checkpoint's training statistics, padded to the
        model's input width.
    logmel_db : np.ndarray, shape (n_clips, n_rows, n_frames), float32
        The same spectrograms in dB, for figures and sonification.

    Notebook: notebooks/04_sonification.ipynb
    """
    model_input, logmel_db, _ = audio_input_and_shift(clips, meta)
    return model_input, logmel_db


def audio_input_and_shift(clips: np.ndarray | Sequence[np.ndarray], meta: dict[str, Any]
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`audio_input`, and how far each clip was moved to the canonical key.

    Returns
    -------
    model_input, logmel_db
        As :func:`audio_input`.
    semitones : np.ndarray of int, shape (n_clips,)
        The move of each clip (0 unless the checkpoint canonicalises), to map
        relevance back to STFT bins (:func:`mer.sonify.front_end_options`).

    Notebook: notebooks/04_sonification.ipynb
    """
    params = meta["logmel"]
    clips = [np.asarray(y, dtype=np.float32) for y in (clips if isinstance(clips, (list, tuple))
                                                       else np.atleast_2d(clips))]
    semitones = audio_canonical_semitones(clips, meta) if clips else None
    if semitones is None:
        db = np.stack([spectrogram.logmel(y, params=params) for y in clips])
        semitones = np.zeros(len(clips), dtype=int)
    else:  # a canonicalised checkpoint: the same move to the canonical key as in training
        tall_params = tall_logmel_params(spectrogram.LogMelParams(**params), 6)
        tall = np.stack([spectrogram.logmel(y, params=tall_params) for y in clips])
        db = crop_each(tall, tall_params, semitones, params["top_db"])
    return fit_input(spectrogram.normalize(db, meta["stats"]), meta), db[:, 0], semitones
