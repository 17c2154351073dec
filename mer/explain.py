"""Explain the ViT's decision on any audio file, and let you hear why.

``python -m mer explain song.mp3 [--checkpoint DIR | --profile NAME] [--explainer lrp] --out DIR``

The file is judged and read one 10 s window at a time as in ``python -m mer
predict`` (:func:`mer.audio.inspect`, :func:`mer.audio.iter_windows`: a tail
of at least :data:`mer.audio.MIN_DURATION_S` becomes a zero-padded window).
What the user should know about a usable file (a low sampling rate, a very
long one, windows left unexplained) is printed as ``note:`` lines and shown
at the top of the page and in its JSON (``notes``). For each window the page
``DIR/index.html`` shows the prediction, the relevance over the log-mel
spectrogram (PNG), and three players side by side: the original, the
sonified explanation (what the model relied on, loudness-matched) and its
complement (what it ignored). ``DIR/explain.json`` holds the numbers. Both
name the model that spoke (folder, weights hash, training data, test score):
by default chapter 2's model, the one chapters 3 and 4 explain
(:func:`mer.predict.choose_checkpoint`).

Everything is written into a temporary folder beside ``DIR`` and renamed
onto it at the end, so an interrupted or failed run leaves no half-written
``DIR``. An existing ``DIR`` is replaced only if it holds an earlier output
of this command (an ``explain.json``); any other non-empty folder is refused.

The functions the command is built from are also what chapter 4 uses:
:func:`audio_to_model_input`, :func:`audio_predictor` and :func:`explain_clips`.

Notebook: notebooks/04_sonification.ipynb
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import MerError, ParameterError, cli, predict, profiles, sonify, spectrogram, store, vit
from .metrics import HAPPY, ID2LABEL, SAD, called, quadrant

log = logging.getLogger(__name__)

#: Marker file of an output folder (its presence allows replacing the folder).
MARKER = "explain.json"


# ----------------------------------------------------------------------------
# From audio to the model and back
# ----------------------------------------------------------------------------


def audio_to_model_input(clips: np.ndarray, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel spectrograms of audio clips, as a checkpoint expects them.

    Parameters
    ----------
    clips : np.ndarray, shape (n_clips, n_samples)
        Mono audio at the checkpoint's rate (``meta["logmel"]["sr"]``).
    meta : dict
        The checkpoint's ``meta.json`` (:func:`mer.vit.load_checkpoint`).

    Returns
    -------
    model_input : np.ndarray, shape (n_clips, 1, n_mels, input_frames), float32
        Normalised with the checkpoint's training statistics, padded to the
        model's input width.
    logmel_db : np.ndarray, shape (n_clips, n_mels, n_frames), float32
        The same spectrograms in dB, for figures.

    Notebook: notebooks/04_sonification.ipynb
    """
    params = meta["logmel"]
    clips = np.atleast_2d(np.asarray(clips, dtype=np.float32))
    semitones = vit.audio_canonical_semitones(clips, meta)
    if semitones is None:
        db = np.stack([spectrogram.logmel(y, params=params) for y in clips])
    else:  # a canonicalised checkpoint: the same move to the canonical key as in training
        tall_params = vit.tall_logmel_params(spectrogram.LogMelParams(**params), 6)
        tall = np.stack([spectrogram.logmel(y, params=tall_params) for y in clips])
        db = vit.crop_each(tall, tall_params, semitones, params["top_db"])
    return vit.fit_input(spectrogram.normalize(db, meta["stats"]), meta), db[:, 0]


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
        specs, _ = audio_to_model_input(clips, meta)
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
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig.from_dict(meta["model_config"])
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return ViTForImageClassification(config).eval()


def explain_clips(model, meta: dict[str, Any], clips: np.ndarray, *, explainer: str = "lrp",
                  target=None, versus=None, **options) -> dict[str, np.ndarray]:
    """Predict and explain audio clips: probabilities and relevance per clip.

    Parameters
    ----------
    model, meta
        A checkpoint (:func:`mer.vit.load_checkpoint`).
    clips : np.ndarray, shape (n_clips, n_samples)
    explainer : str
        A name of :data:`mer.explainers.EXPLAINERS` (``"lrp"`` by default).
    target : int or sequence of int, optional
        Class explained; default the predicted class of each clip.
    versus : int or sequence of int, optional
        Also explain this class and return the class-contrastive relevance
        ``R(target) - R(versus)`` (:func:`mer.sonify.contrastive_relevance`).
    **options
        Passed to :func:`mer.explainers.explain` (``seed``...).

    Returns
    -------
    dict
        ``proba`` (n_clips, 2); ``predicted`` (n_clips,) int;
        ``target`` (n_clips,) int; ``relevance`` (n_clips, n_mels, n_frames),
        cut to the clips' own frames; ``logmel_db`` (n_clips, n_mels, n_frames);
        ``model_input`` (n_clips, n_mels, n_frames), the normalised log-mel;
        ``semitones`` (n_clips,) int, how far each clip was moved to the
        canonical key (0 unless the checkpoint canonicalises; pass it to
        :func:`mer.sonify.front_end_options` to map relevance back);
        ``logmel``, the checkpoint's front-end settings (for the figures' axes).

    Notebook: notebooks/04_sonification.ipynb
    """
    from . import explainers

    specs, db = audio_to_model_input(clips, meta)
    proba = vit.predict_proba(model, specs)
    predicted = proba.argmax(axis=1)
    target = predicted if target is None else np.array(np.broadcast_to(np.asarray(target), predicted.shape))
    relevance = explainers.explain(explainer, model, specs, target, **options)
    if versus is not None:
        other = np.array(np.broadcast_to(np.asarray(versus), predicted.shape))
        relevance = sonify.contrastive_relevance(relevance,
                                                 explainers.explain(explainer, model, specs, other, **options))
    n_frames = db.shape[-1]
    return {"proba": proba, "predicted": predicted, "target": np.asarray(target),
            "relevance": np.asarray(relevance)[..., :n_frames], "logmel_db": db,
            "model_input": specs[:, 0, :, :n_frames],
            "semitones": _semitones(clips, meta), "logmel": dict(meta["logmel"])}


def _semitones(clips, meta) -> np.ndarray:
    moved = vit.audio_canonical_semitones(np.atleast_2d(np.asarray(clips, dtype=np.float32)), meta)
    return np.zeros(len(np.atleast_2d(clips)), dtype=int) if moved is None else moved


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
    import pandas as pd

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
    import pandas as pd

    if n_per_quadrant < 1:
        raise ParameterError(f"n_per_quadrant must be >= 1, got {n_per_quadrant!r}")
    parts = [predictions[predictions["quadrant"] == q].sort_values(["p_predicted", "clip_id"], ascending=[False, True])
             .head(n_per_quadrant) for q in ("TP", "TN", "FP", "FN")]
    return pd.concat(parts, ignore_index=True)


#: Titles of the confusion quadrants (Happy is the positive class).
QUADRANT_TITLES = {"TP": "Happy heard as Happy (TP)", "TN": "Sad heard as Sad (TN)",
                   "FP": "Sad heard as Happy (FP)", "FN": "Happy heard as Sad (FN)"}


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


def player_row(sounds: list[tuple[np.ndarray, str, str]], *, sr: int, stem: str):
    """Players side by side, each written as an OGG under ``_static/audio``.

    Parameters
    ----------
    sounds : list of (audio, kind, label)
        As :func:`sonification_sounds` returns.
    stem : str
        File stem under :func:`mer.audio.audio_dir`; ``-<kind>`` is appended.

    Returns
    -------
    IPython.display.HTML

    Notebook: notebooks/04_sonification.ipynb
    """
    from IPython.display import HTML

    from . import audio

    return HTML("<div style='display:flex;gap:1em;flex-wrap:wrap'>" + "".join(
        audio.player_file(y, sr=sr, path=f"{stem}-{kind}", label=label).data for y, kind, label in sounds)
        + "</div>")


def show_quadrants(examples, found: dict[str, np.ndarray], sonified: list, audio_clips: np.ndarray, *,
                   sr: int, signed: bool = False, stem: str = "04_sonification", listening: list | None = None,
                   **mask_options: Any) -> None:
    """Display, quadrant by quadrant, each example's relevance and its players.

    Parameters
    ----------
    examples : pandas.DataFrame
        :func:`quadrant_examples` (``clip_id``, ``quadrant``, ``predicted``,
        ``p_predicted``), row ``i`` matching ``audio_clips[i]``.
    found : dict
        :func:`explain_clips` of ``audio_clips`` (``logmel_db``, ``relevance``, ``logmel``, ``semitones``).
    sonified : list of mer.sonify.Sonification
        One per example.
    audio_clips : np.ndarray, shape (n_examples, n_samples)
    stem : str
        Folder of the players under ``_static/audio``; each file is named after
        the quadrant and :func:`mer.store.safe_name` of the clip id (a
        manifest's id is never a path).
    listening : list of list of mer.sonify.SonifiedClip, optional
        Per example, the settings of a listening slider
        (:func:`mer.sonify.sonify_shares`): the sonified and complement
        players then follow the slider (:func:`mer.widgets.listening_slider`),
        in the static page too. Without it the players show ``sonified``.

    Notebook: notebooks/04_sonification.ipynb
    """
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    from . import plots, widgets

    if listening is not None and len(listening) != len(examples):
        raise ParameterError(f"show_quadrants: {len(listening)} listening settings for {len(examples)} examples")

    examples = examples.reset_index(drop=True)
    for name, title in QUADRANT_TITLES.items():
        display(Markdown(f"### {title}"))
        rows = examples.index[examples["quadrant"] == name]
        if len(rows) == 0:
            display(Markdown("*No test clip fell into this quadrant.*"))
            continue
        for i in rows:
            row = examples.loc[i]
            figure = plots.relevance_overlay(
                found["logmel_db"][i], found["relevance"][i], params=found["logmel"],
                semitones=int(found["semitones"][i]),
                title=f"{row.clip_id}: p({row.predicted}) = {row.p_predicted:.2f}; relevance for {row.predicted}")
            display(figure)
            plt.close(figure)
            sounds = sonification_sounds(audio_clips[i], found["relevance"][i], sonified[i],
                                         predicted=row.predicted, signed=signed, **mask_options)
            if listening is None:
                display(player_row(sounds, sr=sr, stem=f"{stem}/{name}-{store.safe_name(row.clip_id)}"))
                continue
            chapter_share = next((k for k, clip in enumerate(listening[i])
                                  if clip.options.get("top_k_percent") == mask_options.get("top_k_percent")), None)
            display(widgets.listening_slider(audio_clips[i], listening[i], sr=sr, initial=chapter_share,
                                             stem=f"{stem}/{name}-{store.safe_name(row.clip_id)}", explained=row.predicted))
            against = [sound for sound in sounds if sound[1] == "against"]
            if against:
                display(player_row(against, sr=sr, stem=f"{stem}/{name}-{store.safe_name(row.clip_id)}"))


def faithfulness_by_explainer(model, meta: dict[str, Any], audio_clips: np.ndarray, *,
                              explainers: list[str], clip_ids=None, seed: int = 0, batch_size: int = 8,
                              progress: bool = True, **options):
    """:func:`mer.sonify.faithfulness_table` for every explainer, one long table.

    Each clip is explained for its predicted class; the model then hears the
    original, the sonified (kept) clip, the complement and a random mask of
    equal area removed (all loudness-matched).

    Parameters
    ----------
    audio_clips : np.ndarray, shape (n_clips, n_samples)
        Held-out (test split) clips.
    explainers : list of str
        Names of :data:`mer.explainers.EXPLAINERS`.
    **options
        Mask options of :func:`mer.sonify.sonify`.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`mer.sonify.faithfulness_table` plus ``explainer``.

    Notebook: notebooks/04_sonification.ipynb
    """
    import pandas as pd
    from tqdm.auto import tqdm

    predict_proba = audio_predictor(model, meta)
    tables = []
    for name in explainers:
        parts = []
        for start in tqdm(range(0, len(audio_clips), batch_size), desc=f"faithfulness {name}",
                          disable=not progress):
            batch = audio_clips[start:start + batch_size]
            found = explain_clips(model, meta, batch, explainer=name,
                                  **({"seed": seed + start} if name == "random" else {}))
            ids = None if clip_ids is None else list(clip_ids[start:start + batch_size])
            parts.append(sonify.faithfulness_table(batch, found["relevance"], predict_proba=predict_proba,
                                                   seed=seed + start, clip_ids=ids, **options))
        table = pd.concat(parts, ignore_index=True)
        table.insert(0, "explainer", name)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


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
    import pandas as pd

    rows = []
    target = None
    for name, model in models.items():
        found = explain_clips(model, meta, audio_clips, explainer=explainer, target=target)
        target = found["target"] if target is None else target
        for row, y, relevance in zip(examples.itertuples(), audio_clips, found["relevance"]):
            clip = sonify.sonify(y, relevance, **options)
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
# One file -> a folder with a page
# ----------------------------------------------------------------------------


def explain_file(path: str | Path, out: str | Path, *, checkpoint: str | Path | None = None,
                 profile: str | None = None, explainer: str = "lrp", top_k_percent: float | None = 15.0,
                 threshold: float = 0.0, exponent: float = 0.0, max_windows: int = 60, seed: int = 0) -> Path:
    """Write the explanation page of one audio file into folder ``out``.

    Parameters
    ----------
    path : str or Path
        Any file :func:`mer.audio.load` decodes (MP3, FLAC, WAV, WAV with an
        MP3 codec, OGG...).
    out : str or Path
        Output folder (created; replaced only if it holds an earlier output).
    checkpoint : str or Path, optional
        A ViT checkpoint folder; default chapter 2's model for the profile
        rendered last (:func:`mer.predict.choose_checkpoint`).
    profile : str, optional
        Chapter 2's model for this profile instead.
    explainer : str
        :data:`mer.explainers.EXPLAINERS` name.
    top_k_percent, threshold, exponent : float
        Mask options of :func:`mer.sonify.sonify`; by default the top 15 % of
        the time-frequency plane, kept whole (exponent 0: a binary mask), the
        setting chapter 4 finds most faithful.
    max_windows : int
        Explain at most this many 10 s windows (the first ones); at least 1.
    seed : int
        For explainers that draw random numbers.

    Returns
    -------
    pathlib.Path
        ``out/index.html``.

    Raises
    ------
    mer.audio.AudioError
        If the file is not usable (:func:`mer.audio.inspect`: unreadable,
        undecodable, silent, NaN samples, shorter than
        :data:`mer.audio.MIN_DURATION_S`).
    mer.ParameterError
        ``max_windows`` below 1, an unknown explainer.
    mer.predict.NoCheckpoint, mer.vit.CheckpointError
        No model recorded, or a broken checkpoint.
    mer.MerError
        ``out`` is a non-empty folder of something else.

    Notebook: notebooks/04_sonification.ipynb
    """
    from . import audio, predict

    path, out = Path(path), Path(out)
    if int(max_windows) < 1:
        raise ParameterError(f"max_windows must be >= 1, got {max_windows!r}")
    _check_out(out)
    with _native_stderr_to_log():  # a bad file fails before the model loads
        info = audio.inspect(path)
    from . import explainers, plots

    if explainer not in explainers.EXPLAINERS:
        raise ParameterError(f"unknown explainer {explainer!r}; expected one of {list(explainers.EXPLAINERS)}")
    model, meta, card = predict.load_model(checkpoint, profile=profile)
    params = meta["logmel"]
    sr, duration = int(params["sr"]), float(params["duration"])
    if (sr, duration) != (info.target_sr, info.window_s):
        with _native_stderr_to_log():
            info = audio.inspect(path, sr=sr, window_s=duration)
    notes = list(info.notes)
    if info.window_count() > max_windows:
        notes.append(f"explained the first {max_windows} of {info.window_count()} windows (--max-windows)")
    windows = audio.iter_windows(path, sr=sr, duration=duration, max_windows=max_windows, info=info)

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as error:
        raise MerError(f"--out {out}: cannot write in {out.parent} ({error.strerror}); "
                       f"choose another folder") from error
    try:
        rows, seconds = [], []
        for i, window in enumerate(windows):
            seconds.append(window.end_s - window.start_s)
            rows.append(_explain_window(i, window.samples, seconds[-1], model=model, meta=meta,
                                        explainer=explainer, top_k_percent=top_k_percent, threshold=threshold,
                                        exponent=exponent, seed=seed, folder=work, plots=plots, audio=audio))
        summary = {"file": path.name, "checkpoint": card["folder"], "model": card, "explainer": explainer,
                   "top_k_percent": top_k_percent, "threshold": threshold, "exponent": exponent,
                   "notes": notes, "windows": rows,
                   "p_happy": float(np.average([r["p_happy"] for r in rows], weights=seconds))}
        (work / "index.html").write_text(_page(summary), encoding="utf-8")
        (work / MARKER).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        _replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out / "index.html"


def _explain_window(i, window, real_seconds, *, model, meta, explainer, top_k_percent, threshold, exponent,
                    seed, folder, plots, audio) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    params = meta["logmel"]
    sr, hop, pool = int(params["sr"]), int(params["hop_length"]), int(params["pool"])
    found = explain_clips(model, meta, window[np.newaxis], explainer=explainer,
                          **({"seed": seed + i} if explainer == "random" else {}))
    p_happy = float(found["proba"][0, 1])
    predicted = ID2LABEL[int(found["predicted"][0])]
    relevance = found["relevance"][0]
    stem = f"window-{i:03d}"
    start = i * float(params["duration"])
    figure = plots.relevance_overlay(found["logmel_db"][0], relevance, sr=sr, hop_length=hop, pool=pool,
                                     params=meta["logmel"], semitones=int(found["semitones"][0]),
                                     title=f"{start:.0f}-{start + real_seconds:.0f} s: {predicted} "
                                           f"(p_happy {p_happy:.2f}), relevance for {predicted}")
    figure.savefig(folder / f"{stem}-relevance.png", dpi=90)
    plt.close(figure)
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
                         **sonify.front_end_options(meta, int(found["semitones"][0])))
    row.update(sonified=f"{stem}-sonified.ogg", complement=f"{stem}-complement.ogg",
               gain_db=clip.gain_db, loudness_diff_db=clip.loudness_diff_db, mask_area=clip.area,
               note=" ".join(filter(None, [row["note"], "" if clip.reached else
                                           "loudness target not reached (the mask keeps almost nothing)."])))
    audio.write_ogg(folder / row["sonified"], clip.kept, sr=sr)
    audio.write_ogg(folder / row["complement"], clip.complement, sr=sr)
    return row


@contextlib.contextmanager
def _native_stderr_to_log():
    """Send what C decoders (libmpg123 inside libsndfile, ffmpeg) print on file
    descriptor 2 to the log instead of the terminal, so a bad file gives one line.
    (Python-level redirection cannot catch writes made by C libraries.)"""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            noise = sink.read().decode("utf-8", "replace").strip()
            if noise:
                log.debug("decoder said: %s", noise)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise MerError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise MerError(f"--out {out} is a non-empty folder that is not an earlier `mer explain` output; "
                       f"choose another folder")
    # The page is written beside ``out`` first (then renamed): its nearest existing folder must take files.
    existing = next(folder for folder in out.absolute().parents if folder.exists())
    if not existing.is_dir():
        raise MerError(f"--out {out}: {existing} is a file, not a folder; choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MerError(f"--out {out}: no permission to write in {existing}; choose another folder")


def _replace(work: Path, out: Path) -> None:
    """Move the finished folder onto ``out`` (an earlier output is removed only after)."""
    # mkdtemp and the atomic file writes create private (0700/0600) entries; the
    # output is for sharing, so give it the permissions of an ordinary folder.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)
    for entry in work.iterdir():
        os.chmod(entry, 0o666 & ~umask)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out)


def _player(src: str | None, label: str) -> str:
    if not src:
        return f"<figure><figcaption>{html.escape(label)}</figcaption><em>none</em></figure>"
    return (f"<figure><figcaption>{html.escape(label)}</figcaption><audio controls preload='none' "
            f"src='{html.escape(src, quote=True)}'></audio></figure>")


def _model_html(card: dict[str, Any]) -> str:
    """The page's sentence naming the model: the terminal's line (:func:`mer.predict.describe_model`), escaped."""
    line = predict.describe_model(card).removeprefix("model: ")
    return f"Model: {html.escape(line)}."


def _page(summary: dict[str, Any]) -> str:
    esc = html.escape
    sections = []
    for row in summary["windows"]:
        note = f"<p class='note'>{esc(row['note'])}</p>" if row.get("note") else ""
        gain = (f"; sonified clip raised by {row['gain_db']:.1f} dB to the original's loudness"
                if row.get("gain_db") is not None and np.isfinite(row.get("gain_db", np.nan)) else "")
        sections.append(
            f"<section><h2>{row['start_s']:.0f}&ndash;{row['end_s']:.0f} s: {esc(row['predicted'])} "
            f"(p(happy) = {row['p_happy']:.2f})</h2>"
            f"<img src='{esc(row['image'], quote=True)}' alt='relevance over the log-mel spectrogram'>"
            f"<div class='players'>{_player(row['original'], 'original')}"
            f"{_player(row.get('sonified'), 'what the model relied on (sonified)')}"
            f"{_player(row.get('complement'), 'what it ignored (complement)')}</div>"
            f"<p class='meta'>mask keeps {100 * row.get('mask_area', 0):.0f} % of the time-frequency plane"
            f"{gain}</p>{note}</section>")
    title = f"Why Happy or Sad? {summary['file']}"
    notes = "".join(f"<li>{esc(note)}</li>" for note in summary.get("notes", []))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:62em;margin:2em auto;padding:0 1em}"
        "img{max-width:100%}.players{display:flex;gap:1em;flex-wrap:wrap}"
        "figure{margin:0}figcaption{font-size:.9em;color:#444}.note{color:#a40}.meta{color:#555;font-size:.9em}"
        "</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        + (f"<ul class='note'>{notes}</ul>" if notes else "") +
        f"<p>Whole file: {esc(str(called(summary['p_happy'])))} "
        f"(p(happy) = {summary['p_happy']:.2f}, the mean over {len(summary['windows'])} window(s) of up to "
        f"10 s, weighted by their length). "
        f"Explainer: <code>{esc(summary['explainer'])}</code>. {_model_html(summary['model'])} "
        "Red in the figure: evidence for the predicted class; blue: against it. The sonified clip keeps "
        "the time-frequency regions with the most positive relevance and is loudness-matched to the "
        "original (ITU-R BS.1770); the complement is everything else.</p>"
        + "".join(sections) + "</body></html>\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m mer explain FILE --out DIR [--checkpoint DIR | --profile NAME] [--explainer lrp] [--debug]``.

    Prints the model (:func:`mer.predict.describe_model`) and the page's path.
    Returns 0 on success; 1 with a one-line reason on stderr for a bad file,
    a missing or broken checkpoint or an unusable ``--out``; 2 for bad
    options (as argparse). ``--debug`` adds the traceback.
    """
    from . import explainers

    parser = argparse.ArgumentParser(
        prog="python -m mer explain",
        description="Explain the Happy/Sad prediction for an audio file: relevance maps and "
                    "sonified explanations per 10 s window, in DIR/index.html.")
    parser.add_argument("file", metavar="FILE", help="audio file (mp3, flac, wav, ogg...)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", default=None, metavar="DIR",
                       help="ViT checkpoint folder (default: chapter 2's model for the profile rendered last)")
    which.add_argument("--profile", default=None, choices=sorted(profiles.PROFILES),
                       help="chapter 2's model for this profile")
    parser.add_argument("--explainer", default="lrp", choices=list(explainers.EXPLAINERS), metavar="NAME",
                        help="lrp (default), attnlrp, gradxinput, ig, rollout, chefer, occlusion or random")
    parser.add_argument("--top-k-percent", type=cli.percent, default=15.0,
                        help="share of the time-frequency plane the sonified clip keeps, 0-100 "
                             "(default 15; 0 = no top-k, the threshold alone)")
    parser.add_argument("--threshold", type=cli.fraction, default=0.0,
                        help="drop mask cells below this fraction of the maximum, 0 <= x < 1 (default 0)")
    parser.add_argument("--exponent", type=cli.non_negative_float, default=0.0,
                        help="mask exponent: 0 keeps the selected cells whole (default), 1 scales them by relevance")
    parser.add_argument("--max-windows", type=cli.positive_int, default=60,
                        help="explain at most this many 10 s windows, the first ones (default 60)")
    cli.add_debug(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    def run() -> int:
        page = explain_file(args.file, args.out, checkpoint=args.checkpoint, profile=args.profile,
                            explainer=args.explainer, top_k_percent=args.top_k_percent or None,
                            threshold=args.threshold, exponent=args.exponent, max_windows=args.max_windows)
        summary = json.loads((page.parent / MARKER).read_text(encoding="utf-8"))
        print(predict.describe_model(summary["model"]))
        for note in summary["notes"]:
            print(f"note: {args.file}: {note}")
        print(page)
        return 0

    return cli.guarded("python -m mer explain", run, debug=args.debug, interrupted="interrupted; nothing written")
