"""Real compositions: Bach's chorales and folk songs of the Essen collection, rendered like the synthetic set.

Every other check of chapter 2 asks the model about music the generator
wrote. This module asks it about music nobody here wrote, from music21's
corpus (public-domain scores inside the music21 wheel, so nothing is
downloaded). Two collections (:data:`COLLECTIONS`):

- ``"chorales"``: J. S. Bach's four-part chorales, with the voice leading,
  inversions, sevenths, suspensions, passing notes and cadences of tonal
  writing;
- ``"folk"``: melodies of the Essen Folksong Collection (mostly German, also
  other European and Chinese songs, encoded in ABC), one line with no
  accompaniment, as a folk tune or a solo instrument plays it: the texture the
  generator's model finds hardest.

Their labels are the **mode** only; nobody rated their valence, so chapter 2
scores the mode *ranking* (ROC AUC of p(happy), major against minor), which
needs no threshold.

The mode of a piece is read from its score by two rules that have to agree:

- **the score's own ending**: a chorale closes on its tonic in the bass, a
  folk melody on its tonic, so the tonic is the last pitch class of the bass
  (chorales) or of the melody (folk songs); the mode is the third above that
  tonic that sounds longer over the whole piece (major or minor), so a
  Picardy third in the final chord does not make a minor chorale major;
- **music21's key analysis** (``Score.analyze("key")``, Krumhansl-Schmuckler
  on the whole score's pitch durations).

A piece on which they disagree (a modal melody, a phrase that ends on the
dominant) is left out and counted, not relabelled. Pieces are examined in an
order drawn from ``seed`` until each mode has half of ``n_clips``.

Each chosen piece becomes one 10 s clip: its first ten seconds at the
collection's pulse (``bpm``: quarter notes per minute), strictly in time
(fermatas are not held), every voice at :data:`VELOCITY` on one General MIDI
programme of the collection's ``programs`` (the same number of major and
minor pieces on each), rendered by :func:`mer.data.synth.render` with a
SoundFont the tonal writing trains on (FluidR3_GM), so what differs from the
training set is the writing, not the timbre.

These clips are an evaluation set only: nothing is trained or tuned on them.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import ParameterError, parallel, store
from . import Dataset
from . import synth

log = logging.getLogger(__name__)

#: The collections, their pulse (quarter notes per minute), parts and instruments. Each voice of a clip is
#: played on one programme; the instruments are those of the generator's writing for that texture.
COLLECTIONS = {
    "chorales": {
        "title": "Bach's chorales", "source": "J. S. Bach's chorales in music21's corpus", "bpm": 84.0,
        "n_parts": 4, "parts": "four", "noun": "chorales", "wrong_parts": "not in four parts",
        "ending": "the bass's last pitch class",
        "programs": {"church organ": 19, "string ensemble": 48, "choir aahs": 52, "piano": 0, "clarinet": 71,
                     "cello": 42},
    },
    "folk": {
        "title": "folk songs", "source": "the Essen Folksong Collection in music21's corpus (ABC)", "bpm": 100.0,
        "n_parts": 1, "parts": "one melody", "noun": "songs", "wrong_parts": "in more than one part",
        "ending": "the melody's last pitch class",
        "programs": {"violin": 40, "flute": 73, "clarinet": 71, "oboe": 68, "piano": 0, "cello": 42},
    },
}
#: MIDI velocity of every note (the synthetic set's neutral velocity, ``synth.NEUTRAL``).
VELOCITY = int(synth.NEUTRAL["velocity"])
#: The SoundFont (one of ``synth.TRAIN_SOUNDFONTS``): the timbre is not what these sets vary.
SOUNDFONT = "FluidR3_GM"
#: Transpositions of :func:`load`'s ``in_keys`` set (semitones): those of the generator's scores.
SHIFTS = synth.SHIFTS
#: Why a piece is left out when its two readings of the key differ (:func:`describe`).
DISAGREE = "the ending and the key analysis disagree"
#: Quarter notes of each score kept for rendering (10 s at up to 240 BPM).
MAX_QUARTERS = 40.0


def _collection(name: str) -> dict[str, Any]:
    if name not in COLLECTIONS:
        raise ParameterError(f"collection must be one of {sorted(COLLECTIONS)}, got {name!r}")
    return COLLECTIONS[name]


def works(collection: str = "chorales") -> list[str]:
    """The pieces of a collection in music21's corpus, sorted.

    Returns
    -------
    list of str
        ``"chorales"``: one ``.mxl`` / ``.xml`` path per chorale inside the
        installed music21; ``"folk"``: ``"<path of an ABC file>#<reference
        number>"``, one per song (an ABC file holds many).

    Notebook: notebooks/02_vit.ipynb
    """
    from music21 import corpus  # slow to import; only these sets need it

    _collection(collection)
    if collection == "chorales":
        # The corpus also holds Roman-numeral analyses (.rntxt) of some chorales: text, not scores.
        return sorted(str(p) for p in corpus.getComposer("bach") if not str(p).endswith(".rntxt"))
    folder = Path(corpus.__file__).parent / "essenFolksong"
    # test*.abc are music21's own test excerpts of the collection, not more songs.
    return [f"{path}#{number}" for path in sorted(folder.glob("*.abc")) if not path.name.startswith("test")
            for number in _abc_songs(str(path))]


@functools.lru_cache(maxsize=None)
def _abc_songs(path: str) -> dict[str, str]:
    """The songs of one ABC file by reference number (``X:``), each its own ABC text."""
    text = Path(path).read_text(encoding="utf-8")
    songs = {}
    for block in re.split(r"(?m)^(?=X:)", text):
        if block.startswith("X:"):
            songs.setdefault(block[2:].split("\n", 1)[0].strip(), block)
    return songs


def _parse(work: str, collection: str):
    """The music21 score of one piece of :func:`works`."""
    from music21 import converter

    # forceSource: parse the file itself, never read or write music21's pickle cache (no unpickling).
    if collection == "folk":
        path, number = work.rsplit("#", 1)
        return converter.parse(_abc_songs(path)[number], format="abc", forceSource=True)
    return converter.parseFile(work, forceSource=True, storePickle=False)


def _work_name(work: str, collection: str) -> str:
    if collection == "folk":
        path, number = work.rsplit("#", 1)
        return f"{Path(path).stem}-{number}"
    return Path(work).stem


def describe(work: str, collection: str = "chorales") -> dict[str, Any]:
    """Read one piece: its tonic and mode by both rules, and its opening notes.

    Parameters
    ----------
    work : str
        A piece of :func:`works` (or any score file, for ``"chorales"``).
    collection : {"chorales", "folk"}
        Four parts with the tonic in the bass, or one melody.

    Returns
    -------
    dict
        ``work`` (file stem; for a folk song with its reference number),
        ``n_parts``, ``tonic`` and ``mode`` (the score's ending, see the
        module docstring), ``analysed_tonic``, ``analysed_mode`` (music21's
        key analysis), ``reason`` (why the piece cannot be used, ``""`` if
        it can) and ``notes``: ``[part, onset, duration, midi pitch]`` in
        quarter notes from the first note, onsets below :data:`MAX_QUARTERS`.

    Notebook: notebooks/02_vit.ipynb
    """
    settings = _collection(collection)
    out: dict[str, Any] = {"work": _work_name(work, collection), "n_parts": 0, "tonic": -1, "mode": "",
                           "analysed_tonic": -1, "analysed_mode": "", "reason": "", "notes": []}
    try:
        score = _parse(work, collection).stripTies()
    except Exception as error:  # a score music21 cannot read is reported, the others go on
        out["reason"] = f"unreadable score: {type(error).__name__}: {str(error)[:120]}"
        return out
    parts = list(score.parts)
    out["n_parts"] = len(parts)
    if len(parts) != settings["n_parts"]:
        out["reason"] = f"{len(parts)} parts, not {settings['parts']}"
        return out
    ending = list(parts[-1].flatten().notes)  # the bass of a chorale, the melody of a song
    if not ending:
        out["reason"] = "no notes"
        return out
    tonic = int(ending[-1].pitches[0].pitchClass)
    seconds = np.zeros(12)
    for note in score.flatten().notes:
        for pitch in note.pitches:
            seconds[pitch.pitchClass] += float(note.duration.quarterLength)
    mode = "minor" if seconds[(tonic + 3) % 12] > seconds[(tonic + 4) % 12] else "major"
    key = score.analyze("key")
    out.update(tonic=tonic, mode=mode, analysed_tonic=int(key.tonic.pitchClass), analysed_mode=str(key.mode))
    if (tonic, mode) != (out["analysed_tonic"], out["analysed_mode"]):
        out["reason"] = DISAGREE
    voices = [list(part.flatten().notes) for part in parts]
    first = min(float(v[0].offset) for v in voices if v)
    for index, voice in enumerate(voices):
        for note in voice:
            onset = float(note.offset) - first
            if onset >= MAX_QUARTERS:
                break
            out["notes"] += [[index, onset, float(note.duration.quarterLength), int(p.midi)] for p in note.pitches]
    return out


def examine(n_clips: int, *, collection: str = "chorales", seed: int = 0, progress: bool = True
            ) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Pieces of a collection in an order drawn from ``seed``, read until each mode has ``n_clips // 2`` usable ones.

    Returns
    -------
    chosen : list of dict
        :func:`describe` of the chosen pieces, major first, each mode in
        the order it was examined.
    examined : pandas.DataFrame
        One row per piece read: ``work, n_parts, tonic, mode,
        analysed_tonic, analysed_mode, reason, used``.

    Raises
    ------
    ParameterError
        ``n_clips`` below 2, or more than the corpus holds in one mode.

    Notebook: notebooks/02_vit.ipynb
    """
    if not isinstance(n_clips, (int, np.integer)) or n_clips < 2:
        raise ParameterError(f"n_clips must be an integer of at least 2 (half major, half minor), got {n_clips!r}")
    need = int(n_clips) // 2
    paths = works(collection)
    order = np.random.default_rng(seed).permutation(len(paths))
    chosen: dict[str, list] = {"major": [], "minor": []}
    rows = []
    # In this process, one score after another: reading a chorale takes about 0.14 s, a song 0.04 s, less
    # than a worker's start.
    for i in tqdm(order, desc=f"reading {collection}", disable=not progress):
        if all(len(v) >= need for v in chosen.values()):
            break
        record = describe(paths[i], collection)
        used = not record["reason"] and len(chosen[record["mode"]]) < need
        if used:
            chosen[record["mode"]].append(record)
        if record["reason"].startswith("unreadable"):
            log.warning("%s: %s skipped: %s", collection, record["work"], record["reason"])
        rows.append({**{k: v for k, v in record.items() if k != "notes"}, "used": used})
    short = {mode: len(v) for mode, v in chosen.items() if len(v) < need}
    if short:
        raise ParameterError(f"music21's corpus holds only {short} usable {collection} of that mode; ask for at most "
                             f"{2 * min(len(v) for v in chosen.values())} clips")
    return chosen["major"] + chosen["minor"], pd.DataFrame(rows)


def score_midi(notes, *, program: int, bpm: float):
    """The opening :data:`synth.DURATION` seconds of a piece as a ``pretty_midi.PrettyMIDI``.

    Parameters
    ----------
    notes : list of [part, onset, duration, pitch]
        :func:`describe`'s ``notes`` (quarter notes).
    program : int
        General MIDI programme of every voice.

    Notebook: notebooks/02_vit.ipynb
    """
    import pretty_midi

    seconds = 60.0 / bpm
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    parts = {}
    for part, onset, duration, pitch in notes:
        start = onset * seconds
        if start >= synth.DURATION:
            continue
        inst = parts.setdefault(part, pretty_midi.Instrument(program=program, name=f"voice {part + 1}"))
        inst.notes.append(pretty_midi.Note(velocity=VELOCITY, pitch=int(pitch), start=start,
                                           end=min(start + duration * seconds, synth.DURATION)))
    pm.instruments = [parts[k] for k in sorted(parts)]
    return pm


def _render(job: dict[str, Any]) -> dict[str, Any]:
    import soundfile

    notes = [[part, onset, duration, pitch + job["shift"]] for part, onset, duration, pitch in job["notes"]]
    pm = score_midi(notes, program=COLLECTIONS[job["collection"]]["programs"][job["instrument"]], bpm=job["bpm"])
    y = synth.render(pm, soundfont=job["soundfont"])
    root = Path(job["root"])
    clip_id = job["clip_id"]
    soundfile.write(root / "audio" / f"{clip_id}.flac", y, synth.SR, subtype="PCM_16")
    pm.write(str(root / "midi" / f"{clip_id}.mid"))
    return {"clip_id": clip_id, "path": f"audio/{clip_id}.flac",
            "label": "happy" if job["mode"] == "major" else "sad", "valence": np.nan, "arousal": np.nan,
            "split": "test", "source": job["collection"], "midi_path": f"midi/{clip_id}.mid", "score": job["work"],
            "shift": job["shift"], "mode": job["mode"], "tonic": (job["tonic"] + job["shift"]) % 12,
            "instrument": job["instrument"], "tempo_bpm": job["bpm"], "soundfont": job["soundfont"],
            "peak": float(np.abs(y).max())}


def _read(root: Path, collection: str) -> Dataset:
    clips = pd.read_csv(root / "clips.csv", dtype={"clip_id": str})
    for column in ("path", "midi_path"):
        clips[column] = [str(root / p) for p in clips[column]]
    examined = pd.read_csv(root / "examined.csv", dtype={"work": str}, keep_default_na=False)
    left_out = examined["reason"] != ""
    rejected = examined.loc[left_out, ["work", "reason"]].rename(columns={"work": "path"}).reset_index(drop=True)
    info = json.loads((root / "repertoire.json").read_text())
    # The counts the chapter cites, from the table itself rather than stored beside it.
    info.update(examined=examined, n_examined=len(examined),
                n_right_parts=int((examined["n_parts"] == COLLECTIONS[collection]["n_parts"]).sum()),
                n_usable=int((~left_out).sum()), n_disagree=int((examined["reason"] == DISAGREE).sum()))
    return Dataset(name=collection, clips=clips, rejected=rejected, root=root, info=info)


def examined_reading(dataset: Dataset) -> str:
    """One sentence on how a set was found: pieces read, and those left out and why, from ``dataset.info``.

    Notebook: notebooks/02_vit.ipynb
    """
    settings = _collection(dataset.name)
    info = dataset.info
    wrong, disagree = info["n_examined"] - info["n_right_parts"], info["n_disagree"]
    return (f"{info['n_examined']} {settings['noun']} read to find {len(dataset.clips)}: "
            f"{wrong} {'is' if wrong == 1 else 'are'} {settings['wrong_parts']} and {disagree} "
            f"{'has' if disagree == 1 else 'have'} an ending and a key analysis that disagree (left out, "
            f"not relabelled).")


def load(collection: str = "chorales", data_dir: str | Path | None = None, *, n_clips: int = 96,
         bpm: float | None = None, soundfont: str = SOUNDFONT, seed: int = 0, in_keys: bool = False, n_jobs: int = 2,
         progress: bool = True) -> Dataset:
    """A collection's set, rendered on first use into ``data/synth/<collection>-...`` and read from there after.

    Parameters
    ----------
    collection : {"chorales", "folk"}
        :data:`COLLECTIONS`.
    n_clips : int
        Clips, half major and half minor (an odd number loses one).
    bpm : float, optional
        Quarter notes per minute; default the collection's.
    soundfont : str
        A key of ``synth.SOUNDFONTS``.
    in_keys : bool
        Render each piece in all twelve keys, from five semitones down to
        six up (:data:`SHIFTS`; ``12 * n_clips`` clips, ``score`` and
        ``shift`` columns as :func:`mer.data.synth.load_transpositions` has
        them): how far p(happy) moves when the piece moves through the keys
        and its label, the mode, does not.

    Returns
    -------
    mer.data.Dataset
        ``clips``: the common columns (``label`` is the mode, major as
        ``"happy"``; ``valence`` and ``arousal`` are NaN: nobody rated these
        clips), ``midi_path``, ``score`` (the work), ``shift`` (semitones,
        0 unless ``in_keys``), ``mode``, ``tonic`` (0-11, C = 0, the key
        sounded), ``instrument``, ``tempo_bpm``, ``soundfont``, ``peak``; ``rejected``:
        every examined piece left out, with the reason; ``info``: the label
        rule, the music21 version, ``examined`` (the table of :func:`examine`)
        and its counts ``n_examined``, ``n_right_parts`` (four-part chorales,
        one-part songs), ``n_usable``, ``n_disagree``.

    Notebook: notebooks/02_vit.ipynb
    """
    import music21

    settings = _collection(collection)
    bpm = settings["bpm"] if bpm is None else bpm
    if soundfont not in synth.SOUNDFONTS:
        raise ParameterError(f"soundfont must be one of {sorted(synth.SOUNDFONTS)}, got {soundfont!r}")
    if not 20.0 <= float(bpm) <= 240.0:
        raise ParameterError(f"bpm must lie in 20-240, got {bpm!r}")
    options = {"collection": collection, "n_clips": int(n_clips), "bpm": float(bpm), "soundfont": soundfont,
               "seed": int(seed), "music21": music21.__version__, "shifts": list(SHIFTS) if in_keys else [0]}
    if data_dir is None:
        key = store.hash_params({**options, "code": store.code_hash(__name__)}, length=8)
        name = f"{collection}-keys" if in_keys else collection
        root = store.data_dir() / "synth" / f"{name}-n{int(n_clips)}-s{int(seed)}-{key}"
    else:
        root = Path(data_dir)
    if not (root / "COMPLETE").exists():
        _generate(root, options=options, n_jobs=n_jobs, progress=progress)
    dataset = _read(root, collection)
    if dataset.info.get("options") != options:
        raise ParameterError(f"{root} holds a set made with {dataset.info.get('options')}, not {options}; "
                             f"pass another data_dir")
    return dataset


def _generate(root: Path, *, options: dict[str, Any], n_jobs: int, progress: bool) -> None:
    """Examine, render into a temporary folder beside ``root``, then rename it (atomic)."""
    collection = options["collection"]
    settings = COLLECTIONS[collection]
    synth.soundfont_path(options["soundfont"])  # fail early, before any worker starts
    chosen, examined = examine(options["n_clips"], collection=collection, seed=options["seed"], progress=progress)
    with store.atomic_dir(root, what=f"{collection} set") as tmp:
        (tmp / "audio").mkdir()
        (tmp / "midi").mkdir()
        names = list(settings["programs"])
        jobs = []
        for mode in ("major", "minor"):  # the same instruments, in the same proportions, for both modes
            for i, record in enumerate(r for r in chosen if r["mode"] == mode):
                for shift in options["shifts"]:
                    clip_id = record["work"] if options["shifts"] == [0] else f"{record['work']}{shift:+d}"
                    jobs.append({**record, "clip_id": clip_id, "shift": shift, "instrument": names[i % len(names)],
                                 "collection": collection, "bpm": options["bpm"], "soundfont": options["soundfont"],
                                 "root": str(tmp)})
        rows = parallel.map(_render, jobs, desc=f"rendering {collection}", n_jobs=n_jobs, progress=progress)
        store.write_csv(tmp / "clips.csv", pd.DataFrame(rows))
        store.write_csv(tmp / "examined.csv", examined)
        store.write_json(tmp / "repertoire.json", {
            "source": settings["source"], "options": options,
            "label_rule": f"tonic: {settings['ending']}; mode: the third above it that sounds longer; "
                          "used only where music21's key analysis names the same tonic and mode",
            "programs": settings["programs"], "velocity": VELOCITY,
        })
    log.info("%s: %d clips rendered into %s", collection, len(rows), root)


__all__ = ["COLLECTIONS", "VELOCITY", "SOUNDFONT", "SHIFTS", "DISAGREE", "MAX_QUARTERS", "works", "describe", "examine",
           "score_midi", "examined_reading", "load"]
