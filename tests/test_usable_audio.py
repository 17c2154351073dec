"""One rule for usable audio, shared by ``predict``, ``explain`` and the datasets.

Every bad input is a real file made here (no monkeypatching of the decoders);
the assertions are on what the user sees: one line naming the file and the
problem, no traceback, the same words from ``python -m mer predict``,
``python -m mer explain`` and a manifest dataset's rejected table.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer import MerError, audio, explain, predict, spectrogram, vit
from mer.cli import explain as explain_cli
from mer.cli import predict as predict_cli
from mer.data import manifest

SR = audio.SR
ROOT = Path(__file__).resolve().parent.parent
ODD_NAME = "chanson d'été <b>&'\" Ünïcødé"


def tone(seconds: float, sr: int = SR, f0: float = 220.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise; shape (n,) or (n, channels) as soundfile writes it."""
    t = np.arange(int(round(seconds * sr))) / sr
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    y = 0.3 * y / np.max(np.abs(y)) + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    y = y.astype(np.float32)
    return y if channels == 1 else np.stack([y * (1 - 0.2 * c) for c in range(channels)], axis=1)


# --- the bad files -------------------------------------------------------------


def zero_bytes(path):
    path.write_bytes(b"")


def random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(5000))


def truncated_header(path):
    sf.write(path, tone(2.0), SR)
    path.write_bytes(path.read_bytes()[:30])  # cut inside the fmt chunk


def header_only(path):
    sf.write(path, np.zeros((0, 1), dtype=np.float32), SR)


def short(path):
    sf.write(path, tone(0.3), SR)


def silent(path):
    sf.write(path, np.zeros(3 * SR, dtype=np.float32), SR)


def nan_floats(path):
    y = tone(3.0)
    y[SR] = np.nan
    sf.write(path, y, SR, subtype="FLOAT")


def a_folder(path):
    path.mkdir()


def a_fifo(path):
    os.mkfifo(path)  # opening it for reading would wait for a writer forever


BAD = {  # name -> (maker, words the one-line message must hold)
    "zero bytes": (zero_bytes, "empty file (0 bytes)"),
    "random bytes": (random_bytes, "undecodable"),
    "truncated header": (truncated_header, "undecodable"),
    "header only": (header_only, "zero-length"),
    "0.3 s": (short, "too short: 0.30 s of audio, at least 1 s needed"),
    "silent": (silent, "all-silent"),
    "NaN floats": (nan_floats, "contains NaN or infinite samples"),
    "a folder": (a_folder, "not a regular file"),
    "a FIFO": (a_fifo, "not a regular file"),
}


@pytest.fixture(scope="module")
def checkpoint(untrained_checkpoint) -> Path:
    """The untrained checkpoint of conftest: the CLI's code paths, not a model's quality."""
    return untrained_checkpoint


def run_predict(capsys, checkpoint, *args) -> tuple[int, str, str]:
    status = predict_cli.main([*map(str, args), "--checkpoint", str(checkpoint)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_explain(capsys, checkpoint, path, out) -> tuple[int, str, str]:
    status = explain_cli.main([str(path), "--out", str(out), "--checkpoint", str(checkpoint)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# --- the rule itself -------------------------------------------------------------


@pytest.mark.parametrize("name", list(BAD))
def test_inspect_refuses_each_bad_file_in_one_line_naming_it(tmp_path, name):
    make, words = BAD[name]
    path = tmp_path / f"{ODD_NAME} {name}.wav"
    make(path)
    with pytest.raises(audio.AudioError) as caught:
        audio.inspect(path)
    message = str(caught.value)
    assert isinstance(caught.value, MerError)
    assert words in message and str(path) in message and "\n" not in message
    assert "; " in message.split(words, 1)[1]  # followed by what to do


def test_one_minimum_duration_for_everyone():
    assert not hasattr(predict, "MIN_TAIL_S") and not hasattr(explain, "MIN_DURATION_S")
    assert audio.MIN_DURATION_S == 1.0


def test_a_good_file_is_described(tmp_path):
    path = tmp_path / "stereo-96k.flac"
    sf.write(path, tone(12.5, sr=96000, channels=2), 96000)
    info = audio.inspect(path)
    assert (info.samplerate, info.channels) == (96000, 2)
    assert info.duration_s == pytest.approx(12.5)
    assert info.notes == ()  # a high rate is simply resampled: nothing the model misses


def test_a_low_rate_gets_a_note(tmp_path):
    path = tmp_path / "phone.wav"
    sf.write(path, tone(12.0, sr=8000), 8000)
    info = audio.inspect(path)
    assert info.samplerate == 8000
    assert any("8000 Hz" in n and "22050 Hz" in n and "4000 Hz" in n for n in info.notes), info.notes


def test_leading_silence_is_not_a_silent_file(tmp_path):
    path = tmp_path / "late.wav"
    sf.write(path, np.concatenate([np.zeros(12 * SR, np.float32), tone(5.0)]), SR)
    assert audio.inspect(path).duration_s == pytest.approx(17.0)
    # A dataset uses the first 10 s only: for it, they are silent.
    with pytest.raises(audio.AudioError, match="all-silent"):
        audio.inspect(path, seconds=audio.DURATION)


def test_a_long_file_gets_a_note_and_is_read_window_by_window(tmp_path):
    path = tmp_path / "long.wav"
    minutes = 11
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_16") as out:
        for minute in range(minutes):
            out.write(tone(60.0, sr=8000, seed=minute))
    info = audio.inspect(path)
    assert any("11 min" in n and "window by window" in n for n in info.notes), info.notes
    resampled_bytes = minutes * 60 * SR * 4  # the whole file as float32 at 22050 Hz: 58 MB
    warm = tmp_path / "warm.wav"  # the lazy imports of the first pass (librosa, soxr) are not the file's memory
    sf.write(warm, tone(12.5, sr=8000), 8000)
    sum(1 for _ in audio.iter_windows(warm))
    tracemalloc.start()
    try:
        count = sum(1 for _ in audio.iter_windows(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == minutes * 6
    assert peak < resampled_bytes / 10, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_what_only_ffmpeg_decodes_is_read_as_audioread_reads_it_but_as_slowly_as_it_is_used(tmp_path):
    import time
    import warnings

    import librosa

    source = tmp_path / "source.wav"
    with sf.SoundFile(source, "w", samplerate=8000, channels=1, subtype="PCM_16") as out:
        for minute in range(11):
            out.write(tone(60.0, sr=8000, seed=minute))
    path = tmp_path / "long.m4a"  # AAC: libsndfile cannot, audioread's ffmpeg backend can
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(source), "-c:a", "aac", str(path)], check=True)
    with warnings.catch_warnings():  # librosa says it falls back to audioread
        warnings.simplefilter("ignore")
        before, native = librosa.load(path, sr=None, mono=True)  # the audioread route, whole file
    assert native == 8000
    assert np.array_equal(audio.load(path, sr=None, duration=None), before)
    info = audio.inspect(path)
    tracemalloc.start()
    try:
        count = 0
        for _ in audio.iter_windows(path, info=info):
            count += 1
            time.sleep(0.01)  # a model is slower than the decoder: nothing may pile up meanwhile
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 66
    assert peak < before.nbytes / 2, f"peak {peak / 1e6:.1f} MB for a file of {before.nbytes / 1e6:.1f} MB"


def test_nan_after_the_first_window_stops_reading_with_the_same_reason(tmp_path):
    path = tmp_path / "late-nan.wav"
    y = tone(30.0)
    y[25 * SR] = np.inf
    sf.write(path, y, SR, subtype="FLOAT")
    audio.inspect(path)  # the first window is fine
    with pytest.raises(audio.AudioError, match="contains NaN or infinite samples") as caught:
        list(audio.iter_windows(path))
    assert "20" in caught.value.reason and "30 s" in caught.value.reason


# --- windows: identical to reading the whole file --------------------------------


def old_windowing(y: np.ndarray, *, sr: int, duration: float = 10.0, min_tail: float = 1.0):
    """The windowing of mer.predict.window_signal at ee47d50, on a whole loaded file."""
    length = int(round(duration * sr))
    n_whole = len(y) // length
    pieces = [y[i * length:(i + 1) * length] for i in range(n_whole)]
    seconds = [duration] * n_whole
    tail = y[n_whole * length:]
    if len(tail) >= min_tail * sr or not pieces:
        pieces.append(audio.fit_length(tail, n_samples=length))
        seconds.append(len(tail) / sr)
    return np.stack(pieces).astype(np.float32), np.asarray(seconds)


@pytest.mark.parametrize("native_sr, seconds, channels", [(SR, 30.0, 1), (44100, 31.5, 2), (8000, 20.4, 1)])
def test_iter_windows_gives_the_windows_of_the_whole_file(tmp_path, native_sr, seconds, channels):
    path = tmp_path / "song.wav"
    sf.write(path, tone(seconds, sr=native_sr, channels=channels), native_sr)
    expected, real = old_windowing(audio.load_full(path), sr=SR)
    found = list(audio.iter_windows(path))
    assert len(found) == len(expected)
    for i, window in enumerate(found):
        assert np.array_equal(window.samples, expected[i])
        assert window.start_s == 10.0 * i and window.end_s == pytest.approx(10.0 * i + real[i], abs=1e-4)
        assert window.partial == (real[i] < 10.0)


def test_predict_gives_the_same_probabilities_as_before(tmp_path, checkpoint):
    path = tmp_path / "song.wav"
    sf.write(path, tone(31.5, sr=44100, channels=2), 44100)
    model, meta = vit.load_checkpoint(checkpoint)
    windows, real = old_windowing(audio.load_full(path), sr=SR)
    specs = np.stack([spectrogram.logmel(w, params=meta["logmel"]) for w in windows])
    expected = vit.predict_proba(model, vit.fit_input(spectrogram.normalize(specs, meta["stats"]), meta))[:, 1]
    table = predict.predict_file(path, vit.Checkpoint(model, meta, checkpoint))
    assert list(table["window"]) == ["0", "1", "2", "3", "all"]
    np.testing.assert_allclose(table["p_happy"].iloc[:4], expected, rtol=0, atol=1e-6)
    assert table["p_happy"].iloc[4] == pytest.approx(np.average(expected, weights=real))
    assert list(table["partial"]) == [False, False, False, True, True]


# --- what the user sees on the terminal -------------------------------------------


@pytest.mark.parametrize("name", list(BAD))
def test_predict_explain_and_a_manifest_say_the_same(tmp_path, checkpoint, capfd, caplog, name):
    # capfd, not capsys: what C decoders write on file descriptor 2 reaches the terminal too.
    capsys = capfd
    make, words = BAD[name]
    path = tmp_path / f"{ODD_NAME} {name}.wav"
    make(path)
    with pytest.raises(audio.AudioError) as caught:
        audio.inspect(path)
    message = str(caught.value)

    status, out, err = run_predict(capsys, checkpoint, path)
    line = one_line(err)
    # stdout names the model (chapter 2's or --checkpoint's) and nothing else: no table for a bad file
    assert status == 1 and [l for l in out.splitlines() if not l.startswith("model: ")] == []
    if name == "a folder":  # predict reads a folder as a folder of songs (here none); explain and manifests refuse it
        assert "no audio file in this folder" in line
    else:
        assert line.endswith(message) and words in line

    status, out, err = run_explain(capsys, checkpoint, path, tmp_path / "out")
    assert status == 1 and one_line(err).endswith(message)
    assert not (tmp_path / "out").exists()

    folder = tmp_path / "corpus"
    folder.mkdir()
    rows = []
    for i in range(4):
        sf.write(folder / f"good-{i}.wav", tone(3.0, f0=200.0 + 50 * i), SR)
        rows.append({"path": f"good-{i}.wav", "label": "happy" if i % 2 else "sad", "split": "train"})
    rows.append({"path": str(path), "label": "happy", "split": "train"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    with caplog.at_level(logging.WARNING):
        dataset = manifest.load(folder)
    assert len(dataset.clips) == 4  # the others go on
    assert list(dataset.rejected["path"]) == [manifest.shown_path(path, folder)]
    assert dataset.rejected["reason"].iloc[0] == caught.value.reason
    assert any(message in record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING)


def test_predict_first_reports_the_real_end_of_a_short_file(tmp_path, checkpoint):
    path = tmp_path / "short.wav"
    sf.write(path, tone(4.0), SR)
    for window in ("first", "all"):
        table = predict.predict_file(path, checkpoint=checkpoint, window=window)
        assert list(table["window"]) == ["0", "all"]
        assert list(table["end_s"]) == pytest.approx([4.0, 4.0])
        assert list(table["partial"]) == [True, True]


def test_predict_first_reads_only_the_first_window(tmp_path, checkpoint):
    path = tmp_path / "long.wav"
    sf.write(path, tone(35.0), SR)
    table = predict.predict_file(path, checkpoint=checkpoint, window="first")
    assert list(table["end_s"]) == pytest.approx([10.0, 10.0]) and not table["partial"].any()


def test_low_rate_note_on_the_terminal_in_the_table_and_on_the_page(tmp_path, checkpoint, capsys):
    path = tmp_path / f"{ODD_NAME} phone.wav"
    sf.write(path, tone(12.0, sr=8000), 8000)
    (note,) = audio.inspect(path).notes
    assert predict.predict_file(path, checkpoint=checkpoint).attrs["notes"] == [note]

    status, out, err = run_predict(capsys, checkpoint, path)
    assert status == 0, err
    assert f"note: {path}: {note}" in out.splitlines()

    status, out, err = run_explain(capsys, checkpoint, path, tmp_path / "out")
    assert status == 0, err
    assert f"note: {path}: {note}" in out.splitlines()
    summary = json.loads((tmp_path / "out" / explain_cli.MARKER).read_text(encoding="utf-8"))
    assert summary["notes"] == [note]
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    import html

    assert html.escape(note) in page
    assert "<b>" not in page and html.escape(path.name) in page


def test_windows_left_unexplained_are_a_note(tmp_path, checkpoint, capsys):
    path = tmp_path / "song.wav"
    sf.write(path, tone(25.0), SR)
    status = explain_cli.main([str(path), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint),
                               "--max-windows", "1", "--explainer", "gradxinput"])
    out = capsys.readouterr().out
    assert status == 0
    summary = json.loads((tmp_path / "out" / explain_cli.MARKER).read_text(encoding="utf-8"))
    assert summary["notes"] == ["explained the first 1 of 3 windows (--max-windows)"]
    assert len(summary["windows"]) == 1
    assert f"note: {path}: explained the first 1 of 3 windows (--max-windows)" in out.splitlines()


def test_96k_stereo_and_a_three_minute_file_run_without_notes(tmp_path, checkpoint, capsys):
    stereo = tmp_path / "stereo.flac"
    sf.write(stereo, tone(12.0, sr=96000, channels=2), 96000)
    three = tmp_path / "three-minutes.ogg"
    with sf.SoundFile(three, "w", samplerate=SR, channels=1, format="OGG") as handle:
        y = tone(180.0, f0=330.0)
        for start in range(0, y.size, 10 * SR):  # one big Vorbis write crashes libsndfile 1.2.2
            handle.write(y[start:start + 10 * SR])
    status, out, err = run_predict(capsys, checkpoint, stereo, three)
    assert status == 0, err
    assert "note:" not in out
    three_table = predict.predict_file(three, checkpoint=checkpoint)
    assert len(three_table) == 19 and three_table["end_s"].iloc[-1] == pytest.approx(180.0, abs=0.01)


def test_several_files_one_bad_the_others_go_on(tmp_path, checkpoint, capsys):
    good = tmp_path / "good.wav"
    sf.write(good, tone(11.0), SR)
    bad = tmp_path / "bad.wav"
    short(bad)
    status, out, err = run_predict(capsys, checkpoint, bad, good)
    assert status == 1 and "too short" in one_line(err) and str(bad) in err
    assert str(good) in out and "all" in out


# --- unreadable files -----------------------------------------------------------


def _drop_read_override() -> list[str]:
    """A command prefix that runs without the capabilities letting root read any file."""
    prefix = [shutil.which("setpriv") or "setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("running as root and setpriv is not available to drop CAP_DAC_OVERRIDE")
    if probe.returncode != 0:
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE: {probe.stderr.decode().strip()}")
    return prefix


def test_unreadable_files_get_one_line_everywhere(tmp_path, checkpoint):
    """chmod 000, and a file in a folder one may not enter: a real EACCES from the kernel.

    Root reads anything through CAP_DAC_OVERRIDE, so as root the commands run
    in a child process without that capability (``setpriv``); otherwise as is.
    """
    locked = tmp_path / f"{ODD_NAME} locked.wav"
    sf.write(locked, tone(3.0), SR)
    locked.chmod(0)
    closed = tmp_path / "closed"
    closed.mkdir()
    inside = closed / "inside.wav"
    sf.write(inside, tone(3.0), SR)
    closed.chmod(0)
    prefix = _drop_read_override() if os.geteuid() == 0 else []
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    try:
        predicted = subprocess.run([*prefix, sys.executable, "-m", "mer", "predict", str(locked), str(inside),
                                    str(closed), "--checkpoint", str(checkpoint)], cwd=ROOT, env=env,
                                   capture_output=True, text=True, timeout=300)
        script = ("import sys, pandas as pd; from mer import audio; from mer.cli import explain; "
                  "from mer.data import manifest\n"
                  "for p in sys.argv[1:3]:\n"
                  "    try: audio.inspect(p)\n"
                  "    except audio.AudioError as e: print('inspect', e)\n"
                  "explain.main([sys.argv[1], '--out', sys.argv[3], '--checkpoint', sys.argv[4]])\n"
                  "pd.DataFrame({'path': sys.argv[1:3], 'label': ['happy', 'sad'], 'split': 'train'})"
                  ".to_csv(sys.argv[5], index=False)\n"
                  "for r in manifest.load(sys.argv[5]).rejected.itertuples(): print('rejected', r.reason)\n")
        other = subprocess.run([*prefix, sys.executable, "-c", script, str(locked), str(inside),
                                str(tmp_path / "out"), str(checkpoint), str(tmp_path / "manifest.csv")],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        closed.chmod(0o700)
        locked.chmod(0o600)
    assert "Traceback" not in predicted.stderr + other.stderr, predicted.stderr + other.stderr
    assert predicted.returncode == 1 and [l for l in predicted.stdout.splitlines() if not l.startswith("model: ")] == []
    folder_line, *lines = predicted.stderr.strip().splitlines()
    assert len(lines) == 2, predicted.stderr
    # The closed folder itself, given to predict as a folder of songs: one line (first: folders are listed before
    # any file is read), not a traceback.
    assert folder_line.startswith(f"python -m mer predict: {closed}: cannot list this folder") and \
        "ermission denied" in folder_line, folder_line
    inspected = [line.removeprefix("inspect ") for line in other.stdout.splitlines() if line.startswith("inspect")]
    assert len(inspected) == 2
    for line, message, path in zip(lines, inspected, (locked, inside)):
        assert line.endswith(message) and str(path) in message and "permission denied" in message
    explained, *logged = other.stderr.strip().splitlines()
    assert explained.startswith("python -m mer explain") and explained.endswith(inspected[0])
    assert [line.split("skipped: ", 1)[1] for line in logged] == inspected  # the manifest's warnings
    reasons = [line.removeprefix("rejected ") for line in other.stdout.splitlines() if line.startswith("rejected")]
    assert len(reasons) == 2 and all("permission denied" in r for r in reasons)
    assert not (tmp_path / "out").exists()


def test_notes_and_window_count_follow_from_the_description():
    assert any("2 h 00 min" in n for n in audio.AudioInfo(
        path="x.wav", duration_s=7200.0, samplerate=SR, channels=1, target_sr=SR).notes)
    assert math.isclose(audio.AudioInfo(path="x.wav", duration_s=25.0, samplerate=SR, channels=1,
                                        target_sr=SR).window_count(), 3)
