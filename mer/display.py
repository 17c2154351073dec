"""Showing results in a notebook: audio players, listening sliders and chapter 4's examples.

Nothing here computes; what is shown comes from :mod:`mer.explain` and
:mod:`mer.sonify`, and figures are drawn by :mod:`mer.plots` (the only module
that draws). The HTML works without a kernel, in Jupyter and in the built
book alike:

* players: :func:`player` embeds a clip (a few per page);
  :func:`player_file` writes it as an OGG under :func:`audio_dir`
  (``_static/audio``, which the book build copies) and links it relatively
  from :func:`page_dir`; :func:`page_file` is the file half;
  :func:`player_row` puts players side by side.
* :func:`listening_slider`: a slider that switches players between a few
  precomputed sonifications (:data:`LISTEN_SCRIPT`, no widget library).
* :func:`show_quadrants`: chapter 4's examples, quadrant by quadrant
  (:data:`QUADRANT_TITLES`): relevance figure and players.
* :func:`show_figure`: display a figure once and close it.

The interactive ipywidgets panels are :mod:`mer.widgets`'.

Notebook: notebooks/04_sonification.ipynb (and the players of every chapter)
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, Markdown, display

from . import ParameterError, plots, store
from .audio import SR, load as load_audio, ogg_bytes, write_ogg
from .tonality import KEY_NAMES


# ----------------------------------------------------------------------------
# Players
# ----------------------------------------------------------------------------


def player(y: np.ndarray, *, sr: int = SR, label: str | None = None, normalize: bool = False):
    """A player with the clip embedded as Ogg Vorbis (about 45 KB per 10 s).

    For a few clips on a page. A page with many players should use
    :func:`player_file`, so the book does not carry megabytes of base64.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,) or (n_channels, n_samples)
    sr : int
        Sampling rate in Hz.
    label : str, optional
        Caption shown above the player.
    normalize : bool
        Scale to a peak of 0.99 first (for quiet signals, e.g. sonified
        relevance); off by default so loudness differences stay audible.

    Returns
    -------
    IPython.display.HTML
        ``<figure>`` with an ``<audio controls>`` whose source is a
        ``data:audio/ogg;base64,...`` URI.

    Notebook: notebooks/04_sonification.ipynb and the Data page.
    """
    y = _normalized(y) if normalize else y
    encoded = base64.b64encode(ogg_bytes(y, sr=sr)).decode("ascii")
    return HTML(_audio_html(f"data:audio/ogg;base64,{encoded}", label))


def audio_dir() -> Path:
    """``<root>/_static/audio``: where :func:`player_file` writes by default.

    Notebook: every chapter with players (notebooks/00_data.ipynb to notebooks/04_sonification.ipynb).
    """
    return store.root() / "_static" / "audio"


def page_dir() -> Path:
    """``<root>/book/chapters``: where the executed chapters (the pages) live.

    Notebook: every chapter with players (their ``src`` is relative to this folder).
    """
    return store.root() / "book" / "chapters"


#: Suffixes :func:`page_file` replaces by ``.ogg``; any other dot stays in the name.
AUDIO_SUFFIXES = (".ogg", ".oga", ".wav", ".flac", ".mp3")


def player_file(y: np.ndarray, *, sr: int = SR, path, label: str | None = None,
                normalize: bool = False, page=None):
    """Write the clip as an OGG file and return a player that links to it.

    How the file reaches the built book: Jupyter Book 1.x adds a ``_static``
    folder beside ``_config.yml`` (here the repository root) to Sphinx's
    ``html_static_path``, and Sphinx copies that folder, subfolders kept, to
    ``_build/html/_static/``. Raw HTML in a notebook's output is passed
    through untouched, so a *relative* ``src`` works in the built book
    (``_build/html/book/chapters/x.html`` → ``../../_static/audio/...``) and
    in Jupyter opening ``book/chapters/x.ipynb`` alike, on a server or from
    ``file://``. Sphinx does not copy files named only in raw HTML, hence
    ``_static`` rather than a folder beside the notebook.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,) or (n_channels, n_samples)
    sr : int
        Sampling rate in Hz.
    path : str or Path
        Where to write the OGG. A relative path is taken under
        :func:`audio_dir` (``"04_sonification/clip-7.ogg"``); an audio
        suffix is replaced by ``.ogg``, otherwise ``.ogg`` is appended
        (``"grid-t0.5"`` -> ``grid-t0.5.ogg``).
    label : str, optional
        Caption shown above the player.
    normalize : bool
        Scale to a peak of 0.99 first.
    page : str or Path, optional
        Folder of the page that shows the player; default :func:`page_dir`.
        The ``src`` is relative to it.

    Returns
    -------
    IPython.display.HTML
        ``<figure>`` with ``<audio controls src="../../_static/audio/...">``.

    Notebook: notebooks/04_sonification.ipynb.
    """
    return HTML(_audio_html(page_file(y, sr=sr, path=path, normalize=normalize, page=page), label))


def page_file(y: np.ndarray, *, sr: int = SR, path, normalize: bool = False, page=None) -> str:
    """Write the clip as an OGG file for a page; return its ``src`` relative to the page.

    The file half of :func:`player_file` (same ``path``, ``normalize`` and
    ``page``), for players whose markup is built elsewhere
    (:func:`listening_slider`).

    Returns
    -------
    str
        ``"../../_static/audio/..."``, a POSIX path relative to ``page``.

    Notebook: notebooks/04_sonification.ipynb.
    """
    path = Path(path)
    # Only an audio suffix is replaced: with_suffix on "grid-t0.5-sonified" would
    # cut at the decimal point and give every threshold the same file.
    path = path.with_suffix(".ogg") if path.suffix.lower() in AUDIO_SUFFIXES else path.with_name(path.name + ".ogg")
    if not path.is_absolute():
        path = audio_dir() / path
    write_ogg(path, _normalized(y) if normalize else y, sr=sr)
    page = Path(page) if page is not None else page_dir()
    return Path(os.path.relpath(path.resolve(), page.resolve())).as_posix()


def _normalized(y):
    y = np.asarray(y, dtype=np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return y * (0.99 / peak) if peak > 0 else y


def _audio_html(src: str, label: str | None) -> str:
    caption = f"<figcaption>{html.escape(label)}</figcaption>" if label else ""
    return (f'<figure class="mer-player" style="margin:0.5em 0">{caption}'
            f'<audio controls preload="metadata">'
            f'<source src="{html.escape(src, quote=True)}" type="audio/ogg"></audio></figure>')


def player_row(sounds: list[tuple[np.ndarray, str, str]], *, sr: int, stem: str):
    """Players side by side, each written as an OGG under ``_static/audio``.

    Parameters
    ----------
    sounds : list of (audio, kind, label)
        As :func:`mer.explain.sonification_sounds` returns.
    stem : str
        File stem under :func:`audio_dir`; ``-<kind>`` is appended.

    Returns
    -------
    IPython.display.HTML

    Notebook: notebooks/04_sonification.ipynb
    """
    return HTML("<div style='display:flex;gap:1em;flex-wrap:wrap'>" + "".join(
        player_file(y, sr=sr, path=f"{stem}-{kind}", label=label).data for y, kind, label in sounds)
        + "</div>")


# ----------------------------------------------------------------------------
# Listening sliders: static HTML, no kernel (chapters 3 and 4)
# ----------------------------------------------------------------------------


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
    (:func:`player_file`); the slider only switches the players'
    sources (:data:`LISTEN_SCRIPT`, inline, no CDN). In a live kernel the same
    HTML works, and the ipywidgets panels (:func:`mer.widgets.sonification_panel`) add
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
        File stem under :func:`audio_dir` (``"04_sonification/TP-c0012"``);
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
    if len(settings) == 0:
        raise ParameterError("listening_slider needs at least one setting")
    shares = [s.options.get("top_k_percent") for s in settings]
    if initial is None:
        initial = shares.index(15.0) if 15.0 in shares else len(settings) // 2
    if not 0 <= initial < len(settings):
        raise ParameterError(f"initial must index one of the {len(settings)} settings, got {initial}")
    speaks_for = f"for {explained}" if explained else "kept"

    def source(signal, name):
        return page_file(signal, sr=sr, path=f"{stem}-{name}")

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


# ----------------------------------------------------------------------------
# Chapter 4's examples
# ----------------------------------------------------------------------------


#: Titles of the confusion quadrants (Happy is the positive class).
QUADRANT_TITLES = {"TP": "Happy heard as Happy (TP)", "TN": "Sad heard as Sad (TN)",
                   "FP": "Sad heard as Happy (FP)", "FN": "Happy heard as Sad (FN)"}
#: What to look at in each quadrant's relevance figure (shown under it: one cell draws all four
#: quadrants with their players in between, so the figures cannot carry a numbered caption).
QUADRANT_CAPTIONS = {
    "TP": "The spectrogram in grey, the relevance for Happy over it (red for, blue against). A right call for "
          "a musical reason puts the red on the notes, the major thirds above all; red spread evenly over "
          "the clip points to a global cue such as the tempo.",
    "TN": "The relevance for Sad over the spectrogram. Look for red on the minor thirds, and compare the "
          "sonified player with the complement: the reason should be in the first.",
    "FP": "A Sad clip the model called Happy: the red is what pushed it towards Happy. A fast, high or bright "
          "passage is an error a listener might share; red on silence or on one narrow band is not.",
    "FN": "A Happy clip the model called Sad: the red is what it took for Sad. Listen to the sonified clip for "
          "the passage that misled it, and to the complement for the Happy evidence it outweighed.",
}


def show_quadrants(examples, found: dict[str, np.ndarray], sonified: list, audio_clips: np.ndarray, *,
                   sr: int, signed: bool = False, stem: str = "04_sonification", listening: list | None = None,
                   **mask_options: Any) -> None:
    """Display, quadrant by quadrant, each example's relevance and its players.

    Parameters
    ----------
    examples : pandas.DataFrame
        :func:`mer.explain.quadrant_examples` (``clip_id``, ``quadrant``, ``predicted``,
        ``p_predicted``), row ``i`` matching ``audio_clips[i]``.
    found : dict
        :func:`mer.explain.explain_clips` of ``audio_clips`` (``logmel_db``, ``relevance``, ``logmel``,
        ``semitones``, ``front_end``).
    sonified : list of mer.sonify.Sonification
        One per example, made through ``found["front_end"]``.
    audio_clips : np.ndarray, shape (n_examples, n_samples)
    stem : str
        Folder of the players under ``_static/audio``; each file is named after
        the quadrant and :func:`mer.store.safe_name` of the clip id (a
        manifest's id is never a path).
    listening : list of list of mer.sonify.SonifiedClip, optional
        Per example, the settings of a listening slider
        (:func:`mer.sonify.sonify_shares`): the sonified and complement
        players then follow the slider (:func:`listening_slider`),
        in the static page too. Without it the players show ``sonified``.

    Notebook: notebooks/04_sonification.ipynb
    """
    # mer.explain loads torch and transformers (seconds); only chapter 4's examples need it,
    # while chapters 0-2 import this module for its players.
    from .explain import sonification_sounds

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
            show_figure(figure)
            display(Markdown(f"*{QUADRANT_CAPTIONS[name]}*"))
            sounds = sonification_sounds(audio_clips[i], found["relevance"][i], sonified[i],
                                         predicted=row.predicted, signed=signed, **mask_options,
                                         **found["front_end"][i])
            if listening is None:
                display(player_row(sounds, sr=sr, stem=f"{stem}/{name}-{store.safe_name(row.clip_id)}"))
                continue
            chapter_share = next((k for k, clip in enumerate(listening[i])
                                  if clip.options.get("top_k_percent") == mask_options.get("top_k_percent")), None)
            display(listening_slider(audio_clips[i], listening[i], sr=sr, initial=chapter_share,
                                     stem=f"{stem}/{name}-{store.safe_name(row.clip_id)}", explained=row.predicted))
            against = [sound for sound in sounds if sound[1] == "against"]
            if against:
                display(player_row(against, sr=sr, stem=f"{stem}/{name}-{store.safe_name(row.clip_id)}"))


def mode_players(predictions, clips, *, model: str, stem: str) -> None:
    """Display the first clip of each mode in a set of real pieces, whatever the model said, with its p(happy).

    Parameters
    ----------
    predictions : pandas.DataFrame
        :func:`mer.carryover.real_music`'s predictions (``clip_id, mode, tonic, instrument`` and a column per model).
    clips : pandas.DataFrame
        The set's clips (``clip_id``, ``path``).
    model : str
        The column of ``predictions`` whose p(happy) the label shows.
    stem : str
        Prefix of the players' files under ``_static/audio`` (``"02_vit/chorale"``).

    Notebook: notebooks/02_vit.ipynb
    """
    paths = clips.set_index("clip_id")["path"]
    for mode in ("major", "minor"):
        row = predictions[predictions["mode"] == mode].iloc[0]
        display(player_file(load_audio(paths[row["clip_id"]]), path=f"{stem}-{store.safe_name(row['clip_id'])}",
                            label=f"{row['clip_id']} ({KEY_NAMES[int(row['tonic'])]} {mode}, "
                                  f"{row['instrument']}): p(happy) = {row[model]:.2f}"))


def show_figure(figure) -> None:
    """Display a figure in the notebook's output here, once, and close it.

    Closing it keeps Jupyter's inline backend from showing it a second time
    at the end of the cell (and frees its memory in a loop of figures).

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        As :mod:`mer.plots` draws it.

    Notebook: notebooks/04_sonification.ipynb (the quadrant examples) and the panels of :mod:`mer.widgets`.
    """
    display(figure)
    plt.close(figure)


__all__ = (
    "player", "audio_dir", "page_dir", "AUDIO_SUFFIXES", "player_file", "page_file", "player_row",
    "LISTEN_SCRIPT", "listening_slider", "QUADRANT_TITLES", "QUADRANT_CAPTIONS", "show_quadrants", "mode_players", "show_figure",
)
