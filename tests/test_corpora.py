"""The corpus adapters on fixtures that copy each corpus's published layout.

Each folder under ``tests/fixtures/<corpus>/`` has the publisher's file tree,
file names, annotation headers, delimiters and value ranges, with short
generated MP3s in place of the music. The DEAM fixture carries one corrupt
MP3 (song 17), one missing file (song 13) and one row with a missing rating
(song 18); the 4Q fixture one corrupt MP3 in Q3.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer import ParameterError, audio
from mer.data import COLUMNS, Dataset, DatasetError, check, corpora

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module", autouse=True)
def derived_in_tmp(tmp_path_factory):
    """Saved splits go to a scratch data folder, not the repository's."""
    old = os.environ.get("MER_DATA")
    os.environ["MER_DATA"] = str(tmp_path_factory.mktemp("mer-data"))
    yield Path(os.environ["MER_DATA"])
    if old is None:
        os.environ.pop("MER_DATA", None)
    else:
        os.environ["MER_DATA"] = old


LOADERS = {"deam": corpora.load_deam, "pmemo": corpora.load_pmemo, "fourq": corpora.load_fourq,
           "soundtracks": corpora.load_soundtracks, "jamendo_mood": corpora.load_jamendo_mood}


@pytest.fixture(scope="module")
def loaded():
    return {name: load(FIXTURES / name) for name, load in LOADERS.items()}


def by_label(dataset: Dataset) -> dict[str, set]:
    return {label: set(group["track_id"]) for label, group in dataset.clips.groupby("label")}


def reasons(dataset: Dataset) -> dict[str, str]:
    return {Path(p).name: r for p, r in zip(dataset.rejected["path"], dataset.rejected["reason"])}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_every_corpus_gives_the_common_table(loaded, name):
    dataset = check(loaded[name])
    clips = dataset.clips
    assert list(clips.columns[:len(COLUMNS)]) == list(COLUMNS)
    assert list(clips.columns[len(COLUMNS):len(COLUMNS) + 4]) == list(corpora.WINDOW_COLUMNS)
    assert set(clips["label"]) == {"happy", "sad"}
    assert set(clips["split"]) == {"train", "val", "test"}
    assert (clips["source"] == name).all()
    assert clips["path"].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()
    assert (clips["offset_s"] == 0).all() and (clips["clip_id"] == clips["track_id"]).all()
    assert dataset.info["label_rule"] and dataset.info["published_at"].startswith("http")


def test_deam_quadrant_rule_rejections_and_exclusions(loaded):
    deam = loaded["deam"]
    assert by_label(deam) == {"happy": {"5", "7", "10", "19", "2001"}, "sad": {"2", "3", "12", "20", "2002"}}
    rejected = reasons(deam)
    assert set(rejected) == {"13.mp3", "17.mp3", "18.mp3"}
    assert rejected["13.mp3"] == "file not found"
    assert rejected["18.mp3"].startswith("missing rating")
    assert "undecodable" in rejected["17.mp3"] or "unreadable" in rejected["17.mp3"]
    # Song 4 (5.7, 5.5) lies within the margin, song 8 in the upper-left quadrant: excluded, not rejected.
    assert deam.info["n_excluded"] == 2
    row = deam.clips.set_index("clip_id").loc["2"]
    assert (row["valence"], row["arousal"], row["valence_std"]) == (3.1, 3.0, 0.94)  # " valence_mean" read


def test_deam_margin_is_a_parameter():
    wide = corpora.load_deam(FIXTURES / "deam", margin=1.5, check_audio=False)
    assert by_label(wide)["happy"] == {"10", "2001"}  # 7.0/6.4, 6.6/6.2 and 6.1/6.6 fall inside 6.5
    with pytest.raises(ParameterError, match="margin"):
        corpora.load_deam(FIXTURES / "deam", margin=-1)


def test_pmemo_reads_the_folder_or_its_parent(loaded):
    pmemo = loaded["pmemo"]
    assert by_label(pmemo) == {"happy": {"1", "5", "7", "11"}, "sad": {"4", "6", "8", "12"}}
    assert pmemo.info["n_excluded"] == 2 and pmemo.rejected.empty
    inner = corpora.load_pmemo(FIXTURES / "pmemo" / "PMEmo2019", check_audio=False)
    pd.testing.assert_frame_equal(inner.clips, pmemo.clips)
    assert pmemo.clips["valence"].between(0, 1).all()


def test_fourq_uses_q1_and_q3_and_rejects_the_corrupt_file(loaded):
    fourq = loaded["fourq"]
    assert set(fourq.clips.loc[fourq.clips["label"] == "happy", "quadrant"]) == {"Q1"}
    assert set(fourq.clips.loc[fourq.clips["label"] == "sad", "quadrant"]) == {"Q3"}
    assert fourq.info["excluded"] == {"quadrant Q2": 1, "quadrant Q4": 1}
    assert list(reasons(fourq)) == ["MT0000330704.mp3"]
    assert fourq.clips["valence"].isna().all()
    assert (len(fourq.clips), sorted(fourq.clips["label"].value_counts())) == (11, [5, 6])


def test_soundtracks_labels_from_the_target_emotion(loaded):
    tracks = loaded["soundtracks"]
    assert by_label(tracks) == {"happy": {"001", "002", "006", "009"}, "sad": {"003", "004", "007", "010"}}
    assert tracks.info["excluded"] == {"target fear": 1, "target tender": 1}
    assert {"rating_happy", "rating_sad", "rating_tension"} <= set(tracks.clips.columns)
    assert not any(c.lower().startswith("unnamed") for c in tracks.clips.columns)


def test_jamendo_uses_the_official_split_and_drops_both_tags(loaded):
    jamendo = loaded["jamendo_mood"]
    split_dir = FIXTURES / "jamendo_mood" / "data" / "splits" / "split-0"
    official = {}
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        table = pd.read_csv(split_dir / f"autotagging_moodtheme-{name}.tsv", sep="\t", usecols=[0])
        official.update({track: split for track in table["TRACK_ID"]})
    assert all(official[t] == s for t, s in zip(jamendo.clips["track_id"], jamendo.clips["split"]))
    assert jamendo.info["excluded"] == {"not in the official split-0": 1, "tagged both happy and sad": 1,
                                        "tagged neither happy nor sad": 1}
    assert "track_0919995" not in set(jamendo.clips["track_id"])  # tagged happy and sad
    assert jamendo.info["split"].startswith("official")


def test_generated_split_is_saved_and_reused(loaded, derived_in_tmp):
    saved = sorted((derived_in_tmp / "derived" / "splits").glob("fourq-*.csv"))
    assert len(saved) == 1
    again = corpora.load_fourq(FIXTURES / "fourq")  # same clips, so the saved split is read back
    first = loaded["fourq"].clips.set_index("clip_id")["split"]
    assert again.clips.set_index("clip_id")["split"].reindex(first.index).equals(first)
    assert "stratified" in loaded["fourq"].info["split"]


def test_window_all_cuts_long_files_and_keeps_tracks_in_one_split():
    deam = corpora.load_deam(FIXTURES / "deam", window="all", check_audio=False)
    long_track = deam.clips[deam.clips["track_id"] == "2001"]
    assert list(long_track["clip_id"]) == ["2001-w00", "2001-w01"]  # 25 s: two whole windows
    assert list(long_track["offset_s"]) == [0.0, 10.0]
    assert long_track["split"].nunique() == 1
    assert check(deam).clips["clip_id"].is_unique
    y = audio.load(long_track["path"].iloc[1], offset=long_track["offset_s"].iloc[1])
    assert y.shape == (int(audio.SR * audio.DURATION),) and np.abs(y).max() > 0.01


def test_window_centre_reads_the_middle():
    jamendo = corpora.load_jamendo_mood(FIXTURES / "jamendo_mood", window="centre", check_audio=False)
    offsets = jamendo.clips.set_index("track_id")["offset_s"]
    assert offsets["track_1181911"] == 7.5 and offsets["track_1195900"] == 5.5 and offsets["track_0917542"] == 0


def test_window_offsets():
    assert corpora.window_offsets(float("nan"), window="first") == [0.0]
    assert corpora.window_offsets(45.0, window="centre") == [17.5]
    assert corpora.window_offsets(45.0, window="all") == [0.0, 10.0, 20.0, 30.0]
    assert corpora.window_offsets(29.9995, window="all") == [0.0, 10.0, 20.0]  # decoder rounding
    assert corpora.window_offsets(3.0, window="all") == [0.0]
    with pytest.raises(ParameterError, match="window"):
        corpora.window_offsets(30.0, window="middle")


def test_aggregate_windows_soft_votes_per_track():
    clips = pd.DataFrame({"clip_id": ["a-w00", "a-w01", "b-w00"], "track_id": ["a", "a", "b"]})
    predictions = pd.DataFrame({"clip_id": ["a-w00", "a-w01", "b-w00"], "p_happy": [0.9, 0.3, 0.2],
                                "label": ["happy", "happy", "sad"]})
    tracks = corpora.aggregate_windows(predictions, clips=clips)
    assert list(tracks["track_id"]) == ["a", "b"]
    assert list(tracks["n_windows"]) == [2, 1]
    assert np.allclose(tracks["p_happy"], [0.6, 0.2])
    assert list(tracks["predicted"]) == ["happy", "sad"] and list(tracks["label"]) == ["happy", "sad"]
    with pytest.raises(ParameterError, match="track_id"):
        corpora.aggregate_windows(predictions)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_wrong_folder_says_what_is_missing_and_where_to_get_it(name, tmp_path):
    other = "soundtracks" if name != "soundtracks" else "deam"
    with pytest.raises(DatasetError, match=r"expected .* \(published at http"):
        LOADERS[name](FIXTURES / other, check_audio=False)
    with pytest.raises(DatasetError, match="not a folder"):
        LOADERS[name](tmp_path / "absent")
    with pytest.raises(ParameterError, match="needs data_dir"):
        LOADERS[name](None)
    with pytest.raises(ParameterError, match="window"):
        LOADERS[name](FIXTURES / name, window="middle")


def test_missing_files_are_rejected_even_without_decoding():
    deam = corpora.load_deam(FIXTURES / "deam", check_audio=False)
    assert set(reasons(deam)) == {"13.mp3", "18.mp3"}  # 17 is corrupt but exists: only decoding finds it


def test_registered_in_load_dataset():
    from mer import data

    if "deam" not in data._adapters():
        pytest.skip("corpus adapters not yet registered in mer.data._adapters()")
    dataset = data.load_dataset("fourq", FIXTURES / "fourq", window="first", check_audio=False)
    assert dataset.name == "fourq" and len(dataset.clips) == 12  # the corrupt file is only found by decoding
