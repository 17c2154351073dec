"""mer.data.manifest and load_dataset: a real corpus in one table shape, bad files set aside."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer import ParameterError, data
from mer.data import COLUMNS, DatasetError, manifest

SR = 22050


def chord(path, *, minor: bool, seconds=1.5, seed=0):
    """A triad (root, third, fifth) with three partials each, plus a little noise.

    1.5 s: a clip needs at least mer.audio.MIN_DURATION_S (1 s) to be usable.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    root = 196.0 * 2 ** (rng.integers(0, 12) / 12)
    notes = [root, root * 2 ** ((3 if minor else 4) / 12), root * 2 ** (7 / 12)]
    y = sum(np.sin(2 * np.pi * k * f * t) / k for f in notes for k in (1, 2, 3))
    y = 0.3 * y / np.max(np.abs(y)) + 0.005 * rng.standard_normal(t.size)
    sf.write(path, y.astype(np.float32), SR)
    return path


@pytest.fixture(autouse=True)
def scratch_data(tmp_path, monkeypatch):
    """Derived files (saved splits) go to a scratch data folder, not the repository's."""
    monkeypatch.setenv("MER_DATA", str(tmp_path / "data"))


def corpus(folder, n_per_class=6, *, rows=(), split=False):
    """A folder with manifest.csv over ``2 * n_per_class`` good clips plus ``rows``."""
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(2 * n_per_class):
        minor = i % 2 == 1
        name = f"audio/{'sad' if minor else 'happy'}_{i:03d}.wav"
        chord(folder / name, minor=minor, seed=i)
        label = ["Happy ", "1", " HAPPY"][i % 3] if not minor else ["sad", "0", "Sad"][i % 3]
        row = {"path": name, "label": label, "valence": 0.5 if not minor else -0.5,
               "arousal": "", "annotator": f"a{i % 2}"}
        if split:
            row["split"] = ["train", "train", "Validation", "test"][i % 4]
        lines.append(row)
    lines.extend(rows)
    pd.DataFrame(lines).to_csv(folder / "manifest.csv", index=False)
    return folder


def bad_rows(folder):
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    (folder / "audio" / "corrupt.wav").write_bytes(b"RIFF" + np.random.default_rng(1).bytes(3000))
    chord(folder / "audio" / "angry.wav", minor=True)
    return [
        {"path": "audio/corrupt.wav", "label": "sad"},
        {"path": "audio/missing.wav", "label": "happy"},
        {"path": "audio/angry.wav", "label": "angry"},
    ]


def test_bad_rows_are_rejected_with_reasons_and_the_rest_load(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    corpus(folder, rows=bad_rows(folder))
    dataset = data.load_dataset("manifest", data_dir=folder)

    assert list(dataset.clips.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(dataset.clips) == 12 and dataset.clips["clip_id"].is_unique
    reasons = dict(zip(dataset.rejected["path"].map(lambda p: p.rsplit("/", 1)[-1]),
                       dataset.rejected["reason"]))
    assert len(dataset.rejected) == 3
    assert reasons["corrupt.wav"].startswith("undecodable")
    assert reasons["missing.wav"] == "file not found"
    assert "unknown label 'angry'" in reasons["angry.wav"]

    clips = dataset.clips
    assert set(clips["label"]) == {"happy", "sad"}
    assert (clips["label"] == "happy").sum() == 6
    assert clips["path"].map(lambda p: p.startswith(str(folder)) and p.endswith(".wav")).all()
    assert clips["clip_id"].iloc[0] == "audio/happy_000"
    assert clips["valence"].dtype == float and clips["arousal"].isna().all()
    assert set(clips["source"]) == {"manifest"} and "annotator" in clips.columns
    assert set(clips["split"]) <= set(data.SPLITS)
    assert dataset.root == folder.resolve()


def test_manifest_csv_may_be_named_directly(tmp_path):
    corpus(tmp_path)
    (tmp_path / "manifest.csv").rename(tmp_path / "my_corpus.csv")
    dataset = manifest.load(tmp_path / "my_corpus.csv", check_audio=False)
    assert len(dataset.clips) == 12 and dataset.rejected.empty


def test_many_files_one_corrupt_the_rest_go_on(tmp_path):
    n = manifest.PARALLEL_FROM // 2 + 1  # 2n files: the threaded check runs
    corpus(tmp_path, n_per_class=n, rows=[{"path": "audio/corrupt.wav", "label": "happy"}])
    (tmp_path / "audio" / "corrupt.wav").write_bytes(b"\0" * 4096)
    dataset = manifest.load(tmp_path, n_jobs=2)
    assert len(dataset.clips) == 2 * n and len(dataset.rejected) == 1


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: sf.write(p, np.zeros(SR, dtype=np.float32), SR), "all-silent"),
])
def test_unusable_audio_is_rejected(tmp_path, make, reason):
    corpus(tmp_path, rows=[{"path": "audio/bad.wav", "label": "happy"}])
    make(tmp_path / "audio" / "bad.wav")
    dataset = manifest.load(tmp_path)
    assert len(dataset.clips) == 12
    assert dataset.rejected["reason"].str.contains(reason).tolist() == [True]


def test_empty_and_single_class_datasets_are_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    pd.DataFrame({"path": ["a.wav"], "label": ["happy"]}).to_csv(empty / "manifest.csv", index=False)
    with pytest.raises(DatasetError, match="no usable clip.*file not found"):
        data.load_dataset("manifest", data_dir=empty)

    header_only = tmp_path / "header_only"
    header_only.mkdir()
    (header_only / "manifest.csv").write_text("path,label\n")
    with pytest.raises(DatasetError, match="no usable clip"):
        data.load_dataset("manifest", data_dir=header_only)

    one = tmp_path / "one"
    one.mkdir()
    (one / "audio").mkdir()
    rows = [{"path": str(chord(one / "audio" / f"{i}.wav", minor=True, seed=i)), "label": "sad"}
            for i in range(6)]
    pd.DataFrame(rows).to_csv(one / "manifest.csv", index=False)
    with pytest.raises(DatasetError, match="one class"):
        data.load_dataset("manifest", data_dir=one)


def test_missing_folder_or_manifest_says_what_was_expected(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*manifest.csv"):
        manifest.load(tmp_path / "nowhere")
    (tmp_path / "labels.csv").write_text("path,label\n")
    with pytest.raises(DatasetError, match=r"no manifest.csv.*labels\.csv"):
        manifest.load(tmp_path)
    (tmp_path / "manifest.csv").write_text("file,emotion\nx.wav,happy\n")
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['path', 'label'\]"):
        manifest.load(tmp_path)
    with pytest.raises(ParameterError, match="data_dir"):
        manifest.load(None)


def test_unknown_option_and_unknown_dataset_are_parameter_errors(tmp_path):
    corpus(tmp_path, n_per_class=2)
    with pytest.raises(ParameterError, match="n_clips"):
        manifest.load(tmp_path, n_clips=3)
    with pytest.raises(ParameterError, match="nope.*manifest.*synth"):
        data.load_dataset("nope")


def test_generated_split_is_seeded_stratified_and_saved_outside_the_corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    corpus(folder, n_per_class=20)
    before = sorted(p.name for p in folder.iterdir())

    first = manifest.load(folder, seed=0, check_audio=False).clips
    again = manifest.load(folder, seed=0, check_audio=False).clips
    other = manifest.load(folder, seed=1, check_audio=False).clips
    assert first["split"].tolist() == again["split"].tolist()
    assert first["split"].tolist() != other["split"].tolist()

    counts = pd.crosstab(first["split"], first["label"])
    assert counts.loc["train"].tolist() == [12, 12]  # 60 % of 20 per class
    assert counts.loc["val"].tolist() == [3, 3]
    assert counts.loc["test"].tolist() == [5, 5]

    assert sorted(p.name for p in folder.iterdir()) == before
    saved = list((tmp_path / "data" / "derived" / "splits").glob("manifest-*.csv"))
    assert len(saved) == 2  # one per seed
    # The split does not depend on the order of the manifest's rows.
    table = pd.read_csv(folder / "manifest.csv")
    table.iloc[::-1].to_csv(folder / "manifest.csv", index=False)
    shuffled = manifest.load(folder, seed=0, check_audio=False).clips
    assert dict(zip(shuffled["clip_id"], shuffled["split"])) == dict(zip(first["clip_id"], first["split"]))


def test_given_split_is_kept(tmp_path):
    corpus(tmp_path, split=True)
    clips = manifest.load(tmp_path, check_audio=False).clips
    assert clips["split"].value_counts().to_dict() == {"train": 6, "val": 3, "test": 3}
    assert not (tmp_path / "data" / "derived" / "splits").exists()
