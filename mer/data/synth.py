r"""The embedded synthetic dataset: short pieces composed and played by the package.

Two writings share the cues, the label model and the renderer:
``writing="classic"`` (the default of :func:`load`, described first: every
clip in C, natural minor, block triads; the book's writing before the
every-key model) and ``writing="tonal"`` (section "Tonal writing" below:
every key, a harmonic grammar with cadences, seven textures, four
SoundFonts), the writing of the book's profiles (:mod:`mer.profiles`) and of
the every-key model chapter 2 trains on it.

Each clip is a 10 s piece in 4/4 (chord progression, melody, bass line and a
drum kit) composed as MIDI with :mod:`pretty_midi` and rendered to audio by
FluidSynth with a General MIDI SoundFont, so the clips sound like instruments
being played, not like sine tones. Everything is drawn from a seeded
:class:`numpy.random.Generator`, one per clip, so the same ``seed`` gives the
same MIDI, the same labels and byte-identical FLAC files on every machine with
the same FluidSynth and SoundFont.

Why a synthetic default: the emotion label is a *known* function of musical
cues, so an explanation method can be checked against the truth: which cue
mattered (chapter 1), where in time and frequency the evidence was (chapter 3,
windowed clips and the probe set).

Cues (what the label depends on)
--------------------------------
Each cue is drawn independently per clip; its realised value (measured on
the composed MIDI) is standardised as ``z = (x - centre) / scale`` with the
centre and scale of its sampling distribution (the table; uniform
distributions have ``scale = (high - low) / sqrt(12)``):

================  ========================================  ======  ======  ======
cue               sampled as                                centre  scale   weight
================  ========================================  ======  ======  ======
``mode``          major or minor, p = 0.5                   0       1       +1.0
``tempo_bpm``     uniform 70 .. 160 bpm                     115     25.98   +0.7
``register``      melody centre uniform MIDI 62 .. 78       70      4.62    +0.5
                  (column: realised mean melody pitch)
``articulation``  sounding duration / inter-onset           0.625   0.188   -0.4
                  interval, uniform 0.30 .. 0.95
                  (staccato .. legato)
``velocity``      mean MIDI velocity uniform 55 .. 105      80      14.43   +0.3
                  (column: realised mean melody velocity)
``brightness``    programme class dark 0 / mid 0.5 /        0.5     0.408   +0.2
                  bright 1, p = 1/3 each
================  ========================================  ======  ======  ======

(``mode`` enters as z = +1 for major, -1 for minor.) The latent valence is

.. math:: v = \sum_c w_c z_c + \sigma \varepsilon, \quad \varepsilon \sim N(0, 1),
          \ \sigma = 0.08

and the label is ``"happy"`` iff ``v > 0``; ``valence`` in ``clips`` is ``v``
and ``valence_noiseless`` is the sum without the noise. The weights are
distinct so their ranking can be recovered (chapter 1). The noise is small:
the Bayes classifier (the sign of the noiseless sum) agrees with about 98 % of
the labels (``oracle_accuracy`` in ``generator.json``; 0.981 for the default
480 clips, and a logistic regression on the six cues recovers the weights'
ranking), but no cue decides alone: the labels agree with the mode on only
about 83 % of the clips (``mode_agreement``; 0.838 for the default set), so a
perfect key detector is not a perfect emotion classifier.

Arousal (``arousal`` column), a separate documented combination:
``a = 0.8 z_tempo + 0.5 z_velocity - 0.4 z_articulation + 0.3 eps``.

Nuisance factors (weight 0, drawn independently of the cues)
------------------------------------------------------------
- ``transpose``: the key, ``-max_transpose .. +max_transpose`` semitones from
  C (``tonic`` = transpose mod 12). The default ``max_transpose=0`` keeps every
  clip in C major or C minor (parallel keys: the mode is the only difference
  in pitch-class content). Measured here: the same small ViT learns the mode
  from 720 training clips in C after one epoch, but with keys drawn from
  -5..+6 it sat at chance (it must learn the thirds separately for twelve
  tonics; about 2,200 clips brought it to 0.93). ``load(max_transpose=6)``
  restores the twelve keys for a harder set; the feature route's key finder
  (chapter 1) is key-invariant either way;
- ``program_melody``, ``program_chords``: which General MIDI programme within
  the brightness class (4 per class and part, :data:`PROGRAMS`);
- ``voicing``: chord inversion 0, 1, 2;
- the progression (4 per mode) and the melody's notes and rhythm.

Musical realism
---------------
Major clips use major-key progressions (I-V-vi-IV, I-IV-V-I, ...), minor clips
natural-minor ones (i-iv-v-i, i-VI-iv-v, ...); the melody uses the major or
natural minor scale; chords change on bar lines and are struck on beats 1 and 3
(and at the edges of an evidence window); the drums play kick on 1 and 3,
snare on 2 and 4, hi-hat on eighths, so a beat tracker finds the tempo.
Chords are voiced with their lowest note at G3 (MIDI 55) or above: below
about 1 kHz a 128-band log-mel at 22 050 Hz spaces its band centres about
26 Hz apart, while a major and a minor third in octave 3 are 9-10 Hz apart
(E3 = 165 Hz vs Eb3 = 156 Hz), so they fall in the same band and the
spectrogram model could not tell the modes apart from the chords (from G3
up the semitone step exceeds 11 Hz and grows with pitch). The bass plays root and fifth in
octave 2 (no thirds).

Windowed-evidence clips
-----------------------
A share ``window_share`` (default 25 %) of the clips, in every split, carry
their mode evidence only inside a window of 2-3 s (a whole number of beats, at
most 30 % of the clip), starting on a beat at a random position (the chords
are struck again at its edges): there the chords are full triads
(I, IV, V major or i, iv, v minor); everywhere else they are open fifths
(root, fifth, octave), the progression uses only the roots I, IV and V, and
the melody uses only the scale degrees 1, 2, 4 and 5 (common to major and
natural minor), so no third, sixth or seventh anywhere outside the window. A
model that gets these clips right has to use local evidence. Columns
``windowed``, ``window_start_s``, ``window_end_s``. (A released note rings
for a few tens of ms after ``window_end_s``; the window is given in note times.)

Probe set (:func:`load_probe`)
------------------------------
Clips built like the windowed clips, with the same instruments (the mid
brightness class), drums and textures, whose *only* class evidence is the
chord third inside a known window; every other cue is neutral (tempo 115 bpm,
register centre 70, articulation 0.625, velocity 80, brightness 0.5). The
label is the mode of the window. For each probe clip a twin with the window's
thirds replaced by the open-fifth voicing used elsewhere is rendered too
(``path_no_window``), so chapter 3 can measure how much ``p(class)`` drops
when the evidence is removed.

Tonal writing (``writing="tonal"``)
-----------------------------------
Why: a model trained on the classic writing (every clip in C, natural minor
only, block triads from G3 on beats 1 and 3, root-fifth bass, drums, one
melody) ranked 80 real four-part compositions major vs minor at chance (ROC
AUC 0.53; 0.51 transposed to C). The tonal writing writes the mode the way
tonal music does, so what a model learns from it has a chance to transfer.
Composed by :mod:`mer.data.tonal`. The cues, their sampling, weights, noise
and the label rule are those of the table above, drawn first and in the same
order, so chapter 1's recovery and chapter 3's ground truth hold unchanged;
everything below is a nuisance (weight 0), drawn per clip from the clip's
seeded generator after the cues:

- ``tonic``: uniform over all twelve (``max_transpose`` is classic only);
- harmony: phrases of 2-6 chords (four per phrase while more than six are
  left), each a walk through a weighted grammar from the tonic
  (:data:`mer.data.tonal.TRANSITIONS`: tonic -> predominant -> dominant, with
  vi/VI, iii/III and the natural minor's v and VII, seventh chords V7, ii7,
  IVmaj7, iiø7, iv7 and the secondary dominants V/V, V/vi, V/IV, V/iv, V/III
  before their targets) that ends in a cadence: authentic (V-I, V7-I or
  I6/4-V-I; p = 0.5), half (ending on V, in minor also the Phrygian iv6-V;
  0.3) or plagal (IV-I; 0.2). Inversions are drawn per chord (triads 30 %
  first inversion, diminished triads 80 %, sevenths 6/5, 4/3, 4/2), except
  the phrase's first chord and the cadence's V and final tonic, which are
  in root position; one chord every 2 or 4 beats (``harmonic_rhythm``);
- minor as tonal music writes it: the cadences' V, V7 and vii° carry the
  raised leading tone; the melody takes its notes from the key's scale minus
  those a semitone from a chord tone, so over V it sings the raised seventh
  (harmonic minor), and over half of the authentic cadences' V it climbs
  5-#6-#7-8 (melodic minor; major: 5-6-7-8); elsewhere natural minor
  (v, VII, the subtonic in the melody). V/iv is the tonic triad with a
  minor seventh, so a minor clip sounds the major third briefly there, as
  tonal music does (weight 1 of 14 after i). The melody starts each chord on a
  chord tone; a solo line ends each cadential V on the leading tone;
- ``texture`` (:data:`TEXTURES`), one named function each in
  :mod:`mer.data.tonal`: ``block`` (chords every two beats, bass root and
  fifth), ``arpeggio`` (broken chords up and down in eighths), ``alberti``
  (low-high-middle-high in eighths, its low note the bass), ``hymn`` (four
  voices, the melody as soprano; alto, tenor and bass on chord tones, the
  chord complete where it can be, nearest to their previous notes so common
  tones stay, penalising parallel fifths and octaves), ``pad`` (sustained
  chords on sustained programmes, :data:`mer.data.tonal.PAD_PROGRAMS`),
  ``walking_bass`` (quarter-note bass on chord tones, stepping or sliding a
  half step into the next chord, chords struck at each change) and ``solo``
  (the melody alone, as a folk tune or a solo instrument plays it);
- ``drums``: the classic kit in half of the clips (:data:`mer.data.tonal.DRUM_SHARE`)
  of the textures that take one, never in ``hymn`` or ``solo``;
- ``accomp_register``: the accompaniment's lowest note at C3, G3 or G4
  (``low``, ``middle``, ``high``; MIDI 48, 55, 67), so its thirds sound low,
  middle and high. Thirds below G3 fall in shared bands of a 128-band
  log-mel (above), so the low register (and a hymn's tenor, a first-inversion
  bass) carries mode evidence a spectrogram model cannot see there; it is
  kept because real music puts thirds there, and a clip's mode never rests on
  it alone: the melody (62-78 +- 8) sounds the mode's scale above it, and
  windowed and probe clips draw only ``middle`` and ``high``;
- ``soundfont``: one per clip from :data:`TRAIN_SOUNDFONTS`; ``program_*``
  as in the classic writing (a hymn sings all four voices with the chords'
  programme);
- how the cues are realised: ``register`` is the mean pitch of the melody
  (the soprano of a hymn) in every texture; ``articulation`` the melody's
  sounding / inter-onset ratio, which also sets the length of the block,
  arpeggio, Alberti and comping notes and of the hymn's lower voices; pads
  hold their chords and the basses keep their fixed lengths whatever it is;
  ``velocity`` the melody's mean velocity, the accompaniment 8-15 below it.

Windowed clips and the probe set follow the same rule as above with the
texture drawn: outside the window open fifths on I, IV and V and a melody on
degrees 1, 2, 4, 5 (no third, sixth or seventh anywhere); inside it either
one chord with its third, I/i or IV/iv (never a lone V: minor has a major V
too), or an authentic cadence V(7)-I/i (``window_content``). Each texture
states it: block, arpeggio, Alberti, pad and the walking bass's chords play
it; a hymn's alto moves to the third (a V7's tenor to the seventh); a solo
line's notes in the window become the chord's tones, the third among them.
Basses and hymn voices are led through the open-fifth chords, so a probe's
twin (``path_no_window``) is the same score outside the window.

Held-out sets: :data:`HELDOUT_SOUNDFONT` (``"MuseScore_General"``) and
:data:`HELDOUT_TEXTURE` (``"alberti"``) are drawn by no default set;
:func:`load_heldout` renders a test set in either. :func:`load_transpositions`
renders scores each in all twelve keys (the key-invariance check).

SoundFonts (Debian packages, all complete General MIDI banks, 128 melodic
programmes, checked by loading each in pyfluidsynth and rendering the same
score: all sound):

=====================  ===================================  ========  ======================
name                   package (file)                       size      role
=====================  ===================================  ========  ======================
``FluidR3_GM``         fluid-soundfont-gm (sf2)             148 MB    training; the book's
``TimGM6mb``           pretty_midi's copy (sf2)             6 MB      training; quick runs
``OPL3_FM``            opl3-soundfont (sf2)                 135 MB    training
``MuseScore_General``  musescore-general-soundfont-small    40 MB     held out
                       (``MuseScore_General_Lite.sf3``)
=====================  ===================================  ========  ======================

Why these: FluidR3_GM and TimGM6mb are sampled banks with almost no samples
in common (9 shared sample names of 1,419 and 521); OPL3_FM is no sample at
all but FM synthesis, the far end of timbre variety, so a model cannot
lean on one library's sample colour. MuseScore General is held out because
it is a third, independent-sounding *sampled* library (1,255 samples, 366
names shared with FluidR3, whose FluidR3Mono it grew from), the closest
stand-in for real instruments a model has not heard; its Ogg-compressed
samples also cost ~0.4 s per clip to decode (FluidR3 ~0.1 s), which a test
set can afford and a training set should not. csound-soundfont was left out:
its bank shares 392 of its 489 sample names with TimGM6mb. Gains per font
(:data:`GAINS`) equalise the median loudness on the same scores.

Cost, measured: composing a tonal clip takes ~6 ms; composing, rendering and
writing it ~0.06 s of CPU on average over the three training SoundFonts
(FluidR3_GM 0.07, TimGM6mb 0.06, OPL3_FM 0.04). The default size, 1,200
clips with ``n_jobs=2``, took 197 s (6.1 clips/s) on two cores that three
other jobs were loading (load average 8-11); about 70 s of CPU, so roughly
40 s on two idle cores (an extrapolation). ``make bench`` reports it as
``synth_generate_s``. On those 1,200 clips the label agrees with the
mode on 82.7 % and with the Bayes rule on 98.4 % (classic: 83.8 %, 98.1 %).

Rendering
---------
FluidSynth at 22 050 Hz through pyfluidsynth, from the :mod:`pretty_midi`
score, with every instrument on its own MIDI channel in one pass (about twice
as fast as :meth:`pretty_midi.PrettyMIDI.fluidsynth`, which plays one
instrument at a time and keeps only the left channel). A fresh synthesizer per
clip (a reused one carries voices and effect state from clip to clip, which
breaks byte-identical output), with dynamic sample loading so it costs ~20 ms.
One fixed gain per SoundFont (:data:`GAINS`), so velocity changes loudness;
clips are not each normalised to full scale and are scaled down only if the
peak would exceed 0.99 (column ``peak``). Mono (mean of the stereo channels)
float32, exactly 10 s, a 30 ms fade-out, written as FLAC PCM_16. About 0.14 s
of CPU per clip with FluidR3_GM, so 480 clips take ~35-40 s on two idle cores.
SoundFonts: ``"FluidR3_GM"`` (Debian package ``fluid-soundfont-gm``, the
default profile) and ``"TimGM6mb"`` (shipped with pretty_midi, the quick
profile).

Files
-----
``<root>/audio/<clip_id>.flac``, ``midi/<clip_id>.mid``, ``truth/<clip_id>.json``
(cues, z-scores, valence, arousal, ``key`` such as ``"A:min"``, ``chords`` as
``[start_s, end_s, "C:maj"]`` with roots ``C C# D ... B`` and qualities
``maj``, ``min`` and ``5`` (open fifth), ``beats_s``, ``downbeats_s``,
``tempo_bpm``, the window), ``clips.csv`` and ``generator.json`` (this model:
weights, scales, noise, measured agreement). The probe set adds
``audio_no_window/`` and ``midi_no_window/``. The tonal writing's folders are
``data/synth/tonal-*``; its truth files add ``numerals`` (``[start_s, end_s,
"V65"]``), ``cadences`` (``[start_s, end_s, "authentic"]``), ``texture``,
``drums``, ``accomp_register``, ``soundfont``, chord qualities ``dim``,
``7``, ``maj7``, ``min7``, ``hdim7`` and inversions (``"E:min/b3"``); its
``clips.csv`` adds the columns ``texture``, ``soundfont``, ``drums``,
``accomp_register``, ``harmonic_rhythm``, ``n_cadences`` (``tonic`` is
already there). A folder is complete when its
``COMPLETE`` marker exists; it is rendered in a temporary folder and renamed.

Notebook: notebooks/00_data.ipynb (the Data page) and every chapter.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pretty_midi
import soundfile
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from .. import MerError, ParameterError, store
from ..tonality import PITCH_CLASSES
from . import Dataset, tonal
from .tonal import HELDOUT_TEXTURE, TEXTURES, TRAIN_TEXTURES

log = logging.getLogger(__name__)

#: Bump when the composition, the rendering or the label model changes: it is
#: part of the dataset folder's name, so old folders are never reused.
#: Version 2: chords struck on beats 1 and 3 (version 1 struck every beat).
#: Version 3: FluidSynth's float output (no dither). Version 4: every clip in C
#: by default (``max_transpose``).
GENERATOR_VERSION = 4

SR = 22050
DURATION = 10.0
N_SAMPLES = int(SR * DURATION)
#: Lowest note of a chord voicing: G3. Thirds lower than this are not resolved
#: by a 128-band log-mel at 22 050 Hz (see the module docstring).
CHORD_FLOOR = 55

#: SoundFont name -> (path, Debian package that provides it or None).
SOUNDFONTS = {
    "FluidR3_GM": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    "TimGM6mb": (None, None),  # shipped with pretty_midi, path resolved at use
    "OPL3_FM": ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "opl3-soundfont"),
    "MuseScore_General": ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "musescore-general-soundfont-small"),
}
#: The SoundFont no training set of the tonal writing draws (:func:`load_heldout`).
HELDOUT_SOUNDFONT = "MuseScore_General"
#: SoundFonts the tonal writing draws from by default (one per clip).
TRAIN_SOUNDFONTS = ("FluidR3_GM", "TimGM6mb", "OPL3_FM")
#: Writings of the synthetic set: "classic" (every clip in C, block triads;
#: :func:`load`'s default, the book's before its every-key model) and "tonal"
#: (every key; the book's profiles).
WRITINGS = ("classic", "tonal")
#: Output gain per SoundFont, applied to FluidSynth's mix (int16 / 2**15);
#: chosen so the loudest clips peak near 0.9 and velocity stays audible as
#: loudness (clips are not each normalised to full scale). OPL3_FM and
#: MuseScore_General: the gain that gives the same median RMS as FluidR3_GM
#: on the same 30 tonal scores (measured: 4.47 and 5.64; TimGM6mb would take
#: 5.07 and keeps 4.5, the classic writing's value).
GAINS = {"FluidR3_GM": 4.5, "TimGM6mb": 4.5, "OPL3_FM": 4.5, "MuseScore_General": 5.6}
PEAK = 0.99

#: General MIDI programmes (0-based) per brightness class and part.
PROGRAMS = {
    "melody": {
        0.0: (42, 60, 71, 69),   # cello, French horn, clarinet, English horn
        0.5: (0, 65, 40, 68),    # acoustic grand, alto sax, violin, oboe
        1.0: (56, 72, 73, 11),   # trumpet, piccolo, flute, vibraphone
    },
    "chords": {
        0.0: (89, 52, 49, 19),   # warm pad, choir aahs, slow strings, church organ
        0.5: (0, 24, 48, 16),    # acoustic grand, nylon guitar, strings, drawbar organ
        1.0: (25, 6, 8, 4),      # steel guitar, harpsichord, celesta, electric piano
    },
}
BASS_PROGRAM = 33  # electric bass (finger)
KICK, SNARE, HIHAT = 36, 38, 42

#: Sampling ranges of the cues and their standardisation (centre, scale).
RANGES = {
    "tempo_bpm": (70.0, 160.0),
    "register": (62.0, 78.0),
    "articulation": (0.30, 0.95),
    "velocity": (55.0, 105.0),
}
BRIGHTNESS_LEVELS = (0.0, 0.5, 1.0)
SCALING = {
    "mode": (0.0, 1.0),  # z = +1 major, -1 minor
    **{cue: ((lo + hi) / 2, (hi - lo) / math.sqrt(12)) for cue, (lo, hi) in RANGES.items()},
    "brightness": (0.5, math.sqrt(1 / 6)),
}
#: The true weights of the latent valence (on standardised cues).
WEIGHTS = {"mode": 1.0, "tempo_bpm": 0.7, "register": 0.5, "articulation": -0.4,
           "velocity": 0.3, "brightness": 0.2}
NOISE_SD = 0.08
AROUSAL_WEIGHTS = {"tempo_bpm": 0.8, "velocity": 0.5, "articulation": -0.4}
AROUSAL_NOISE_SD = 0.3
#: Cue values of the probe clips (the centre of every range).
NEUTRAL = {"tempo_bpm": 115.0, "register": 70.0, "articulation": 0.625, "velocity": 80.0,
           "brightness": 0.5}
WINDOW_S = (2.0, 3.0)
MAX_WINDOW_SHARE = 0.3
SPLIT_SHARES = {"train": 0.60, "val": 0.15, "test": 0.25}

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
NEUTRAL_SCALE = (0, 2, 5, 7)  # degrees 1, 2, 4, 5: shared by major and natural minor
#: Progressions: (root offset from the tonic, quality) per bar, cycled.
PROGRESSIONS = {
    "major": (
        ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),   # I-V-vi-IV
        ((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")),   # I-IV-V-I
        ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),   # I-vi-IV-V
        ((0, "maj"), (2, "min"), (7, "maj"), (0, "maj")),   # I-ii-V-I
    ),
    "minor": (
        ((0, "min"), (5, "min"), (7, "min"), (0, "min")),   # i-iv-v-i
        ((0, "min"), (8, "maj"), (5, "min"), (7, "min")),   # i-VI-iv-v
        ((0, "min"), (5, "min"), (8, "maj"), (7, "min")),   # i-iv-VI-v
        ((0, "min"), (10, "maj"), (8, "maj"), (7, "min")),  # i-VII-VI-v
    ),
}
#: Root sequences of windowed and probe clips: only I, IV, V, identical in both modes.
NEUTRAL_ROOTS = ((0, 5, 7, 0), (0, 7, 5, 0), (0, 5, 0, 7), (0, 0, 5, 7))


class SoundFontError(MerError, FileNotFoundError):
    """A SoundFont the renderer needs is not installed."""


# --------------------------------------------------------------------------- composing


def sample_params(*, rng: np.random.Generator, windowed: bool = False, max_transpose: int = 0,
                  writing: str = "classic", textures: tuple[str, ...] = TRAIN_TEXTURES,
                  soundfonts: tuple[str, ...] = TRAIN_SOUNDFONTS) -> dict[str, Any]:
    """Draw the parameters of one clip of the main set.

    Parameters
    ----------
    rng : numpy.random.Generator
        The clip's own generator.
    windowed : bool
        Whether the mode evidence is confined to a 2-3 s window.
    max_transpose : int
        Keys are drawn from ``-max_transpose .. +max_transpose`` semitones
        around C (0: every clip in C major or C minor). Classic writing only:
        the tonal writing draws the tonic from all twelve.
    writing : {"classic", "tonal"}
        The composer (module docstring).
    textures, soundfonts : tuple of str
        What the tonal writing draws from (uniformly, one of each per clip).

    Returns
    -------
    dict
        Everything :func:`compose` needs (JSON-serialisable), plus the label
        noise draws ``noise_valence`` and ``noise_arousal``. The cues are drawn
        first and in the same order in both writings.

    Notebook: notebooks/00_data.ipynb
    """
    mode = "major" if rng.random() < 0.5 else "minor"
    params: dict[str, Any] = {"mode": mode}
    for cue, (lo, hi) in RANGES.items():
        params[cue] = float(rng.uniform(lo, hi))
    params["brightness"] = float(BRIGHTNESS_LEVELS[rng.integers(3)])
    if writing == "tonal":
        params.update(tonal.draw_nuisances(rng=rng, brightness=params["brightness"], mode=mode, windowed=windowed,
                                           textures=textures, soundfonts=soundfonts))
    else:
        params.update(_nuisances(rng=rng, brightness=params["brightness"], mode=mode, windowed=windowed,
                                 max_transpose=max_transpose))
    params["noise_valence"] = float(rng.standard_normal())
    params["noise_arousal"] = float(rng.standard_normal())
    return params


def probe_params(*, rng: np.random.Generator, mode: str, max_transpose: int = 0, writing: str = "classic",
                 textures: tuple[str, ...] = TRAIN_TEXTURES,
                 soundfonts: tuple[str, ...] = TRAIN_SOUNDFONTS, windowed: bool = True) -> dict[str, Any]:
    """Draw the parameters of one probe clip: neutral cues, thirds only in a window.

    Parameters
    ----------
    rng : numpy.random.Generator
        The clip's own generator.
    mode : {"major", "minor"}
        The mode of the window (the probe clip's only class evidence).
    max_transpose, writing, textures, soundfonts
        As in :func:`sample_params`.
    windowed : bool
        ``False``: the mode sounds throughout (:func:`load_heldout`'s
        ``"neutral"`` set, where only the mode tells the classes apart).

    Returns
    -------
    dict
        Parameters for :func:`compose`; the label noise is zero.

    Notebook: notebooks/03_lrp.ipynb
    """
    if mode not in PROGRESSIONS:
        raise ParameterError(f"mode must be 'major' or 'minor', got {mode!r}")
    params: dict[str, Any] = {"mode": mode, **NEUTRAL}
    if writing == "tonal":
        params.update(tonal.draw_nuisances(rng=rng, brightness=NEUTRAL["brightness"], mode=mode,
                                           windowed=windowed, textures=textures, soundfonts=soundfonts))
    else:
        params.update(_nuisances(rng=rng, brightness=NEUTRAL["brightness"], mode=mode, windowed=windowed,
                                 max_transpose=max_transpose))
    params["noise_valence"] = 0.0
    params["noise_arousal"] = 0.0
    return params


def _nuisances(*, rng: np.random.Generator, brightness: float, mode: str, windowed: bool,
               max_transpose: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {
        "transpose": int(rng.integers(-max_transpose, max_transpose + 1)),
        "program_melody": int(rng.choice(PROGRAMS["melody"][brightness])),
        "program_chords": int(rng.choice(PROGRAMS["chords"][brightness])),
        "voicing": int(rng.integers(3)),
        "windowed": bool(windowed),
        "window_evidence": True,
        "melody_seed": int(rng.integers(2**31)),
    }
    if windowed:
        out["progression"] = int(rng.integers(len(NEUTRAL_ROOTS)))
        out["window_s"] = float(rng.uniform(*WINDOW_S))  # rounded to whole beats by window_beats
        out["window_position"] = float(rng.random())
    else:
        out["progression"] = int(rng.integers(len(PROGRESSIONS[mode])))
    return out


def window_beats(params: dict[str, Any]) -> tuple[int, int]:
    """First beat and number of beats of the evidence window."""
    beat = 60.0 / params["tempo_bpm"]
    n_beats = max(1, min(int(round(params["window_s"] / beat)), int(MAX_WINDOW_SHARE * DURATION / beat)))
    # The window starts on a beat and ends before the last half second.
    first, last = 1, int((DURATION - 0.5) / beat) - n_beats
    start = first + int(params["window_position"] * (last - first + 1))
    return min(start, last), n_beats


def _voice(root_pc: int, quality: str, inversion: int) -> list[int]:
    """MIDI pitches of a chord voiced with its lowest note at G3 or above."""
    if quality == "5":
        # Open fifth in root position, doubled at the octave: no third.
        bottom = CHORD_FLOOR + (root_pc - CHORD_FLOOR) % 12
        return [bottom, bottom + 7, bottom + 12]
    intervals = [0, 4 if quality == "maj" else 3, 7]
    order = intervals[inversion:] + [i + 12 for i in intervals[:inversion]]
    bottom = CHORD_FLOOR + (root_pc + order[0] - CHORD_FLOOR) % 12
    return [bottom + i - order[0] for i in order]


def compose(params: dict[str, Any]):
    """Compose one clip as MIDI from its parameters (a pure function).

    Parameters
    ----------
    params : dict
        From :func:`sample_params` or :func:`probe_params`. With
        ``params["window_evidence"] = False`` a windowed clip is composed
        without its window's thirds (the probe set's "window removed" twin).
        ``params["writing"] == "tonal"``: :func:`mer.data.tonal.compose`.

    Returns
    -------
    pm : pretty_midi.PrettyMIDI
        Four instruments: melody, chords, bass, drums; 10 s long.
    truth : dict
        Realised cue values (``mode``, ``tonic``, ``tempo_bpm``, ``register``,
        ``articulation``, ``velocity``, ``brightness``), ``key`` (``"A:min"``),
        ``chords`` (``[start_s, end_s, label]`` as rendered), ``beats_s``,
        ``downbeats_s``, ``windowed``, ``window_start_s``, ``window_end_s``.

    Notebook: notebooks/00_data.ipynb
    """
    if params.get("writing") == "tonal":
        return tonal.compose(params)
    rng = np.random.default_rng(params["melody_seed"])
    tempo = params["tempo_bpm"]
    beat = 60.0 / tempo
    n_beats = int(math.ceil(DURATION / beat))
    window = _evidence_window(params, beat)

    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    melody = pretty_midi.Instrument(params["program_melody"], name="melody")
    chords = pretty_midi.Instrument(params["program_chords"], name="chords")
    bass = pretty_midi.Instrument(BASS_PROGRAM, name="bass")
    drums = pretty_midi.Instrument(0, is_drum=True, name="drums")
    timeline = _accompany(params, chords=chords, bass=bass, drums=drums, beat=beat, n_beats=n_beats,
                          window=window)
    _play_melody(params, melody, rng=rng, beat=beat)
    pm.instruments.extend([melody, chords, bass, drums])
    return pm, _truth(params, melody.notes, timeline, beat=beat, n_beats=n_beats, window=window)


class _Window(NamedTuple):
    """The evidence window of a windowed clip: first beat, number of beats, and its span in seconds."""

    first: int | None
    n: int | None
    beats: set
    span_s: tuple[float, float]


def _evidence_window(params: dict[str, Any], beat: float) -> _Window:
    """Where a windowed clip's evidence (its thirds) sounds; an empty window for other clips."""
    if params["windowed"]:
        win_first, win_n = window_beats(params)
        return _Window(win_first, win_n, set(range(win_first, win_first + win_n)),
                       (win_first * beat, (win_first + win_n) * beat))
    return _Window(None, None, set(), (float("nan"), float("nan")))


def _add_note(inst, pitch, start, end, velocity) -> None:
    """Append a note to ``inst``, cut at the clip's end and dropped if it starts after it."""
    end = min(end, DURATION)
    if start < DURATION and end > start:
        inst.notes.append(pretty_midi.Note(int(np.clip(round(velocity), 1, 127)), int(pitch), start, end))


def _accompany(params: dict[str, Any], *, chords, bass, drums, beat: float, n_beats: int,
               window: _Window) -> list[list]:
    """Harmony (one chord per bar), bass and drums, beat by beat; returns the chord timeline.

    Draws nothing at random: every choice comes from ``params``.
    """
    mode, windowed = params["mode"], params["windowed"]
    tonic = params["transpose"] % 12
    art, vel = params["articulation"], params["velocity"]
    win_first, win_n, win_beats = window.first, window.n, window.beats
    if windowed:
        roots = NEUTRAL_ROOTS[params["progression"]]
        triad = "maj" if mode == "major" else "min"
        progression = [(r, triad) for r in roots]
    else:
        progression = PROGRESSIONS[mode][params["progression"]]
    timeline: list[list] = []
    for b in range(n_beats):
        t = b * beat
        root, quality = progression[(b // 4) % len(progression)]
        if windowed and not (b in win_beats and params["window_evidence"]):
            quality = "5"
        root_pc = (tonic + root) % 12
        # Chords are struck on beats 1 and 3 and again at the window's edges.
        if b % 2 == 0 or (windowed and b in (win_first, win_first + win_n)):
            end = b + 1
            while end < n_beats and end % 2 != 0 and not (windowed and end in (win_first, win_first + win_n)):
                end += 1
            for pitch in _voice(root_pc, quality, params["voicing"]):
                _add_note(chords, pitch, t, t + art * (end - b) * beat, vel - 12 + (6 if b % 4 == 0 else 0))
        label = f"{PITCH_CLASSES[root_pc]}:{quality}"
        if timeline and timeline[-1][2] == label and b % 4 != 0:
            timeline[-1][1] = min((b + 1) * beat, DURATION)
        else:  # a new bar (annotated per bar even if the chord repeats) or a window edge
            timeline.append([t, min((b + 1) * beat, DURATION), label])

        # Bass: root on beat 1, fifth on beat 3, octave 2.
        if b % 2 == 0:
            bass_root = 36 + root_pc
            _add_note(bass, bass_root + (7 if b % 4 == 2 else 0), t, t + 2 * beat * 0.85, vel - 5)
        # Drums: kick 1 and 3, snare 2 and 4, hi-hat eighths.
        _add_note(drums, KICK if b % 2 == 0 else SNARE, t, t + 0.1, vel + (5 if b % 4 == 0 else 0))
        _add_note(drums, HIHAT, t, t + 0.05, vel - 20)
        _add_note(drums, HIHAT, t + beat / 2, t + beat / 2 + 0.05, vel - 30)
    return timeline


def _play_melody(params: dict[str, Any], melody, *, rng: np.random.Generator, beat: float) -> None:
    """The melody: a random walk on the scale around the register centre, in
    eighths, quarters and halves on the beat grid, no rests.

    Every random draw of :func:`compose` is here, in this order: the note
    lengths first, then per note its step and its velocity's jitter.
    """
    mode, windowed = params["mode"], params["windowed"]
    tonic = params["transpose"] % 12
    art, vel = params["articulation"], params["velocity"]
    scale = NEUTRAL_SCALE if windowed else (MAJOR_SCALE if mode == "major" else MINOR_SCALE)
    centre = params["register"]
    pitches = [p for p in range(int(centre) - 8, int(centre) + 9) if (p - tonic) % 12 in scale]
    index = int(np.argmin([abs(p - centre) for p in pitches]))
    onsets, t = [], 0.0
    while t < DURATION - 1e-9:
        onsets.append(t)
        t += beat * float(rng.choice((0.5, 1.0, 1.0, 1.0, 2.0)))
    onsets.append(t)
    for start, nxt in zip(onsets[:-1], onsets[1:]):
        step = int(rng.choice((-2, -1, -1, 0, 1, 1, 2)))
        index = int(np.clip(index + step, 0, len(pitches) - 1))
        if abs(pitches[index] - centre) > 5:  # drift back towards the centre
            index += -1 if pitches[index] > centre else 1
        on_beat = abs(start / beat - round(start / beat)) < 1e-6
        accent = 6 if on_beat and round(start / beat) % 4 == 0 else (2 if on_beat else -3)
        _add_note(melody, pitches[index], start, start + art * (nxt - start),
                  vel + accent + rng.normal(0.0, 3.0))


def melody_cues(notes) -> dict[str, float]:
    """The cues a clip realises in its melody, measured on the composed notes.

    Parameters
    ----------
    notes : list of pretty_midi.Note, length n_notes >= 2
        The melody in time order.

    Returns
    -------
    dict
        ``register`` (mean MIDI pitch), ``articulation`` (mean over notes of
        sounding duration / inter-onset interval to the next note) and
        ``velocity`` (mean MIDI velocity): the values of the truth file and
        of ``clips``.

    Notebook: notebooks/00_data.ipynb
    """
    iois = [b.start - a.start for a, b in zip(notes[:-1], notes[1:])]
    return {"register": float(np.mean([n.pitch for n in notes])),
            "articulation": float(np.mean([(a.end - a.start) / ioi for a, ioi in zip(notes[:-1], iois)])),
            "velocity": float(np.mean([n.velocity for n in notes]))}


def _truth(params: dict[str, Any], notes, timeline: list[list], *, beat: float, n_beats: int,
           window: _Window) -> dict[str, Any]:
    """The truth file of a composed clip: realised cues measured on the melody's notes, key, chords, beats."""
    mode, windowed = params["mode"], params["windowed"]
    tonic = params["transpose"] % 12
    return {
        "mode": mode,
        "tonic": tonic,
        "transpose": params["transpose"],
        "tempo_bpm": params["tempo_bpm"],
        **melody_cues(notes),
        "brightness": params["brightness"],
        "key": f"{PITCH_CLASSES[tonic]}:{'maj' if mode == 'major' else 'min'}",
        "chords": [[round(s, 6), round(e, 6), lab] for s, e, lab in timeline],
        "beats_s": [round(b * beat, 6) for b in range(n_beats)],
        "downbeats_s": [round(b * beat, 6) for b in range(0, n_beats, 4)],
        "windowed": windowed,
        "window_evidence": bool(params["window_evidence"]) if windowed else None,
        "window_start_s": window.span_s[0],
        "window_end_s": window.span_s[1],
    }


def latent(truth: dict[str, Any], *, noise_valence: float = 0.0,
           noise_arousal: float = 0.0) -> dict[str, Any]:
    """Standardised cues, valence, arousal and label of a composed clip.

    Parameters
    ----------
    truth : dict
        From :func:`compose` (realised cue values).
    noise_valence, noise_arousal : float
        Standard-normal draws, scaled by :data:`NOISE_SD` and
        :data:`AROUSAL_NOISE_SD`.

    Returns
    -------
    dict
        ``z`` (cue -> standardised value), ``valence``, ``arousal``,
        ``valence_noiseless`` and ``label`` (``"happy"`` iff valence > 0).

    Notebook: notebooks/00_data.ipynb
    """
    z = {}
    for cue, (centre, scale) in SCALING.items():
        x = (1.0 if truth["mode"] == "major" else -1.0) if cue == "mode" else truth[cue]
        z[cue] = (x - centre) / scale
    signal = sum(WEIGHTS[c] * z[c] for c in WEIGHTS)
    valence = signal + NOISE_SD * noise_valence
    arousal = sum(AROUSAL_WEIGHTS[c] * z[c] for c in AROUSAL_WEIGHTS) + AROUSAL_NOISE_SD * noise_arousal
    return {"z": z, "valence": float(valence), "valence_noiseless": float(signal),
            "arousal": float(arousal), "label": "happy" if valence > 0 else "sad"}


# --------------------------------------------------------------------------- rendering


def reference_scores(clips: pd.DataFrame) -> pd.DataFrame:
    """What two classifiers that read the generator's truth score on ``clips``.

    ``mode alone`` calls every major clip Happy (a perfect key detector that
    ignores the other cues); ``Bayes`` calls a clip Happy when its noiseless
    valence is positive (every cue read perfectly: only the label noise is
    left). Together they bracket what a model of the audio can reach.

    Parameters
    ----------
    clips : pandas.DataFrame
        Rows of a synthetic ``clips.csv`` (``label``, ``mode``, ``valence_noiseless``).

    Returns
    -------
    pandas.DataFrame
        ``model, balanced_accuracy, n`` (two rows).

    Notebook: notebooks/02_vit.ipynb
    """
    # scikit-learn takes ~1.5 s to import; only this function needs it
    from sklearn.metrics import balanced_accuracy_score

    missing = {"label", "mode", "valence_noiseless"} - set(clips.columns)
    if missing:
        raise ParameterError(f"reference scores need the synthetic truth columns; missing {sorted(missing)}")
    happy = (clips["label"] == "happy").to_numpy()
    guesses = {"mode alone (truth)": (clips["mode"] == "major").to_numpy(),
               "Bayes: sign of noiseless valence (truth)": (clips["valence_noiseless"] > 0).to_numpy()}
    return pd.DataFrame([{"model": name, "balanced_accuracy": float(balanced_accuracy_score(happy, guess)),
                          "n": int(len(clips))} for name, guess in guesses.items()])


def bayes_p_happy(clips: pd.DataFrame) -> np.ndarray:
    """p(happy) of a reader that hears every cue perfectly: the label's own rule, only its noise unknown.

    The label is Happy when the noiseless valence plus ``NOISE_SD`` times a
    standard-normal draw is positive (:func:`latent`), so given the cues
    p(happy) = Phi(valence_noiseless / NOISE_SD). The reference a model's
    probabilities are held against where the generator's truth is known
    (the spread over transpositions, :func:`mer.carryover.transposition_spread`).

    Parameters
    ----------
    clips : pandas.DataFrame
        Rows of a synthetic ``clips.csv`` with ``valence_noiseless``.

    Returns
    -------
    np.ndarray, shape (n_clips,)

    Notebook: notebooks/02_vit.ipynb
    """
    if "valence_noiseless" not in clips:
        raise ParameterError("the Bayes reader needs the synthetic truth column valence_noiseless")
    # scipy.stats takes a moment to import; only this function of the module needs it
    from scipy.stats import norm

    return norm.cdf(clips["valence_noiseless"].to_numpy(dtype=float) / NOISE_SD)


def standardised_cues(clips: pd.DataFrame) -> pd.DataFrame:
    """The generator's cues of every clip on the scale of :data:`WEIGHTS`.

    The vectorised ``z`` of :func:`latent`: ``mode`` as +1 major / -1 minor,
    every other cue ``(value - centre) / scale`` (:data:`SCALING`).

    Parameters
    ----------
    clips : pandas.DataFrame, n_clips rows
        A synthetic ``clips.csv`` (its truth columns).

    Returns
    -------
    pandas.DataFrame, shape (n_clips, 6)
        One column per cue of :data:`WEIGHTS`, index of ``clips``.

    Notebook: notebooks/02_vit.ipynb
    """
    missing = set(WEIGHTS) - set(clips.columns)
    if missing:
        raise ParameterError(f"the clips have no synthetic truth columns {sorted(missing)}")
    z = {}
    for cue in WEIGHTS:
        centre, scale = SCALING[cue]
        if cue == "mode":
            x = clips["mode"].map({"major": 1.0, "minor": -1.0})
        else:
            x = pd.to_numeric(clips[cue], errors="coerce")
        z[cue] = (x - centre) / scale
    return pd.DataFrame(z, index=clips.index)


#: Fewest clips :func:`implied_weights` reads six weights and an intercept from.
MIN_IMPLIED_CLIPS = 3 * len(WEIGHTS)


def implied_weights(clips: pd.DataFrame, p_happy, *, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Which cues a model's decisions follow, against the generator's weights.

    The psychophysicist's decision weights, measured on a model: a logistic
    regression of the model's probability of Happy on the six standardised
    cues (:func:`standardised_cues`), with the probabilities as soft targets
    (each clip enters as Happy with weight ``p`` and as Sad with weight
    ``1 - p``: a fractional logistic regression, practically unpenalised).
    The coefficients are divided by the mode's so they read on the scale of
    :data:`WEIGHTS` (mode = 1). The same fit on the generator's own labels
    gives back its weights (tested), so a model that decided like the
    generator would too; a cue the model cannot hear comes out near 0.
    It is a first-order reading of a non-linear model; ``attrs["agreement"]``
    says how much of it the reading captures. Intervals: 95 % percentile
    bootstrap over clips.

    Parameters
    ----------
    clips : pandas.DataFrame, n_clips rows
        Synthetic clips (truth columns), in the order of ``p_happy``.
    p_happy : array, shape (n_clips,)
        The model's probability of Happy per clip.
    n_bootstrap : int
    seed : int

    Returns
    -------
    pandas.DataFrame
        ``cue, true_weight, implied_weight, ci_low, ci_high`` (six rows, the
        order of :data:`WEIGHTS`); ``attrs["n"]`` the clips used,
        ``attrs["agreement"]`` the share of clips on which the fitted
        logistic model and the model take the same side of 0.5.

    Notebook: notebooks/02_vit.ipynb
    """
    # scikit-learn takes ~1.5 s to import; only this function needs it
    from sklearn.linear_model import LogisticRegression

    z = standardised_cues(clips)
    p = np.asarray(p_happy, dtype=float).reshape(-1)
    if len(p) != len(z):
        raise ParameterError(f"{len(p)} probabilities for {len(z)} clips")
    ok = z.notna().all(axis=1).to_numpy() & np.isfinite(p)
    if ok.sum() < MIN_IMPLIED_CLIPS:
        raise ParameterError(f"implied weights need at least {MIN_IMPLIED_CLIPS} clips with every cue, "
                             f"got {int(ok.sum())}")
    x, p = z.to_numpy()[ok], np.clip(p[ok], 0.0, 1.0)
    n = len(p)

    def fit(rows):
        # sklearn has no soft-label loss; two weighted copies of each clip are the same likelihood.
        model = LogisticRegression(C=1e4, max_iter=5000)
        model.fit(np.vstack([x[rows], x[rows]]), np.r_[np.ones(len(rows)), np.zeros(len(rows))],
                  sample_weight=np.r_[p[rows], 1 - p[rows]])
        return model

    every = np.arange(n)
    model = fit(every)
    point = model.coef_[0] / model.coef_[0][0]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_bootstrap):
        coef = fit(rng.integers(0, n, n)).coef_[0]
        draws.append(coef / coef[0])
    low, high = np.percentile(np.asarray(draws), [2.5, 97.5], axis=0) if draws else (point * np.nan,) * 2
    table = pd.DataFrame({"cue": list(WEIGHTS), "true_weight": [WEIGHTS[c] for c in WEIGHTS],
                          "implied_weight": point, "ci_low": low, "ci_high": high})
    agreement = float(np.mean((model.decision_function(x) > 0) == (p > 0.5)))
    table.attrs.update(n=int(n), agreement=agreement)
    return table


def accuracy_by_evidence(clips: pd.DataFrame, predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Accuracy of several models on clips whose mode sounds throughout vs in a window only.

    Parameters
    ----------
    clips : pandas.DataFrame
        Synthetic clips (``clip_id``, ``label``, ``windowed``).
    predictions : dict of str -> pandas.DataFrame
        Model name -> ``clip_id, p_happy`` (Happy when ``p_happy > 0.5``).

    Returns
    -------
    pandas.DataFrame
        Index ``mode throughout`` / ``mode in a window only``; one accuracy
        column per model and ``n`` (clips of that kind the models share).

    Notebook: notebooks/02_vit.ipynb
    """
    if "windowed" not in clips:
        raise ParameterError("the clips have no 'windowed' column (synthetic set only)")
    truth = clips.set_index("clip_id")
    shared = set(truth.index)
    for frame in predictions.values():
        shared &= set(frame["clip_id"])
    ids = [i for i in truth.index if i in shared]
    kind = truth.loc[ids, "windowed"].astype(bool).map(
        {False: "mode throughout", True: "mode in a window only"})
    happy = truth.loc[ids, "label"] == "happy"
    table = pd.DataFrame({name: ((frame.set_index("clip_id").loc[ids, "p_happy"] > 0.5) == happy).groupby(kind).mean()
                          for name, frame in predictions.items()})
    table["n"] = kind.value_counts()
    table.index.name = "clips"
    return table.reindex([k for k in ("mode throughout", "mode in a window only") if k in table.index])


def soundfont_path(soundfont: str = "FluidR3_GM") -> Path:
    """Path of a known SoundFont, checked to exist.

    Parameters
    ----------
    soundfont : {"FluidR3_GM", "TimGM6mb", "OPL3_FM", "MuseScore_General"}
        A key of :data:`SOUNDFONTS` (module docstring: which and why).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ParameterError
        If the name is unknown.
    SoundFontError
        If the file is missing (the message names the Debian package).

    Notebook: notebooks/00_data.ipynb
    """
    if soundfont not in SOUNDFONTS:
        raise ParameterError(f"unknown soundfont {soundfont!r}; expected one of {sorted(SOUNDFONTS)}")
    path, package = SOUNDFONTS[soundfont]
    if path is None:
        path = os.path.join(pretty_midi.__path__[0], "TimGM6mb.sf2")
        package = "pip package pretty_midi"
    if not os.path.exists(path):
        raise SoundFontError(
            f"SoundFont {soundfont!r} not found at {path}; it is provided by the Debian package "
            f"{package!r} (`sudo apt-get install {package}`), which `make` installs")
    return Path(path)


def _float_samples(synth, n_frames: int) -> np.ndarray:
    """``n_frames`` stereo frames from FluidSynth's float output, shape (n_frames, 2).

    Written by hand instead of pyfluidsynth's ``get_samples``, which calls
    ``fluid_synth_write_s16``: that adds dither drawn from a table FluidSynth
    fills from the C library's ``rand()`` when the process creates its first
    synthesizer, so the bytes of a clip depended on what the process had done
    before (seen: a clip rendered in the test process differed from the same
    clip rendered in a fresh worker). The float output has no dither.
    """

    import fluidsynth  # needs the system's libfluidsynth; only rendering needs it

    write = fluidsynth._fl.fluid_synth_write_float
    write.restype = ctypes.c_int
    write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                      ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    buffer = np.zeros((n_frames, 2), dtype=np.float32)
    pointer = buffer.ctypes.data_as(ctypes.c_void_p)
    if write(synth.synth, n_frames, pointer, 0, 2, pointer, 1, 2) != 0:
        raise MerError(f"FluidSynth failed to render {n_frames} frames")
    return buffer


def render(pm, *, soundfont: str = "FluidR3_GM") -> np.ndarray:
    """Render a composed clip to audio with FluidSynth.

    Parameters
    ----------
    pm : pretty_midi.PrettyMIDI
        From :func:`compose` (at most 15 melodic instruments and drums).
    soundfont : str
        A key of :data:`SOUNDFONTS`.

    Returns
    -------
    y : np.ndarray, shape (220500,), float32
        10 s at 22 050 Hz, the mean of FluidSynth's two stereo channels, times
        the SoundFont's fixed gain (:data:`GAINS`), scaled down only if the
        peak would exceed 0.99, with a 30 ms fade-out at the end.

    Notebook: notebooks/00_data.ipynb
    """
    import fluidsynth  # needs the system's libfluidsynth; only rendering needs it

    path = soundfont_path(soundfont)
    # A fresh synthesizer per clip: a reused one keeps voices and effect state
    # from the previous clip, so the output would depend on rendering order.
    # Dynamic sample loading reads only the samples of the programmes used,
    # which makes a fresh FluidR3_GM synthesizer cost ~20 ms instead of ~200.
    synth = fluidsynth.Synth(samplerate=float(SR), **{"synth.dynamic-sample-loading": 1})
    try:
        sfid = synth.sfload(str(path))
        # Written by hand instead of pretty_midi.PrettyMIDI.fluidsynth, which
        # plays one instrument at a time (each with a 1 s tail and its own
        # reverb pass) and keeps only the left channel: one pass with every
        # instrument on its own channel is about twice as fast, keeps both
        # stereo channels and stops at exactly 10 s.
        events = []
        melodic = iter(c for c in range(16) if c != 9)
        for inst in pm.instruments:
            channel = 9 if inst.is_drum else next(melodic)
            synth.program_select(channel, sfid, 128 if inst.is_drum else 0, inst.program)
            for note in inst.notes:
                events.append((int(round(note.start * SR)), 1, channel, note.pitch, note.velocity))
                events.append((int(round(note.end * SR)), 0, channel, note.pitch, 0))
        events.sort()  # by time, note-offs before note-ons at the same sample
        blocks, position = [], 0
        for sample, is_on, channel, pitch, velocity in events:
            sample = min(sample, N_SAMPLES)
            if sample > position:
                blocks.append(_float_samples(synth, sample - position))
                position = sample
            if is_on:
                synth.noteon(channel, pitch, velocity)
            else:
                synth.noteoff(channel, pitch)
        if position < N_SAMPLES:
            blocks.append(_float_samples(synth, N_SAMPLES - position))
    finally:
        synth.delete()
    stereo = np.concatenate(blocks).astype(np.float64)
    y = stereo.mean(axis=1) * GAINS[soundfont]
    peak = float(np.abs(y).max())
    if peak > PEAK:
        y *= PEAK / peak
    fade = int(0.03 * SR)
    y[-fade:] *= np.linspace(1.0, 0.0, fade)
    return y.astype(np.float32)


# --------------------------------------------------------------------------- one clip on disk


def _compose_shifted(params: dict[str, Any]):
    """:func:`compose`, then every pitched note moved by ``params["shift"]`` semitones if given
    (the literal transposition of one score, :func:`load_transpositions`)."""
    pm, truth = compose(params)
    shift = int(params.get("shift", 0))
    if not shift:
        return pm, truth
    for inst in pm.instruments:
        if not inst.is_drum:
            for note in inst.notes:
                note.pitch += shift
    tonic = (truth["tonic"] + shift) % 12

    def moved(label: str) -> str:
        root, _, rest = label.partition(":")
        return f"{PITCH_CLASSES[(PITCH_CLASSES.index(root) + shift) % 12]}:{rest}"

    truth.update(tonic=tonic, transpose=tonic, register=truth["register"] + shift,
                 key=moved(truth["key"]), chords=[[a, b, moved(c)] for a, b, c in truth["chords"]])
    return pm, truth


def _make_clip(*, clip_id: str, params: dict[str, Any], root: str, soundfont: str,
               twin: bool) -> dict[str, Any]:
    """Compose, render and write one clip; return its row of ``clips``."""

    root = Path(root)
    tonal_writing = params.get("writing") == "tonal"
    soundfont = params["soundfont"] if tonal_writing else soundfont
    pm, truth = _compose_shifted(params)
    y = render(pm, soundfont=soundfont)
    soundfile.write(root / "audio" / f"{clip_id}.flac", y, SR, subtype="PCM_16")
    pm.write(str(root / "midi" / f"{clip_id}.mid"))
    labels = latent(truth, noise_valence=params["noise_valence"], noise_arousal=params["noise_arousal"])
    if twin:
        # Probe clip: the label is the mode of the window, by design; the
        # valence model does not apply (every other cue is neutral).
        labels.update(label="happy" if truth["mode"] == "major" else "sad", valence=float("nan"),
                      arousal=float("nan"), valence_noiseless=float("nan"))
    row = {
        "clip_id": clip_id,
        "path": f"audio/{clip_id}.flac",
        "label": labels["label"],
        "valence": labels["valence"],
        "arousal": labels["arousal"],
        "midi_path": f"midi/{clip_id}.mid",
        "truth_path": f"truth/{clip_id}.json",
        "mode": truth["mode"],
        "tonic": truth["tonic"],
        "tempo_bpm": truth["tempo_bpm"],
        "register": truth["register"],
        "articulation": truth["articulation"],
        "velocity": truth["velocity"],
        "brightness": truth["brightness"],
        "transpose": truth["transpose"],
        "program_melody": params["program_melody"],
        "program_chords": params["program_chords"],
        "voicing": params["voicing"],
        "windowed": truth["windowed"],
        "window_start_s": truth["window_start_s"],
        "window_end_s": truth["window_end_s"],
        "valence_noiseless": labels["valence_noiseless"],
        "peak": float(np.abs(y).max()),
    }
    if tonal_writing:
        row.update(texture=truth["texture"], soundfont=soundfont, drums=truth["drums"],
                   accomp_register=truth["accomp_register"], harmonic_rhythm=params["harmonic_rhythm"],
                   n_cadences=len(truth["cadences"]))
        if "shift" in params:
            row.update(score=params["score"], shift=params["shift"])
    if twin:
        twin_params = {**params, "window_evidence": False}
        pm_twin, _ = _compose_shifted(twin_params)
        y_twin = render(pm_twin, soundfont=soundfont)
        soundfile.write(root / "audio_no_window" / f"{clip_id}.flac", y_twin, SR, subtype="PCM_16")
        pm_twin.write(str(root / "midi_no_window" / f"{clip_id}.mid"))
        row["path_no_window"] = f"audio_no_window/{clip_id}.flac"
        row["midi_path_no_window"] = f"midi_no_window/{clip_id}.mid"
    record = {"clip_id": clip_id, **truth, **labels, "params": params}
    # Strict JSON: NaN (no window, probe valence) is written as null.
    record = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
    (root / "truth" / f"{clip_id}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return row


# --------------------------------------------------------------------------- datasets


def _check_unknown(unknown: dict[str, Any], *, known: tuple[str, ...], name: str) -> None:
    # Explicit, so a misspelt option from a profile or the command line is an
    # error that names the options, not a silently ignored keyword.
    if unknown:
        raise ParameterError(f"unknown option(s) {sorted(unknown)} for dataset {name!r}; "
                             f"expected some of {list(known)}")


def _check_options(*, n_clips, soundfont, seed, n_jobs, window_share=0.0, max_transpose=0) -> None:
    if not isinstance(n_clips, (int, np.integer)) or isinstance(n_clips, bool) or n_clips < 8:
        raise ParameterError(f"n_clips must be an integer >= 8, got {n_clips!r}")
    if soundfont not in SOUNDFONTS:
        raise ParameterError(f"unknown soundfont {soundfont!r}; expected one of {sorted(SOUNDFONTS)}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ParameterError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}")
    if not 0.0 <= float(window_share) <= 1.0:
        raise ParameterError(f"window_share must be in [0, 1], got {window_share!r}")
    if (not isinstance(max_transpose, (int, np.integer)) or isinstance(max_transpose, bool)
            or not 0 <= max_transpose <= 6):
        raise ParameterError(f"max_transpose must be an integer in 0..6 (semitones), got {max_transpose!r}")


def _split(labels: pd.Series, *, strata: pd.Series, seed: int) -> list[str]:
    """Stratified train/val/test split by ``strata``, seeded (60/15/25)."""
    rng = np.random.default_rng([seed, 7])
    split = np.empty(len(labels), dtype=object)
    for value in sorted(strata.unique()):
        idx = np.flatnonzero((strata == value).to_numpy())
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(SPLIT_SHARES["test"] * len(idx)))
        n_val = int(round(SPLIT_SHARES["val"] * len(idx)))
        split[idx[:n_test]] = "test"
        split[idx[n_test:n_test + n_val]] = "val"
        split[idx[n_test + n_val:]] = "train"
    return list(split)


def _generator_info(*, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "generator_version": GENERATOR_VERSION,
        "options": options,
        "sample_rate": SR,
        "duration_s": DURATION,
        "weights": WEIGHTS,
        "noise_sd": NOISE_SD,
        "scaling": {c: {"centre": m, "scale": s} for c, (m, s) in SCALING.items()},
        "ranges": {**{c: list(r) for c, r in RANGES.items()}, "brightness": list(BRIGHTNESS_LEVELS),
                   "mode": ["minor", "major"]},
        "arousal_weights": AROUSAL_WEIGHTS,
        "arousal_noise_sd": AROUSAL_NOISE_SD,
        "label_rule": "valence = sum_c weights[c] * (x_c - centre_c) / scale_c + noise_sd * N(0, 1), "
                      "mode as +1 major / -1 minor; label = 'happy' iff valence > 0",
        "nuisances": ["transpose", "program_melody", "program_chords", "voicing", "progression",
                      "melody notes and rhythm"],
        "programs": {part: {str(k): list(v) for k, v in d.items()} for part, d in PROGRAMS.items()},
        "bass_program": BASS_PROGRAM,
        "chord_floor_midi": CHORD_FLOOR,
        "window_s": list(WINDOW_S),
        "neutral": NEUTRAL,
        "split_shares": SPLIT_SHARES,
        **({"soundfont_gain": GAINS[options["soundfont"]]} if "soundfont" in options else _tonal_info(options)),
    }


def _tonal_info(options: dict[str, Any]) -> dict[str, Any]:
    """What the tonal writing draws, for ``generator.json`` (module docstring, "Tonal writing")."""
    return {
        "writing": "tonal",
        "soundfont_gain": {sf: GAINS[sf] for sf in options["soundfonts"]},
        "textures": list(options["textures"]),
        "heldout_soundfont": HELDOUT_SOUNDFONT,
        "heldout_texture": HELDOUT_TEXTURE,
        "drum_textures": list(tonal.DRUM_TEXTURES),
        "drum_share": tonal.DRUM_SHARE,
        "accomp_floors_midi": tonal.ACCOMP_FLOORS,
        "harmonic_rhythms_beats": list(tonal.HARMONIC_RHYTHMS),
        "cadence_p": dict(zip(tonal.CADENCE_TYPES, tonal.CADENCE_P)),
        "transitions": tonal.TRANSITIONS,
        "numerals": {mode: {k: list(v) for k, v in table.items()} for mode, table in tonal.NUMERALS.items()},
        "tonics": "all twelve, uniform",
    }


def _default_dir(kind: str, options: dict[str, Any]) -> Path:
    key = store.hash_params({"kind": kind, "version": GENERATOR_VERSION, **options}, length=8)
    if options.get("writing") == "tonal":
        prefix = {"synth": "tonal", "synth_probe": "tonal-probe", "synth_transpositions": "tonal-keys",
                  "synth_heldout": f"tonal-heldout-{options.get('heldout')}"}[kind]
        return store.data_dir() / "synth" / f"{prefix}-n{options['n_clips']}-s{options['seed']}-{key}"
    prefix = "probe-" if kind == "synth_probe" else ""  # both sets live under data/synth/
    return store.data_dir() / "synth" / f"{prefix}{options['soundfont']}-n{options['n_clips']}-s{options['seed']}-{key}"


def _read(root: Path, *, name: str) -> Dataset:
    clips = pd.read_csv(root / "clips.csv", dtype={"clip_id": str})
    for column in ("path", "midi_path", "truth_path", "path_no_window", "midi_path_no_window"):
        if column in clips:
            clips[column] = [str(root / p) for p in clips[column]]
    clips["windowed"] = clips["windowed"].astype(bool)
    info = json.loads((root / "generator.json").read_text())
    return Dataset(name=name, clips=clips, root=root, info=info)


def _generate(root: Path, *, kind: str, options: dict[str, Any], jobs: list[dict[str, Any]],
              n_jobs: int, twin: bool) -> None:
    """Render ``jobs`` into a temporary folder beside ``root``, then rename it."""

    for soundfont in options.get("soundfonts", [options.get("soundfont")]):
        soundfont_path(soundfont)  # fail early, before any worker starts
    with store.atomic_dir(root, what=f"{kind} dataset") as tmp:
        folders = ["audio", "midi", "truth"] + (["audio_no_window", "midi_no_window"] if twin else [])
        for folder in folders:
            (tmp / folder).mkdir()
        started = time.perf_counter()
        fonts = options.get("soundfont") or "+".join(options["soundfonts"])
        tasks = (delayed(_make_clip)(clip_id=job["clip_id"], params=job["params"], root=str(tmp),
                                     soundfont=options.get("soundfont"), twin=twin) for job in jobs)
        rows = list(tqdm(Parallel(n_jobs=n_jobs, return_as="generator", batch_size=4)(tasks),
                         total=len(jobs), desc=f"rendering {kind} ({fonts})"))
        seconds = time.perf_counter() - started
        clips = pd.DataFrame(rows)
        strata = clips["label"] + "/" + clips["windowed"].astype(str)
        # Held-out and transposition sets are test sets as a whole.
        split = ["test"] * len(clips) if kind in ("synth_heldout", "synth_transpositions") \
            else _split(clips["label"], strata=strata, seed=options["seed"])
        clips.insert(5, "split", split)
        clips.insert(6, "source", kind)
        info = _generator_info(kind=kind, options=options)
        info["n_happy"] = int((clips["label"] == "happy").sum())
        info["n_sad"] = int((clips["label"] == "sad").sum())
        info["mode_agreement"] = float(((clips["mode"] == "major") == (clips["label"] == "happy")).mean())
        bayes = (clips["valence_noiseless"] > 0) == (clips["label"] == "happy")
        info["oracle_accuracy"] = None if twin else float(bayes.mean())  # probe labels are the mode
        info["n_windowed"] = int(clips["windowed"].sum())
        info["render_seconds"] = round(seconds, 1)  # informative only, not used by readers of the data
        store.write_csv(tmp / "clips.csv", clips)
        store.write_json(tmp / "generator.json", info)
    log.info("%s: %d clips rendered in %.1f s into %s", kind, len(jobs), seconds, root)


def _open(root: Path | None, *, kind: str, options: dict[str, Any], jobs_fn, n_jobs: int,
          twin: bool) -> Dataset:
    root = Path(root) if root is not None else _default_dir(kind, options)
    if not (root / "COMPLETE").exists():
        _generate(root, kind=kind, options=options, jobs=jobs_fn(), n_jobs=n_jobs, twin=twin)
    dataset = _read(root, name=kind)
    stored = dataset.info.get("options")
    if stored != options or dataset.info.get("generator_version") != GENERATOR_VERSION:
        raise ParameterError(f"{root} holds a {kind} dataset generated with {stored} "
                             f"(generator version {dataset.info.get('generator_version')}), not with "
                             f"{options} (version {GENERATOR_VERSION}); pass another data_dir")
    return dataset


def load(data_dir: str | Path | None = None, *, n_clips: int = 480, soundfont: str | None = None,
         seed: int = 0, n_jobs: int = 2, window_share: float = 0.25, max_transpose: int = 0,
         writing: str = "classic", soundfonts: tuple[str, ...] | None = None,
         textures: tuple[str, ...] | None = None, **unknown: Any) -> Dataset:
    """Load the synthetic dataset, generating it on first use.

    Parameters
    ----------
    data_dir : str or Path, optional
        The dataset folder. ``None``: ``data/synth/<soundfont>-n<N>-s<seed>-<hash>``
        (the hash covers these options and :data:`GENERATOR_VERSION`).
    n_clips : int
        Number of clips (>= 8).
    soundfont : str, optional
        Classic writing: the SoundFont, FluidR3_GM (default, the book) or
        the small TimGM6mb (quick runs and tests). Tonal writing: shorthand
        for ``soundfonts=(soundfont,)``.
    seed : int
        Seed of everything (cues, nuisances, notes, noise, split).
    n_jobs : int
        Rendering processes (joblib).
    window_share : float
        Share of clips whose mode evidence is confined to a window.
    max_transpose : int
        Keys drawn from ``-max_transpose .. +max_transpose`` semitones around
        C; 0 (default) keeps every clip in C major or C minor (module
        docstring: why). Classic writing only.
    writing : {"classic", "tonal"}
        ``"classic"`` (default): the clips the book is built on, byte for byte
        as before the tonal writing existed. ``"tonal"``: keys over all
        twelve tonics, a harmonic grammar with cadences, a texture and a
        SoundFont drawn per clip (module docstring, "Tonal writing").
    soundfonts : tuple of str, optional
        Tonal writing: the SoundFonts drawn from; default
        :data:`TRAIN_SOUNDFONTS` (all but :data:`HELDOUT_SOUNDFONT`).
    textures : tuple of str, optional
        Tonal writing: the textures drawn from; default
        :data:`TRAIN_TEXTURES` (all but :data:`HELDOUT_TEXTURE`).

    Returns
    -------
    Dataset
        ``clips`` has the common columns and the synth extras (cues, nuisances,
        window, ``midi_path``, ``truth_path``); ``info`` is ``generator.json``.

    Raises
    ------
    ParameterError
        For an unknown option, a bad option value, or a ``data_dir`` holding
        another dataset.
    SoundFontError
        If the SoundFont is not installed.

    Notebook: notebooks/00_data.ipynb (the Data page) and every chapter.
    """
    _check_unknown(unknown, known=("n_clips", "soundfont", "seed", "n_jobs", "window_share", "max_transpose",
                                   "writing", "soundfonts", "textures"), name="synth")
    if _writing(writing, soundfonts=soundfonts, textures=textures, max_transpose=max_transpose) == "tonal":
        return _load_tonal(data_dir, kind="synth", n_clips=n_clips, seed=seed, n_jobs=n_jobs,
                           window_share=window_share, soundfonts=_tonal_soundfonts(soundfont, soundfonts),
                           textures=TRAIN_TEXTURES if textures is None else textures)
    soundfont = "FluidR3_GM" if soundfont is None else soundfont
    _check_options(n_clips=n_clips, soundfont=soundfont, seed=seed, n_jobs=n_jobs, window_share=window_share,
                   max_transpose=max_transpose)
    options = {"n_clips": int(n_clips), "soundfont": soundfont, "seed": int(seed),
               "window_share": float(window_share), "max_transpose": int(max_transpose)}

    def jobs():
        # Which clips are windowed: an exact share, seeded; each clip then has
        # its own generator, so no clip depends on another or on process order.
        n_windowed = int(round(window_share * n_clips))
        windowed = np.zeros(n_clips, dtype=bool)
        windowed[np.random.default_rng([seed, 1]).permutation(n_clips)[:n_windowed]] = True
        return [{"clip_id": f"synth-{i:04d}",
                 "params": sample_params(rng=np.random.default_rng([seed, 0, i]), windowed=bool(windowed[i]),
                                        max_transpose=max_transpose)}
                for i in range(n_clips)]

    return _open(data_dir, kind="synth", options=options, jobs_fn=jobs, n_jobs=n_jobs, twin=False)


def load_probe(data_dir: str | Path | None = None, *, n_clips: int = 60, soundfont: str | None = None,
               seed: int = 0, n_jobs: int = 2, max_transpose: int = 0, writing: str = "classic",
               soundfonts: tuple[str, ...] | None = None, textures: tuple[str, ...] | None = None,
               **unknown: Any) -> Dataset:
    """Load the probe set, generating it on first use.

    Parameters
    ----------
    data_dir : str or Path, optional
        The dataset folder; ``None``: ``data/synth/probe-<soundfont>-n<N>-s<seed>-<hash>``.
    n_clips : int
        Number of probe clips (>= 8), half major, half minor.
    soundfont : str, optional
    seed : int
    n_jobs : int
    max_transpose, writing, soundfonts, textures
        As in :func:`load`. In the tonal writing the window holds the mode's
        chord with its third or a V(7)-I cadence, in the clip's texture (a
        solo line states the chord itself).

    Returns
    -------
    Dataset
        As :func:`load`, plus ``path_no_window`` and ``midi_path_no_window``:
        the same clip with the window's thirds replaced by open fifths.
        ``label`` is the mode of the window (major = happy).

    Notebook: notebooks/03_lrp.ipynb
    """
    _check_unknown(unknown, known=("n_clips", "soundfont", "seed", "n_jobs", "max_transpose", "writing",
                                   "soundfonts", "textures"), name="synth_probe")
    if _writing(writing, soundfonts=soundfonts, textures=textures, max_transpose=max_transpose) == "tonal":
        return _load_tonal(data_dir, kind="synth_probe", n_clips=n_clips, seed=seed, n_jobs=n_jobs,
                           window_share=1.0, soundfonts=_tonal_soundfonts(soundfont, soundfonts),
                           textures=TRAIN_TEXTURES if textures is None else textures)
    soundfont = "FluidR3_GM" if soundfont is None else soundfont
    _check_options(n_clips=n_clips, soundfont=soundfont, seed=seed, n_jobs=n_jobs, max_transpose=max_transpose)
    options = {"n_clips": int(n_clips), "soundfont": soundfont, "seed": int(seed),
               "max_transpose": int(max_transpose)}

    def jobs():
        return [{"clip_id": f"probe-{i:04d}",
                 "params": probe_params(rng=np.random.default_rng([seed, 2, i]),
                                        mode="major" if i % 2 == 0 else "minor", max_transpose=max_transpose)}
                for i in range(n_clips)]

    return _open(data_dir, kind="synth_probe", options=options, jobs_fn=jobs, n_jobs=n_jobs, twin=True)


# --------------------------------------------------------------------------- the tonal writing's sets

#: Streams of the clips' generators per set, so no two sets share a clip's draws.
_STREAMS = {"synth": 10, "synth_probe": 12, "heldout-soundfont": 13, "heldout-texture": 14,
            "synth_transpositions": 15, "heldout-neutral": 16, "heldout-keys": 17}
#: Semitones by which :func:`load_transpositions` moves a score written in C.
SHIFTS = tuple(range(-5, 7))


def _writing(writing, *, soundfonts, textures, max_transpose) -> str:
    if writing not in WRITINGS:
        raise ParameterError(f"writing must be one of {list(WRITINGS)}, got {writing!r}")
    if writing == "classic" and (soundfonts is not None or textures is not None):
        raise ParameterError("soundfonts and textures choose what the tonal writing draws; "
                             "pass writing='tonal' (the classic writing has one soundfont and no textures)")
    if writing == "tonal" and max_transpose != 0:
        raise ParameterError(f"max_transpose={max_transpose!r} is for the classic writing; the tonal writing "
                             "draws the tonic from all twelve keys")
    return writing


def _tonal_soundfonts(soundfont, soundfonts) -> tuple[str, ...]:
    if soundfont is not None and soundfonts is not None:
        raise ParameterError(f"pass soundfont={soundfont!r} or soundfonts={soundfonts!r}, not both")
    if soundfonts is None:
        return TRAIN_SOUNDFONTS if soundfont is None else (soundfont,)
    return soundfonts


def _load_tonal(data_dir, *, kind: str, n_clips: int, seed: int, n_jobs: int, window_share: float,
                soundfonts, textures, heldout: str | None = None) -> Dataset:
    """:func:`load` / :func:`load_probe` / :func:`load_heldout` with ``writing="tonal"``."""
    soundfonts = tonal.check_choices(soundfonts, known=tuple(SOUNDFONTS), name="soundfonts")
    textures = tonal.check_choices(textures, known=TEXTURES, name="textures")
    _check_options(n_clips=n_clips, soundfont=soundfonts[0], seed=seed, n_jobs=n_jobs, window_share=window_share)
    options = {"writing": "tonal", "tonal_version": tonal.TONAL_VERSION, "n_clips": int(n_clips),
               "seed": int(seed), "window_share": float(window_share), "soundfonts": list(soundfonts),
               "textures": list(textures)}
    if heldout:
        options["heldout"] = heldout
    stream = _STREAMS[f"heldout-{heldout}" if heldout else kind]
    probe = kind == "synth_probe"

    def jobs():
        n_windowed = int(round(window_share * n_clips))
        windowed = np.zeros(n_clips, dtype=bool)
        windowed[np.random.default_rng([seed, stream, 1]).permutation(n_clips)[:n_windowed]] = True
        out = []
        for i in range(n_clips):
            rng = np.random.default_rng([seed, stream, 0, i])
            if probe or heldout == "neutral":
                params = probe_params(rng=rng, mode="major" if i % 2 == 0 else "minor", writing="tonal",
                                      textures=textures, soundfonts=soundfonts, windowed=probe)
            else:
                params = sample_params(rng=rng, windowed=bool(windowed[i]), writing="tonal", textures=textures,
                                       soundfonts=soundfonts)
            out.append({"clip_id": f"{'probe' if probe else 'tonal'}-{i:04d}", "params": params})
        return out

    return _open(data_dir, kind=kind, options=options, jobs_fn=jobs, n_jobs=n_jobs, twin=probe)


def load_heldout(data_dir: str | Path | None = None, *, kind: str = "soundfont", n_clips: int = 240,
                 seed: int = 0, n_jobs: int = 2, window_share: float = 0.0) -> Dataset:
    """A test set of the tonal writing in what no training set draws: one SoundFont or one texture.

    Parameters
    ----------
    data_dir : str or Path, optional
        ``None``: ``data/synth/tonal-heldout-<kind>-n<N>-s<seed>-<hash>``.
    kind : {"soundfont", "texture", "neutral", "keys"}
        ``"soundfont"``: every clip played with :data:`HELDOUT_SOUNDFONT`,
        textures drawn from :data:`TRAIN_TEXTURES`. ``"texture"``: every
        clip in :data:`HELDOUT_TEXTURE`, SoundFonts drawn from
        :data:`TRAIN_SOUNDFONTS`. ``"neutral"``: training SoundFonts and
        textures, every cue but the mode held at :data:`NEUTRAL` and no label
        noise, half major, half minor (the mode-ranking check: only the mode
        tells them apart). ``"keys"``: training SoundFonts and textures, cues
        drawn as in :func:`load`: fresh clips of the training distribution
        in all twelve keys, for a model trained on another set (the classic
        writing in C) to be scored key by key.
    n_clips, seed, n_jobs, window_share
        As in :func:`load`; the clips' generators are a stream of their own,
        so no held-out clip repeats a training clip's draws.

    Returns
    -------
    Dataset
        As :func:`load` with ``writing="tonal"``; ``split`` is ``"test"``
        for every clip.

    Notebook: notebooks/02_vit.ipynb (generalisation to unseen timbre and texture)
    """
    if kind == "soundfont":
        soundfonts, textures = (HELDOUT_SOUNDFONT,), TRAIN_TEXTURES
    elif kind == "texture":
        soundfonts, textures = TRAIN_SOUNDFONTS, (HELDOUT_TEXTURE,)
    elif kind in ("neutral", "keys"):
        soundfonts, textures = TRAIN_SOUNDFONTS, TRAIN_TEXTURES
    else:
        raise ParameterError(f"kind must be one of 'soundfont', 'texture', 'neutral', 'keys', got {kind!r}")
    return _load_tonal(data_dir, kind="synth_heldout", n_clips=n_clips, seed=seed, n_jobs=n_jobs,
                       window_share=window_share, soundfonts=soundfonts, textures=textures, heldout=kind)


def load_transpositions(data_dir: str | Path | None = None, *, n_scores: int = 8, soundfont: str = "FluidR3_GM",
                        seed: int = 0, n_jobs: int = 2, textures: tuple[str, ...] | None = None) -> Dataset:
    """Scores of the tonal writing, each rendered in all twelve keys (the key-invariance check).

    Each score is composed in C (major or minor, cues, texture drawn as in
    :func:`load`, no window) and every pitched note is then moved by each of
    :data:`SHIFTS` (-5 .. +6 semitones): the same notes, rhythm and
    instruments in twelve keys. The realised ``register`` moves with the
    shift (up to 6 semitones, 0.65 on the valence scale), so ``label`` and
    ``valence`` are recomputed from the realised cues as everywhere else; a
    key-invariance check compares a model's outputs across the twelve
    versions of one ``score`` (and may regress out ``register``).

    Parameters
    ----------
    data_dir : str or Path, optional
        ``None``: ``data/synth/tonal-keys-n<12 n_scores>-s<seed>-<hash>``.
    n_scores : int
        Number of scores (>= 1); the set has ``12 * n_scores`` clips.
    soundfont : str
        One SoundFont for every version.
    seed, n_jobs, textures
        As in :func:`load`.

    Returns
    -------
    Dataset
        As :func:`load` with ``writing="tonal"``, plus ``score`` (which
        score) and ``shift`` (semitones from C); ``split`` is ``"test"``.

    Notebook: notebooks/02_vit.ipynb (key invariance)
    """
    if not isinstance(n_scores, (int, np.integer)) or isinstance(n_scores, bool) or n_scores < 1:
        raise ParameterError(f"n_scores must be a positive integer, got {n_scores!r}")
    textures = tonal.check_choices(TRAIN_TEXTURES if textures is None else textures, known=TEXTURES,
                                   name="textures")
    soundfonts = tonal.check_choices(soundfont, known=tuple(SOUNDFONTS), name="soundfont")
    n_clips = 12 * int(n_scores)
    _check_options(n_clips=max(n_clips, 8), soundfont=soundfont, seed=seed, n_jobs=n_jobs)
    options = {"writing": "tonal", "tonal_version": tonal.TONAL_VERSION, "n_clips": n_clips, "seed": int(seed),
               "soundfonts": list(soundfonts), "textures": list(textures), "shifts": list(SHIFTS)}

    def jobs():
        out = []
        for k in range(int(n_scores)):
            params = sample_params(rng=np.random.default_rng([seed, _STREAMS["synth_transpositions"], 0, k]),
                                   writing="tonal", textures=textures, soundfonts=soundfonts)
            params["transpose"] = 0
            for shift in SHIFTS:
                out.append({"clip_id": f"keys-{k:03d}-{shift % 12:02d}",
                            "params": {**params, "score": k, "shift": shift}})
        return out

    return _open(data_dir, kind="synth_transpositions", options=options, jobs_fn=jobs, n_jobs=n_jobs, twin=False)


def load_in_keys(dataset: Dataset, clip_ids, *, keys=range(-5, 7), data_dir: str | Path | None = None,
                        n_jobs: int = 2) -> Dataset:
    """The same scores of the classic writing rendered in several keys: a check of key invariance.

    Each clip of ``dataset`` named in ``clip_ids`` is composed again from its
    stored parameters (``truth/<clip_id>.json``) with ``transpose`` set to
    each of ``keys`` and rendered with the dataset's SoundFont; nothing else
    changes (same notes relative to the tonic, instruments, tempo, label). So
    a model whose p(happy) moves across one score's rows is reading the key.

    Parameters
    ----------
    dataset : Dataset
        A synthetic dataset (:func:`load`).
    clip_ids : iterable of str
    keys : iterable of int
        Transpositions in semitones from C (default -5..+6: the twelve keys).
    data_dir : path, optional
        Default ``data/synth/transposed-<hash>`` of the source folder, the ids and the keys.
    n_jobs : int

    Returns
    -------
    Dataset
        ``clips`` with ``source_clip_id`` (the score) and ``transpose``; one
        row per score and key; the split is ``test`` for every row.

    Notebook: notebooks/02_vit.ipynb (key invariance)
    """

    ids, keys = [str(i) for i in clip_ids], [int(k) for k in keys]
    soundfont = dataset.info["options"]["soundfont"]
    key = store.hash_params({"source": str(dataset.root), "ids": ids, "keys": keys,
                             "version": GENERATOR_VERSION}, length=8)
    root = Path(data_dir) if data_dir else store.data_dir() / "synth" / f"transposed-{key}"
    if not (root / "COMPLETE").exists():
        clips = dataset.clips.set_index("clip_id")
        jobs = []
        for clip_id in ids:
            params = json.loads(Path(clips.loc[clip_id, "truth_path"]).read_text())["params"]
            for k in keys:
                jobs.append({"clip_id": f"{clip_id}-t{k:+d}", "params": {**params, "transpose": k}})
        root.mkdir(parents=True, exist_ok=True)
        for folder in ("audio", "midi", "truth"):
            (root / folder).mkdir(exist_ok=True)
        rows = Parallel(n_jobs=n_jobs)(delayed(_make_clip)(clip_id=job["clip_id"], params=job["params"],
                                                           root=str(root), soundfont=soundfont, twin=False)
                                       for job in jobs)
        table = pd.DataFrame(rows)
        table.insert(5, "split", "test")
        table.insert(6, "source", "synth_transposed")
        table["source_clip_id"] = [row["clip_id"].rsplit("-t", 1)[0] for row in rows]
        store.write_csv(root / "clips.csv", table)
        store.write_json(root / "generator.json", {"kind": "synth_transposed", "generator_version": GENERATOR_VERSION,
                                                   "source": str(dataset.root), "ids": ids, "keys": keys,
                                                   "options": {"soundfont": soundfont}})
        (root / "COMPLETE").write_text("")
    return _read(root, name="synth_transposed")
