"""``python -m mer explain``: any audio file -> relevance, sonified audio and a page."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mer.cli import explain

SR = 22050
ROOT = Path(__file__).resolve().parent.parent
needs_mp3 = pytest.mark.skipif("MP3" not in sf.available_formats(),
                               reason=f"libsndfile {sf.__libsndfile_version__} cannot write MP3")


def song(seconds: float = 11.5, seed: int = 0) -> np.ndarray:
    """Two chords with harmonics and a melody: 10 s window plus a 1.5 s tail."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for start, chord in ((0.0, (220.0, 277.2, 329.6)), (5.0, (196.0, 233.1, 293.7))):
        on = (t >= start) & (t < start + 5.0) | (t >= start + 10.0)
        for f0 in chord:
            y += on * sum(0.04 / h * np.sin(2 * np.pi * f0 * h * t) for h in range(1, 5))
    y += 0.06 * np.sin(2 * np.pi * np.resize(np.repeat(rng.choice([440.0, 523.3, 659.3], 24), SR // 2), t.size) * t)
    return (y + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def mp3_in_wav(path: Path, y: np.ndarray, sr: int) -> Path:
    """A RIFF/WAVE file whose codec is MPEG layer III (format tag 0x0055)."""
    buffer = io.BytesIO()
    sf.write(buffer, y, sr, format="MP3")
    mp3 = buffer.getvalue()
    # MPEGLAYER3WAVEFORMAT: WAVEFORMATEX (cbSize 12) + wID, fdwFlags, nBlockSize, nFramesPerBlock, nCodecDelay.
    fmt = struct.pack("<HHIIHHH", 0x0055, 1, sr, 4000, 1, 0, 12) + struct.pack("<HIHHH", 1, 2, 209, 1, 1393)
    chunks = (b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4)
              + struct.pack("<I", len(y)) + b"data" + struct.pack("<I", len(mp3)) + mp3 + b"\0" * (len(mp3) % 2))
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return path


@pytest.fixture(scope="module")
def checkpoint(untrained_checkpoint) -> Path:
    """The untrained checkpoint of conftest: the CLI's code paths, not a model's quality."""
    return untrained_checkpoint


def run_explain(path: Path, out: Path, checkpoint: Path, capsys, *extra: str) -> tuple[int, str]:
    status = explain.main([str(path), "--out", str(out), "--checkpoint", str(checkpoint), *extra])
    return status, capsys.readouterr().err


def assert_working_page(out: Path, n_windows: int) -> str:
    page = (out / "index.html").read_text()
    summary = json.loads((out / explain.MARKER).read_text())
    assert len(summary["windows"]) == n_windows
    for row in summary["windows"]:
        assert (out / row["image"]).stat().st_size > 1000
        for kind in ("original", "sonified", "complement"):
            y, sr = sf.read(out / row[kind])
            assert sr == SR and len(y) == 10 * SR and np.abs(y).max() > 0.01
            assert f"src='{row[kind]}'" in page
        assert row["loudness_diff_db"] <= 1.0
    assert page.count("<audio") == 3 * n_windows
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    return page


@needs_mp3
def test_mp3_gives_a_page_with_players_and_escaped_names(tmp_path, checkpoint, capsys):
    path = tmp_path / 'song <b>&"it\'s".mp3'
    sf.write(path, song(), SR, format="MP3")
    status, err = run_explain(path, tmp_path / "out", checkpoint, capsys)
    assert status == 0, err
    page = assert_working_page(tmp_path / "out", n_windows=2)
    assert "<b>" not in page and "&lt;b&gt;&amp;&quot;it&#x27;s&quot;.mp3" in page


def test_flac(tmp_path, checkpoint, capsys):
    path = tmp_path / "song.flac"
    sf.write(path, song(10.2), SR, format="FLAC")
    status, err = run_explain(path, tmp_path / "out", checkpoint, capsys, "--explainer", "gradxinput")
    assert status == 0, err
    assert_working_page(tmp_path / "out", n_windows=1)


@needs_mp3
def test_wav_whose_codec_is_mp3(tmp_path, checkpoint, capsys):
    path = mp3_in_wav(tmp_path / "song.wav", song(10.2), SR)
    status, err = run_explain(path, tmp_path / "out", checkpoint, capsys)
    assert status == 0, err
    assert_working_page(tmp_path / "out", n_windows=1)
    # A second run replaces its own earlier output.
    status, err = run_explain(path, tmp_path / "out", checkpoint, capsys)
    assert status == 0, err
    assert_working_page(tmp_path / "out", n_windows=1)


def test_corrupt_file_exits_non_zero_with_one_line_and_writes_nothing(tmp_path, checkpoint):
    path = tmp_path / "broken.mp3"
    path.write_bytes(b"ID3\x03\x00" + bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    result = subprocess.run([sys.executable, "-m", "mer", "explain", str(path), "--out", str(tmp_path / "out"),
                             "--checkpoint", str(checkpoint)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.mp3" in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp3"]


@pytest.mark.parametrize("make, reason", [
    (lambda p: sf.write(p, np.zeros(3 * SR, np.float32), SR), "silent"),
    (lambda p: sf.write(p, song(0.5), SR), "too short"),
    (lambda p: p.write_bytes(b""), "empty"),
])
def test_bad_input_gets_a_clear_reason(tmp_path, checkpoint, capsys, make, reason):
    path = tmp_path / "input.wav"
    make(path)
    status, err = run_explain(path, tmp_path / "out", checkpoint, capsys)
    assert status == 1
    assert len(err.strip().splitlines()) == 1 and reason in err
    assert not (tmp_path / "out").exists()


def test_a_foreign_folder_is_not_overwritten(tmp_path, checkpoint, capsys):
    path = tmp_path / "song.flac"
    sf.write(path, song(10.2), SR, format="FLAC")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("precious")
    status, err = run_explain(path, tmp_path / "out", checkpoint, capsys)
    assert status == 1 and "not an earlier" in err
    assert (tmp_path / "out" / "thesis.tex").read_text() == "precious"
