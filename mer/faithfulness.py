"""Is a sonification faithful to the model? The model hears the sounds again.

A sonified explanation (:func:`mer.sonify.sonify`) is faithful when the model
itself agrees with it: the kept part should hold the prediction, and removing
it (the complement) should lower p(predicted class) more than removing a
random region of equal area. :func:`faithfulness_table` lets the model hear
the original, kept, complement and random-removed sounds of each clip;
:func:`faithfulness_by_explainer` does so for every explainer of chapter 4.

The table is summarised with the metrics of L-MAC (Paissan et al., ICML
2024), as pure functions of probability arrays: :func:`average_increase`,
:func:`average_drop`, :func:`average_gain`, :func:`faithfulness_on_spectra`,
:func:`input_fidelity`, and our :func:`complement_beats_random_share`
(:func:`faithfulness_summary` computes them all).

Chapter 3's checks on spectrograms (perturbation curves, ``mer.lrp.checks``)
ask the same question of the model input; this module asks it of the sound.

Notebook: notebooks/04_sonification.ipynb
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import ParameterError, vit
from . import spectrogram as spec
from .explain import audio_predictor, explain_clips
from .metrics import LABELS
from .sonify import TEMPORAL_SMOOTHING, apply_mask, match_loudness, random_mask_like, sonify

# ----------------------------------------------------------------------------
# L-MAC's metrics, on probabilities
# ----------------------------------------------------------------------------


def _probabilities(name: str, p: Any) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ParameterError(f"{name} must be a non-empty 1-D array of probabilities, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ParameterError(f"{name} must hold probabilities in [0, 1] (softmax applied once, "
                             f"never to probabilities again); got values in [{p.min()}, {p.max()}]")
    return p


def _pair(p_orig, other, other_name) -> tuple[np.ndarray, np.ndarray]:
    a, b = _probabilities("p_orig", p_orig), _probabilities(other_name, other)
    if a.shape != b.shape:
        raise ParameterError(f"p_orig and {other_name} must have the same length, got {a.size} and {b.size}")
    return a, b


def average_increase(p_orig, p_kept) -> float:
    """AI: % of clips whose kept part raises p(predicted class) above the original's.

    Parameters
    ----------
    p_orig, p_kept : array_like, shape (n_clips,)
        Probability of the class predicted on the original, on the original
        and on the kept (sonified) clip.

    Returns
    -------
    float
        In percent (L-MAC reports 61.6 for CNN14 on ESC-50). Higher is better.

    Notebook: notebooks/04_sonification.ipynb
    """
    a, b = _pair(p_orig, p_kept, "p_kept")
    return float(np.mean(b > a) * 100)


def average_drop(p_orig, p_kept) -> float:
    """AD: mean of ``relu(p_orig - p_kept) / p_orig``, in percent. Lower is better.

    Notebook: notebooks/04_sonification.ipynb
    """
    a, b = _pair(p_orig, p_kept, "p_kept")
    return float(np.mean(np.maximum(a - b, 0) / np.maximum(a, 1e-12)) * 100)


def average_gain(p_orig, p_kept) -> float:
    """AG: mean of ``relu(p_kept - p_orig) / (1 - p_orig)``, in percent. Higher is better.

    A clip with ``p_orig == 1`` cannot gain and adds 0.

    Notebook: notebooks/04_sonification.ipynb
    """
    a, b = _pair(p_orig, p_kept, "p_kept")
    return float(np.mean(np.maximum(b - a, 0) / np.maximum(1 - a, 1e-12)) * 100)


def faithfulness_on_spectra(p_orig, p_complement) -> float:
    """FF: mean of ``p_orig - p_complement`` (a probability difference). Higher is better.

    Removing what the explanation keeps should lower the predicted class's
    probability.

    Notebook: notebooks/04_sonification.ipynb
    """
    a, b = _pair(p_orig, p_complement, "p_complement")
    return float(np.mean(a - b))


def input_fidelity(pred_orig, pred_kept) -> float:
    """Fid-In: share of clips whose kept part keeps the predicted class (0-1).

    Parameters
    ----------
    pred_orig, pred_kept : array_like of int, shape (n_clips,)
        Predicted class (argmax of the probabilities) on the original and on
        the kept clip.

    Notebook: notebooks/04_sonification.ipynb
    """
    a, b = np.asarray(pred_orig), np.asarray(pred_kept)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ParameterError(f"pred_orig and pred_kept must be 1-D of equal length, got {a.shape}, {b.shape}")
    return float(np.mean(a == b))


def complement_beats_random_share(p_complement, p_random) -> float:
    """Share of clips (0-1) where removing the explanation lowers p(predicted class)
    more than removing a random region of equal area does.

    Parameters
    ----------
    p_complement : array_like, shape (n_clips,)
        p(predicted class) on the complement (explanation removed).
    p_random : array_like, shape (n_clips,)
        p(predicted class) with a random mask of equal area removed
        (:func:`mer.sonify.random_mask_like`).

    Notebook: notebooks/04_sonification.ipynb
    """
    a, b = _pair(p_complement, p_random, "p_random")
    return float(np.mean(a < b))


def faithfulness_summary(table) -> dict[str, float]:
    """All the metrics from a table of per-clip probabilities.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``p_orig, p_kept, p_complement, p_random, pred_orig,
        pred_kept`` (as :func:`faithfulness_table` returns for one explainer).

    Returns
    -------
    dict
        ``ai`` (%), ``ad`` (%), ``ag`` (%), ``ff`` (probability), ``fid_in``
        (0-1), ``complement_beats_random_share`` (0-1), ``n_clips``.

    Notebook: notebooks/04_sonification.ipynb
    """
    return {
        "ai": average_increase(table["p_orig"], table["p_kept"]),
        "ad": average_drop(table["p_orig"], table["p_kept"]),
        "ag": average_gain(table["p_orig"], table["p_kept"]),
        "ff": faithfulness_on_spectra(table["p_orig"], table["p_complement"]),
        "fid_in": input_fidelity(table["pred_orig"], table["pred_kept"]),
        "complement_beats_random_share": complement_beats_random_share(table["p_complement"], table["p_random"]),
        "n_clips": int(len(table)),
    }


def faithfulness_by_class(table) -> pd.DataFrame:
    """The sound's faithfulness per explainer and per class predicted on the original.

    A model can decide one class from evidence it finds (a minor third, say)
    and the other by default, from its absence. Removing the explanation of a
    default decision has little to take away, so a pooled share can sit near
    chance while the evidence-driven class is explained well; this table
    shows it.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`faithfulness_by_explainer`'s (columns ``explainer``,
        ``pred_orig`` and those :func:`faithfulness_summary` reads).

    Returns
    -------
    pandas.DataFrame
        Index (``explainer``, ``predicted``: the class name), columns
        ``n_clips``, ``complement_beats_random_share`` and ``ff``.

    Notebook: notebooks/04_sonification.ipynb
    """
    rows = {}
    for (name, code), group in table.groupby(["explainer", "pred_orig"], sort=False):
        rows[(name, LABELS[int(code)])] = {
            "n_clips": int(len(group)),
            "complement_beats_random_share": complement_beats_random_share(group["p_complement"], group["p_random"]),
            "ff": faithfulness_on_spectra(group["p_orig"], group["p_complement"])}
    out = pd.DataFrame(rows).T
    out.index = out.index.set_names(["explainer", "predicted"])
    return out.astype({"n_clips": int}).sort_index(level="predicted", sort_remaining=False)


# ----------------------------------------------------------------------------
# The model hears the sounds again
# ----------------------------------------------------------------------------


def faithfulness_table(clips: np.ndarray, relevances: np.ndarray, *, predict_proba: Callable,
                       seed: int = 0, clip_ids: Sequence[str] | None = None,
                       front_end: Sequence[dict] | None = None, original_proba: np.ndarray | None = None,
                       **options) -> pd.DataFrame:
    """The model's probabilities on original, kept, complement and random-mask clips.

    Parameters
    ----------
    clips : np.ndarray, shape (n_clips, n_samples)
        The explained clips (held-out test split).
    relevances : np.ndarray, shape (n_clips, n_mels, n_frames)
        Relevance for the class predicted on each clip.
    predict_proba : callable
        ``predict_proba(audio) -> probabilities``, audio of shape
        ``(n, n_samples)``, probabilities of shape ``(n, n_classes)`` summing
        to one (softmax applied once, inside).
    seed : int
        Seed of the random masks (clip ``i`` uses ``seed + i``).
    clip_ids : sequence of str, optional
    front_end : sequence of dict, optional
        Per clip, the options that map its relevance back to its STFT bins
        (:func:`mer.explain.explain_clips`'s ``front_end``); default ``{}``,
        the mel front end. Both the explanation's mask and the random one go
        through it.
    original_proba : np.ndarray, shape (n_clips, n_classes), optional
        ``predict_proba(clips)``, if known already; otherwise the model hears
        the originals here, all in one batch.
    **options
        Mask options of :func:`mer.sonify.sonify` (sign, threshold, top_k_percent...).

    Returns
    -------
    pandas.DataFrame, one row per clip
        ``clip_id, pred_orig, p_orig, p_kept, p_complement, p_random,
        pred_kept, area, gain_db, loudness_diff_db``: ``p_*`` is the
        probability of ``pred_orig``; ``p_random`` has a random region of
        equal area *removed* (:func:`mer.sonify.random_mask_like`; compare with
        ``p_complement``). The model hears the loudness-matched clips, as a
        reader does.

    Notebook: notebooks/04_sonification.ipynb
    """
    clips = np.asarray(clips, dtype=np.float32)
    relevances = np.asarray(relevances)
    if clips.ndim != 2 or relevances.ndim != 3 or len(clips) != len(relevances):
        raise ParameterError(f"expected clips (n, n_samples) and relevances (n, n_mels, n_frames); "
                             f"got {clips.shape} and {relevances.shape}")
    if front_end is not None and len(front_end) != len(clips):
        raise ParameterError(f"front_end has {len(front_end)} entries for {len(clips)} clips")
    if original_proba is not None and len(original_proba) != len(clips):
        raise ParameterError(f"original_proba has {len(original_proba)} rows for {len(clips)} clips")
    original_proba = np.asarray(predict_proba(clips) if original_proba is None else original_proba, dtype=np.float64)
    sr = options.get("sr", spec.SR)
    rows = []
    for i, (y, relevance) in enumerate(zip(clips, relevances)):
        own = front_end[i] if front_end is not None else {}
        clip = sonify(y, relevance, **options, **own)
        random = random_mask_like(clip.mask, seed=seed + i, n_mels=relevance.shape[0], n_samples=y.size,
                                  sr=sr, n_fft=options.get("n_fft", spec.N_FFT),
                                  hop_length=options.get("hop_length", spec.HOP_LENGTH),
                                  pool=options.get("pool", spec.POOL),
                                  temporal_smoothing=options.get("temporal_smoothing", TEMPORAL_SMOOTHING), **own)
        random_removed_raw = apply_mask(y, 1.0 - random, n_fft=options.get("n_fft", spec.N_FFT),
                                        hop_length=options.get("hop_length", spec.HOP_LENGTH))
        random_removed = match_loudness(random_removed_raw, target=clip.loudness_original, sr=sr).y
        masked = np.asarray(predict_proba(np.stack([clip.kept, clip.complement, random_removed])), dtype=np.float64)
        proba = np.vstack([original_proba[i][None], masked])
        pred = int(np.argmax(proba[0]))
        rows.append({
            "clip_id": clip_ids[i] if clip_ids is not None else str(i), "pred_orig": pred,
            "p_orig": proba[0, pred], "p_kept": proba[1, pred], "p_complement": proba[2, pred],
            "p_random": proba[3, pred],
            "pred_kept": int(np.argmax(proba[1])), "area": clip.area, "gain_db": clip.gain_db,
            "loudness_diff_db": clip.loudness_diff_db,
        })
    return pd.DataFrame(rows)


def faithfulness_by_explainer(model, meta: dict[str, Any], audio_clips: np.ndarray, *,
                              explainers: list[str], clip_ids=None, seed: int = 0, batch_size: int = 8,
                              progress: bool = True, **options):
    """:func:`faithfulness_table` for every explainer, one long table.

    Each clip is explained for its predicted class; the model then hears the
    original, the sonified (kept) clip, the complement and a random mask of
    equal area removed (all loudness-matched). Each map goes back to the
    clip's STFT through the checkpoint's own front end and the clip's move to
    the canonical key (``explain_clips(...)["front_end"]``).

    Parameters
    ----------
    audio_clips : np.ndarray, shape (n_clips, n_samples)
        Held-out (test split) clips.
    explainers : list of str
        Names of :data:`mer.lrp.explainers.EXPLAINERS`.
    **options
        Mask options of :func:`mer.sonify.sonify`.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`faithfulness_table` plus ``explainer``.

    Notebook: notebooks/04_sonification.ipynb
    """
    predict_proba = audio_predictor(model, meta)
    # The clips' model input (their tonic estimate and spectrogram, most of the cost) once, for every explainer.
    prepared = vit.audio_input_and_shift(audio_clips, meta)
    tables = []
    for name in explainers:
        parts = []
        for start in tqdm(range(0, len(audio_clips), batch_size), desc=f"faithfulness {name}",
                          disable=not progress):
            batch = audio_clips[start:start + batch_size]
            found = explain_clips(model, meta, batch, explainer=name,
                                  inputs=tuple(part[start:start + batch_size] for part in prepared),
                                  **({"seed": seed + start} if name == "random" else {}))
            ids = None if clip_ids is None else list(clip_ids[start:start + batch_size])
            parts.append(faithfulness_table(batch, found["relevance"], predict_proba=predict_proba,
                                            seed=seed + start, clip_ids=ids, front_end=found["front_end"],
                                            original_proba=found["proba"], **options))
        table = pd.concat(parts, ignore_index=True)
        table.insert(0, "explainer", name)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


__all__: Sequence[str] = (
    "average_increase", "average_drop", "average_gain", "faithfulness_on_spectra", "input_fidelity",
    "complement_beats_random_share", "faithfulness_summary", "faithfulness_by_class", "faithfulness_table",
    "faithfulness_by_explainer",
)
