"""``python -m mer explain``: why the ViT hears an audio file as Happy or Sad, as a page.

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

This module parses the arguments, checks the file and the output folder,
prints and writes the page; the explaining (relevance, figures, sonified
audio per window) is :func:`mer.explain.explain_windows`, built from what
chapter 4 uses (:func:`mer.explain.explain_clips`, :func:`mer.sonify.sonify`).

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
from typing import Any

import numpy as np

from .. import MerError, ParameterError, audio, explain, predict, profiles
from ..lrp import explainers
from ..metrics import called
from . import add_debug, fraction, guarded, non_negative_float, percent, positive_int

log = logging.getLogger(__name__)

#: Marker file of an output folder (its presence allows replacing the folder).
MARKER = "explain.json"


def explain_file(path: str | Path, out: str | Path, *, checkpoint: str | Path | None = None,
                 profile: str | None = None, explainer: str = "lrp", top_k_percent: float | None = 15.0,
                 threshold: float = 0.0, exponent: float = 0.0, max_windows: int = 60, seed: int = 0) -> Path:
    """Write the explanation page of one audio file into folder ``out``.

    Checks the file, the explainer and ``out`` before the model loads, then
    explains the file window by window (:func:`mer.explain.explain_windows`)
    into a temporary folder beside ``out``, writes ``index.html`` and
    :data:`MARKER` there and renames the folder onto ``out``.

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
        :data:`mer.lrp.explainers.EXPLAINERS` name.
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
    path, out = Path(path), Path(out)
    if int(max_windows) < 1:
        raise ParameterError(f"max_windows must be >= 1, got {max_windows!r}")
    _check_out(out)
    with _native_stderr_to_log():  # a bad file fails before the model loads
        info = audio.inspect(path)
    if explainer not in explainers.EXPLAINERS:
        raise ParameterError(f"unknown explainer {explainer!r}; expected one of {list(explainers.EXPLAINERS)}")
    loaded, card = predict.load_model(checkpoint, profile=profile)
    sr, duration = loaded.sr, loaded.duration
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
        explained = explain.explain_windows(windows, work, model=loaded.model, meta=loaded.meta,
                                            explainer=explainer, top_k_percent=top_k_percent, threshold=threshold,
                                            exponent=exponent, seed=seed)
        summary = {"file": path.name, "checkpoint": card["folder"], "model": card, "explainer": explainer,
                   "top_k_percent": top_k_percent, "threshold": threshold, "exponent": exponent,
                   "notes": notes, "windows": explained["windows"], "p_happy": explained["p_happy"]}
        (work / "index.html").write_text(_page(summary), encoding="utf-8")
        (work / MARKER).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        _replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out / "index.html"


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

    Notebook: book/reproducing.md shows the command; notebooks/04_sonification.ipynb the same explanations.
    """
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
    parser.add_argument("--top-k-percent", type=percent, default=15.0,
                        help="share of the time-frequency plane the sonified clip keeps, 0-100 "
                             "(default 15; 0 = no top-k, the threshold alone)")
    parser.add_argument("--threshold", type=fraction, default=0.0,
                        help="drop mask cells below this fraction of the maximum, 0 <= x < 1 (default 0)")
    parser.add_argument("--exponent", type=non_negative_float, default=0.0,
                        help="mask exponent: 0 keeps the selected cells whole (default), 1 scales them by relevance")
    parser.add_argument("--max-windows", type=positive_int, default=60,
                        help="explain at most this many 10 s windows, the first ones (default 60)")
    add_debug(parser)
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

    return guarded("python -m mer explain", run, debug=args.debug, interrupted="interrupted; nothing written")
