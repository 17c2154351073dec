"""Interactive panels of the chapters (ipywidgets), one function per panel.

Each panel has a static counterpart in :mod:`mer.plots` that the rendered
book shows, since a static HTML page has no kernel to answer the widgets.
The book stores no widget state (:func:`mer.runner.present`), so its pages
load no widget library; what a reader tweaks there is plain HTML
(:func:`mer.display.listening_slider` switches players between a few
precomputed sonifications).

Notebook: notebooks/01_features.ipynb (feature/model panel); later chapters add theirs.
"""

from __future__ import annotations

import os
from typing import Sequence

import IPython.display
import pandas as pd

from . import ParameterError, display, interpretable, plots, sonify
from . import features as F
from .metrics import ID2LABEL

#: Shown in place of a panel when the chapter is executed by the runner: a
#: rendered page has no kernel to answer widgets, and their state is not saved,
#: so the book shows the static figure that follows each panel instead.
STATIC_NOTE = ("*Interactive panel: open this chapter in Jupyter (`notebooks/`) to use it; "
               "the figure below shows its default state.*")


def interactive() -> bool:
    """False when the chapter runs under ``python -m mer run`` (``MER_RUNNER=1``).

    Notebook: notebooks/01_features.ipynb and notebooks/04_sonification.ipynb (their panels).
    """
    return os.environ.get("MER_RUNNER") != "1"


def _static_placeholder():
    IPython.display.display(IPython.display.Markdown(STATIC_NOTE))

# ---------------------------------------------------------------------------
# Chapter 1: features (notebooks/01_features.ipynb)
# ---------------------------------------------------------------------------


def feature_model_panel(dataset, features: pd.DataFrame, *, families: Sequence[str] | None = None,
                        cv_folds: int = 5, seed: int = 0, top: int = 15):
    """A panel to choose feature families and a model, and see coefficients and scores update.

    Parameters
    ----------
    dataset : mer.data.Dataset
    features : pandas.DataFrame
        From :func:`mer.features.extract`.
    families : sequence of str, optional
        Families offered (default: those present in ``features``).
    cv_folds, seed : int
        Cross-validation of every choice (:func:`mer.interpretable.cross_validate`).
    top : int
        Coefficients / importances shown.

    Returns
    -------
    ipywidgets.VBox or None
        Checkboxes of families, a model dropdown and the output (score line
        and the coefficient plot or permutation-importance plot); ``None``
        (and a note) when the chapter runs under the runner.

    Notebook: notebooks/01_features.ipynb
    """
    if not interactive():
        return _static_placeholder()
    import ipywidgets as w  # optional: only a live kernel shows the panels

    offered = [f for f in (families or F.FAMILIES) if F.feature_columns(features, [f])]
    if not offered:
        raise ParameterError("feature_model_panel: no feature family present in the table")
    boxes = {f: w.Checkbox(value=f != "symbolic", description=f, indent=False,
                           layout=w.Layout(width="110px")) for f in offered}
    model = w.Dropdown(options=[("logistic regression", "logreg"), ("shallow network (MLP)", "mlp")],
                       value="logreg", description="model")
    output = w.Output()
    cache: dict = {}

    def update(*_):
        chosen = tuple(f for f, box in boxes.items() if box.value)
        with output:
            output.clear_output(wait=True)
            if not chosen:
                print("Choose at least one feature family.")
                return
            key = (chosen, model.value)
            if key not in cache:
                X, y = interpretable.design(dataset, features, columns=F.model_columns(features, chosen))
                scores = interpretable.cross_validate(X, y, model=model.value, cv_folds=cv_folds, seed=seed)["scores"]
                if model.value == "logreg":
                    table = interpretable.coefficients(X, y, model="logreg").to_frame()
                    table["ci_low"] = table["ci_high"] = table["coef"]
                else:
                    table = interpretable.permutation_importances(X, y, model="mlp", cv_folds=cv_folds, seed=seed,
                                                           n_repeats=2)
                cache[key] = (scores, table)
            scores, table = cache[key]
            print(f"{model.label}: balanced accuracy {scores['balanced_accuracy']:.3f}, "
                  f"ROC AUC {scores['roc_auc']:.3f} ({cv_folds}-fold CV)")
            if model.value == "logreg":
                figure = plots.coefficient_plot(table, top=top, title="Standardised coefficients (all clips)")
            else:
                figure = plots.permutation_importance_plot(table, top=top)
            display.show_figure(figure)

    for box in boxes.values():
        box.observe(update, names="value")
    model.observe(update, names="value")
    update()
    return w.VBox([w.HBox(list(boxes.values())), model, output])


# ---------------------------------------------------------------------------
# Chapter 4: sonification (notebooks/04_sonification.ipynb)
# ---------------------------------------------------------------------------


def sonification_view(model, meta: dict, y, *, explainer: str = "lrp", threshold: float = 0.0,
                      signed: bool = False, top_k_percent: float | None = 15.0, exponent: float = 0.0,
                      path: str, found: dict | None = None) -> None:
    """Show one sonification: mask figure and players (the body of :func:`sonification_panel`).

    Used by the panel in a live kernel and, with fixed choices, for the
    static grid of the rendered book.

    Parameters
    ----------
    model, meta
        A checkpoint (:func:`mer.vit.load_checkpoint`).
    y : np.ndarray, shape (n_samples,)
    explainer : str
        :data:`mer.lrp.explainers.EXPLAINERS` name; the predicted class is explained.
    threshold, top_k_percent, exponent
        Mask options (:func:`mer.sonify.mel_relevance_to_stft_mask`).
    signed : bool
        Also play the negative relevance (evidence for the other class).
    path : str
        Stem of the OGG files under ``_static/audio`` (:func:`mer.display.player_file`).
    found : dict, optional
        :func:`mer.explain.explain_clips` output for ``y[None]`` (skips explaining again).

    Notebook: notebooks/04_sonification.ipynb
    """
    from . import explain  # torch and transformers take seconds; only chapter 4's panels need them

    if found is None:
        found = explain.explain_clips(model, meta, y[None], explainer=explainer)
    sr = int(meta["logmel"]["sr"])
    predicted = ID2LABEL[int(found["predicted"][0])]
    relevance = found["relevance"][0]
    clip = sonify.sonify(y, relevance, sr=sr, threshold=threshold, top_k_percent=top_k_percent,
                        exponent=exponent, **found["front_end"][0])
    figure = plots.sonification_panels(y, clip.mask, clip.kept, clip.complement, sr=sr,
                                       title=f"{explainer}: predicted {predicted} "
                                             f"(p = {float(found['proba'][0].max()):.2f}); mask keeps "
                                             f"{100 * clip.area:.0f} % of the plane, gain {clip.gain_db:+.1f} dB")
    display.show_figure(figure)
    IPython.display.display(IPython.display.Markdown(
        "*Top: the original and the mask (yellow kept, dark removed); bottom: the sonified clip and its "
        "complement, in dB on one scale after loudness matching. The kept energy should lie on the notes "
        "the relevance marked.*"))
    players = explain.sonification_sounds(y, relevance, clip, predicted=predicted, signed=signed, sr=sr,
                                          threshold=threshold, top_k_percent=top_k_percent, exponent=exponent,
                                          **found["front_end"][0])
    IPython.display.display(display.player_row(players, sr=sr, stem=path))


def sonification_panel(model, meta: dict, clips, predictions: pd.DataFrame, *,
                       explainers: Sequence[str] = ("lrp", "gradxinput", "random"),
                       top_k_percent: float | None = 15.0, exponent: float = 0.0):
    """A panel to pick a clip, an explainer, a threshold and positive/signed
    relevance, and hear the sonified explanation update.

    Parameters
    ----------
    model, meta
        A checkpoint (:func:`mer.vit.load_checkpoint`).
    clips : np.ndarray, shape (n_clips, n_samples)
        Audio of the clips offered.
    predictions : pandas.DataFrame
        One row per clip, same order (:func:`mer.explain.predictions_table`:
        ``clip_id``, ``quadrant``, ``predicted``, ``p_predicted``).
    explainers : sequence of str
    top_k_percent : float, optional
        Share of the plane kept while the threshold is 0.
    exponent : float
        Mask exponent (0: the kept cells whole).

    Returns
    -------
    ipywidgets.VBox or None
        The controls and the output (:func:`sonification_view`). Relevance
        maps are cached per clip and explainer, so moving the threshold only
        re-sonifies. Under the runner (:func:`interactive` is False) a note
        is shown instead and ``None`` returned; the chapter's static grid of
        :func:`sonification_view` stands in.

    Notebook: notebooks/04_sonification.ipynb
    """
    import ipywidgets as w  # optional: only a live kernel shows the panels

    from . import explain  # torch and transformers take seconds; only chapter 4's panels need them

    if len(clips) != len(predictions) or len(clips) == 0:
        raise ParameterError(f"sonification_panel: {len(clips)} clips but {len(predictions)} predictions")
    if not interactive():
        _static_placeholder()
        return None
    options = [(f"{r.clip_id} [{r.quadrant}: {r.predicted}, p={r.p_predicted:.2f}]", i)
               for i, r in enumerate(predictions.itertuples())]
    clip = w.Dropdown(options=options, value=0, description="clip", layout=w.Layout(width="420px"))
    method = w.Dropdown(options=list(explainers), value=list(explainers)[0], description="explainer")
    threshold = w.FloatSlider(value=0.0, min=0.0, max=0.9, step=0.05, description="threshold",
                              continuous_update=False)
    signed = w.ToggleButtons(options=[("positive", False), ("signed", True)], value=False,
                             description="relevance")
    output = w.Output()
    cache: dict = {}

    def update(*_):
        key = (clip.value, method.value)
        with output:
            output.clear_output(wait=True)
            if key not in cache:
                cache[key] = explain.explain_clips(model, meta, clips[clip.value][None], explainer=method.value)
            sonification_view(model, meta, clips[clip.value], explainer=method.value, threshold=threshold.value,
                              signed=signed.value, top_k_percent=None if threshold.value else top_k_percent,
                              exponent=exponent, path="04_sonification/live", found=cache[key])

    for control in (clip, method, threshold, signed):
        control.observe(update, names="value")
    update()
    return w.VBox([w.HBox([clip, method]), w.HBox([threshold, signed]), output])
