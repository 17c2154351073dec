"""Figures for the chapters: the only module of ``mer`` that draws.

Each function takes arrays or DataFrames computed elsewhere and returns a
matplotlib ``Figure`` (or ``Axes`` where it draws into one given), so a
chapter cell is one call and the figure appears in the rendered book.

Sections, one per chapter, so the module reads in the order of the book.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle

from . import ParameterError
from .metrics import HAPPY, LABELS, QUADRANTS, SAD
from .spectrogram import LOGFREQ_FMIN, LogMelParams

sns.set_theme(context="notebook", style="whitegrid")

# ---------------------------------------------------------------------------
# Time-frequency axes, shared by chapters 2-4 (spectrograms and relevance maps)
# ---------------------------------------------------------------------------
#
# Every time-frequency figure labels its frequency axis with notes and hertz at
# the octaves of A (A1 55 Hz, A2 110 Hz, ..., A4 440 Hz, ...): the tuning
# reference and its octaves are whole numbers of hertz, so the same ticks are a
# round Hz scale for the researcher and a pitch scale for the musician. Each
# tick sits where that frequency lies on the figure's own scale (mel bands,
# log-frequency rows or linear STFT bins); the time axis is in seconds.
#
# Colour maps (all perceptually ordered and readable in greyscale):
#   * dB magnitudes: ``magma`` (sequential, lightness rising monotonically).
#   * a spectrogram under a relevance overlay: ``Greys`` (neutral, so the overlay's hue carries the sign).
#   * relevance of one class: ``RdBu_r``, zero at the centre (white), symmetric limits.
#     Its two sides fall to the same lightness, on purpose: equal |relevance| for and
#     against must look equally strong. The sign is in the hue (red for, blue against,
#     as the chapters' text reads); a greyscale print keeps the magnitude, and the
#     marginal sums of :func:`lrp_example` keep the sign as a position above or below zero.
#   * Happy - Sad contrast: ``PuOr_r`` (orange for Happy, purple for Sad, the class colours),
#     zero at the centre, symmetric limits; its sides do differ in lightness (the purple end is
#     darker), so the extremes stay apart in greyscale.
#   * a mask in [0, 1]: ``cividis`` (sequential, uniform and colour-vision-deficiency safe).

#: How the book shows a figure: drawn at ``BOOK_DPI`` (the inline backend's default) and
#: shown about ``BOOK_WIDTH_PX`` wide, so a figure wider than 8 in is shrunk on the page.
BOOK_WIDTH_PX = 800
BOOK_DPI = 100
#: Smallest text size (pt) a reader should meet on the page.
MIN_FONT_PT = 8.0
#: Maps of the time-frequency figures (see the comment above).
CMAP_DB = "magma"
CMAP_BACKGROUND = "Greys"
CMAP_RELEVANCE = "RdBu_r"
CMAP_CONTRAST = "PuOr_r"
CMAP_MASK = "cividis"
#: MIDI numbers of the labelled pitches, the A's from A0 (27.5 Hz) to A9 (14 080 Hz), in the
#: order they claim room on a crowded axis: A4 first, then outwards.
_TICK_PRIORITY = (69, 81, 57, 93, 45, 105, 33, 117, 21, 129)


def _min_font(fig) -> float:
    """Font size (pt) at this figure's size that still shows as :data:`MIN_FONT_PT` in the book."""
    shrink = min(1.0, BOOK_WIDTH_PX / (fig.figure.get_figwidth() * BOOK_DPI))  # a SubFigure's root
    return MIN_FONT_PT / shrink


def _points(size) -> float:
    return float(FontProperties(size=size).get_size_in_points())


def _legible(fig, axes=None) -> float:
    """Raise the tick labels of ``axes`` (default: all of ``fig``) to at least :func:`_min_font`.

    Returns the tick label size used.
    """
    size = max(_min_font(fig), _points(plt.rcParams["ytick.labelsize"]), _points(plt.rcParams["xtick.labelsize"]))
    for ax in fig.axes if axes is None else axes:
        ax.tick_params(labelsize=size)
    return size


def _front_end(params, *, n_rows: int, sr: int = 22050, hop_length: int = 512, pool: int = 4):
    """The :class:`mer.spectrogram.LogMelParams` of a spectrogram with ``n_rows`` rows.

    ``params`` (LogMelParams or its dict, e.g. ``meta["logmel"]``) when given;
    otherwise the mel front end with ``sr``, ``hop_length``, ``pool`` and
    ``n_mels = n_rows`` (the defaults of :mod:`mer.spectrogram` for the rest).
    """

    if params is None:
        return LogMelParams(sr=int(sr), hop_length=int(hop_length), pool=int(pool), n_mels=int(n_rows))
    p = params if isinstance(params, LogMelParams) else LogMelParams(**dict(params))
    if p.front_end == "logfreq":
        if n_rows not in (p.n_mels, p.n_rows):
            raise ParameterError(f"a {n_rows}-row spectrogram does not fit the log-frequency front end "
                                 f"({p.n_mels} rows, {p.n_rows} with margins)")
        return p if n_rows == p.n_rows else replace(p, margin=0)
    if n_rows != p.n_mels:
        raise ParameterError(f"a {n_rows}-row spectrogram does not fit the mel front end ({p.n_mels} bands)")
    return p


def _row_frequencies(p, *, semitones: int = 0) -> np.ndarray:
    """Centre frequency (Hz) of every row of a spectrogram of front end ``p`` (:func:`_front_end`).

    Mel: the centres of librosa's (Slaney) filterbank, ``mel_frequencies(n_mels + 2, fmin,
    fmax)[1:-1]``, the matrix :func:`mer.spectrogram.mel_filterbank` returns. Log-frequency:
    ``base * 2 ** ((row - margin) / bins_per_octave)`` (:func:`mer.spectrogram.logfreq_filterbank`),
    and for a clip a canonicalising model moved by ``semitones``
    (:func:`mer.spectrogram.crop`) ``base * 2 ** ((row - semitones * bins_per_semitone) / bins_per_octave)``.
    """
    import librosa  # slow to import (numba); only the note and hertz axes need it

    if p.front_end == "logfreq":
        base = p.fmin if p.fmin > 0 else LOGFREQ_FMIN
        rows = np.arange(p.n_rows) - p.margin - semitones * p.bins_per_semitone
        return base * 2.0 ** (rows / p.bins_per_octave)
    if semitones:
        raise ParameterError("only the log-frequency front end moves a clip by whole semitones")
    return librosa.mel_frequencies(n_mels=p.n_mels + 2, fmin=p.fmin, fmax=p.fmax or p.sr / 2)[1:-1]


def _note_label(hz: float) -> str:
    import librosa  # slow to import (numba); only the note and hertz axes need it

    return f"{librosa.hz_to_note(hz)} {hz:.0f} Hz"


def _note_ticks(ax, position, low: float, high: float, *, fontsize: float, axis: str = "y") -> list[float]:
    """Label ``axis`` with the A's (e.g. "A4 440 Hz") between ``low`` and ``high`` Hz.

    ``position(hz)`` gives the axis coordinate of a frequency. Octaves closer than
    about 1.3 lines of text to one already placed are left out, A4 first.
    Returns the frequencies labelled.
    """
    import librosa  # slow to import (numba); only the note and hertz axes need it

    box = ax.get_window_extent()  # pixels, also for an axes inside a SubFigure
    span = abs(np.diff(ax.get_ylim() if axis == "y" else ax.get_xlim())[0]) or 1.0
    length_pt = (box.height if axis == "y" else box.width) / ax.figure.figure.dpi * 72
    gap = 1.3 * fontsize * span / max(length_pt, 1.0)
    chosen: list[tuple[float, float]] = []
    for midi in _TICK_PRIORITY:
        hz = float(librosa.midi_to_hz(midi))
        if not low <= hz <= high:
            continue
        where = float(position(hz))
        if all(abs(where - other) >= gap for other, _ in chosen):
            chosen.append((where, hz))
    chosen.sort()
    ticks, names = [w for w, _ in chosen], [_note_label(hz) for _, hz in chosen]
    if axis == "y":
        ax.set_yticks(ticks, names)
    else:
        ax.set_xticks(ticks, names)
    ax.tick_params(axis=axis, labelsize=fontsize)
    return [hz for _, hz in chosen]


def _row_note_ticks(ax, centres: np.ndarray, *, fontsize: float, label: bool = True, scale: str = "mel") -> list[float]:
    """Note ticks on an image axis whose row ``i`` spans ``[i, i + 1)`` and is centred on ``centres[i]`` Hz.

    A frequency between two row centres is placed by linear interpolation in
    hertz, so a tick lies inside the row whose centre is nearest to it.
    """
    index = np.arange(len(centres)) + 0.5
    marks = _note_ticks(ax, lambda hz: np.interp(hz, centres, index), float(centres[0]), float(centres[-1]),
                        fontsize=fontsize)
    if label:
        ax.set_ylabel({"mel": "frequency (mel scale)",
                       "logfreq": "frequency (log scale)"}.get(scale, "frequency"))
    return marks


# ---------------------------------------------------------------------------
# Data page (notebooks/00_data.ipynb)
# ---------------------------------------------------------------------------

#: Class order (the integer codes of :data:`mer.metrics.LABELS`) and colours of the Data page.
DATA_LABEL_ORDER = LABELS
DATA_LABEL_PALETTE = {SAD: "#4C72B0", HAPPY: "#DD8452"}
#: The synthetic generator's cues, as columns of ``Dataset.clips``.
SYNTH_CUES = ("mode", "tempo_bpm", "register", "articulation", "velocity", "brightness")


def class_balance(clips, *, by: str = "split"):
    """Bar chart of clips per class in each value of ``by`` (the splits).

    Parameters
    ----------
    clips : pandas.DataFrame, shape (n_clips, >= 7)
        ``Dataset.clips``: needs ``label`` and ``by``.
    by : str
        Column along the x axis.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    figure, axes = plt.subplots(figsize=(5.5, 3.2), constrained_layout=True)
    order = [s for s in ("train", "val", "test") if s in set(clips[by])] if by == "split" else None
    sns.countplot(data=clips, x=by, hue="label", order=order, hue_order=DATA_LABEL_ORDER,
                  palette=DATA_LABEL_PALETTE, ax=axes)
    for container in axes.containers:
        axes.bar_label(container, fontsize=9)
    axes.set(xlabel=by, ylabel="clips", title="Clips per class")
    axes.legend(title="label", frameon=False)
    return figure


def cue_distributions(clips, *, cues=SYNTH_CUES, ncols: int = 3):
    """Distribution of each cue in the two classes, one panel per cue.

    A numeric cue is a box plot with the clips as points; a categorical one
    (``mode``) is a count of clips per category and class.

    Parameters
    ----------
    clips : pandas.DataFrame, shape (n_clips, >= 7)
        ``Dataset.clips`` with ``label`` and the ``cues`` columns (missing
        columns are left out, so a real corpus shows what it has).
    cues : sequence of str
        Columns to show.
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    cues = [c for c in cues if c in clips.columns]
    nrows = max(1, int(np.ceil(len(cues) / ncols)))
    figure, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.9 * nrows),
                                constrained_layout=True, squeeze=False)
    for ax, cue in zip(axes.flat, cues):
        values = clips[cue]
        if values.dtype == object or values.dtype.name in ("category", "bool", "string", "str"):
            sns.countplot(data=clips, x=cue, hue="label", hue_order=DATA_LABEL_ORDER,
                          palette=DATA_LABEL_PALETTE, ax=ax)
            ax.set_ylabel("clips")
        else:
            sns.boxplot(data=clips, x="label", y=cue, hue="label", order=DATA_LABEL_ORDER,
                        palette=DATA_LABEL_PALETTE, showfliers=False, width=0.5, ax=ax,
                        legend=False, boxprops={"alpha": 0.45})
            sns.stripplot(data=clips, x="label", y=cue, hue="label", order=DATA_LABEL_ORDER,
                          palette=DATA_LABEL_PALETTE, size=3, jitter=0.2, ax=ax, legend=False)
            ax.set_xlabel("")
        ax.set_title(cue)
        if ax.get_legend() is not None and cue != cues[0]:
            ax.get_legend().remove()
    for ax in list(axes.flat)[len(cues):]:
        ax.set_visible(False)
    figure.suptitle("Cues by class")
    return figure

# ---------------------------------------------------------------------------
# Chapter 1: features (notebooks/01_features.ipynb)
# ---------------------------------------------------------------------------

_CLASS_PALETTE = DATA_LABEL_PALETTE


def chroma_profiles_by_class(features, labels):
    """Mean key-relative chroma (scale degrees above the estimated tonic) per class.

    Parameters
    ----------
    features : pandas.DataFrame
        With ``clip_id`` and ``chroma_rel_<degree>`` columns (mer.features.extract).
    labels : pandas.Series
        ``"happy"``/``"sad"`` by ``clip_id``.

    Notebook: notebooks/01_features.ipynb
    """

    columns = [c for c in features.columns if c.startswith("chroma_rel_")]
    long = features.set_index("clip_id")[columns].join(labels.rename("label")).melt(
        id_vars="label", var_name="degree", value_name="chroma")
    long["degree"] = pd.Categorical(long["degree"].str.replace("chroma_rel_", ""),
                                    [c.replace("chroma_rel_", "") for c in columns])
    figure, ax = plt.subplots(figsize=(8, 3.5))
    sns.barplot(data=long, x="degree", y="chroma", hue="label", palette=_CLASS_PALETTE, errorbar=("ci", 95), ax=ax)
    ax.set(xlabel="scale degree above the estimated tonic", ylabel="mean chroma",
           title="Key-relative chroma profile by class")
    figure.tight_layout()
    return figure


def chord_histogram(degrees, labels):
    """Share of time on each chord (Roman numeral relative to the tonic) per class.

    Parameters
    ----------
    degrees : pandas.DataFrame
        ``clip_id, degree, seconds`` (mer.features.chord_degrees).
    labels : pandas.Series
        Class by ``clip_id``.

    Notebook: notebooks/01_features.ipynb
    """
    table = degrees.merge(labels.rename("label"), left_on="clip_id", right_index=True)
    share = table.groupby(["label", "degree"])["seconds"].sum()
    share = (share / share.groupby(level="label").transform("sum")).rename("share").reset_index()
    order = share.groupby("degree")["share"].sum().sort_values(ascending=False).index.tolist()
    figure, ax = plt.subplots(figsize=(8, 3.5))
    sns.barplot(data=share, x="degree", y="share", hue="label", order=order, palette=_CLASS_PALETTE, ax=ax)
    ax.set(xlabel="chord (upper case major, lower case minor, relative to the estimated tonic)",
           ylabel="share of time", title="Recognised chords by class")
    figure.tight_layout()
    return figure


def descriptors_by_class(features, labels, *, columns=None):
    """Violin plots of the mid-level descriptors (each standardised) by class.

    Notebook: notebooks/01_features.ipynb
    """
    columns = columns or [c for c in features.columns if c.startswith("ml_")]
    frame = features.set_index("clip_id")[columns]
    frame = (frame - frame.mean()) / frame.std()
    long = frame.join(labels.rename("label")).melt(id_vars="label", var_name="descriptor", value_name="z")
    long["descriptor"] = long["descriptor"].str.replace("ml_", "").str.replace("_", " ")
    figure, ax = plt.subplots(figsize=(9, 3.8))
    sns.violinplot(data=long, x="descriptor", y="z", hue="label", split=True, inner="quart",
                   palette=_CLASS_PALETTE, cut=0, ax=ax)
    ax.set(xlabel="", ylabel="standardised value", title="Mid-level descriptors (signal proxies) by class")
    ax.tick_params(axis="x", rotation=20)
    figure.tight_layout()
    return figure


def low_level_by_class(features, labels, *, columns=("tempo_bpm", "onset_rate", "rms_db", "spectral_centroid_hz")):
    """Box plots of low-level context features by class.

    Notebook: notebooks/01_features.ipynb
    """
    columns = [c for c in columns if c in features]
    figure, axes = plt.subplots(1, len(columns), figsize=(2.4 * len(columns), 3.2))
    frame = features.set_index("clip_id")[columns].join(labels.rename("label"))
    for ax, column in zip(np.atleast_1d(axes), columns):
        sns.boxplot(data=frame, x="label", y=column, hue="label", palette=_CLASS_PALETTE, ax=ax, legend=False)
        ax.set(xlabel="", title=column)
        ax.set_ylabel("")
    figure.tight_layout()
    return figure


def coefficient_plot(table, *, title="Standardised coefficients (95 % bootstrap intervals)", top=None, ax=None):
    """Point estimate and interval of each standardised coefficient.

    Parameters
    ----------
    table : pandas.DataFrame
        Index ``feature``, columns ``coef, ci_low, ci_high`` (mer.interpretable.bootstrap_coefficients).
    top : int, optional
        Show only the ``top`` largest ``|coef|``.

    Notebook: notebooks/01_features.ipynb
    """
    table = table.reindex(table["coef"].abs().sort_values(ascending=False).index)
    if top:
        table = table.head(top)
    table = table.iloc[::-1]
    if ax is None:
        figure, ax = plt.subplots(figsize=(7, 0.28 * len(table) + 1.2))
    else:
        figure = ax.figure
    y = np.arange(len(table))
    colours = np.where(table["coef"] > 0, _CLASS_PALETTE[HAPPY], _CLASS_PALETTE[SAD])
    # Percentile intervals of a bootstrap need not contain the full-data estimate
    # (small or separable data): draw them as segments, not as symmetric error bars.
    ax.hlines(y, table["ci_low"], table["ci_high"], color="0.5", lw=1.2)
    ax.scatter(table["coef"], y, c=colours, zorder=3)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(y, table.index)
    ax.set(xlabel="towards Sad  <-  coefficient per SD  ->  towards Happy", title=title)
    figure.tight_layout()
    return figure


def permutation_importance_plot(table, *, top=15):
    """Bar chart of permutation importances (drop of ROC AUC when a feature is shuffled).

    Notebook: notebooks/01_features.ipynb
    """
    table = table.head(top).iloc[::-1]
    figure, ax = plt.subplots(figsize=(7, 0.28 * len(table) + 1.2))
    ax.barh(table.index, table["importance"], xerr=table["sd"], color="#55A868", ecolor="0.4")
    ax.set(xlabel="drop of ROC AUC on held-out folds", title="Shallow network: permutation importance")
    figure.tight_layout()
    return figure


def recovery_plot(table, *, rho=None):
    """Recovered importance against the generator's true weight, per cue and nuisance.

    Parameters
    ----------
    table : pandas.DataFrame
        From mer.interpretable.ground_truth_recovery (``cue, proxy, nuisance,
        true_weight, coef, ci_low, ci_high``).

    Notebook: notebooks/01_features.ipynb
    """
    figure, ax = plt.subplots(figsize=(5.5, 4.5))
    for nuisance, marker, colour in ((False, "o", "#C44E52"), (True, "s", "0.5")):
        part = table[table["nuisance"] == nuisance]
        ax.errorbar(part["true_weight"], part["coef"], yerr=[part["coef"] - part["ci_low"], part["ci_high"] - part["coef"]],
                    fmt=marker, color=colour, ecolor="0.6", capsize=2,
                    label="nuisance (true weight 0)" if nuisance else "cue")
        for _, row in part.iterrows():
            ax.annotate(f"{row['cue']}\n({row['proxy']})", (row["true_weight"], row["coef"]),
                        textcoords="offset points", xytext=(5, 3), fontsize=7)
    lim = max(table["true_weight"].abs().max(), table["coef"].abs().max()) * 1.15
    ax.plot([-lim, lim], [-lim, lim], ls="--", color="0.7", lw=1)
    ax.set(xlim=(-lim, lim), xlabel="true weight (generator.json)", ylabel="recovered standardised coefficient",
           title="Ground-truth recovery" + (f" (Spearman ρ = {rho:.2f})" if rho is not None else ""))
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------------------
# Chapter 2: ViT (notebooks/02_vit.ipynb)
# ---------------------------------------------------------------------------

def vit_patches(spec, *, patch_size=(128, 2), sr: int = 22050, hop_length: int = 512, pool: int = 4,
                title: str | None = None, highlight: int | None = 10, params=None):
    """A log-mel spectrogram with the ViT's patch grid drawn on it.

    Frequency is labelled with notes and hertz at the octaves of A, placed on
    the spectrogram's own scale (mel bands, or log-frequency rows with
    ``params``); time in seconds; level in ``magma``.

    Parameters
    ----------
    spec : np.ndarray, shape (n_mels, n_frames) or (1, n_mels, n_frames)
        Log-mel in dB (or normalised).
    patch_size : (int, int)
        Patch (mel bands, frames); (128, 2) = full-height stripes.
    sr, hop_length, pool : int
        Geometry of the mel front end, for seconds and hertz (ignored with ``params``).
    highlight : int, optional
        Index of one patch (token) to outline in colour.
    params : mer.spectrogram.LogMelParams or dict, optional
        The front end that made ``spec`` (e.g. a checkpoint's ``meta["logmel"]``):
        its ``sr``, ``hop_length``, ``pool``, ``fmin``, ``fmax``, ``front_end`` and
        ``bins_per_octave`` place the ticks. Default: the mel front end with
        ``sr``, ``hop_length``, ``pool`` and ``n_mels`` = the rows of ``spec``.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/02_vit.ipynb
    """

    spec = np.asarray(spec)
    spec = spec[0] if spec.ndim == 3 else spec
    n_mels, n_frames = spec.shape
    p = _front_end(params, n_rows=n_mels, sr=sr, hop_length=hop_length, pool=pool)
    seconds = p.hop_length * p.pool / p.sr
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.imshow(spec, origin="lower", aspect="auto", cmap=CMAP_DB, interpolation="nearest",
              extent=(0, n_frames * seconds, 0, n_mels))
    bands, frames = patch_size
    for column in range(0, n_frames + 1, frames):
        ax.axvline(column * seconds, color="white", lw=0.4, alpha=0.7)
    for row in range(0, n_mels + 1, bands):
        ax.axhline(row, color="white", lw=0.6, alpha=0.7)
    n_cols = n_frames // frames
    if highlight is not None and highlight < n_cols * (n_mels // bands):
        r, c = divmod(highlight, n_cols)
        ax.add_patch(Rectangle((c * frames * seconds, r * bands), frames * seconds, bands,
                               fill=False, edgecolor="cyan", lw=2))
        ax.annotate(f"token {highlight + 1}", (c * frames * seconds, r * bands + bands * 0.9),
                    color="cyan", xytext=(6, 0), textcoords="offset points", va="top")
    ax.set_xlim(0, n_frames * seconds)
    ax.set_xlabel("time (s)")
    ax.grid(False)
    kind = "log-frequency spectrogram" if p.front_end == "logfreq" else "log-mel"
    ax.set_title(title or f"{n_mels} x {n_frames} {kind} cut into "
                 f"{(n_mels // bands) * (n_frames // frames)} patches of {bands} x {frames}")
    fig.tight_layout()
    _row_note_ticks(ax, _row_frequencies(p), fontsize=_legible(fig), scale=p.front_end)
    fig.tight_layout()
    return fig


def vit_training_curves(history):
    """Loss and (balanced) accuracy per epoch, train vs validation.

    Parameters
    ----------
    history : pandas.DataFrame
        ``TrainResult.history``: ``epoch, train_loss, train_acc, val_loss,
        val_balanced_accuracy, selected``.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/02_vit.ipynb
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    left.plot(history["epoch"], history["train_loss"], marker="o", label="train (masked)")
    right.plot(history["epoch"], history["train_acc"], marker="o", label="train accuracy (masked)")
    if "val_loss" in history:
        left.plot(history["epoch"], history["val_loss"], marker="o", label="validation")
        right.plot(history["epoch"], history["val_balanced_accuracy"], marker="o",
                   label="validation balanced accuracy")
    if "selected" in history and history["selected"].any():
        chosen = history.loc[history["selected"].astype(bool), "epoch"].max()
        for ax in (left, right):
            ax.axvline(chosen, color="grey", ls="--", lw=1, label=f"selected (epoch {chosen})")
    left.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0.4, 1.01))
    left.legend()
    right.legend(loc="lower right")
    fig.tight_layout()
    return fig


def vit_confusion(confusion, *, title: str = "test split"):
    """The 2 x 2 confusion matrix with the quadrant names (Happy = positive).

    Parameters
    ----------
    confusion : pandas.DataFrame, shape (2, 2)
        Rows true label, columns predicted, order sad, happy.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/02_vit.ipynb
    """
    counts = np.asarray(confusion)
    names = np.array([["TN", "FP"], ["FN", "TP"]])
    annot = np.array([[f"{names[i, j]}\n{counts[i, j]}" for j in range(2)] for i in range(2)])
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    sns.heatmap(counts, annot=annot, fmt="", cmap="Blues", cbar=False, ax=ax,
                xticklabels=list(LABELS), yticklabels=list(LABELS))
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def carry_over(by_key, spread, *, target: float | None = 0.85, title: str = "Does it carry over to other keys?"):
    """Balanced accuracy per key (left) and p(happy) of each score in its twelve keys (right).

    Parameters
    ----------
    by_key : pandas.DataFrame
        :func:`mer.carryover.by_key` of the every-key set: ``key, balanced_accuracy, low, high, n``.
    spread : pandas.DataFrame
        :func:`mer.carryover.transposition_spread` (its ``attrs["curves"]``,
        score x shift, and each score's ``mode``).
    target : float, optional
        A dashed line at the per-key target.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/02_vit.ipynb
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.2, 1]})
    x = np.arange(len(by_key))
    values = by_key["balanced_accuracy"].to_numpy(dtype=float)
    errors = np.vstack([values - by_key["low"].to_numpy(dtype=float), by_key["high"].to_numpy(dtype=float) - values])
    left.bar(x, values, color="#8172B3", alpha=0.8)
    left.errorbar(x, values, yerr=np.nan_to_num(np.abs(errors)), fmt="none", ecolor="black", capsize=2, lw=0.8)
    if target is not None:
        left.axhline(target, ls="--", color="grey", lw=1)
    left.axhline(0.5, ls=":", color="grey", lw=1)
    left.set_xticks(x, [f"{k}\n{n}" for k, n in zip(by_key["key"], by_key["n"])], fontsize=8)
    for i in np.flatnonzero(~np.isfinite(values)):  # one class only in that key: no balanced accuracy
        left.text(i, 0.02, "n/a", ha="center", va="bottom", fontsize=7, color="grey")
    left.set(ylim=(0, 1.02), ylabel="balanced accuracy", xlabel="tonic (and number of clips)",
             title="fresh clips in every key (95 % intervals)")
    curves = spread.attrs.get("curves")
    if curves is not None and len(curves):
        modes = spread.set_index("score")["mode"]
        colours = {"major": _CLASS_PALETTE[HAPPY], "minor": _CLASS_PALETTE[SAD]}
        for score, row in curves.iterrows():
            right.plot(row.index, row.to_numpy(dtype=float), marker="o", ms=3, lw=1,
                       color=colours.get(modes.get(score), "grey"), alpha=0.8)
        for mode, colour in colours.items():
            right.plot([], [], color=colour, label=f"score in {mode}")
        right.legend(fontsize=8, loc="best")
    right.axhline(0.5, ls=":", color="grey", lw=1)
    right.set(ylim=(-0.02, 1.02), xlabel="semitones moved from C", ylabel="p(happy)",
              title="one score in twelve keys: a flat line is key-invariant")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def cue_weights(tables: dict, *, title: str = "Which cues the decisions follow"):
    """Implied cue weights of one or more models beside the generator's weights.

    Parameters
    ----------
    tables : dict of str -> pandas.DataFrame
        Model name -> :func:`mer.data.synth.implied_weights` table (``cue,
        true_weight, implied_weight, ci_low, ci_high``).

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/02_vit.ipynb
    """
    first = next(iter(tables.values()))
    cues = list(first["cue"])
    y = np.arange(len(cues))
    fig, ax = plt.subplots(figsize=(7.6, 0.55 * len(cues) + 1.4))
    ax.scatter(first["true_weight"], y, marker="|", s=400, color="0.2", zorder=3, label="generator (truth)")
    offsets = np.linspace(-0.18, 0.18, len(tables)) if len(tables) > 1 else [0.0]
    for (name, table), dy, colour in zip(tables.items(), offsets, sns.color_palette("deep")):
        table = table.set_index("cue").loc[cues]
        ax.errorbar(table["implied_weight"], y + dy,
                    xerr=[table["implied_weight"] - table["ci_low"], table["ci_high"] - table["implied_weight"]],
                    fmt="o", color=colour, ecolor=colour, capsize=2, label=name)
    ax.axvline(0, color="0.6", lw=1)
    ax.set(yticks=y, yticklabels=cues, xlabel="weight on the standardised cue (mode = 1)", title=title)
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def cue_probes(table, *, title: str = "Which cues each representation holds (linear probe, test R²)"):
    """Heat map of :func:`mer.interpretable.cue_probes`: one row per representation,
    one column per cue, the test R² written in each cell.

    Parameters
    ----------
    table : pandas.DataFrame
        ``representation, cue, r2`` (and intervals, not drawn).

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/02_vit.ipynb
    """
    grid = table.pivot(index="representation", columns="cue", values="r2")
    grid = grid.loc[list(dict.fromkeys(table["representation"])), list(dict.fromkeys(table["cue"]))]
    fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 3.2, 0.55 * grid.shape[0] + 1.4))
    sns.heatmap(grid, vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f", cbar_kws={"label": "test R²"}, ax=ax)
    ax.set(xlabel="", ylabel="", title=title)
    fig.tight_layout()
    return fig


def reading_ceiling(grid, *, target: float | None = None,
                    title: str = "How well the cues must be heard (linear reader, test balanced accuracy)"):
    """Heat map of :func:`mer.interpretable.reading_ceiling_grid`, the cells at or above ``target`` framed.

    Parameters
    ----------
    grid : pandas.DataFrame
        ``r2, mode_accuracy, balanced_accuracy``.
    target : float, optional
        A balanced accuracy to frame the cells that reach it.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/02_vit.ipynb
    """
    table = grid.pivot(index="r2", columns="mode_accuracy", values="balanced_accuracy")
    table = table.sort_index(ascending=False).sort_index(axis=1)
    fig, ax = plt.subplots(figsize=(1.0 * table.shape[1] + 3.4, 0.5 * table.shape[0] + 1.6))
    sns.heatmap(table, vmin=0.5, vmax=1, cmap="viridis", annot=True, fmt=".3f",
                cbar_kws={"label": "test balanced accuracy"}, ax=ax)
    if target is not None:
        for i, j in zip(*np.nonzero(table.to_numpy() >= target)):
            ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="white", lw=2.5))
    ax.set(xlabel="share of clips whose mode is heard right", ylabel="R² of every other cue's reading",
           title=title + (f"\nframed: at least {target:.2f}" if target is not None else ""))
    ax.set_xticklabels([f"{v:.2f}" for v in table.columns])
    ax.set_yticklabels([f"{v:.2f}" for v in table.index], rotation=0)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# Chapter 3: LRP (notebooks/03_lrp.ipynb)
# ---------------------------------------------------------------------------

def _symmetric_limit(values) -> float:
    limit = float(np.nanmax(np.abs(values))) if np.size(values) else 1.0
    return limit if limit > 0 else 1.0


#: Width and height (inches) of one :func:`lrp_example`.
EXAMPLE_SIZE = (10, 5.6)


def lrp_example(spec: np.ndarray, relevance: np.ndarray, contrast: np.ndarray, *, frame_s: float,
                title: str = "", window: tuple[float, float] | None = None, params=None, semitones: int = 0):
    """One explained clip: spectrogram with relevance overlaid, relevance summed
    over time (which frequencies) and over frequency (which moments), and the
    class-contrastive relevance (Happy minus Sad logit).

    Frequency is labelled with notes and hertz at the octaves of A, placed on
    the spectrogram's own scale; time in seconds. Relevance of the explained
    class in ``RdBu_r`` (red for, blue against), the contrast in ``PuOr_r``
    (orange for Happy, purple for Sad), both with zero at the centre
    (symmetric limits); the spectrogram underneath in grey.

    Parameters
    ----------
    spec : np.ndarray, shape (n_mels, n_frames)
        Log-mel (dB or normalised) of the clip.
    relevance, contrast : np.ndarray, shape (n_mels, n_frames)
        Relevance of the explained (predicted) class, and of Happy - Sad.
    frame_s : float
        Seconds per frame.
    window : (float, float), optional
        An evidence window to outline (probe clips).
    params : mer.spectrogram.LogMelParams or dict, optional
        The front end that made ``spec`` (e.g. ``meta["logmel"]``), for the
        frequency ticks. Default: the mel front end at 22 050 Hz with ``n_mels``
        = the rows of ``spec``.
    semitones : int
        For a canonicalising (log-frequency) model: how far the clip was moved
        (``explain_clips(...)["semitones"]``), so the ticks name the clip's own pitches.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/03_lrp.ipynb
    """
    fig = plt.figure(figsize=EXAMPLE_SIZE, layout="constrained")
    _draw_lrp_example(fig, spec, relevance, contrast, frame_s=frame_s, title=title, window=window, params=params,
                      semitones=semitones)
    return fig


def lrp_examples(examples, *, frame_s: float, params=None, semitones: int | Sequence[int] = 0):
    """Several explained clips in one figure, one :func:`lrp_example` under the other.

    One figure per call keeps a captioned notebook cell to one figure (and one
    figure name) whatever the profile's ``n_examples``.

    Parameters
    ----------
    examples : sequence of (spec, relevance, contrast, title)
        Each as :func:`lrp_example`'s arguments: arrays of shape (n_mels, n_frames) and a str.
    frame_s, params
        As :func:`lrp_example`, shared by every clip.
    semitones : int or sequence of int
        As :func:`lrp_example`: one for every clip, or one per clip
        (:func:`mer.vit.clip_moves`).

    Returns
    -------
    matplotlib.figure.Figure or None
        None when ``examples`` is empty.

    Notebook: notebooks/03_lrp.ipynb
    """
    examples = list(examples)
    if not examples:  # a quadrant without clips: the chapter says so in words
        return None
    moves = [int(k) for k in np.broadcast_to(np.asarray(semitones, dtype=int), (len(examples),))]
    if len(examples) == 1:
        spec, relevance, contrast, title = examples[0]
        return lrp_example(spec, relevance, contrast, frame_s=frame_s, title=title, params=params,
                           semitones=moves[0])
    width, height = EXAMPLE_SIZE
    fig = plt.figure(figsize=(width, height * len(examples)), layout="constrained")
    for sub, (spec, relevance, contrast, title), move in zip(np.atleast_1d(fig.subfigures(len(examples), 1)),
                                                             examples, moves):
        _draw_lrp_example(sub, spec, relevance, contrast, frame_s=frame_s, title=title, params=params,
                          semitones=move)
    return fig


def _draw_lrp_example(fig, spec, relevance, contrast, *, frame_s, title, window=None, params=None, semitones=0):
    """Draw :func:`lrp_example`'s panels into ``fig`` (a Figure or a SubFigure)."""
    n_mels, n_frames = spec.shape
    p = _front_end(params, n_rows=n_mels)
    extent = (0, n_frames * frame_s, 0, n_mels)
    grid = fig.add_gridspec(2, 3, width_ratios=(4, 4, 1.5), height_ratios=(3, 1.2))
    ax_spec = fig.add_subplot(grid[0, 0])
    ax_con = fig.add_subplot(grid[0, 1], sharey=ax_spec)
    ax_freq = fig.add_subplot(grid[0, 2], sharey=ax_spec)
    ax_time = fig.add_subplot(grid[1, 0], sharex=ax_spec)
    ax_time_c = fig.add_subplot(grid[1, 1], sharex=ax_con)
    size = _min_font(fig)
    ax_spec.imshow(spec, origin="lower", aspect="auto", cmap=CMAP_BACKGROUND, extent=extent,
                   interpolation="nearest")
    limit = _symmetric_limit(relevance)
    shown = np.ma.masked_where(np.abs(relevance) < 0.05 * limit, relevance)
    image = ax_spec.imshow(shown, origin="lower", aspect="auto", cmap=CMAP_RELEVANCE, vmin=-limit, vmax=limit,
                           extent=extent, alpha=0.8, interpolation="nearest")
    fig.colorbar(image, ax=ax_spec, location="top", shrink=0.7, label="relevance (red: for the explained class)")
    c_limit = _symmetric_limit(contrast)
    image = ax_con.imshow(contrast, origin="lower", aspect="auto", cmap=CMAP_CONTRAST, vmin=-c_limit, vmax=c_limit,
                          extent=extent, interpolation="nearest")
    fig.colorbar(image, ax=ax_con, location="top", shrink=0.7, label="Happy - Sad (orange: for Happy)")
    bands = np.arange(n_mels) + 0.5
    ax_freq.plot(relevance.sum(1), bands, color="C3", label="class")
    ax_freq.plot(contrast.sum(1), bands, color="C4", lw=1, label="H - S")
    ax_freq.axvline(0, color="k", lw=0.5)
    ax_freq.set_xlabel("sum over time")
    ax_freq.legend(fontsize=size, loc="upper right")
    times = (np.arange(n_frames) + 0.5) * frame_s
    ax_time.bar(times, relevance.sum(0), width=frame_s, color=np.where(relevance.sum(0) >= 0, "C3", "C0"))
    ax_time.set_ylabel("sum over freq.")
    ax_time.set_xlabel("time (s)")
    ax_time_c.bar(times, contrast.sum(0), width=frame_s, color=np.where(contrast.sum(0) >= 0, "C1", "C4"))
    ax_time_c.set_xlabel("time (s)")
    for ax in (ax_spec, ax_con):
        ax.set_xlim(0, n_frames * frame_s)
        ax.grid(False)
    for ax in (ax_spec, ax_con, ax_time, ax_time_c):
        if window is not None:
            ax.axvspan(*window, fill=False, edgecolor="k", lw=1.5, ls="--")
    size = _legible(fig)
    ax_freq.xaxis.get_major_locator().set_params(nbins=3)
    for ax in (ax_time, ax_time_c):
        ax.xaxis.get_major_locator().set_params(nbins=6)
    ax_con.tick_params(labelleft=False)
    ax_freq.tick_params(labelleft=False)
    _row_note_ticks(ax_spec, _row_frequencies(p, semitones=semitones), fontsize=size, scale=p.front_end)
    fig.suptitle(title)


def conservation_plot(tables: dict):
    """Sum of input relevance against the explained logit, one panel per rule.

    Parameters
    ----------
    tables : dict name -> pandas.DataFrame
        :func:`mer.lrp.conservation` tables (columns ``logit``, ``input``).

    Notebook: notebooks/03_lrp.ipynb
    """
    fig, axes = plt.subplots(1, len(tables), figsize=(4 * len(tables), 3.6), layout="constrained", squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items()):
        ax.scatter(table["logit"], table["input"], s=12)
        low = float(min(table["logit"].min(), table["input"].min()))
        high = float(max(table["logit"].max(), table["input"].max()))
        ax.plot([low, high], [low, high], color="k", lw=0.8)
        ax.set_xlabel("explained logit")
        ax.set_ylabel("sum of input relevance")
        ax.set_title(f"{name}\nmedian rel. error {table['rel_error'].median():.1e}", fontsize="small")
    return fig


def perturbation_curves(morf: dict, lerf: dict, fractions: np.ndarray):
    """Mean p(explained class) as patches are removed, MoRF and LeRF, per explainer.

    Notebook: notebooks/03_lrp.ipynb
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained", sharey=True)
    for ax, curves, title in ((axes[0], morf, "most relevant first (MoRF): lower is better"),
                              (axes[1], lerf, "least relevant first (LeRF): higher is better")):
        for i, (name, values) in enumerate(curves.items()):
            ax.plot(fractions, np.mean(values, 0), label=name, color=f"C{i}",
                    lw=2.2 if name in ("lrp", "attnlrp") else 1.2)
        ax.set_xlabel("fraction of patches removed")
        ax.set_title(title, fontsize="small")
    axes[0].set_ylabel("p(explained class)")
    axes[1].legend(fontsize="small")
    return fig


def mass_accuracy_plot(table, *, chance: float | None = None):
    """Relevance mass accuracy (per bin and per token) and pointing game per explainer.

    Parameters
    ----------
    table : pandas.DataFrame
        Index explainer; columns ``mass_accuracy``, ``mass_accuracy_token``, ``pointing_game``.

    Notebook: notebooks/03_lrp.ipynb
    """
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    long = table[["mass_accuracy", "mass_accuracy_token", "pointing_game"]].reset_index().melt(
        id_vars=table.index.name or "index", var_name="score")
    sns.barplot(data=long, x=table.index.name or "index", y="value", hue="score", ax=ax)
    if chance is not None:
        ax.axhline(chance, color="k", ls="--", lw=1, label="chance (window share)")
    ax.axhline(0.8, color="C3", ls=":", lw=1, label="target 0.8")
    ax.set_ylim(0, 1)
    ax.set_xlabel("")
    ax.legend(fontsize="x-small", ncols=2)
    return fig


def randomisation_plot(tables: dict):
    """Median absolute Spearman rho with the trained model's map as blocks are randomised, top first
    (tables of :func:`mer.lrp.checks.randomisation`).

    Notebook: notebooks/03_lrp.ipynb
    """
    fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    for i, (name, table) in enumerate(tables.items()):
        ax.plot(table["randomised"], table["spearman_abs"], marker="o", label=name, color=f"C{i}")
    ax.axhspan(0.0, 0.2, color="0.9", zorder=0, label="|rho| <= 0.2")
    ax.set_ylabel("median |Spearman rho| (per bin)")
    ax.set_xlabel("randomised so far (cumulative, top first)")
    ax.legend(fontsize="x-small")
    return fig


# ---------------------------------------------------------------------------
# Chapter 4: sonification (notebooks/04_sonification.ipynb)
# ---------------------------------------------------------------------------
#: Order of the sounds compared in chapter 4 (the quadrants' is :data:`mer.metrics.QUADRANTS`).
SONIFY_CONDITION_ORDER = ("original", "kept", "complement", "random removed")


def relevance_overlay(logmel_db, relevance, *, sr: int = 22050, hop_length: int = 512, pool: int = 4,
                      title: str | None = None, ax=None, colorbar: bool = True, params=None, semitones: int = 0):
    """A log-mel spectrogram in grey with the relevance drawn over it.

    Red marks evidence for the explained class, blue evidence against it
    (``RdBu_r``, zero at the centre, limits ``+-max|relevance|``); a bin's
    opacity grows with its absolute relevance, so the spectrogram shows
    through where the model did not look. Frequency is labelled with notes and
    hertz at the octaves of A, placed on the spectrogram's own scale; time in seconds.

    Parameters
    ----------
    logmel_db : np.ndarray, shape (n_mels, n_frames) or (1, n_mels, n_frames)
        The spectrogram the model saw (dB or normalised).
    relevance : np.ndarray, shape (n_mels, n_frames)
        Signed relevance (frames beyond ``logmel_db``'s are ignored).
    sr, hop_length, pool : int
        Geometry of the mel front end, for the time axis in seconds and the Hz
        labels (ignored with ``params``).
    title : str, optional
    ax : matplotlib.axes.Axes, optional
        Draw into this axes; a new figure otherwise.
    colorbar : bool
    params : mer.spectrogram.LogMelParams or dict, optional
        The front end that made the spectrogram (e.g. ``meta["logmel"]``); needed
        for a log-frequency front end. Default: the mel front end with ``sr``,
        ``hop_length``, ``pool`` and ``n_mels`` = the rows of ``logmel_db``.
    semitones : int
        For a canonicalising (log-frequency) model: how far the clip was moved
        (``explain_clips(...)["semitones"]``), so the ticks name the clip's own pitches.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/04_sonification.ipynb
    """
    spec = np.asarray(logmel_db, dtype=float).reshape(np.shape(logmel_db)[-2:])
    n_mels, n_frames = spec.shape
    rel = np.asarray(relevance, dtype=float)[:, :n_frames]
    p = _front_end(params, n_rows=n_mels, sr=sr, hop_length=hop_length, pool=pool)
    if ax is None:
        figure, ax = plt.subplots(figsize=(7.0, 3.2), constrained_layout=True)
    else:
        figure = ax.figure
    duration = n_frames * p.pool * p.hop_length / p.sr
    extent = (0.0, duration, 0.0, n_mels)
    ax.imshow(spec, origin="lower", aspect="auto", cmap=CMAP_BACKGROUND, extent=extent, interpolation="nearest")
    scale = _symmetric_limit(rel)
    alpha = np.clip(np.nan_to_num(np.abs(rel)) / scale, 0, 1) ** 0.7
    ax.imshow(np.nan_to_num(rel), origin="lower", aspect="auto", cmap=CMAP_RELEVANCE, vmin=-scale,
                      vmax=scale, alpha=alpha, extent=extent, interpolation="nearest")
    ax.set_xlim(0.0, duration)
    ax.set_xlabel("time (s)")
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=max(10.0, _min_font(figure)))
    axes = [ax]
    if colorbar:
        mappable = plt.cm.ScalarMappable(cmap=CMAP_RELEVANCE, norm=plt.Normalize(-scale, scale))
        bar = figure.colorbar(mappable, ax=ax, label="relevance (red: for)", pad=0.01)
        axes.append(bar.ax)
    size = _legible(figure, axes)
    _row_note_ticks(ax, _row_frequencies(p, semitones=semitones), fontsize=size, scale=p.front_end)
    return figure


def save_relevance_overlay(path, logmel_db, relevance, *, dpi: int = 90, **options) -> Path:
    """Draw :func:`relevance_overlay` into an image file and close the figure.

    Parameters
    ----------
    path : str or Path
        The file; its suffix names the format (``.png``).
    logmel_db : np.ndarray, shape (n_mels, n_frames) or (1, n_mels, n_frames)
    relevance : np.ndarray, shape (n_mels, n_frames)
    dpi : int
        Resolution of the image.
    **options
        Passed to :func:`relevance_overlay` (``sr``, ``hop_length``, ``pool``,
        ``params``, ``semitones``, ``title``...).

    Returns
    -------
    pathlib.Path
        ``path``.

    Notebook: notebooks/04_sonification.ipynb (``python -m mer explain``'s page
    shows one per window, :func:`mer.explain.explain_windows`).
    """
    figure = relevance_overlay(logmel_db, relevance, **options)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return Path(path)


def sonification_panels(y, mask, kept, complement, *, sr: int = 22050, n_fft: int = 2048,
                        hop_length: int = 512, title: str | None = None, fmax: float | None = None,
                        floor_db: float = -70.0):
    """What the mask keeps and what it leaves out, on the linear STFT.

    Four panels over time (s) and frequency (linear in Hz up to ``fmax``,
    labelled with notes at the octaves of A), two by two: the original and
    the mask (0-1, ``cividis``) above, the sonified clip (kept) and the
    complement below; the three sounds in dB relative to the original's
    maximum (``magma``, one scale), so the loudness matching of kept and
    complement is visible too.

    Parameters
    ----------
    y, kept, complement : np.ndarray, shape (n_samples,)
    mask : np.ndarray, shape (1 + n_fft // 2, n_stft_frames)
    fmax : float, optional
        Highest frequency shown (default ``sr / 2``).
    floor_db : float
        Bottom of the dB colour scale.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/04_sonification.ipynb
    """
    import librosa  # slow to import (numba); only the note and hertz axes need it

    figure, axes = plt.subplots(2, 2, figsize=(8.4, 5.4), sharex=True, sharey=True, constrained_layout=True)
    ax_orig, ax_mask, ax_kept, ax_comp = axes.flat
    powers = [np.abs(librosa.stft(np.asarray(s, dtype=np.float32), n_fft=n_fft, hop_length=hop_length)) ** 2
              for s in (y, kept, complement)]
    ref = float(powers[0].max()) or 1.0
    top = int(np.searchsorted(librosa.fft_frequencies(sr=sr, n_fft=n_fft), fmax or sr / 2)) + 1
    # Pixels centred on their STFT bin (k * sr / n_fft Hz) and frame (t * hop / sr s, centred frames).
    bin_hz, hop_s = sr / n_fft, hop_length / sr
    n_columns = powers[0].shape[1]
    extent = (-hop_s / 2, (n_columns - 0.5) * hop_s, -bin_hz / 2, (top - 0.5) * bin_hz)
    shown = ax_mask.imshow(np.asarray(mask)[:top], origin="lower", aspect="auto", cmap=CMAP_MASK, vmin=0, vmax=1,
                           extent=extent, interpolation="nearest")
    ax_mask.set_title("mask", fontsize=11)
    figure.colorbar(shown, ax=ax_mask, pad=0.01, label="kept share")
    image = None
    for ax, power, name in zip((ax_orig, ax_kept, ax_comp), powers,
                               ("original", "sonified (kept)", "complement (ignored)")):
        db = 10 * np.log10(np.maximum(power[:top], 1e-12) / ref)
        image = ax.imshow(db, origin="lower", aspect="auto", cmap=CMAP_DB, vmin=floor_db, vmax=0, extent=extent,
                          interpolation="nearest")
        ax.set_title(name, fontsize=11)
    for ax in axes.flat:
        ax.grid(False)
    ax_orig.set_xlim(0.0, len(y) / sr)
    ax_orig.set_ylim(0.0, (top - 1) * bin_hz)
    for ax in axes[1]:
        ax.set_xlabel("time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("frequency (linear)")
    bar = figure.colorbar(image, ax=ax_comp, label="dB re original max\n(all three sounds)", pad=0.01)
    size = _legible(figure)
    _note_ticks(ax_orig, lambda hz: hz, bin_hz, (top - 1) * bin_hz, fontsize=size)
    del bar
    if title:
        figure.suptitle(title, fontsize=12)
    return figure


def faithfulness_distributions(table):
    """p(predicted class) on the original and the three masked sounds, per explainer.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per clip and explainer: ``explainer, p_orig, p_kept,
        p_complement, p_random`` (:func:`mer.faithfulness.faithfulness_table`
        with an ``explainer`` column).

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/04_sonification.ipynb
    """

    names = {"p_orig": "original", "p_kept": "kept", "p_complement": "complement",
             "p_random": "random removed"}
    long = table.melt(id_vars=["explainer"], value_vars=list(names), var_name="sound", value_name="p")
    long["sound"] = pd.Categorical(long["sound"].map(names), categories=list(SONIFY_CONDITION_ORDER))
    n = table["explainer"].nunique()
    figure, ax = plt.subplots(figsize=(max(6.0, 1.6 * n + 2), 3.4), constrained_layout=True)
    sns.boxplot(data=long, x="explainer", y="p", hue="sound", ax=ax, fliersize=0, linewidth=0.8)
    sns.stripplot(data=long, x="explainer", y="p", hue="sound", dodge=True, ax=ax, size=2.5, alpha=0.5,
                  palette="dark:black", legend=False)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(ylim=(0, 1.02), ylabel="p(predicted class)", xlabel="",
           title="What the model hears in each sound (held-out test clips)")
    ax.legend(title="", frameon=False, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8)
    return figure


def centroids_by_quadrant(table):
    """Spectral centroid of the sonified clips per quadrant, beside the originals'.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``quadrant`` (TP/TN/FP/FN), ``sound`` (e.g. "original",
        "trained model", "randomised model") and ``centroid_hz``.

    Returns
    -------
    matplotlib.figure.Figure

    Notebook: notebooks/04_sonification.ipynb
    """
    order = [q for q in QUADRANTS if q in set(table["quadrant"])]
    sounds = list(dict.fromkeys(table["sound"]))
    hue_order = ["original"] + [s for s in sounds if s != "original"] if "original" in sounds else sounds
    figure, ax = plt.subplots(figsize=(6.5, 3.2), constrained_layout=True)
    sns.pointplot(data=table, x="quadrant", y="centroid_hz", hue="sound", order=order, hue_order=hue_order,
                  dodge=0.35, linestyles="none", errorbar=("pi", 50), ax=ax, markersize=5)
    ax.set(ylabel="spectral centroid (Hz)", xlabel="quadrant (Happy positive)",
           title="Where the kept energy sits")
    ax.legend(title="", frameon=False, fontsize=8)
    return figure
