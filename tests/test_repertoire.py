"""Real compositions: Bach's chorales from music21's corpus, chapter 2's check on music nobody here wrote.

The label rule is checked on small scores whose key is known by construction
(a minor piece with a Picardy third, a phrase that ends on the dominant); the
set itself on real chorales, rendered with FluidSynth; the check on real
predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer import ParameterError, carryover, tonality
from mer.data import repertoire, synth


def _score(path, voices, durations):
    """A four-part score (soprano first) from MIDI pitches, one chord per duration (quarter notes)."""
    from music21 import meter, note, stream

    score = stream.Score()
    for pitches in voices:
        part = stream.Part()
        part.append(meter.TimeSignature("4/4"))
        for pitch, duration in zip(pitches, durations):
            part.append(note.Note(pitch, quarterLength=duration))
        score.insert(0, part)
    score.write("musicxml", fp=str(path))
    return str(path)


def test_the_mode_is_the_scores_and_a_picardy_third_does_not_make_it_major(tmp_path):
    # A minor: i iv i V i, the last chord with a major third (C#): the third that sounds longer is C.
    minor = _score(tmp_path / "minor.musicxml",
                   [[72, 74, 72, 71, 73], [64, 65, 64, 64, 64], [57, 57, 57, 56, 57], [45, 50, 45, 40, 45]],
                   [1, 1, 1, 1, 1])
    # C major: I IV V I.
    major = _score(tmp_path / "major.musicxml",
                   [[72, 72, 71, 72], [64, 65, 62, 64], [55, 57, 55, 55], [48, 41, 43, 36]], [1, 1, 1, 2])
    # C major, ending on its dominant (a half cadence): the ending says G, the key analysis C.
    half = _score(tmp_path / "half.musicxml",
                  [[72, 72, 72, 74], [64, 65, 64, 67], [55, 57, 55, 59], [48, 41, 48, 43]], [1, 1, 1, 2])
    read = {name: repertoire.describe(path) for name, path in (("minor", minor), ("major", major), ("half", half))}
    assert (read["minor"]["tonic"], read["minor"]["mode"], read["minor"]["reason"]) == (9, "minor", "")
    assert (read["major"]["tonic"], read["major"]["mode"], read["major"]["reason"]) == (0, "major", "")
    assert read["half"]["tonic"] == 7 and read["half"]["analysed_tonic"] == 0
    assert read["half"]["reason"] == "the ending and the key analysis disagree"
    # The notes to render: four voices from the first onset, in quarter notes.
    notes = pd.DataFrame(read["major"]["notes"], columns=["part", "onset", "duration", "pitch"])
    assert notes.groupby("part").size().tolist() == [4, 4, 4, 4]
    assert notes["onset"].min() == 0 and notes.loc[notes["part"] == 3, "pitch"].tolist() == [48, 41, 43, 36]


def test_an_unreadable_or_three_part_score_is_reported_not_used(tmp_path):
    broken = tmp_path / "broken.musicxml"
    broken.write_text("<score-partwise><part id='P1'><measure")
    assert repertoire.describe(str(broken))["reason"].startswith("unreadable score")
    three = _score(tmp_path / "three.musicxml", [[72, 71, 72], [64, 62, 64], [48, 43, 48]], [1, 1, 2])
    assert repertoire.describe(three)["reason"] == "3 parts, not four"


@pytest.fixture(scope="module")
def chorale_set(tmp_path_factory):
    return repertoire.load("chorales", tmp_path_factory.mktemp("chorales") / "set", n_clips=8, seed=0, n_jobs=1, progress=False)


def test_the_set_is_real_bach_half_major_half_minor_on_every_instrument(chorale_set, tmp_path):
    clips = chorale_set.clips
    assert len(clips) == 8 and clips["clip_id"].str.startswith("bwv").all()
    assert clips["mode"].value_counts().to_dict() == {"major": 4, "minor": 4}
    assert (clips["label"] == np.where(clips["mode"] == "major", "happy", "sad")).all()
    assert clips["valence"].isna().all() and set(clips["split"]) == {"test"}
    # The same instruments, in the same proportions, for both modes.
    by_instrument = pd.crosstab(clips["instrument"], clips["mode"])
    assert len(by_instrument) == 4 and (by_instrument["major"] == by_instrument["minor"]).all()
    for row in clips.itertuples():
        y, sr = sf.read(row.path)
        assert sr == synth.SR and len(y) == synth.N_SAMPLES and np.abs(y).max() > 0.05
        assert row.path.startswith(str(chorale_set.root)) and row.midi_path.startswith(str(chorale_set.root))
    # Every chorale left out is listed with its reason, and the counts add up.
    info = chorale_set.info
    assert len(chorale_set.rejected) == info["n_examined"] - info["n_usable"]
    assert info["examined"]["used"].sum() == 8 and info["options"]["music21"]
    # Read back from disk, and made again elsewhere from the same seed: the same clips.
    again = repertoire.load("chorales", tmp_path / "again", n_clips=8, seed=0, n_jobs=1, progress=False)
    assert again.clips["clip_id"].tolist() == clips["clip_id"].tolist()
    assert again.clips["instrument"].tolist() == clips["instrument"].tolist()
    with pytest.raises(ParameterError, match="another data_dir"):
        repertoire.load("chorales", chorale_set.root, n_clips=8, seed=1, progress=False)
    with pytest.raises(ParameterError, match="at least 2"):
        repertoire.load("chorales", tmp_path / "none", n_clips=1, progress=False)


def test_a_key_profile_on_the_audio_hears_the_scores_mode(chorale_set):
    """The labels come from the scores; a reader of the rendered audio alone (Krumhansl-Kessler profiles on
    librosa's CQT chroma, no music21) must rank the major chorales above the minor ones."""
    profiles = tonality.key_profiles()
    profiles = profiles - profiles.mean(axis=1, keepdims=True)
    profiles /= np.linalg.norm(profiles, axis=1, keepdims=True)

    def key_profile(clips):
        chroma = tonality.chromas(clips, n_jobs=1, cache=False, progress=False)
        chroma = chroma - chroma.mean(axis=1, keepdims=True)
        r = (chroma / np.linalg.norm(chroma, axis=1, keepdims=True)) @ profiles.T
        return 1 / (1 + np.exp(-10 * (r[:, :12].max(axis=1) - r[:, 12:].max(axis=1))))

    table, predictions = carryover.real_music({"key profile": key_profile}, chorale_set.clips, n_bootstrap=50)
    row = table.iloc[0]
    assert row["n"] == 8 and row["mode_auc"] >= 0.8, predictions
    assert row["low"] <= row["mode_auc"] <= row["high"]
    major = predictions["mode"] == "major"
    assert row["p_happy_major"] == pytest.approx(predictions.loc[major, "key profile"].median())
    text = carryover.real_music_reading(table, chapter_model="key profile")
    assert f"{row['mode_auc']:.3f}" in text and "8 of Bach's chorales" in text
    with pytest.raises(ParameterError):
        carryover.real_music_reading(table, chapter_model="ViT, seed 0")


def test_in_twelve_keys_each_chorale_moves_by_exactly_its_shift(tmp_path):
    import pretty_midi

    keys = repertoire.load("chorales", tmp_path / "keys", n_clips=2, seed=0, in_keys=True, n_jobs=1, progress=False)
    clips = keys.clips
    assert len(clips) == 24
    assert all(tuple(sorted(shifts)) == repertoire.SHIFTS for _, shifts in clips.groupby("score")["shift"])
    for score, group in clips.groupby("score"):
        home = group.set_index("shift").loc[0]
        pitches = {row.shift: sorted(n.pitch for i in pretty_midi.PrettyMIDI(row.midi_path).instruments
                                     for n in i.notes) for row in group.itertuples()}
        for row in group.itertuples():
            assert pitches[row.shift] == [p + row.shift for p in pitches[0]]
            assert row.tonic == (home["tonic"] + row.shift) % 12 and row.mode == home["mode"]
        assert group["instrument"].nunique() == 1
    # The spread table reads the set as it reads the generator's transpositions; the sentence cites it.
    p_happy = np.where(clips["mode"] == "major", 0.7, 0.3) + clips["shift"] / 100
    spread = carryover.transposition_spread(p_happy, clips)
    assert spread["spread"].tolist() == pytest.approx([0.11, 0.11])
    table, _ = carryover.real_music({"fixed": lambda c: np.where(c["mode"] == "major", 0.7, 0.3)}, clips,
                                    n_bootstrap=0)
    text = carryover.real_music_reading(table, chapter_model="fixed", spread=spread, generated_spread=0.08)
    assert "median **0.11** (at most 0.11, 2 pieces; 95 % interval over pieces 0.11-0.11), against 0.08" in text
    assert carryover.spread_interval(spread) == pytest.approx([0.11, 0.11])
    assert "runs from 1.00 to 1.00" in text


FOLK_SONGS = """X:1
T:A minor, natural minor throughout
M:4/4
L:1/4
K:Am
A B c B | A c e2 | d c B A | c B A2 | E A c e | d c B G | A B c B | A4 |

X:2
T:C major
M:4/4
L:1/4
K:C
C D E F | G E C2 | F E D C | E D C2 | G, C E G | F E D B, | C D E D | C4 |

X:3
T:C major, ending on the dominant
M:4/4
L:1/4
K:C
C D E F | G E C2 | F E D C | E D C2 | C E G c | A F D B, | C E D C | G,4 |

X:4
T:Two voices
M:4/4
L:1/4
K:C
V:1
C D E F | G4 |
V:2
C, D, E, F, | G,4 |
"""


def test_a_folk_songs_mode_is_its_last_notes_and_a_second_voice_is_refused(tmp_path):
    path = tmp_path / "songs.abc"
    path.write_text(FOLK_SONGS, encoding="utf-8")
    read = {n: repertoire.describe(f"{path}#{n}", "folk") for n in "1234"}
    first = read["1"]
    assert (first["work"], first["tonic"], first["mode"], first["reason"]) == ("songs-1", 9, "minor", "")
    assert (read["2"]["tonic"], read["2"]["mode"], read["2"]["reason"]) == (0, "major", "")
    assert read["3"]["tonic"] == 7 and read["3"]["analysed_tonic"] == 0 and read["3"]["reason"] == repertoire.DISAGREE
    assert read["4"]["reason"] == "2 parts, not one melody" and read["4"]["notes"] == []
    # One voice, from the first onset, in quarter notes: the eight bars of the C-major song.
    notes = pd.DataFrame(read["2"]["notes"], columns=["part", "onset", "duration", "pitch"])
    assert set(notes["part"]) == {0} and notes["onset"].min() == 0
    assert notes["pitch"].iloc[:4].tolist() == [60, 62, 64, 65]
    with pytest.raises(ParameterError, match="collection"):
        repertoire.describe(f"{path}#1", "madrigals")


def test_the_folk_set_is_one_melody_per_clip_half_major_half_minor(tmp_path):
    import pretty_midi

    folk = repertoire.load("folk", tmp_path / "folk", n_clips=8, seed=0, n_jobs=1, progress=False)
    clips = folk.clips
    assert len(clips) == 8 and clips["mode"].value_counts().to_dict() == {"major": 4, "minor": 4}
    assert set(clips["source"]) == {"folk"} and (clips["tempo_bpm"] == repertoire.COLLECTIONS["folk"]["bpm"]).all()
    by_instrument = pd.crosstab(clips["instrument"], clips["mode"])
    assert (by_instrument["major"] == by_instrument["minor"]).all()
    for row in clips.itertuples():
        midi = pretty_midi.PrettyMIDI(row.midi_path)
        assert len(midi.instruments) == 1 and not midi.instruments[0].is_drum  # a melody alone
        assert midi.instruments[0].program == repertoire.COLLECTIONS["folk"]["programs"][row.instrument]
        assert max(n.end for n in midi.instruments[0].notes) <= synth.DURATION + 0.01  # MIDI ticks round
        y, sr = sf.read(row.path)
        assert sr == synth.SR and len(y) == synth.N_SAMPLES and np.abs(y).max() > 0.05
    # Every song read is in the examined table; those left out carry their reason.
    info = folk.info
    assert info["examined"]["used"].sum() == 8 and len(folk.rejected) == info["n_examined"] - info["n_usable"]
    assert set(folk.rejected["reason"]) <= {repertoire.DISAGREE} | {f"{n} parts, not one melody" for n in range(2, 9)}
