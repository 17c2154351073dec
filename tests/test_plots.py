"""mer.plots: time-frequency figures read in notes, hertz and seconds, with honest colour scales.

Real arrays throughout: a 10 s clip of an A4 (440 Hz) sine then a C4 (262 Hz)
sine over an A6 (1760 Hz) drone, its log-mel / log-frequency spectrogram from
:mod:`mer.spectrogram`, and a signed relevance built from it.
"""

from __future__ import annotations

import inspect
import re

import librosa
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from mer import ParameterError
from mer import plots
from mer import spectrogram as spec

matplotlib.use("Agg")

SR = spec.SR
DURATION = 10.0
FRAME_S = spec.HOP_LENGTH * spec.POOL / SR
NOTE = re.compile(r"\b[A-G][#♯b♭]?-?\d\b")
LOGFREQ = spec.LogMelParams(front_end="logfreq", n_mels=192, bins_per_octave=24)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def clip():
    t = np.arange(int(DURATION * SR)) / SR
    first = t < DURATION / 2
    y = 0.3 * np.sin(2 * np.pi * 440.0 * t) * first + 0.3 * np.sin(2 * np.pi * 261.63 * t) * ~first
    y = y + 0.1 * np.sin(2 * np.pi * 1760.0 * t) + 0.003 * np.random.default_rng(0).standard_normal(len(t))
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def mel(clip):
    db = spec.logmel(clip)[0]
    relevance = (db - db.mean()) * np.where(np.arange(db.shape[1]) < db.shape[1] // 3, 1.0, -0.4)[None]
    return db, relevance


@pytest.fixture(scope="module")
def logfreq(clip):
    db = spec.logmel(clip, params=LOGFREQ)[0]
    return db, db - db.mean()


def mel_centres(n_mels=spec.N_MELS, fmin=0.0, fmax=None, sr=SR):
    return librosa.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=fmax or sr / 2)[1:-1]


def tick_rows(ax):
    """{label: tick position} of the frequency axis."""
    return {label.get_text(): tick for tick, label in zip(ax.get_yticks(), ax.get_yticklabels())}


def a4_row(ax):
    """Row (image cell ``[i, i + 1)``) in which the tick labelled A4 440 Hz sits."""
    ticks = tick_rows(ax)
    (label,) = [text for text in ticks if text.startswith("A4") and "440 Hz" in text]
    return int(np.floor(ticks[label]))


def draw_lrp(mel, **kw):
    db, relevance = mel
    return plots.lrp_example(db, relevance, -0.5 * relevance, frame_s=FRAME_S, title="TP: a clip", **kw)


def draw_lrp_pair(mel, **kw):
    """Two clips (the thesis profile's ``n_examples = 2``) in one figure."""
    db, relevance = mel
    return plots.lrp_examples([(db, relevance, -relevance, "TP: first"), (db[:, ::-1], relevance, relevance, "TP: second")],
                              frame_s=FRAME_S, **kw)


def draw_overlay(mel, **kw):
    db, relevance = mel
    return plots.relevance_overlay(db[None], relevance, title="relevance", **kw)


def draw_patches(mel, **kw):
    return plots.vit_patches(mel[0][None], patch_size=(128, 2), title="what the ViT sees", **kw)


DRAW = {"lrp_example": draw_lrp, "lrp_examples": draw_lrp_pair, "relevance_overlay": draw_overlay, "vit_patches": draw_patches}


@pytest.mark.parametrize("name", sorted(DRAW))
def test_frequency_axis_in_notes_and_hz_at_the_right_rows(name, mel):
    fig = DRAW[name](mel)
    ax = fig.axes[0]
    labels = [text for text in tick_rows(ax)]
    assert len(labels) >= 4
    assert all("Hz" in text and NOTE.search(text) for text in labels), labels
    assert "mel band" not in ax.get_ylabel() and "frequency" in ax.get_ylabel()
    centres = mel_centres()
    assert a4_row(ax) == int(np.argmin(np.abs(centres - 440.0)))
    # every labelled tick: note name and Hz agree (librosa), and it lies in the row nearest that frequency
    for text, where in tick_rows(ax).items():
        name_, hz = text.split()[0], float(text.split()[1])
        assert abs(librosa.note_to_hz(name_) - hz) < 0.5
        assert int(np.floor(where)) == int(np.argmin(np.abs(centres - hz)))


def test_several_examples_are_one_figure_each_with_its_own_axes(mel):
    """A captioned chapter-3 cell draws one figure however many clips the profile explains."""
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    fig = draw_lrp_pair(mel)
    assert len(plt.get_fignums()) == before + 1
    single = draw_lrp(mel)
    assert len(fig.axes) == 2 * len(single.axes)
    assert fig.get_figheight() == pytest.approx(2 * single.get_figheight())
    assert [sub._suptitle.get_text() for sub in fig.subfigs] == ["TP: first", "TP: second"]
    first, second = (sub.axes[0] for sub in fig.subfigs)
    assert tick_rows(first) == tick_rows(second) == tick_rows(single.axes[0])
    assert plots.lrp_examples([], frame_s=FRAME_S) is None


def test_the_a4_tick_sits_on_the_a4_tone(mel):
    """End to end: the loudest row while the 440 Hz sine plays is the row the A4 tick marks."""
    db, _ = mel
    fig = draw_overlay(mel)
    loudest = int(np.argmax(db[:, 5:40].mean(1)[:40]))  # first half, below the 1760 Hz drone
    assert abs(loudest - a4_row(fig.axes[0])) <= 1


@pytest.mark.parametrize("name", sorted(DRAW))
def test_time_axis_in_seconds_spanning_the_clip(name, mel):
    fig = DRAW[name](mel)
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert low == pytest.approx(0.0)
    assert abs(high - DURATION) <= FRAME_S
    time_axes = [a for a in fig.axes if "time" in a.get_xlabel() and "sum" not in a.get_xlabel()]
    assert time_axes and all(a.get_xlabel() == "time (s)" for a in time_axes)
    assert all(a.get_xlim() == pytest.approx((low, high)) for a in time_axes)  # the same clip, same limits


def test_signed_relevance_has_symmetric_limits_and_diverging_maps(mel):
    fig = draw_lrp(mel)
    relevance_image, contrast_image = fig.axes[0].images[1], fig.axes[1].images[0]
    for image, cmap in ((relevance_image, plots.CMAP_RELEVANCE), (contrast_image, plots.CMAP_CONTRAST)):
        low, high = image.get_clim()
        assert low == pytest.approx(-high) and high > 0
        assert image.get_cmap().name == cmap
    assert relevance_image.get_clim()[1] == pytest.approx(np.abs(mel[1]).max())

    fig = draw_overlay(mel)
    overlay = fig.axes[0].images[1]
    low, high = overlay.get_clim()
    assert low == pytest.approx(-high) and high == pytest.approx(np.abs(mel[1]).max())
    bar = fig.axes[1]
    assert bar.get_ylim()[0] == pytest.approx(-bar.get_ylim()[1])


def test_sequential_maps_for_magnitudes(mel, clip):
    assert draw_patches(mel).axes[0].images[0].get_cmap().name == "magma"
    mask = np.zeros((1 + spec.N_FFT // 2, spec.n_stft_frames(len(clip))))
    mask[30:60] = 1.0
    fig = plots.sonification_panels(clip, mask, clip * 0.5, clip * 0.5)
    maps = {ax.get_title(): ax.images[0].get_cmap().name for ax in fig.axes if ax.images}
    assert maps == {"original": "magma", "sonified (kept)": "magma", "complement (ignored)": "magma",
                    "mask": "cividis"}


def test_logfreq_front_end_ticks(logfreq):
    db, relevance = logfreq
    fig = plots.relevance_overlay(db, relevance, params=LOGFREQ)
    ax = fig.axes[0]
    centres = spec.LOGFREQ_FMIN * 2.0 ** (np.arange(192) / 24)
    assert a4_row(ax) == int(np.argmin(np.abs(centres - 440.0)))
    assert a4_row(ax) == 82  # A4 is 41 semitones above E1: 82 rows at 24 per octave
    assert "log" in ax.get_ylabel()
    # octaves are equally spaced: 24 rows apart
    rows = sorted(tick_rows(ax).values())
    assert np.allclose(np.diff(rows), 24 * np.round(np.diff(rows) / 24))
    # the same as a dict (meta["logmel"]), through lrp_example and vit_patches
    as_dict = {"front_end": "logfreq", "n_mels": 192, "bins_per_octave": 24}
    assert a4_row(plots.lrp_example(db, relevance, relevance, frame_s=FRAME_S, params=as_dict).axes[0]) == 82
    assert a4_row(plots.vit_patches(db, patch_size=(192, 2), params=as_dict).axes[0]) == 82
    # a clip a canonicalising model moved up 2 semitones: A4 now 4 rows higher
    assert a4_row(plots.relevance_overlay(db, relevance, params=LOGFREQ, semitones=2).axes[0]) == 86
    # chapter 3's examples, one move per clip: each panel names its own clip's pitches
    pair = plots.lrp_examples([(db, relevance, relevance, "a"), (db, relevance, relevance, "b")], frame_s=FRAME_S,
                              params=as_dict, semitones=[0, 2])
    assert [a4_row(ax) for ax in pair.axes if "log" in ax.get_ylabel()] == [82, 86]
    # with margins (the taller spectrogram): visible row 0 is row `margin`
    tall = np.vstack([np.zeros((12, db.shape[1])), db, np.zeros((12, db.shape[1]))])
    params = {**as_dict, "margin": 12}
    assert a4_row(plots.relevance_overlay(tall, tall, params=params).axes[0]) == 94


def test_mel_ticks_follow_fmin_fmax_and_reject_a_misfit(mel):
    db, relevance = mel
    params = spec.LogMelParams(fmin=50.0, fmax=5000.0)
    fig = plots.relevance_overlay(db, relevance, params=params)
    assert a4_row(fig.axes[0]) == int(np.argmin(np.abs(mel_centres(fmin=50.0, fmax=5000.0) - 440.0)))
    assert a4_row(fig.axes[0]) != a4_row(draw_overlay(mel).axes[0])
    with pytest.raises(ParameterError):
        plots.relevance_overlay(db[:64], relevance[:64], params=params)
    with pytest.raises(ParameterError):
        plots.relevance_overlay(db, relevance, semitones=1)


def test_sonification_panels_linear_axis(clip):
    mask = np.zeros((1 + spec.N_FFT // 2, spec.n_stft_frames(len(clip))))
    mask[15:30] = 1.0
    fig = plots.sonification_panels(clip, mask, clip * 0.5, clip * 0.5, title="mask")
    ax = fig.axes[0]
    ticks = tick_rows(ax)
    assert all("Hz" in text and NOTE.search(text) for text in ticks)
    assert ticks["A4 440 Hz"] == pytest.approx(440.0)  # a linear axis: the tick is at its frequency
    assert ax.get_xlim() == pytest.approx((0.0, DURATION))
    assert ax.get_ylim() == pytest.approx((0.0, SR / 2))
    assert {a.get_xlabel() for a in fig.axes[2:4]} == {"time (s)"}


@pytest.mark.parametrize("name", [*sorted(DRAW), "sonification_panels"])
def test_tick_labels_legible_at_book_width(name, mel, clip):
    """No tick label under 8 pt as shown in the book (figures scaled to about 800 px wide at 100 dpi)."""
    if name == "sonification_panels":
        mask = np.ones((1 + spec.N_FFT // 2, spec.n_stft_frames(len(clip))))
        fig = plots.sonification_panels(clip, mask, clip, clip * 0)
    else:
        fig = DRAW[name](mel)
    fig.canvas.draw()
    shrink = min(1.0, 800 / (fig.get_figwidth() * 100))
    sizes = [label.get_fontsize() for ax in fig.axes
             for label in (*ax.get_xticklabels(), *ax.get_yticklabels()) if label.get_text()]
    assert sizes and min(sizes) * shrink >= 8.0 - 1e-9


def test_signatures_and_chapter_calls_unchanged(mel, clip):
    """The positional parameters are as before and the chapters' calls still draw a Figure."""
    positional = {name: [p.name for p in inspect.signature(getattr(plots, name)).parameters.values()
                         if p.kind is p.POSITIONAL_OR_KEYWORD]
                  for name in ("vit_patches", "lrp_example", "relevance_overlay", "sonification_panels")}
    assert positional == {"vit_patches": ["spec"], "lrp_example": ["spec", "relevance", "contrast"],
                          "relevance_overlay": ["logmel_db", "relevance"],
                          "sonification_panels": ["y", "mask", "kept", "complement"]}
    db, relevance = mel
    figures = [
        plots.vit_patches(db[None], patch_size=(db.shape[0], 2), title="clip x (happy): what the ViT sees"),
        plots.lrp_example(db, relevance, relevance, frame_s=FRAME_S, title="TP"),
        plots.relevance_overlay(db[None], relevance, sr=SR, hop_length=512, pool=4, title="window"),
        plots.sonification_panels(clip, np.ones((1025, spec.n_stft_frames(len(clip)))), clip, clip * 0,
                                  sr=SR, title="t"),
    ]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figures)
    fig, ax = plt.subplots()
    assert plots.relevance_overlay(db, relevance, ax=ax, colorbar=False) is fig
