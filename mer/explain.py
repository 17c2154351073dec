"""Explaining the ViT's predictions on audio, and what chapter 4 measures with the explanations.

:func:`explain_clips` predicts and explains audio clips with any explainer of
:data:`mer.lrp.explainers.EXPLAINERS`, on the input a checkpoint expects
(:func:`mer.vit.audio_input`, :func:`audio_predictor`). Chapter 4 builds on
it: the prediction and confusion quadrant of every test clip
(:func:`predictions_table`, :func:`quadrant_examples`), what a listener gets
for one explained clip (:func:`sonification_sounds`), where the kept energy
sits (:func:`centroid_table`) and the model-randomisation check
(:func:`randomised_model`).

:func:`explain_windows` explains a whole file one 10 s window at a time and
writes each window's relevance figure and sonified audio: the computing half
of ``python -m mer explain``, whose page, output folder and terminal output
are :mod:`mer.cli.explain`'s.

Showing all this in a notebook is :mod:`mer.display`'s (players, the
quadrant examples); whether a sonified explanation is faithful to the model,
:mod:`mer.faithfulness`'s.

Notebook: notebooks/04_sonification.ipynb
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
from transformers import ViTConfig

from . import ParameterError, audio, plots, sonify, vit
from .lrp import explainers
from .metrics import HAPPY, ID2LABEL, QUADRANTS, SAD, called, quadrant


# ----------------------------------------------------------------------------
# From audio to the model and back
# ----------------------------------------------------------------------------


def audio_predictor(model, meta: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """``predict_proba(audio)`` for a checkpoint: audio in, class probabilities out.

    Parameters
    ----------
    model, meta
        As returned by :func:`mer.vit.load_checkpoint`.

    Returns
    -------
    callable
        ``predict_proba(clips)`` with ``clips`` of shape (n, n_samples),
        returning an array of shape (n, 2) (sad, happy) that sums to one:
        the softmax is applied once, inside :func:`mer.vit.predict_proba`.

    Notebook: notebooks/04_sonification.ipynb
    """
    def predict_proba(clips: np.ndarray) -> np.ndarray:
        specs, _ = vit.audio_input(clips, meta)
        return vit.predict_proba(model, specs)

    return predict_proba


def randomised_model(meta: dict[str, Any], *, seed: int = 0):
    """A ViT of the checkpoint's architecture with freshly drawn weights.

    The model-randomisation check (Adebayo et al. 2018): an explanation that
    looks the same for this model as for the trained one shows the input or
    the method, not what the model learnt.

    Returns
    -------
    transformers.ViTForImageClassification, in eval mode

    Notebook: notebooks/04_sonification.ipynb
    """
    config = ViTConfig.from_dict(meta["model_config"])
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return vit.vit_from_config(config).eval()


def explain_clips(model, meta: dict[str, Any], clips: np.ndarray, *, explainer: str = "lrp",
                  target=None, versus=None, inputs: tuple | None = None, **options) -> dict[str, np.ndarray]:
    """Predict and explain audio clips: probabilities and relevance per clip.

    Parameters
    ----------
    model, meta
        A checkpoint (:func:`mer.vit.load_checkpoint`).
    clips : np.ndarray, shape (n_clips, n_samples)
    explainer : str
        A name of :data:`mer.lrp.explainers.EXPLAINERS` (``"lrp"`` by default).
    target : int or sequence of int, optional
        Class explained; default the predicted class of each clip.
    versus : int or sequence of int, optional
        Also explain this class and return the class-contrastive relevance
        ``R(target) - R(versus)`` (:func:`mer.sonify.contrastive_relevance`).
    inputs : tuple, optional
        :func:`mer.vit.audio_input_and_shift` of these ``clips``, computed
        already (several explainers of the same clips need it once).
    **options
        Passed to :func:`mer.lrp.explainers.explain` (``seed``...).

    Returns
    -------
    dict
        ``proba`` (n_clips, 2); ``predicted`` (n_clips,) int;
        ``target`` (n_clips,) int; ``relevance`` (n_clips, n_mels, n_frames),
        cut to the clips' own frames; ``logmel_db`` (n_clips, n_mels, n_frames);
        ``model_input`` (n_clips, n_mels, n_frames), the normalised log-mel;
        ``semitones`` (n_clips,) int, how far each clip was moved to the
        canonical key (0 unless the checkpoint canonicalises);
        ``front_end``, one dict per clip: the mask options that map its
        relevance back to its own STFT bins (:func:`mer.sonify.front_end_options`
        of the checkpoint and the clip's move; ``{}`` for the mel front end).
        Pass them to every :mod:`mer.sonify` call on that clip's relevance,
        ``sonify(y, relevance[i], **mask_options, **front_end[i])``: without
        them a log-frequency map would be read as mel bands;
        ``logmel``, the checkpoint's front-end settings (for the figures' axes).

    Notebook: notebooks/04_sonification.ipynb
    """
    specs, db, semitones = inputs if inputs is not None else vit.audio_input_and_shift(clips, meta)
    if len(specs) != len(clips):
        raise ParameterError(f"inputs hold {len(specs)} clips, not {len(clips)}")
    proba = vit.predict_proba(model, specs)
    predicted = proba.argmax(axis=1)
    target = predicted if target is None else np.array(np.broadcast_to(np.asarray(target), predicted.shape))
    relevance = explainers.explain(explainer, model, specs, target, **options)
    if versus is not None:
        other = np.array(np.broadcast_to(np.asarray(versus), predicted.shape))
        relevance = sonify.contrastive_relevance(relevance,
                                                 explainers.explain(explainer, model, specs, other, **options))
    n_frames = db.shape[-1]
    by_move = {int(k): sonify.front_end_options(meta, int(k)) for k in np.unique(semitones)}
    return {"proba": proba, "predicted": predicted, "target": np.asarray(target),
            "relevance": np.asarray(relevance)[..., :n_frames], "logmel_db": db,
            "model_input": specs[:, 0, :, :n_frames], "semitones": semitones,
            "front_end": [by_move[int(k)] for k in semitones], "logmel": dict(meta["logmel"])}


# ----------------------------------------------------------------------------
# What chapter 4 measures over many clips
# ----------------------------------------------------------------------------


def predictions_table(model, meta: dict[str, Any], clips, audio_clips: np.ndarray):
    """Prediction and confusion-matrix quadrant of every clip.

    Parameters
    ----------
    clips : pandas.DataFrame
        Rows of a dataset's ``clips`` (``clip_id``, ``label``).
    audio_clips : np.ndarray, shape (n_clips, n_samples)
        Their audio, in the same order.

    Returns
    -------
    pandas.DataFrame
        ``clip_id, label, predicted, p_happy, p_predicted, quadrant`` (TP/TN/FP/FN,
        Happy positive, :func:`mer.metrics.quadrant`).

    Notebook: notebooks/04_sonification.ipynb
    """
    proba = audio_predictor(model, meta)(audio_clips)
    predicted = called(proba[:, 1])
    table = pd.DataFrame({"clip_id": clips["clip_id"].astype(str).to_numpy(), "label": clips["label"].to_numpy(),
                          "predicted": predicted, "p_happy": proba[:, 1].astype(float),
                          "p_predicted": proba.max(axis=1).astype(float)})
    table["quadrant"] = [quadrant(a, b) for a, b in zip(table["label"], table["predicted"])]
    return table


def quadrant_examples(predictions, *, n_per_quadrant: int = 2):
    """The ``n_per_quadrant`` most confident clips of each quadrant.

    For TP/TN the clearest correct decisions, for FP/FN the most confident
    mistakes (the ones worth listening to). A quadrant with fewer clips gives
    what it has.

    Returns
    -------
    pandas.DataFrame
        Rows of ``predictions`` in quadrant order TP, TN, FP, FN.

    Notebook: notebooks/04_sonification.ipynb
    """
    if n_per_quadrant < 1:
        raise ParameterError(f"n_per_quadrant must be >= 1, got {n_per_quadrant!r}")
    parts = [predictions[predictions["quadrant"] == q].sort_values(["p_predicted", "clip_id"], ascending=[False, True])
             .head(n_per_quadrant) for q in QUADRANTS]
    return pd.concat(parts, ignore_index=True)


def sonification_sounds(y: np.ndarray, relevance: np.ndarray, clip, *, predicted: str, signed: bool = False,
                        **mask_options: Any) -> list[tuple[np.ndarray, str, str]]:
    """What a listener gets for one explained clip: original, sonified, complement.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
    relevance : np.ndarray, shape (n_mels, n_frames)
        The relevance ``clip`` was made from.
    clip : mer.sonify.Sonification
        :func:`mer.sonify.sonify` of ``y`` and ``relevance``.
    predicted : str
        The class the relevance explains.
    signed : bool
        Add the evidence *against* ``predicted`` (negative relevance), made
        with the same ``mask_options``.

    Returns
    -------
    list of (audio, kind, label)
        ``kind`` names the file (``original``, ``sonified``, ``complement``,
        ``against``); ``label`` is the caption.

    Notebook: notebooks/04_sonification.ipynb
    """
    sounds = [(y, "original", "original"),
              (clip.kept, "sonified", f"for {predicted}, sonified ({clip.gain_db:+.0f} dB)"),
              (clip.complement, "complement", "complement (ignored)")]
    if signed:
        against = sonify.sonify(y, relevance, sign="negative", **mask_options)
        other = SAD if predicted == HAPPY else HAPPY
        sounds.append((against.kept, "against", f"for {other} (negative relevance)"))
    return sounds


def centroid_table(models: dict[str, Any], meta: dict[str, Any], examples, audio_clips: np.ndarray, *,
                   explainer: str = "lrp", **options):
    """Where the kept energy sits: spectral centroid and share above 7 kHz.

    Parameters
    ----------
    models : dict
        Name -> model, e.g. ``{"trained model": model, "randomised model": randomised_model(meta)}``.
        Each is explained for the class the *trained* model predicted (the
        first entry), so the maps answer the same question.
    examples : pandas.DataFrame
        Rows with ``clip_id`` and ``quadrant`` (:func:`quadrant_examples`).
    audio_clips : np.ndarray, shape (n_examples, n_samples)

    Returns
    -------
    pandas.DataFrame
        ``clip_id, quadrant, sound, centroid_hz, share_above_7khz, gain_db``;
        ``sound`` is ``"original"`` or a key of ``models``.

    Notebook: notebooks/04_sonification.ipynb
    """
    rows = []
    target = None
    for name, model in models.items():
        found = explain_clips(model, meta, audio_clips, explainer=explainer, target=target)
        target = found["target"] if target is None else target
        for row, y, relevance, front_end in zip(examples.itertuples(), audio_clips, found["relevance"],
                                                found["front_end"]):
            clip = sonify.sonify(y, relevance, **options, **front_end)
            rows.append({"clip_id": row.clip_id, "quadrant": row.quadrant, "sound": name,
                         "centroid_hz": sonify.spectral_centroid_hz(clip.kept),
                         "share_above_7khz": sonify.energy_share_above(clip.kept, hz=7000.0),
                         "gain_db": clip.gain_db})
    for row, y in zip(examples.itertuples(), audio_clips):
        rows.append({"clip_id": row.clip_id, "quadrant": row.quadrant, "sound": "original",
                     "centroid_hz": sonify.spectral_centroid_hz(y),
                     "share_above_7khz": sonify.energy_share_above(y, hz=7000.0), "gain_db": 0.0})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------
# One file, window by window (python -m mer explain)
# ----------------------------------------------------------------------------


def explain_windows(windows: Iterable[audio.Window], folder: str | Path, *, model, meta: dict[str, Any],
                    explainer: str = "lrp", top_k_percent: float | None = 15.0, threshold: float = 0.0,
                    exponent: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Explain a file window by window: each window's prediction, relevance figure and sonified audio.

    The computing half of ``python -m mer explain``
    (:func:`mer.cli.explain.explain_file` checks the file and the output
    folder, and writes the page around what this returns).

    Parameters
    ----------
    windows : iterable of mer.audio.Window
        :func:`mer.audio.iter_windows` of the file, at the checkpoint's rate
        and window length (``samples`` of shape (n_samples,)).
    folder : str or Path
        An existing folder. For window ``i`` it receives
        ``window-<i:03d>-relevance.png`` (:func:`mer.plots.save_relevance_overlay`)
        and ``-original.ogg``; unless the window is silent, ``-sonified.ogg``
        and ``-complement.ogg`` (loudness-matched, :func:`mer.sonify.sonify`).
    model, meta
        A checkpoint (:func:`mer.vit.load_checkpoint`).
    explainer : str
        :data:`mer.lrp.explainers.EXPLAINERS` name; each window's predicted class is explained.
    top_k_percent, threshold, exponent : float
        Mask options of :func:`mer.sonify.sonify`.
    seed : int
        For explainers that draw random numbers (window ``i`` uses ``seed + i``).

    Returns
    -------
    dict
        ``windows``: one dict per window (``window, start_s, end_s, p_happy,
        predicted, image, original, note`` and, unless it is silent,
        ``sonified, complement, gain_db, loudness_diff_db, mask_area``; file
        names relative to ``folder``); ``p_happy``: the mean over the
        windows, weighted by their length.

    Notebook: notebooks/04_sonification.ipynb (the same explanations, for the chapter's clips)
    """
    folder = Path(folder)
    rows, seconds = [], []
    for i, window in enumerate(windows):
        seconds.append(window.end_s - window.start_s)
        rows.append(_explain_window(i, window.samples, seconds[-1], model=model, meta=meta,
                                    explainer=explainer, top_k_percent=top_k_percent, threshold=threshold,
                                    exponent=exponent, seed=seed, folder=folder))
    return {"windows": rows, "p_happy": float(np.average([r["p_happy"] for r in rows], weights=seconds))}


def _explain_window(i, window, real_seconds, *, model, meta, explainer, top_k_percent, threshold, exponent,
                    seed, folder) -> dict[str, Any]:
    """Explain one window of a file and write its figure and sounds into ``folder``; its row of the summary."""
    params = meta["logmel"]
    sr, hop, pool = int(params["sr"]), int(params["hop_length"]), int(params["pool"])
    found = explain_clips(model, meta, window[np.newaxis], explainer=explainer,
                          **({"seed": seed + i} if explainer == "random" else {}))
    p_happy = float(found["proba"][0, 1])
    predicted = ID2LABEL[int(found["predicted"][0])]
    relevance = found["relevance"][0]
    stem = f"window-{i:03d}"
    start = i * float(params["duration"])
    plots.save_relevance_overlay(folder / f"{stem}-relevance.png", found["logmel_db"][0], relevance, dpi=90,
                                 sr=sr, hop_length=hop, pool=pool, params=meta["logmel"],
                                 semitones=int(found["semitones"][0]),
                                 title=f"{start:.0f}-{start + real_seconds:.0f} s: {predicted} "
                                       f"(p_happy {p_happy:.2f}), relevance for {predicted}")
    row = {"window": i, "start_s": start, "end_s": start + real_seconds, "p_happy": p_happy,
           "predicted": predicted, "image": f"{stem}-relevance.png", "original": f"{stem}-original.ogg",
           "note": ""}
    if real_seconds < float(params["duration"]):
        row["note"] = (f"the file ends {real_seconds:.1f} s into this window; the rest is silence the model "
                       f"hears too, so its decision and relevance here partly concern that silence.")
    audio.write_ogg(folder / row["original"], window, sr=sr)
    if float(np.max(np.abs(window))) <= audio.SILENCE_PEAK:
        row.update(sonified=None, complement=None, note="silent window: nothing to sonify.")
        return row
    clip = sonify.sonify(window, relevance, sr=sr, n_fft=int(params["n_fft"]), hop_length=hop, pool=pool,
                         top_k_percent=top_k_percent, threshold=threshold, exponent=exponent,
                         **found["front_end"][0])
    row.update(sonified=f"{stem}-sonified.ogg", complement=f"{stem}-complement.ogg",
               gain_db=clip.gain_db, loudness_diff_db=clip.loudness_diff_db, mask_area=clip.area,
               note=" ".join(filter(None, [row["note"], "" if clip.reached else
                                           "loudness target not reached (the mask keeps almost nothing)."])))
    audio.write_ogg(folder / row["sonified"], clip.kept, sr=sr)
    audio.write_ogg(folder / row["complement"], clip.complement, sr=sr)
    return row


__all__ = (
    "audio_predictor", "randomised_model", "explain_clips", "predictions_table",
    "quadrant_examples", "sonification_sounds", "centroid_table", "explain_windows",
)
