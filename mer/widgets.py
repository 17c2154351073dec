"""Interactive panels of the chapters (ipywidgets), one function per panel,
and the listening sliders that work without a kernel.

Each panel has a static counterpart in :mod:`mer.plots` that the rendered
book shows, since a static HTML page has no kernel to answer the widgets.
The book stores no widget state (:func:`mer.runner.present`), so its pages
load no widget library; what a reader tweaks there is plain HTML:
:func:`listening_slider` switches players between a few precomputed
sonifications.

Notebook: notebooks/01_features.ipynb (feature/model panel); later chapters add theirs.
"""

from __future__ import annotations

import os
from typing import Sequence

import pandas as pd

from . import ParameterError
from .metrics import ID2LABEL

#: Shown in place of a panel when the chapter is executed by the runner: a
#: rendered page has no kernel to answer widgets, and their state is not saved,
#: so the book shows the static figure that follows each panel instead.
STATIC_NOTE = ("*Interactive panel: open this chapter in Jupyter (`notebooks/`) to use it; "
               "the figure below shows its default state.*")


def interactive() -> bool:
    """False when the chapter runs under ``python -m mer run`` (``MER_RUNNER=1``)."""
    return os.environ.get("MER_RUNNER") != "1"


def _static_placeholder():
    from IPython.display import Markdown, display

    display(Markdown(STATIC_NOTE))

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
        Cross-validation of every choice (:func:`mer.models.cross_validate`).
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
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from . import features as F
    from . import models, plots

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
                X, y = models.design(dataset, features, columns=F.feature_columns(features, chosen))
                scores = models.cross_validate(X, y, model=model.value, cv_folds=cv_folds, seed=seed)["scores"]
                if model.value == "logreg":
                    table = models.coefficients(X, y, model="logreg").to_frame()
                    table["ci_low"] = table["ci_high"] = table["coef"]
                else:
                    table = models.permutation_importances(X, y, model="mlp", cv_folds=cv_folds, seed=seed,
                                                           n_repeats=2)
                cache[key] = (scores, table)
            scores, table = cache[key]
            print(f"{model.label}: balanced accuracy {scores['balanced_accuracy']:.3f}, "
                  f"ROC AUC {scores['roc_auc']:.3f} ({cv_folds}-fold CV)")
            if model.value == "logreg":
                figure = plots.coefficient_plot(table, top=top, title="Standardised coefficients (all clips)")
            else:
                figure = plots.permutation_importance_plot(table, top=top)
            display(figure)
            plt.close(figure)

    for box in boxes.values():
        box.observe(update, names="value")
    model.observe(update, names="value")
    update()
    return w.VBox([w.HBox(list(boxes.values())), model, output])


# ---------------------------------------------------------------------------
# Listening sliders: static HTML, no kernel (chapters 3 and 4)
# ---------------------------------------------------------------------------

#: The script behind every listening slider, included with each one (the first
#: copy on a page installs one listener; later copies return at once). Moving a
#: slider swaps the ``src`` of its sonified and complement players for the
#: precomputed files of that setting; a player that was playing goes on
#: playing the new file from the same moment. Plain DOM, no library, no CDN.
LISTEN_SCRIPT = """(function () {
  if (window.merListen) { return; }
  window.merListen = true;
  function apply(box, index) {
    var settings = JSON.parse(box.querySelector("script.mer-listen-settings").textContent);
    var setting = settings[index];
    box.querySelector("output").textContent = setting.label;
    box.setAttribute("data-mer-setting", String(index));
    ["sonified", "complement"].forEach(function (role) {
      var player = box.querySelector('audio[data-mer-role="' + role + '"]');
      var caption = box.querySelector('[data-mer-caption="' + role + '"]');
      if (caption) { caption.textContent = setting[role + "_caption"]; }
      if (!player) { return; }
      var at = player.currentTime, playing = !player.paused;
      player.src = setting[role];
      player.load();
      if (at > 0) {
        player.addEventListener("loadedmetadata", function () {
          player.currentTime = Math.min(at, player.duration || at);
        }, {once: true});
      }
      if (playing) { player.play().catch(function () {}); }
    });
  }
  document.addEventListener("input", function (event) {
    var slider = event.target;
    if (!slider || slider.type !== "range" || !slider.closest) { return; }
    var box = slider.closest("[data-mer-listen]");
    if (box) { apply(box, Number(slider.value)); }
  });
})();"""


def listening_slider(y, settings: Sequence, *, sr: int, stem: str, initial: int | None = None,
                     explained: str | None = None, title: str | None = None):
    """A slider over a few precomputed sonifications, with its players: works in a static page.

    The rendered book has no kernel to sonify on demand, so the settings are
    computed in advance (:func:`mer.sonify.sonify_shares`, each one
    loudness-matched) and written as OGG files under ``_static/audio``
    (:func:`mer.audio.player_file`); the slider only switches the players'
    sources (:data:`LISTEN_SCRIPT`, inline, no CDN). In a live kernel the same
    HTML works, and the ipywidgets panels (:func:`sonification_panel`) add
    the choices no static page can hold.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
        The original clip (its player does not change).
    settings : sequence of mer.sonify.SonifiedClip
        One per slider position, in order (``options["top_k_percent"]`` names
        the share kept).
    sr : int
        Sampling rate in Hz.
    stem : str
        File stem under :func:`mer.audio.audio_dir` (``"04_sonification/TP-c0012"``);
        ``-original``, ``-keep15-sonified``... are appended.
    initial : int, optional
        Position the slider starts at (default: the setting whose share is
        15 %, else the middle one).
    explained : str, optional
        The class the relevance speaks for, in the captions (``"happy"``).
    title : str, optional
        A caption above the control.

    Returns
    -------
    IPython.display.HTML

    Notebook: notebooks/04_sonification.ipynb (each quadrant example) and
    notebooks/03_lrp.ipynb (the probe clip).
    """
    import html
    import json

    from IPython.display import HTML

    from . import audio

    if len(settings) == 0:
        raise ParameterError("listening_slider needs at least one setting")
    shares = [s.options.get("top_k_percent") for s in settings]
    if initial is None:
        initial = shares.index(15.0) if 15.0 in shares else len(settings) // 2
    if not 0 <= initial < len(settings):
        raise ParameterError(f"initial must index one of the {len(settings)} settings, got {initial}")
    speaks_for = f"for {explained}" if explained else "kept"

    def source(signal, name):
        return audio.page_file(signal, sr=sr, path=f"{stem}-{name}")

    entries = []
    for clip, share in zip(settings, shares):
        name = f"keep{share:g}" if share is not None else f"area{100 * clip.area:.0f}"
        entries.append({
            "label": f"{share:g} %" if share is not None else f"{100 * clip.area:.0f} %",
            "sonified": source(clip.kept, f"{name}-sonified"),
            "complement": source(clip.complement, f"{name}-complement"),
            "sonified_caption": f"{speaks_for}, sonified ({clip.gain_db:+.0f} dB)",
            "complement_caption": f"complement ({clip.complement_gain_db:+.0f} dB)",
        })
    original = source(y, "original")
    start = entries[initial]

    def player(src, role, caption):
        marker = f' data-mer-role="{role}"' if role else ""
        caption_marker = f' data-mer-caption="{role}"' if role else ""
        return (f'<figure class="mer-player" style="margin:0.5em 0"><figcaption{caption_marker}>'
                f'{html.escape(caption)}</figcaption><audio controls preload="metadata"{marker} '
                f'src="{html.escape(src, quote=True)}"></audio></figure>')

    data = json.dumps(entries).replace("</", "<\\/")
    heading = f"<p class='mer-listen-title' style='margin:0.3em 0'>{html.escape(title)}</p>" if title else ""
    markup = (
        f"<div class='mer-listen' data-mer-listen data-mer-setting='{initial}' "
        "style='border-left:3px solid #999;padding:0.2em 0 0.2em 0.8em;margin:0.8em 0'>"
        f"{heading}<label style='display:flex;gap:0.6em;align-items:center'>share of the spectrogram kept "
        f"<input type='range' min='0' max='{len(entries) - 1}' step='1' value='{initial}' "
        f"aria-label='share of the spectrogram kept' style='width:12em'> <output>{html.escape(start['label'])}"
        "</output></label>"
        "<div style='display:flex;gap:1em;flex-wrap:wrap'>"
        + player(original, None, "original")
        + player(start["sonified"], "sonified", start["sonified_caption"])
        + player(start["complement"], "complement", start["complement_caption"])
        + "</div>"
        f"<script type='application/json' class='mer-listen-settings'>{data}</script></div>"
        f"<script>{LISTEN_SCRIPT}</script>")
    return HTML(markup)


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
        :data:`mer.explainers.EXPLAINERS` name; the predicted class is explained.
    threshold, top_k_percent, exponent
        Mask options (:func:`mer.sonify.mel_relevance_to_stft_mask`).
    signed : bool
        Also play the negative relevance (evidence for the other class).
    path : str
        Stem of the OGG files under ``_static/audio`` (:func:`mer.audio.player_file`).
    found : dict, optional
        :func:`mer.explain.explain_clips` output for ``y[None]`` (skips explaining again).

    Notebook: notebooks/04_sonification.ipynb
    """
    import matplotlib.pyplot as plt
    from IPython.display import HTML, display

    from . import audio, explain, plots, sonify

    if found is None:
        found = explain.explain_clips(model, meta, y[None], explainer=explainer)
    sr = int(meta["logmel"]["sr"])
    predicted = ID2LABEL[int(found["predicted"][0])]
    other = ID2LABEL[1 - int(found["predicted"][0])]
    relevance = found["relevance"][0]
    clip = sonify.sonify(y, relevance, sr=sr, threshold=threshold, top_k_percent=top_k_percent,
                        exponent=exponent, **sonify.front_end_options(meta))
    figure = plots.sonification_panels(y, clip.mask, clip.kept, clip.complement, sr=sr,
                                       title=f"{explainer}: predicted {predicted} "
                                             f"(p = {float(found['proba'][0].max()):.2f}); mask keeps "
                                             f"{100 * clip.area:.0f} % of the plane, gain {clip.gain_db:+.1f} dB")
    display(figure)
    plt.close(figure)
    players = [(y, "original", "original"), (clip.kept, "sonified", f"for {predicted} (sonified)"),
               (clip.complement, "complement", "complement (ignored)")]
    if signed:
        against = sonify.sonify(y, relevance, sr=sr, sign="negative", threshold=threshold,
                                top_k_percent=top_k_percent, exponent=exponent, **sonify.front_end_options(meta))
        players.append((against.kept, "against", f"for {other} (negative relevance)"))
    display(HTML("<div style='display:flex;gap:1em;flex-wrap:wrap'>" + "".join(
        audio.player_file(s, sr=sr, path=f"{path}-{kind}", label=label).data for s, kind, label in players)
        + "</div>"))


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
    import ipywidgets as w

    from . import explain

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
