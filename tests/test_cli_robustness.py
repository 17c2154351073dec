"""``python -m mer predict|explain|train|run`` for users: which model speaks, and no tracebacks.

* Without ``--checkpoint`` the model is chapter 2's (the one chapters 3 and 4
  explain), recorded by the chapter per profile, not the newest checkpoint on
  disk; ``--profile`` and ``--checkpoint`` choose another. The terminal, the
  explain page and its JSON name it (folder, weights hash, data, score).
* A broken checkpoint, a bad argument or an unwritable output gives one or
  two lines on stderr and a non-zero status; ``--debug`` shows the traceback.
* A manifest's clip ids become safe file names, and its rejected-files table
  shows paths relative to the manifest's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer import ParameterError
from mer import cli
from mer import data, display, explain, metrics, predict, sonify, spectrogram, store, vit
from mer.cli import explain as explain_cli
from mer.cli import predict as predict_cli
from mer.cli import train as train_cli

SR = 22050
ROOT = Path(__file__).resolve().parent.parent


def tune(seconds: float = 10.4, seed: int = 0) -> np.ndarray:
    """A major triad with partials, a melody and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(0.05 / k * np.sin(2 * np.pi * f * k * t) for f in (220.0, 277.2, 329.6) for k in (1, 2, 3))
    y = y + 0.05 * np.sin(2 * np.pi * np.resize(np.repeat(rng.choice([440.0, 554.4, 659.3], 24), SR // 2),
                                                  t.size) * t)
    return (y + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def tiny_checkpoint(folder: Path, *, seed: int = 0, dataset: str = "synth", n_train: int = 30,
                    balanced_accuracy: float | None = 0.75) -> Path:
    """A tiny real ViT saved as :func:`mer.vit.train` leaves it (untrained weights,
    safetensors + meta.json), with the test evaluation :func:`mer.vit.evaluate` writes."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    params = spectrogram.LogMelParams()
    model = vit.build_model("quick", n_mels=params.n_mels, n_frames=108, seed=seed)
    save_file(model.state_dict(), str(folder / vit.WEIGHTS_FILE))
    meta = {"status": "done", "train": {"size": "quick", "seed": seed}, "logmel": params.to_dict(),
            "stats": {"mean": -45.0, "std": 20.0, "n_clips": 1}, "label2id": metrics.LABEL2ID,
            "id2label": {str(k): v for k, v in metrics.ID2LABEL.items()}, "model_config": model.config.to_dict(),
            "input_shape": [1, params.n_mels, 108],
            "dataset": {"name": dataset, "fingerprint": "f" * 12, "n_train": n_train, "n_val": 8}}
    store.write_json(folder / vit.META_FILE, meta)
    if balanced_accuracy is not None:
        store.write_json(folder / "evaluation-test.json",
                         {"metrics": [{"metric": "balanced_accuracy", "value": balanced_accuracy, "low": 0.5,
                                       "high": 0.9, "n": 12}], "confusion": [[3, 3], [0, 6]],
                          "n_bootstrap": 10, "seed": 0})
    return folder


def sha12(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A scratch data folder holding two finished checkpoints: chapter 2's
    seed-0 model and, written after it, a seed-spread model (seed 1)."""
    monkeypatch.setenv("MER_DATA", str(tmp_path / "data"))
    vit_dir = tmp_path / "data" / "derived" / "vit"
    chapter = tiny_checkpoint(vit_dir / "vit-chapter", seed=0, balanced_accuracy=0.75)
    seed_1 = tiny_checkpoint(vit_dir / "vit-seed1", seed=1, balanced_accuracy=0.5)
    old = (chapter / vit.META_FILE).stat().st_mtime - 3600
    os.utime(chapter / vit.META_FILE, (old, old))
    assert vit.latest_checkpoint("quick") == seed_1  # what the old default picked
    song = tmp_path / "song.flac"
    sf.write(song, tune(), SR, format="FLAC")
    return {"chapter": chapter, "seed_1": seed_1, "song": song, "tmp": tmp_path}


def tables(stdout: str) -> str:
    """The prediction tables of ``predict``'s output (without the model line)."""
    return "\n".join(line for line in stdout.splitlines() if not line.startswith("model:"))


# --- the chapter's model is the CLI's model -------------------------------------------------


def test_default_is_the_chapter_model_not_the_newest_seed(machine, capsys):
    vit.record_chapter_model(machine["chapter"], profile="quick")
    assert predict_cli.main([str(machine["song"])]) == 0
    out = capsys.readouterr().out
    model_line = out.splitlines()[0]
    assert model_line.startswith("model:")
    assert "vit-chapter" in model_line and "vit-seed1" not in out
    assert sha12(machine["chapter"] / vit.WEIGHTS_FILE) in model_line
    assert "synth" in model_line and "0.750" in model_line and "quick" in model_line
    # The numbers are the chapter model's.
    assert predict_cli.main([str(machine["song"]), "--checkpoint", str(machine["chapter"])]) == 0
    assert tables(capsys.readouterr().out) == tables(out)
    assert predict.default_checkpoint() == machine["chapter"]


def test_a_folder_of_songs_is_predicted_file_by_file_and_what_is_skipped_is_said(machine, capsys):
    """``mer predict album/``: every audio file of the folder gets its table, a corrupt one is one line and the
    others go on, files not named as audio are listed (never silently dropped), sub-folders are not searched."""
    vit.record_chapter_model(machine["chapter"], profile="quick")
    album = machine["tmp"] / "album"
    (album / "bonus").mkdir(parents=True)
    sf.write(album / "01 first.flac", tune(seed=1), SR, format="FLAC")
    sf.write(album / "02 second.WAV", tune(seed=2), SR, format="WAV")
    (album / "03 broken.mp3").write_bytes(b"ID3" + b"\0" * 64)
    (album / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (album / ".DS_Store").write_bytes(b"\0")
    sf.write(album / "bonus" / "04 hidden away.flac", tune(seed=4), SR, format="FLAC")
    assert predict_cli.main([str(album)]) == 1  # one file could not be used
    printed = capsys.readouterr()
    assert f"{album / '01 first.flac'}\n" in printed.out and f"{album / '02 second.WAV'}\n" in printed.out
    assert "hidden away" not in printed.out + printed.err
    assert f"{album}: skipped 1 file not named as audio (cover.jpg)" in printed.err
    assert printed.err.count("03 broken.mp3") == 1 and ".DS_Store" not in printed.err
    # The same song named on its own gives the same table as through its folder.
    assert predict_cli.main([str(album / "01 first.flac")]) == 0
    alone = capsys.readouterr().out
    assert tables(alone) in tables(printed.out)
    # A folder without audio is one line and status 1.
    assert predict_cli.main([str(machine["tmp"] / "data" / "derived")]) == 1
    assert "no audio file in this folder" in capsys.readouterr().err


def test_no_recorded_model_says_which_command_makes_one(machine, capsys):
    status = predict_cli.main([str(machine["song"])])
    err = capsys.readouterr().err
    assert status == 1
    assert 1 <= len(err.strip().splitlines()) <= 2, err
    assert "python -m mer run 02_vit" in err and "--checkpoint" in err


def test_a_recorded_model_that_is_gone_is_named(machine, capsys):
    vit.record_chapter_model(machine["chapter"], profile="default")
    for entry in machine["chapter"].iterdir():
        entry.unlink()
    machine["chapter"].rmdir()
    status = predict_cli.main([str(machine["song"])])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) <= 2, err
    assert "vit-chapter" in err and "python -m mer run 02_vit --profile default" in err


@pytest.mark.parametrize("text", ['{"profile": "default"', '{"profile": "../../etc"}', '[1, 2]'])
def test_a_damaged_record_is_one_message(machine, capsys, text):
    vit.record_chapter_model(machine["chapter"], profile="default")
    (store.derived_dir() / "chapter-model" / "last.json").write_text(text)
    assert predict_cli.main([str(machine["song"])]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "last.json" in err and "02_vit" in err, err


def test_profile_and_checkpoint_override(machine, capsys):
    other = tiny_checkpoint(machine["tmp"] / "elsewhere" / "mine", seed=2, dataset="manifest")
    vit.record_chapter_model(machine["seed_1"], profile="quick")
    vit.record_chapter_model(machine["chapter"], profile="default")  # rendered last
    pointer = json.loads((store.derived_dir() / "chapter-model" / "default.json").read_text())
    assert pointer["checkpoint"] == "vit/vit-chapter"  # relative: the data folder may move

    assert predict_cli.main([str(machine["song"])]) == 0
    assert "vit-chapter" in capsys.readouterr().out.splitlines()[0]
    assert predict_cli.main([str(machine["song"]), "--profile", "quick"]) == 0
    assert "vit-seed1" in capsys.readouterr().out.splitlines()[0]
    assert predict_cli.main([str(machine["song"]), "--checkpoint", str(other)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "mine" in line and "manifest" in line and sha12(other / vit.WEIGHTS_FILE) in line

    assert predict_cli.main([str(machine["song"]), "--profile", "thesis"]) == 1
    err = capsys.readouterr().err
    assert "thesis" in err and "python -m mer run 02_vit --profile thesis" in err
    with pytest.raises(SystemExit) as stop:
        predict_cli.main([str(machine["song"]), "--profile", "quick", "--checkpoint", str(other)])
    assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:
        predict_cli.main([str(machine["song"]), "--profile", "nonsense"])
    assert stop.value.code == 2 and "--profile" in capsys.readouterr().err


def test_explain_page_and_json_name_the_model(machine, capsys):
    vit.record_chapter_model(machine["chapter"], profile="quick")
    out = machine["tmp"] / "explained"
    status = explain_cli.main([str(machine["song"]), "--out", str(out), "--explainer", "gradxinput"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert any(line.startswith("model:") and "vit-chapter" in line for line in captured.out.splitlines())
    summary = json.loads((out / explain_cli.MARKER).read_text())
    model = summary["model"]
    assert Path(model["folder"]).name == "vit-chapter"
    assert model["weights_sha256"] == sha12(machine["chapter"] / vit.WEIGHTS_FILE)
    assert model["dataset"] == "synth" and model["n_train"] == 30
    assert model["test_balanced_accuracy"] == pytest.approx(0.75)
    assert model["profile"] == "quick" and model["chosen_by"] == "chapter 2's model for profile quick"
    page = (out / "index.html").read_text()
    for text in ("vit-chapter", model["weights_sha256"], "synth", "0.750", "latest"):
        assert (text in page) == (text != "latest"), text


def test_the_chapter_notebook_records_its_model():
    """Chapter 2 records the model it trained and scored (``result``), with its profile."""
    cells = json.loads((ROOT / "notebooks" / "02_vit.ipynb").read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "mer.vit.record_chapter_model(result.checkpoint, profile=profile)" in code


# --- broken checkpoints, bad arguments: a message, not a traceback ---------------------------


def _invalid_json(folder):
    text = (folder / vit.META_FILE).read_text()
    (folder / vit.META_FILE).write_text(text[: len(text) // 2])


def _missing_key(folder):
    meta = json.loads((folder / vit.META_FILE).read_text())
    del meta["model_config"]
    (folder / vit.META_FILE).write_text(json.dumps(meta))


def _truncated_weights(folder):
    weights = folder / vit.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _garbage_weights(folder):
    (folder / vit.WEIGHTS_FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json" + bytes(300))


def _missing_weights(folder):
    (folder / vit.WEIGHTS_FILE).unlink()


def _wrong_shapes(folder):
    meta = json.loads((folder / vit.META_FILE).read_text())
    meta["model_config"]["hidden_size"] = 32
    meta["model_config"]["intermediate_size"] = 64
    (folder / vit.META_FILE).write_text(json.dumps(meta))


BREAKAGES = {"invalid JSON meta": _invalid_json, "missing key": _missing_key,
             "truncated weights": _truncated_weights, "garbage weights": _garbage_weights,
             "missing weights": _missing_weights, "weights of another shape": _wrong_shapes}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_checkpoint_is_one_message(machine, capsys, breakage):
    broken = tiny_checkpoint(machine["tmp"] / "broken-ckpt")
    BREAKAGES[breakage](broken)
    with pytest.raises(vit.CheckpointError) as error:
        vit.load_checkpoint(broken)
    assert "broken-ckpt" in str(error.value) and "\n" not in str(error.value)

    assert predict_cli.main([str(machine["song"]), "--checkpoint", str(broken)]) == 1
    err = capsys.readouterr().err
    assert 1 <= len(err.strip().splitlines()) <= 2 and "broken-ckpt" in err and "--checkpoint" in err, err
    assert "Traceback" not in err

    out = machine["tmp"] / "out"
    assert explain_cli.main([str(machine["song"]), "--out", str(out), "--checkpoint", str(broken)]) == 1
    err = capsys.readouterr().err
    assert 1 <= len(err.strip().splitlines()) <= 2 and "broken-ckpt" in err, err
    assert not out.exists() and not [p for p in machine["tmp"].iterdir() if p.name.startswith(".")]

    assert predict_cli.main([str(machine["song"]), "--checkpoint", str(broken), "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "CheckpointError" in err


def test_the_command_line_shows_no_traceback_unless_asked(machine):
    broken = tiny_checkpoint(machine["tmp"] / "broken-ckpt")
    _truncated_weights(broken)
    command = [sys.executable, "-m", "mer", "predict", str(machine["song"]), "--checkpoint", str(broken)]
    env = dict(os.environ, MER_DATA=str(machine["tmp"] / "data"))
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and 1 <= len(result.stderr.strip().splitlines()) <= 2, result.stderr
    result = subprocess.run(command + ["--debug"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1 and "Traceback" in result.stderr


@pytest.mark.parametrize("argv, name", [
    (["--max-windows", "0"], "--max-windows"), (["--max-windows", "-2"], "--max-windows"),
    (["--max-windows", "two"], "--max-windows"), (["--top-k-percent", "150"], "--top-k-percent"),
    (["--threshold", "1.5"], "--threshold"), (["--exponent", "-1"], "--exponent"),
    (["--explainer", "magic"], "--explainer"),
])
def test_explain_refuses_bad_numbers_like_argparse(machine, capsys, argv, name):
    with pytest.raises(SystemExit) as stop:
        explain_cli.main([str(machine["song"]), "--out", str(machine["tmp"] / "out"),
                          "--checkpoint", str(machine["chapter"]), *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and name in err and "Traceback" not in err
    assert not (machine["tmp"] / "out").exists()


def test_explain_file_refuses_zero_windows(machine):
    with pytest.raises(ParameterError, match="max_windows"):
        explain_cli.explain_file(machine["song"], machine["tmp"] / "out", checkpoint=machine["chapter"],
                                 max_windows=0)


def test_an_unwritable_output_is_one_message(machine, capsys):
    blocker = machine["tmp"] / "a-file"
    blocker.write_text("not a folder")
    status = explain_cli.main([str(machine["song"]), "--out", str(blocker / "out"),
                               "--checkpoint", str(machine["chapter"]), "--explainer", "gradxinput"])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1 and "a-file" in err, err


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--batch-size", "-1"], ["--learning-rate", "0"],
                                  ["--n-clips", "-5"], ["--time-budget-s", "-1"], ["--model-size", "huge"],
                                  ["--canonicalise", "key"], ["--writing", "atonal"]])
def test_train_refuses_bad_numbers_like_argparse(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.setenv("MER_DATA", str(tmp_path / "data"))  # were it accepted, nothing reaches the repository
    with pytest.raises(SystemExit) as stop:
        train_cli.main(argv)
    assert stop.value.code == 2 and argv[0] in capsys.readouterr().err


def test_train_and_run_report_a_bad_dataset_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MER_DATA", str(tmp_path / "data"))
    assert train_cli.main(["--dataset", "manifest", "--data-dir", str(tmp_path / "nowhere"), "-q"]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nowhere" in err, err
    assert cli.main(["run", "99_nothing", "--debug", "--no-build"]) == 2
    assert "99_nothing" in capsys.readouterr().err


# --- manifests cannot write or reveal outside the project ------------------------------------


def test_safe_names_are_plain_distinct_and_stable():
    ids = ["../../x", "../../../../x", "x", "<b>&'\"é", "a/b", "a-b", "a b", "", ".hidden", "C:\\evil", "é" * 300]
    names = [store.safe_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    for name in names:
        assert name and set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        assert not name.startswith(".") and ".." not in name and len(name) <= 64
    assert store.safe_name("synth-0001") == store.safe_name("synth-0001")
    assert store.safe_name("synth-0001").startswith("synth-0001")


def manifest_with_hostile_ids(folder: Path) -> Path:
    (folder / "audio").mkdir(parents=True)
    rows = []
    for i, clip_id in enumerate(["../../x", "../../../../x", "<b>&'\"é", "plain"]):
        name = f"audio/clip{i}.wav"
        sf.write(folder / name, tune(10.2, seed=i), SR)
        rows.append({"path": name, "label": "happy" if i % 2 else "sad", "clip_id": clip_id,
                     "split": "test"})
    rows.append({"path": "audio/sub/missing.wav", "label": "sad", "clip_id": "gone", "split": "test"})
    rows.append({"path": "/nonexistent/secret/home/missing.wav", "label": "sad", "clip_id": "gone2",
                 "split": "test"})
    rows.append({"path": "audio/clip0.wav", "label": "angry", "clip_id": "angry", "split": "test"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_hostile_clip_ids_write_only_inside_the_audio_folder(tmp_path, monkeypatch):
    """Chapter 4's quadrant players and the Data page's players, with a manifest's ids."""
    from mer import audio

    project = tmp_path / "deep" / "er" / "project"
    project.mkdir(parents=True)
    monkeypatch.setenv("MER_ROOT", str(project))
    monkeypatch.setenv("MER_DATA", str(project / "data"))
    dataset = data.load_dataset("manifest", manifest_with_hostile_ids(tmp_path / "corpus"))
    before = files_under(tmp_path)

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    model, meta = vit.load_checkpoint(checkpoint)
    sr = int(meta["logmel"]["sr"])
    clips = np.stack([audio.fit_length(audio.load(p, sr=sr, duration=10.0), n_samples=10 * sr)
                      for p in dataset.clips["path"]])
    table = explain.predictions_table(model, meta, dataset.clips, clips)
    examples = explain.quadrant_examples(table, n_per_quadrant=4)
    index = [int(np.flatnonzero(table["clip_id"] == c)[0]) for c in examples["clip_id"]]
    found = explain.explain_clips(model, meta, clips[index], explainer="gradxinput")
    sonified = [sonify.sonify(y, r, sr=sr) for y, r in zip(clips[index], found["relevance"])]
    display.show_quadrants(examples, found, sonified, clips[index], sr=sr)
    for row in dataset.clips.itertuples():  # as the Data page names its players
        display.player_file(clips[0], sr=sr, path=f"00_data/{store.safe_name(row.clip_id)}.ogg")

    written = files_under(tmp_path) - before - files_under(checkpoint)
    audio_dir = (project / "_static" / "audio").resolve()
    assert len([p for p in written if p.suffix == ".ogg"]) == 3 * len(examples) + len(dataset.clips)
    outside = [p for p in written if audio_dir not in p.resolve().parents and p.suffix == ".ogg"]
    assert outside == []


def test_notebooks_name_files_after_safe_clip_ids():
    """Every player path a chapter builds from a clip id goes through store.safe_name."""
    import re

    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            for line in "".join(cell["source"]).splitlines():
                for path in re.findall(r"path=f\"([^\"]*)\"", line):
                    assert "clip_id" not in path or "safe_name(" in path, (notebook.name, line)


def test_rejected_files_are_shown_relative_to_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("MER_DATA", str(tmp_path / "data"))
    dataset = data.load_dataset("manifest", manifest_with_hostile_ids(tmp_path / "corpus"))
    shown = sorted(dataset.rejected["path"])
    assert shown == sorted(["audio/sub/missing.wav", ".../missing.wav", "audio/clip0.wav"]), shown
    assert not any(str(tmp_path) in p or "secret" in p for p in shown)
