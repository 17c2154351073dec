"""mer.audio: every format a corpus brings, every bad file it may hold."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf

from mer import MerError, ParameterError, audio, display

SR = audio.SR


def tone(seconds=2.0, sr=SR, f0=220.0, seed=0):
    """A harmonic tone (5 partials, 1/k amplitudes) with a little noise."""
    t = np.arange(int(round(seconds * sr))) / sr
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    y = 0.3 * y / np.max(np.abs(y)) + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return y.astype(np.float32)


def mp3_in_wav(path, y, sr):
    """A RIFF/WAVE file whose codec is MPEG layer III (format tag 0x0055), as in real corpora."""
    buffer = io.BytesIO()
    sf.write(buffer, y, sr, format="MP3")
    mp3 = buffer.getvalue()
    # MPEGLAYER3WAVEFORMAT: WAVEFORMATEX (cbSize = 12) + wID, fdwFlags, nBlockSize,
    # nFramesPerBlock, nCodecDelay.
    fmt = struct.pack("<HHIIHHH", 0x0055, 1, sr, 4000, 1, 0, 12) + struct.pack("<HIHHH", 1, 2, 209, 1, 1393)
    chunks = (b"fmt " + struct.pack("<I", len(fmt)) + fmt
              + b"fact" + struct.pack("<I", 4) + struct.pack("<I", len(y))
              + b"data" + struct.pack("<I", len(mp3)) + mp3 + b"\0" * (len(mp3) % 2))
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return path


mp3_writable = "MP3" in sf.available_formats()
needs_mp3 = pytest.mark.skipif(not mp3_writable, reason=f"libsndfile {sf.__libsndfile_version__} lacks MP3")


# --- formats -------------------------------------------------------------------


@pytest.mark.parametrize("suffix, options", [
    (".wav", {}), (".flac", {}), (".ogg", {}),
    pytest.param(".mp3", {"format": "MP3"}, marks=needs_mp3),
])
def test_every_format_loads_as_mono_float32_at_sr(tmp_path, suffix, options):
    path = tmp_path / f"clip{suffix}"
    y = tone(2.0)
    sf.write(path, y, SR, **options)
    clip = audio.load(path)
    assert clip.dtype == np.float32 and clip.shape == (int(audio.DURATION * SR),)
    # The tone is there at its pitch (lossy codecs delay it a little); the padding is silent.
    sounding = clip[: 2 * SR]
    spectrum = np.abs(np.fft.rfft(sounding))
    assert np.argmax(spectrum) * SR / sounding.size == pytest.approx(220.0, abs=1.0)
    assert np.max(np.abs(sounding)) > 0.2
    assert np.all(clip[int(2.2 * SR):] == 0)


@needs_mp3
def test_wav_whose_codec_is_mp3_loads(tmp_path):
    path = mp3_in_wav(tmp_path / "mp3codec.wav", tone(2.0), SR)
    clip = audio.load(path, duration=2.0)
    assert clip.shape == (2 * SR,) and np.abs(clip).max() > 0.2


@needs_mp3
def test_mp3_in_wav_fallback_reads_the_data_chunk(tmp_path):
    # The path an older libsndfile takes: the MP3 stream in the RIFF data chunk.
    y = tone(1.0)
    path = mp3_in_wav(tmp_path / "mp3codec.wav", y, SR)
    stream = audio._mp3_in_wav(path)
    assert stream[:2] == b"\xff\xf3" or stream[:3] == b"ID3"
    decoded, sr = sf.read(io.BytesIO(stream))
    assert sr == SR and abs(decoded.size - y.size) < 2 * 1152
    plain = tmp_path / "pcm.wav"
    sf.write(plain, y, SR)
    assert audio._mp3_in_wav(plain) is None


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_audioread_decodes_what_libsndfile_cannot(tmp_path):
    wav, m4a = tmp_path / "source.wav", tmp_path / "clip.m4a"
    sf.write(wav, tone(2.0), SR)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    clip = audio.load(m4a, duration=2.0)
    assert clip.shape == (2 * SR,) and np.abs(clip).max() > 0.2


# --- resampling, channels, length -------------------------------------------------


def test_resamples_from_44100_and_averages_stereo(tmp_path):
    path = tmp_path / "stereo44k.wav"
    left, right = tone(1.0, sr=44100, f0=440.0), np.zeros(44100, dtype=np.float32)
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    clip = audio.load(path, duration=1.0)
    assert clip.shape == (SR,)
    # Mono is the channel mean: half the left channel's level.
    assert np.max(np.abs(clip)) == pytest.approx(0.5 * np.max(np.abs(left)), rel=0.05)
    spectrum = np.abs(np.fft.rfft(clip))
    assert np.argmax(spectrum) * SR / clip.size == pytest.approx(440.0, abs=2.0)
    both = audio.load(path, duration=1.0, mono=False)
    assert both.shape == (2, SR)


def test_cuts_and_pads_to_exact_length_and_honours_offset(tmp_path):
    path = tmp_path / "long.wav"
    y = tone(3.0)
    sf.write(path, y, SR, subtype="FLOAT")
    assert audio.load(path, duration=1.5).shape == (int(1.5 * SR),)
    assert audio.load(path, duration=5.0).shape == (5 * SR,)
    later = audio.load(path, duration=1.0, offset=1.0)
    np.testing.assert_allclose(later, y[SR:2 * SR], atol=1e-6)
    assert audio.load_full(path).shape == (3 * SR,)
    assert audio.fit_length(np.ones(3), n_samples=5).tolist() == [1, 1, 1, 0, 0]
    assert audio.fit_length(np.ones(9), n_samples=5).shape == (5,)
    with pytest.raises(audio.AudioError, match="past the end"):
        audio.load(path, offset=4.0)


def test_windows_cut_whole_windows():
    y = np.arange(25 * 100, dtype=np.float32)
    frames = audio.windows(y, sr=100, duration=10.0)
    assert frames.shape == (2, 1000) and frames[1, 0] == 1000
    assert audio.windows(y, sr=100, duration=10.0, hop=5.0).shape == (4, 1000)
    short = audio.windows(y[:300], sr=100, duration=10.0)
    assert short.shape == (1, 1000) and np.all(short[0, 300:] == 0)


# --- bad input ------------------------------------------------------------------


def silent_wav(path):
    sf.write(path, np.zeros(SR, dtype=np.float32), SR)


def nan_wav(path):
    y = tone(1.0)
    y[100] = np.nan
    sf.write(path, y, SR, subtype="FLOAT")


def headers_only(path):
    sf.write(path, np.zeros((0, 1), dtype=np.float32), SR)


def garbage(path):
    path.write_bytes(b"RIFF" + np.random.default_rng(0).bytes(2000))


@pytest.mark.parametrize("make, reason", [
    (None, "file not found"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (headers_only, "zero-length"),
    (garbage, "undecodable"),
    (silent_wav, "all-silent"),
    (nan_wav, "NaN"),
])
def test_bad_files_raise_audio_error_naming_file_and_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    if make is not None:
        make(path)
    with pytest.raises(audio.AudioError, match=reason) as caught:
        audio.load(path)
    assert str(path) in str(caught.value) and reason in caught.value.reason
    assert isinstance(caught.value, MerError)
    with pytest.raises(audio.AudioError, match=reason):
        audio.probe(path)


def test_bad_parameters_raise_parameter_error(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, tone(1.0), SR)
    for options in ({"sr": 0}, {"duration": -1.0}, {"offset": float("nan")}):
        with pytest.raises(ParameterError):
            audio.load(path, **options)


# --- writing --------------------------------------------------------------------


@pytest.mark.parametrize("write, suffix", [(audio.write_wav, ".wav"), (audio.write_ogg, ".ogg")])
def test_writes_round_trip_and_leave_no_temporary_file(tmp_path, write, suffix):
    path = tmp_path / f"out{suffix}"
    y = tone(1.0)
    assert write(path, y, sr=SR) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    back = audio.load(path, duration=1.0)
    assert np.corrcoef(back[1000:-1000], y[1000:-1000])[0, 1] > 0.95


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "out.wav"
    audio.write_wav(path, tone(1.0), sr=SR)
    before = path.read_bytes()
    with pytest.raises(ParameterError, match="VORBIS"):  # libsndfile refuses Vorbis in WAV
        audio.write_wav(path, tone(2.0), sr=SR, subtype="VORBIS")
    with pytest.raises(ParameterError, match="NaN"):
        audio.write_wav(path, np.full(10, np.nan), sr=SR)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


# --- playing (mer.display) -------------------------------------------------------


def test_player_embeds_small_ogg():
    page = display.player(tone(10.0), sr=SR, label="Happy <major>").data
    assert "data:audio/ogg;base64," in page and "audio/wav" not in page
    assert "Happy &lt;major&gt;" in page
    # 10 s as 16-bit WAV in base64 would be ~590 KB.
    assert len(page) < 120_000


def test_player_file_writes_ogg_and_links_it_relatively(tmp_path, monkeypatch):
    monkeypatch.setenv("MER_ROOT", str(tmp_path))
    page = display.player_file(tone(2.0), sr=SR, path="04_sonification/clip-7", label="clip 7").data
    written = tmp_path / "_static" / "audio" / "04_sonification" / "clip-7.ogg"
    assert sf.info(written).format == "OGG"
    assert 'src="../../_static/audio/04_sonification/clip-7.ogg"' in page
    assert "base64" not in page and "clip 7" in page


# --- loudness -------------------------------------------------------------------


def test_loudness_of_1khz_sine():
    t = np.arange(2 * SR) / SR
    # BS.1770: a 1 kHz sine of peak 1 reads -3.01 LUFS; at peak 0.1, 20 dB less.
    assert audio.loudness(np.sin(2 * np.pi * 1000 * t), sr=SR) == pytest.approx(-3.01, abs=0.1)
    assert audio.loudness(0.1 * np.sin(2 * np.pi * 1000 * t), sr=SR) == pytest.approx(-23.01, abs=0.1)
    assert audio.loudness(np.zeros(SR), sr=SR) == -np.inf
    with pytest.raises(ParameterError, match="400 ms"):
        audio.loudness(np.sin(2 * np.pi * 1000 * t[: SR // 4]), sr=SR)


def test_player_files_keep_a_decimal_point_in_their_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MER_ROOT", str(tmp_path))
    first = display.page_file(tone(1.0), sr=SR, path="04_sonification/grid-t0.5-sonified")
    second = display.page_file(tone(1.0), sr=SR, path="04_sonification/grid-t0.5-complement")
    assert first.endswith("grid-t0.5-sonified.ogg") and second.endswith("grid-t0.5-complement.ogg")
    assert display.page_file(tone(1.0), sr=SR, path="x/clip.wav").endswith("x/clip.ogg")
