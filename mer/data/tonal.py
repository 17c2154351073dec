"""The tonal writing of the synthetic set (``writing="tonal"``): keys, harmony, melody, textures.

The dataset's documentation is the module docstring of :mod:`mer.data.synth`
(section "Tonal writing"), which says what is drawn and why; this module is
the composer it describes. Everything here is a pure function of a clip's
parameters (drawn by :func:`draw_nuisances` from the clip's seeded generator),
so the same seed gives the same score.

A score is built in three layers:

1. *segments*: the harmony, a list of chords on the beat grid, each with its
   root, quality, inversion, roman numeral and (for the last chords of a
   phrase) its cadence (:func:`progression`, :func:`segments`);
2. the *melody*, a walk on the scale that lands on chord tones where the
   chord changes and uses the minor mode as tonal music writes it
   (:func:`melody`);
3. the *texture*, one named function per way of accompanying it
   (:data:`TEXTURES`).

Notebook: notebooks/00_data.ipynb
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pretty_midi

from .. import ParameterError
from ..tonality import PITCH_CLASSES

#: Bump when the tonal writing changes: it is part of its datasets' options
#: (and so of their folder names), independently of the classic writing's
#: ``GENERATOR_VERSION``.
TONAL_VERSION = 1

#: Textures, each a function ``_texture_<name>`` below.
TEXTURES = ("block", "arpeggio", "alberti", "hymn", "pad", "walking_bass", "solo")
#: The texture no training set draws (:func:`mer.data.synth.load_heldout`).
HELDOUT_TEXTURE = "alberti"
TRAIN_TEXTURES = tuple(t for t in TEXTURES if t != HELDOUT_TEXTURE)
#: Textures that may have a drum kit; hymns and solo tunes never do.
DRUM_TEXTURES = ("block", "arpeggio", "alberti", "pad", "walking_bass")
#: Share of the clips of a drum texture that get the kit.
DRUM_SHARE = 0.5
#: Lowest note of the accompaniment's chords per drawn register. "low" puts
#: thirds in octave 3, below G3, where a 128-band log-mel does not separate a
#: major from a minor third (see :mod:`mer.data.synth`); windowed and probe
#: clips draw only "middle" and "high" so their evidence stays visible.
ACCOMP_FLOORS = {"low": 48, "middle": 55, "high": 67}
#: Ranges of the lower three hymn voices (the soprano is the melody).
HYMN_RANGES = {"alto": (55, 74), "tenor": (48, 67), "bass": (40, 55)}
#: Beats per chord (harmonic rhythm), drawn per clip.
HARMONIC_RHYTHMS = (2, 4)
CADENCE_TYPES = ("authentic", "half", "plagal")
CADENCE_P = (0.5, 0.3, 0.2)
#: Share of authentic cadences whose melody climbs 5-6-7-8 over the V (in
#: minor with the raised sixth and seventh: melodic minor).
FORMULA_SHARE = 0.5
#: What the evidence window of a windowed clip holds.
WINDOW_CONTENTS = ("chord", "cadence")
#: Sustained programmes of the "pad" texture per brightness class.
PAD_PROGRAMS = {
    0.0: (89, 52, 49, 19),   # warm pad, choir aahs, slow strings, church organ
    0.5: (48, 16, 91, 21),   # strings, drawbar organ, choir pad, accordion
    1.0: (50, 90, 20, 22),   # synth strings, polysynth pad, reed organ, harmonica
}
WALKING_BASS_PROGRAM = 32  # acoustic bass

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)   # natural minor
NEUTRAL_SCALE = (0, 2, 5, 7)           # degrees 1, 2, 4, 5: no third, sixth or seventh

#: Chord qualities as intervals above the root, root position.
INTERVALS = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "7": (0, 4, 7, 10),
             "maj7": (0, 4, 7, 11), "min7": (0, 3, 7, 10), "hdim7": (0, 3, 6, 10), "5": (0, 7)}
_DEGREES = {3: "b3", 4: "3", 6: "b5", 7: "5", 10: "b7", 11: "7"}

#: Roman numeral -> (root above the tonic, quality), per mode. Minor uses the
#: natural minor's chords (III, v, VI, VII) and the dominant with the raised
#: leading tone (V, V7, vii°) that tonal music writes at cadences.
NUMERALS = {
    "major": {"I": (0, "maj"), "ii": (2, "min"), "ii7": (2, "min7"), "iii": (4, "min"), "IV": (5, "maj"),
              "IVmaj7": (5, "maj7"), "V": (7, "maj"), "V7": (7, "7"), "vi": (9, "min"), "vii°": (11, "dim"),
              "V/V": (2, "7"), "V/vi": (4, "7"), "V/IV": (0, "7")},
    "minor": {"i": (0, "min"), "ii°": (2, "dim"), "iiø7": (2, "hdim7"), "III": (3, "maj"), "iv": (5, "min"),
              "iv7": (5, "min7"), "v": (7, "min"), "V": (7, "maj"), "V7": (7, "7"), "VI": (8, "maj"),
              "VII": (10, "maj"), "vii°": (11, "dim"), "V/iv": (0, "7"), "V/III": (10, "7")},
}
TONIC = {"major": "I", "minor": "i"}
#: The grammar: which chord may follow which, with weights (tonic -> predominant
#: -> dominant -> tonic, secondary dominants before their targets).
TRANSITIONS = {
    "major": {
        "I": {"IV": 3, "ii": 2, "ii7": 1, "vi": 3, "iii": 1, "V": 2, "V7": 1, "V/V": 1, "V/vi": 1, "V/IV": 1,
              "IVmaj7": 1},
        "ii": {"V": 3, "V7": 2, "vii°": 1, "V/V": 1},
        "ii7": {"V": 2, "V7": 3},
        "iii": {"vi": 3, "IV": 2},
        "IV": {"V": 3, "V7": 2, "ii": 1, "I": 2, "vii°": 1, "V/V": 1},
        "IVmaj7": {"V": 3, "ii7": 1},
        "V": {"I": 3, "vi": 2},
        "V7": {"I": 4, "vi": 1},
        "vi": {"ii": 3, "IV": 3, "ii7": 1, "V": 1, "V/V": 1},
        "vii°": {"I": 3},
        "V/V": {"V": 3, "V7": 2},
        "V/vi": {"vi": 1},
        "V/IV": {"IV": 2, "IVmaj7": 1},
    },
    "minor": {
        "i": {"iv": 3, "iv7": 1, "ii°": 1, "iiø7": 1, "VI": 2, "III": 2, "VII": 2, "v": 2, "V": 1, "V/iv": 1},
        "ii°": {"V": 3, "V7": 2},
        "iiø7": {"V": 2, "V7": 3},
        "III": {"VI": 2, "iv": 2, "VII": 1},
        "iv": {"V": 3, "V7": 2, "i": 1, "VII": 1, "ii°": 1},
        "iv7": {"VII": 2, "V": 2},
        "v": {"VI": 3, "iv": 2},
        "V": {"i": 3, "VI": 2},
        "V7": {"i": 3, "VI": 1},
        "VI": {"iv": 2, "ii°": 2, "iiø7": 1, "III": 1, "V": 1, "VII": 1, "V/III": 1},
        "VII": {"III": 3, "i": 1},
        "vii°": {"i": 3},
        "V/iv": {"iv": 3},
        "V/III": {"III": 2},
    },
}
#: Cadence formulas as (numeral, inversion); the first chord of a cadential
#: 6/4 needs a predominant before it.
CADENCES = {
    "major": {"authentic": ((("V", 0), ("I", 0)), (("V7", 0), ("I", 0)), (("I", 2), ("V", 0), ("I", 0))),
              "half": ((("V", 0),), (("IV", 0), ("V", 0)), (("ii", 1), ("V", 0))),
              "plagal": ((("IV", 0), ("I", 0)),)},
    "minor": {"authentic": ((("V", 0), ("i", 0)), (("V7", 0), ("i", 0)), (("i", 2), ("V", 0), ("i", 0))),
              "half": ((("V", 0),), (("iv", 1), ("V", 0))),   # the second: a Phrygian half cadence
              "plagal": ((("iv", 0), ("i", 0)),)},
}
PREDOMINANTS = {"major": ("ii", "ii7", "IV", "IVmaj7", "V/V"), "minor": ("ii°", "iiø7", "iv", "iv7", "VI")}
#: Roots (above the tonic) of the open-fifth chords outside a window: I, IV, V.
NEUTRAL_ROOTS = ((0, 5, 7, 0), (0, 7, 5, 0), (0, 5, 0, 7), (0, 0, 5, 7))


def check_choices(values, *, known: tuple[str, ...], name: str) -> tuple[str, ...]:
    """``values`` as a non-empty tuple of known names, or a ParameterError naming them."""
    values = (values,) if isinstance(values, str) else tuple(values)
    unknown = [v for v in values if v not in known]
    if not values or unknown or len(set(values)) != len(values):
        raise ParameterError(f"{name} must be distinct names from {list(known)}, got {list(values)!r}")
    return values


def draw_nuisances(*, rng: np.random.Generator, brightness: float, mode: str, windowed: bool,
                   textures: tuple[str, ...], soundfonts: tuple[str, ...]) -> dict[str, Any]:
    """Draw what the tonal writing adds to a clip's cues (nuisances, weight 0).

    Parameters
    ----------
    rng : numpy.random.Generator
        The clip's own generator (after its cues were drawn).
    brightness : float
        The clip's brightness class (picks the programmes).
    mode : {"major", "minor"}
    windowed : bool
        Whether the mode evidence is confined to a window.
    textures, soundfonts : tuple of str
        What may be drawn (uniformly).

    Returns
    -------
    dict
        JSON-serialisable parameters for :func:`compose`.

    Notebook: notebooks/00_data.ipynb
    """
    from .synth import PROGRAMS, WINDOW_S  # synth imports this module at its top (circular)

    texture = str(textures[rng.integers(len(textures))])
    registers = ("middle", "high") if windowed else tuple(ACCOMP_FLOORS)
    out: dict[str, Any] = {
        "writing": "tonal",
        "transpose": int(rng.integers(12)),   # the tonic, 0 = C
        "texture": texture,
        "soundfont": str(soundfonts[rng.integers(len(soundfonts))]),
        "drums": bool(texture in DRUM_TEXTURES and rng.random() < DRUM_SHARE),
        "accomp_register": str(registers[rng.integers(len(registers))]),
        "harmonic_rhythm": int(HARMONIC_RHYTHMS[rng.integers(len(HARMONIC_RHYTHMS))]),
        "program_melody": int(rng.choice(PROGRAMS["melody"][brightness])),
        "program_chords": int(rng.choice(PAD_PROGRAMS[brightness] if texture == "pad"
                                         else PROGRAMS["chords"][brightness])),
        "voicing": 0,   # inversions are drawn per chord by the grammar
        "windowed": bool(windowed),
        "window_evidence": True,
        "melody_seed": int(rng.integers(2**31)),
    }
    if windowed:
        out["progression"] = int(rng.integers(len(NEUTRAL_ROOTS)))
        out["window_s"] = float(rng.uniform(*WINDOW_S))
        out["window_position"] = float(rng.random())
        out["window_content"] = str(WINDOW_CONTENTS[rng.integers(len(WINDOW_CONTENTS))])
        out["window_seventh"] = bool(rng.random() < 0.5)
        out["window_root"] = int((0, 5)[rng.integers(2)])
    else:
        out["progression"] = 0
    return out


# --------------------------------------------------------------------------- harmony


def _weighted(rng: np.random.Generator, choices: dict[str, float]) -> str:
    names = list(choices)
    p = np.array([choices[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _phrase(rng: np.random.Generator, mode: str, n_slots: int) -> list[tuple[str, int, str | None]]:
    """One phrase: a walk through the grammar from the tonic, ending in a cadence.

    Returns ``(numeral, inversion or -1 for drawn, cadence type or None)`` per slot.
    """
    kind = CADENCE_TYPES[int(rng.choice(len(CADENCE_TYPES), p=CADENCE_P))]
    forms = CADENCES[mode][kind]
    cadence = list(forms[int(rng.integers(len(forms)))])[-n_slots:]
    n_chain = n_slots - len(cadence)
    first = cadence[0]
    six_four = first[0] == TONIC[mode] and first[1] == 2

    def reaches(last: str) -> bool:
        return last in PREDOMINANTS[mode] if six_four else first[0] in TRANSITIONS[mode][last]

    chain: list[str] = []
    if n_chain:
        for _ in range(50):   # rejection sampling: deterministic given the generator
            chain = [TONIC[mode]]
            while len(chain) < n_chain:
                chain.append(_weighted(rng, TRANSITIONS[mode][chain[-1]]))
            if reaches(chain[-1]):
                break
        else:   # the tonic reaches V and IV, not a 6/4: drop it
            chain = [TONIC[mode]] * n_chain
            if six_four:
                cadence = cadence[1:]
                chain.append(TONIC[mode])
    return ([(c, -1, None) for c in chain]
            + [(numeral, inversion, kind) for numeral, inversion in cadence])


def progression(rng: np.random.Generator, mode: str, n_slots: int) -> list[dict[str, Any]]:
    """The chords of a clip: phrases of 2-6 chords, each ending in a cadence.

    Parameters
    ----------
    rng : numpy.random.Generator
    mode : {"major", "minor"}
    n_slots : int
        Number of chords (>= 2).

    Returns
    -------
    list of dict
        Per chord: ``numeral``, ``root`` (semitones above the tonic),
        ``quality``, ``inversion``, ``cadence`` (type or None) and
        ``formula`` (the melody climbs 5-6-7 over this V).

    Notebook: notebooks/00_data.ipynb
    """
    sizes, left = [], n_slots
    while left > 6:
        sizes.append(4)
        left -= 4
    sizes.append(left)
    chords = []
    for index, size in enumerate(sizes):
        phrase = _phrase(rng, mode, size)
        for k, (numeral, inversion, kind) in enumerate(phrase):
            root, quality = NUMERALS[mode][numeral]
            drawn = _inversion(rng, quality) if k else 0   # a phrase starts on the tonic in root position
            formula = bool(kind == "authentic" and numeral in ("V", "V7") and k == len(phrase) - 2
                           and rng.random() < FORMULA_SHARE)
            chords.append({"numeral": numeral, "root": root, "quality": quality,
                           "inversion": drawn if inversion < 0 else inversion,
                           "cadence": kind,
                           "formula": formula, "phrase": index})
    return chords


def _inversion(rng: np.random.Generator, quality: str) -> int:
    if quality == "dim":
        return 1 if rng.random() < 0.8 else 0   # vii°6, ii°6
    if len(INTERVALS[quality]) == 4:
        return int(rng.choice(4, p=(0.6, 0.2, 0.1, 0.1)))   # 7, 6/5, 4/3, 4/2
    return 1 if rng.random() < 0.3 else 0


def segments(params: dict[str, Any], *, n_beats: int, window: tuple[int, int] | None,
             rng: np.random.Generator) -> list[dict[str, Any]]:
    """The clip's chords on the beat grid: ``start`` and ``beats`` (whole beats) per chord.

    Windowed clips: open fifths on I, IV, V outside the window; inside it one
    chord with its third, I/i or IV/iv (``window_content="chord"``), or V(7)
    -> I/i (``"cadence"``); without ``window_evidence`` the window holds open
    fifths on the same roots (the probe twin).
    """
    slot = params["harmonic_rhythm"]
    n_slots = max(2, int(round(n_beats / slot)))
    starts = [k * slot for k in range(n_slots)] + [n_beats]
    if not params["windowed"]:
        chords = progression(rng, params["mode"], n_slots)
        return [dict(c, start=s, beats=e - s, in_window=False) for c, s, e in zip(chords, starts[:-1], starts[1:])]
    roots = NEUTRAL_ROOTS[params["progression"]]
    names = {0: "I", 5: "IV", 7: "V"}
    first, n_win = window
    edges = sorted(set(starts) | {first, first + n_win})
    out = []
    for s, e in zip(edges[:-1], edges[1:]):
        if not first <= s < first + n_win:
            root = roots[(s // slot) % len(roots)]
            out.append({"numeral": names[root] + "5", "root": root, "quality": "5", "inversion": 0,
                        "cadence": None, "formula": False, "phrase": 0, "start": s, "beats": e - s,
                        "in_window": False})
    # The window: V(7) on its first half and the tonic on the rest, or one chord, I/i or IV/iv (not V:
    # minor keys have a major V too, so its third would not tell the modes apart).
    triad = "maj" if params["mode"] == "major" else "min"
    if params["window_content"] == "cadence" and n_win >= 2:
        dominant = ("V7", "7") if params["window_seventh"] else ("V", "maj")
        half = n_win // 2
        inside = [(first, half, 7, dominant), (first + half, n_win - half, 0, (TONIC[params["mode"]], triad))]
        cadence = "authentic"
    else:
        root = params["window_root"]
        inside = [(first, n_win, root, (names[root] if triad == "maj" else names[root].lower(), triad))]
        cadence = None
    for start, beats, root, (numeral, quality) in inside:
        if not params["window_evidence"]:   # the twin: open fifths on the same roots
            numeral, quality = names[root] + "5", "5"
        out.append({"numeral": numeral, "root": root, "quality": quality, "inversion": 0,
                    "cadence": cadence if params["window_evidence"] else None, "formula": False, "phrase": 0,
                    "start": start, "beats": beats, "in_window": True})
    return sorted(out, key=lambda seg: seg["start"])


def chord_pcs(seg: dict[str, Any], tonic: int) -> list[int]:
    """Pitch classes of a segment's chord, root first."""
    return [(tonic + seg["root"] + i) % 12 for i in INTERVALS[seg["quality"]]]


def bass_pc(seg: dict[str, Any], tonic: int) -> int:
    """Pitch class of the chord's lowest note (its inversion)."""
    return chord_pcs(seg, tonic)[seg["inversion"]]


def voicing(seg: dict[str, Any], tonic: int, floor: int) -> list[int]:
    """Close-position MIDI pitches of a chord, lowest note (per inversion) at ``floor`` or above.

    An open fifth ("5") is root, fifth and octave, no third.
    """
    root = (tonic + seg["root"]) % 12
    if seg["quality"] == "5":
        bottom = floor + (root - floor) % 12
        return [bottom, bottom + 7, bottom + 12]
    intervals = INTERVALS[seg["quality"]]
    inv = seg["inversion"]
    order = intervals[inv:] + tuple(i + 12 for i in intervals[:inv])
    bottom = floor + (root + order[0] - floor) % 12
    return [bottom + i - order[0] for i in order]


def numeral_label(seg: dict[str, Any]) -> str:
    """Roman numeral with its figured-bass inversion, e.g. ``"I64"``, ``"V65"``, ``"ii°6"``."""
    figures = (("", "6", "64"), ("", "65", "43", "42"))[len(INTERVALS[seg["quality"]]) == 4] \
        if seg["quality"] != "5" else ("",)
    numeral = seg["numeral"]
    if seg["inversion"] and numeral.endswith("7"):   # V7 in first inversion is V65, IVmaj7 IVmaj65
        numeral = numeral[:-1]
    return numeral + figures[seg["inversion"]]


def chord_label(seg: dict[str, Any], tonic: int) -> str:
    """mir_eval-style chord label, e.g. ``"G:7"``, ``"E:min/b3"``, ``"C:5"``."""

    label = f"{PITCH_CLASSES[(tonic + seg['root']) % 12]}:{seg['quality']}"
    if seg["inversion"]:
        label += "/" + _DEGREES[INTERVALS[seg["quality"]][seg["inversion"]]]
    return label


# --------------------------------------------------------------------------- melody


def _walk_to(candidates: list[int], pitch: int | None, centre: float, step: int) -> int:
    """The next pitch of the melody's walk: ``step`` candidates from the nearest to ``pitch``."""
    if pitch is None:
        return candidates[int(np.argmin([abs(p - centre) for p in candidates]))]
    index = int(np.argmin([abs(p - pitch) for p in candidates])) + step
    index = int(np.clip(index, 0, len(candidates) - 1))
    if abs(candidates[index] - centre) > 5:   # drift back towards the centre
        index = int(np.clip(index + (-1 if candidates[index] > centre else 1), 0, len(candidates) - 1))
    return candidates[index]


def melody(params: dict[str, Any], segs: list[dict[str, Any]], *, tonic: int,
           rng: np.random.Generator) -> list[tuple[float, float, int, float]]:
    """The melody: a walk on the scale around the register centre, no rests.

    Chord tones where the chord changes; elsewhere the key's scale without the
    notes a semitone from a chord tone (so in minor the V's raised leading tone
    replaces the subtonic: harmonic minor at cadences, natural minor
    elsewhere); over an authentic cadence's V with ``formula`` the line climbs
    5-6-7 to the tonic (in minor with the raised sixth and seventh: melodic
    minor). Windowed clips use degrees 1, 2, 4, 5 only (and not the tonic over
    a V in the window). A solo line ends each cadential V on the leading tone.

    Returns
    -------
    list of (start_beat, beats, pitch, velocity)

    Notebook: notebooks/00_data.ipynb
    """
    from .synth import DURATION  # synth imports this module at its top (circular)

    centre = params["register"]
    scale = {(tonic + d) % 12 for d in (MAJOR_SCALE if params["mode"] == "major" else MINOR_SCALE)}
    cells = (1.0, 1.0, 2.0) if params["texture"] == "hymn" else (0.5, 1.0, 1.0, 1.0, 2.0)
    span = range(int(centre) - 8, int(centre) + 9)
    end_beat = DURATION * params["tempo_bpm"] / 60.0
    notes: list[tuple[float, float, int, float]] = []
    pitch, forced = None, None
    for seg in segs:
        chord = set(chord_pcs(seg, tonic))
        if params["windowed"]:
            weak = {(tonic + d) % 12 for d in NEUTRAL_SCALE} - ({tonic} if seg["in_window"] and seg["root"] == 7
                                                               else set())
            strong = weak
        else:
            clash = {(c + d) % 12 for c in chord for d in (1, 11)}
            weak, strong = (scale - clash) | chord, chord
        if seg["formula"] and seg["beats"] >= 2:
            durations = [seg["beats"] - 1.0, 0.5, 0.5]
        else:
            durations, t = [], 0.0
            while t < seg["beats"] - 1e-9:
                durations.append(min(float(rng.choice(cells)), seg["beats"] - t))
                t += durations[-1]
        t = float(seg["start"])
        onsets = t + np.cumsum([0.0] + durations[:-1])
        last = int(np.flatnonzero(onsets < end_beat - 1e-9)[-1])   # the segment's last note before the clip ends
        for k, d in enumerate(durations):
            step = int(rng.choice((-2, -1, -1, 0, 1, 1, 2)))
            if forced is not None:
                pitch, forced = forced, None
            elif seg["formula"] and len(durations) == 3:
                if k == 0:   # 5, then 6 and 7 raised in minor, then 1 on the tonic chord
                    fifth = [p for p in span if p % 12 == (tonic + 7) % 12]
                    pitch = min(fifth, key=lambda p: (abs(p + 5 - centre), p))
                else:
                    pitch += 2
                    forced = pitch + 1 if k == 2 else None
            else:
                allowed = strong if k == 0 else weak
                candidates = [p for p in span if p % 12 in allowed] or [p for p in span if p % 12 in chord]
                pitch = _walk_to(candidates, pitch, centre, step)
                if (params["texture"] == "solo" and not params["windowed"] and k == last
                        and seg["cadence"]
                        and seg["numeral"] in ("V", "V7")):
                    pitch = min((p for p in span if p % 12 == (tonic + 11) % 12), key=lambda p: abs(p - pitch))
            on_beat = abs(t - round(t)) < 1e-6
            accent = 6 if on_beat and round(t) % 4 == 0 else (2 if on_beat else -3)
            notes.append((t, d, int(pitch), params["velocity"] + accent + float(rng.normal(0.0, 3.0))))
            t += d
    return notes


def _solo_window(notes, segs, twin_segs, *, tonic: int, evidence: bool):
    """A solo line states the window's chord itself: its notes there become chord tones (the third once)."""
    out = list(notes)
    for seg, twin in zip(segs, twin_segs):
        if not seg["in_window"]:
            continue
        chord = chord_pcs(seg if evidence else twin, tonic)
        inside = [i for i, n in enumerate(out) if seg["start"] - 1e-9 <= n[0] < seg["start"] + seg["beats"] - 1e-9]
        for j, i in enumerate(inside):
            t, d, p, v = out[i]
            wanted = [chord[1]] if (j == min(1, len(inside) - 1) and len(chord) > 2) else chord[:1] + chord[2:3]
            # Within a fifth either way, from G3 up where there is room; a line below G3 (a low
            # register) keeps its octave: 15 semitones always hold every pitch class.
            near = ([q for q in range(p - 7, p + 8) if q % 12 in wanted and q >= 55]
                    or [q for q in range(p - 7, p + 8) if q % 12 in wanted])
            out[i] = (t, d, min(near, key=lambda q: (abs(q - p), q)), v)
    return out


# --------------------------------------------------------------------------- textures


class _Score:
    """A pretty_midi score written in beats, cut at the clip's end."""

    def __init__(self, params: dict[str, Any]):
        from .synth import DURATION  # synth imports this module at its top (circular)

        self.pm = pretty_midi.PrettyMIDI(initial_tempo=params["tempo_bpm"])
        self.pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
        self.beat, self.end = 60.0 / params["tempo_bpm"], DURATION
        self.art, self.vel = params["articulation"], params["velocity"]
        self.parts: dict[str, Any] = {}

    def part(self, name: str, program: int, is_drum: bool = False):
        if name not in self.parts:
            self.parts[name] = pretty_midi.Instrument(int(program), is_drum=is_drum, name=name)
            self.pm.instruments.append(self.parts[name])
        return self.parts[name]

    def add(self, part, pitch: int, start: float, beats: float, velocity: float) -> None:
        start_s = start * self.beat
        end_s = min(start_s + beats * self.beat, self.end)
        if start_s < self.end and end_s > start_s:
            part.notes.append(pretty_midi.Note(int(np.clip(round(velocity), 1, 127)), int(pitch),
                                               start_s, end_s))

    def strikes(self, seg: dict[str, Any], every: float = 2.0) -> list[tuple[float, float]]:
        """(start, beats) of chord strikes in a segment: every ``every`` beats."""
        starts = np.arange(seg["start"], seg["start"] + seg["beats"] - 1e-9, every)
        ends = list(starts[1:]) + [seg["start"] + seg["beats"]]
        return [(float(s), float(e - s)) for s, e in zip(starts, ends)]


def _bass_root_fifth(score: _Score, segs, tonic: int) -> None:
    """Bass in octave 2: the chord's bass note, then its fifth (root position) every two beats."""
    bass = score.part("bass", _bass_program())
    for seg in segs:
        for k, (start, beats) in enumerate(score.strikes(seg)):
            pc = bass_pc(seg, tonic)
            if k % 2 and seg["inversion"] == 0:
                pc = (pc + 7) % 12
            score.add(bass, 36 + pc, start, beats * 0.85, score.vel - 5)


def _bass_program() -> int:
    from .synth import BASS_PROGRAM  # synth imports this module at its top (circular)

    return BASS_PROGRAM


def _texture_block(score, segs, bass_segs, *, tonic, floor, program):
    """Block chords struck every two beats (and at every chord change), bass root and fifth."""
    chords = score.part("chords", program)
    for seg in segs:
        for start, beats in score.strikes(seg):
            accent = 6 if abs(start % 4) < 1e-9 else 0
            for pitch in voicing(seg, tonic, floor):
                score.add(chords, pitch, start, score.art * beats, score.vel - 12 + accent)
    _bass_root_fifth(score, bass_segs, tonic)


def _texture_arpeggio(score, segs, bass_segs, *, tonic, floor, program):
    """Broken chords in eighths, up and down through the voicing and its octave; bass root and fifth."""
    chords = score.part("chords", program)
    for seg in segs:
        tones = voicing(seg, tonic, floor)
        tones = tones + [tones[0] + 12]
        cycle = tones + tones[-2:0:-1]
        for k in range(int(round(seg["beats"] * 2))):
            score.add(chords, cycle[k % len(cycle)], seg["start"] + k / 2, score.art / 2, score.vel - 14)
    _bass_root_fifth(score, bass_segs, tonic)


def _texture_alberti(score, segs, bass_segs, *, tonic, floor, program):
    """Alberti bass in eighths (low, high, middle, high); its low note is the bass."""
    chords = score.part("chords", program)
    for seg in segs:
        v = voicing(seg, tonic, floor)
        pattern = [v[0], v[-1], v[1], v[-1]] + ([v[0], v[-1], v[2], v[-1]] if len(v) == 4 else [])
        for k in range(int(round(seg["beats"] * 2))):
            score.add(chords, pattern[k % len(pattern)], seg["start"] + k / 2, score.art / 2,
                      score.vel - 14 + (4 if k % 4 == 0 else 0))


def _texture_pad(score, segs, bass_segs, *, tonic, floor, program):
    """Sustained chords held through each chord (legato whatever the articulation); bass root and fifth."""
    chords = score.part("chords", program)
    for seg in segs:
        for pitch in voicing(seg, tonic, floor):
            score.add(chords, pitch, seg["start"], seg["beats"], score.vel - 15)
    _bass_root_fifth(score, bass_segs, tonic)


def _texture_walking_bass(score, segs, bass_segs, *, tonic, floor, program):
    """A walking bass in quarters (chord tones, a step or half step into the next chord), chords on each change."""
    chords = score.part("chords", program)
    for seg in segs:
        for pitch in voicing(seg, tonic, floor):
            score.add(chords, pitch, seg["start"], score.art * min(2.0, seg["beats"]), score.vel - 12)
    bass = score.part("bass", WALKING_BASS_PROGRAM)
    for start, pitch in _walking_line(bass_segs, tonic):
        score.add(bass, pitch, start, 0.9, score.vel - 3 + (4 if start % 4 == 0 else 0))


def _walking_line(segs, tonic: int) -> list[tuple[int, int]]:
    """(beat, pitch) of a walking bass from G1 to G3; open-fifth chords walk on degrees 1, 2, 4, 5 only."""
    span = range(31, 56)
    neutral = all(s["quality"] == "5" for s in segs)
    allowed = {(tonic + d) % 12 for d in NEUTRAL_SCALE} if neutral else set(range(12))
    out, prev = [], 40
    for i, seg in enumerate(segs):
        pcs = chord_pcs(seg, tonic)
        nxt = segs[i + 1] if i + 1 < len(segs) else None
        target = min((p for p in span if p % 12 == bass_pc(nxt, tonic)), key=lambda p: abs(p - prev)) if nxt else None
        for k in range(seg["beats"]):
            if k == 0:
                choices = [p for p in span if p % 12 == bass_pc(seg, tonic)]
            elif target is not None and k == seg["beats"] - 1:
                choices = [p for p in (target - 1, target + 1, target - 2, target + 2) if p % 12 in allowed]
                choices = [min(choices, key=lambda p: (abs(p - prev), p))]
            else:
                up = target is None or target >= prev
                choices = [p for p in span if p % 12 in pcs and p != prev and (p > prev) == up] or \
                          [p for p in span if p % 12 in pcs and p != prev]
            prev = min(choices, key=lambda p: (abs(p - prev), p))
            out.append((seg["start"] + k, prev))
    return out


def _satb(seg, tonic: int, soprano: int, prev: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """Alto, tenor and bass under ``soprano``: chord tones, complete chord, nearest to ``prev``."""
    pcs = chord_pcs(seg, tonic)
    need = {pcs[0]} | ({pcs[1]} if len(pcs) > 2 else set()) | ({pcs[3]} if len(pcs) == 4 else set())
    pa, pt, pb = prev or (64, 55, 45)
    bass = min((p for p in range(*HYMN_RANGES["bass"]) if p % 12 == bass_pc(seg, tonic)),
               key=lambda p: (abs(p - pb), p))
    best = None
    for relax in (False, True):
        for a in range(*HYMN_RANGES["alto"]):
            if a % 12 not in pcs or a > soprano or soprano - a > 12:
                continue
            for t in range(*HYMN_RANGES["tenor"]):
                if t % 12 not in pcs or not bass < t <= a or a - t > 12:
                    continue
                voices = (soprano, a, t, bass)
                if not relax and not need <= {v % 12 for v in voices}:
                    continue
                parallels = 0
                if prev is not None:
                    before = (None, pa, pt, pb)
                    for i in range(1, 4):
                        for j in range(i + 1, 4):
                            same = (voices[i] - voices[j]) % 12 == (before[i] - before[j]) % 12 in (0, 7)
                            parallels += same and voices[i] != before[i]
                thirds = sum(v % 12 == pcs[1] for v in voices) if len(pcs) > 2 else 0
                cost = (abs(a - pa) + abs(t - pt) + 4 * parallels + 3 * max(0, thirds - 1), a, t)
                best = min(best, cost) if best else cost
        if best:
            return best[1], best[2], bass
    return max(p for p in range(*HYMN_RANGES["alto"]) if p % 12 in pcs), \
        max(p for p in range(*HYMN_RANGES["tenor"]) if p % 12 in pcs), bass


def _texture_hymn(score, segs, bass_segs, *, tonic, floor, program, soprano, evidence):
    """Four-part writing: the melody is the soprano; alto, tenor, bass keep common tones and move to
    the nearest chord tones, one chord per harmony. In windowed clips the voices are led through the
    open-fifth chords (``bass_segs``) and in the window the alto takes the third (the tenor a V7's seventh)."""
    parts = [score.part(name, program) for name in ("alto", "tenor", "bass")]
    prev = None
    for seg, plain in zip(segs, bass_segs):
        first = soprano.get(seg["start"], soprano[min(soprano, key=lambda s: abs(s - seg["start"]))])
        prev = _satb(plain, tonic, first, prev)
        alto, tenor, bass = prev
        if evidence and plain is not seg and seg["quality"] != "5":
            pcs = chord_pcs(seg, tonic)
            alto = min((p for p in range(55, 80) if p % 12 == pcs[1]), key=lambda p: (abs(p - alto), p))
            if len(pcs) == 4:
                tenor = min((p for p in range(48, 70) if p % 12 == pcs[3]), key=lambda p: (abs(p - tenor), p))
        for part, pitch in zip(parts, (alto, tenor, bass)):
            score.add(part, pitch, seg["start"], score.art * seg["beats"], score.vel - 8)


def _texture_solo(score, segs, bass_segs, *, tonic, floor, program):
    """A single melody line with no accompaniment (as a folk tune or a solo instrument plays it)."""


_TEXTURE_FUNCTIONS = {name: globals()[f"_texture_{name}"] for name in TEXTURES}


def _drums(score: _Score, n_beats: int) -> None:
    from .synth import HIHAT, KICK, SNARE  # synth imports this module at its top (circular)

    drums = score.part("drums", 0, is_drum=True)
    for b in range(n_beats):
        score.add(drums, KICK if b % 2 == 0 else SNARE, b, 0.1 / score.beat, score.vel + (5 if b % 4 == 0 else 0))
        score.add(drums, HIHAT, b, 0.05 / score.beat, score.vel - 20)
        score.add(drums, HIHAT, b + 0.5, 0.05 / score.beat, score.vel - 30)


# --------------------------------------------------------------------------- the score


def compose(params: dict[str, Any]):
    """Compose one clip of the tonal writing as MIDI (a pure function of ``params``).

    Parameters
    ----------
    params : dict
        Cues and :func:`draw_nuisances` (``writing="tonal"``). With
        ``window_evidence=False`` a windowed clip is composed with open fifths
        in its window too (the probe twin): the same score outside the window.

    Returns
    -------
    pm : pretty_midi.PrettyMIDI
        The melody first (the soprano of a hymn), then the texture's parts
        (``chords``, ``alto``/``tenor``/``bass``, ``bass``) and ``drums`` if
        drawn; 10 s long.
    truth : dict
        As :func:`mer.data.synth.compose`, plus ``writing``, ``texture``,
        ``drums``, ``accomp_register``, ``soundfont``, ``numerals``
        (``[start_s, end_s, "V7"]``) and ``cadences`` (``[start_s, end_s, type]``).

    Notebook: notebooks/00_data.ipynb
    """
    from .synth import DURATION, window_beats  # synth imports this module at its top (circular)

    rng = np.random.default_rng(params["melody_seed"])
    tonic = params["transpose"] % 12
    score = _Score(params)
    beat = score.beat
    n_beats = int(math.ceil(DURATION / beat - 1e-9))
    windowed = params["windowed"]
    window = window_beats(params) if windowed else None
    segs = segments(params, n_beats=n_beats, window=window, rng=rng)
    # The lines that must not change when the window's thirds are removed (bass, hymn voices) follow
    # the open-fifth chords of the twin.
    plain = segments({**params, "window_evidence": False}, n_beats=n_beats, window=window, rng=rng) \
        if windowed else segs
    notes = melody(params, segs, tonic=tonic, rng=rng)
    if windowed and params["texture"] == "solo":
        notes = _solo_window(notes, segs, plain, tonic=tonic, evidence=params["window_evidence"])
    texture = params["texture"]
    lead = score.part("melody", params["program_chords"] if texture == "hymn" else params["program_melody"])
    for start, beats, pitch, velocity in notes:
        score.add(lead, pitch, start, score.art * beats, velocity)
    extra = {"soprano": {n[0]: n[2] for n in notes}, "evidence": params["window_evidence"]} \
        if texture == "hymn" else {}
    _TEXTURE_FUNCTIONS[texture](score, segs, plain, tonic=tonic, floor=ACCOMP_FLOORS[params["accomp_register"]],
                                program=params["program_chords"], **extra)
    if params["drums"]:
        _drums(score, n_beats)

    def seconds(seg):
        return [round(seg["start"] * beat, 6), round(min((seg["start"] + seg["beats"]) * beat, DURATION), 6)]

    cadences: list[list] = []   # consecutive cadence chords of one phrase
    previous = None
    for seg in segs:
        if seg["cadence"] and previous is not None and previous["cadence"] == seg["cadence"] \
                and previous["phrase"] == seg["phrase"]:
            cadences[-1][1] = seconds(seg)[1]
        elif seg["cadence"]:
            cadences.append(seconds(seg) + [seg["cadence"]])
        previous = seg
    melody_notes = lead.notes
    iois = [b.start - a.start for a, b in zip(melody_notes[:-1], melody_notes[1:])]
    mode = params["mode"]
    truth = {
        "mode": mode,
        "tonic": tonic,
        "transpose": params["transpose"],
        "tempo_bpm": params["tempo_bpm"],
        "register": float(np.mean([n.pitch for n in melody_notes])),
        "articulation": float(np.mean([(a.end - a.start) / ioi for a, ioi in zip(melody_notes[:-1], iois)])),
        "velocity": float(np.mean([n.velocity for n in melody_notes])),
        "brightness": params["brightness"],
        "key": f"{PITCH_CLASSES[tonic]}:{'maj' if mode == 'major' else 'min'}",
        "chords": [seconds(s) + [chord_label(s, tonic)] for s in segs],
        "numerals": [seconds(s) + [numeral_label(s)] for s in segs],
        "cadences": cadences,
        "beats_s": [round(b * beat, 6) for b in range(n_beats)],
        "downbeats_s": [round(b * beat, 6) for b in range(0, n_beats, 4)],
        "windowed": windowed,
        "window_evidence": bool(params["window_evidence"]) if windowed else None,
        "window_start_s": window[0] * beat if windowed else float("nan"),
        "window_end_s": (window[0] + window[1]) * beat if windowed else float("nan"),
        "writing": "tonal",
        "texture": texture,
        "drums": bool(params["drums"]),
        "accomp_register": params["accomp_register"] if texture not in ("hymn", "solo") else texture,
        "soundfont": params["soundfont"],
    }
    return score.pm, truth
