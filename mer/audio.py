"""Loading, writing and playing clips.

Every clip the chapters see goes through :func:`load`: any file libsndfile or
audioread decodes (WAV, FLAC, OGG, MP3, and WAV files whose codec is MP3), as
mono float32 at :data:`SR` = 22 050 Hz, cut or padded to :data:`DURATION` =
10 s. A file that cannot give a usable clip raises :class:`AudioError`, whose
message names the file and the reason (missing, empty, zero-length,
undecodable, all-silent, NaN samples); :mod:`mer.data` turns it into a row of
a dataset's ``rejected`` table.

Decoding, in order:

1. libsndfile (through soundfile): WAV/FLAC/OGG/MP3 and, from libsndfile
   1.1 on, WAV whose codec is MPEG layer III (``WAVE_FORMAT_MPEGLAYER3``,
   tag ``0x0055``, common in real corpora).
2. If libsndfile refuses a WAV whose codec is MP3 (older libsndfile builds),
   the RIFF ``data`` chunk is handed to libsndfile's MP3 decoder as a stream.
3. audioread (FFmpeg / GStreamer / Core Audio, whatever is installed) for
   anything else, e.g. AAC/M4A.

Resampling is librosa's (soxr, high quality).

Notebook: notebooks/00_data.ipynb (the Data page) and every chapter.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import struct
from pathlib import Path

import numpy as np

from . import MerError, ParameterError, store

log = logging.getLogger(__name__)

#: Sampling rate of every clip, in Hz.
SR = 22050
#: Length of every clip, in seconds.
DURATION = 10.0
#: A clip whose peak absolute amplitude is at or below this (-80 dBFS) is
#: "all-silent": it carries nothing a model or a listener could use.
SILENCE_PEAK = 1e-4
#: Vorbis compression level of :func:`write_ogg` and the players, 0 (best
#: quality) .. 1 (smallest file). 0.9 keeps a 10 s clip near 45 KB.
OGG_COMPRESSION = 0.9
#: ITU-R BS.1770 gating block: integrated loudness needs at least this much.
LOUDNESS_BLOCK_S = 0.4

# RIFF format tag of MPEG layer III inside WAV (mmreg.h: WAVE_FORMAT_MPEGLAYER3).
_WAVE_FORMAT_MPEGLAYER3 = 0x0055


class AudioError(MerError):
    """A file cannot give a usable clip.

    Parameters
    ----------
    path : str or Path
        The file.
    reason : str
        Why, in a few words a reader can act on ("empty file (0 bytes)").

    Attributes
    ----------
    path : str
    reason : str
        Kept apart from the path so a dataset's ``rejected`` table can count
        reasons.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot use audio file {self.path!r}: {reason}")


# ----------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------


def load(path, *, sr: int = SR, duration: float | None = DURATION, offset: float = 0.0,
         mono: bool = True) -> np.ndarray:
    """Load a clip as float32 at ``sr``, cut or padded to ``duration`` seconds.

    Parameters
    ----------
    path : str or Path
        Any file libsndfile or audioread decodes (see the module docstring).
    sr : int
        Target sampling rate in Hz (default :data:`SR`); ``None`` keeps the
        file's own rate.
    duration : float or None
        Length of the clip in seconds (default :data:`DURATION`). A shorter
        file is padded with zeros at the end, a longer one cut. ``None``
        returns everything from ``offset`` on (see :func:`load_full`).
    offset : float
        Start of the clip in the file, in seconds.
    mono : bool
        Average the channels (default). ``False`` keeps them.

    Returns
    -------
    y : np.ndarray, shape (n_samples,) or (n_channels, n_samples), float32
        ``n_samples = round(duration * sr)`` when ``duration`` is given.

    Raises
    ------
    AudioError
        If the file is missing, empty (0 bytes), has a header but no frames,
        cannot be decoded, has NaN/inf samples, is all-silent in the part
        read, or ``offset`` lies past its end.
    ParameterError
        If ``sr``, ``duration`` or ``offset`` is not a valid number.

    Notebook: notebooks/00_data.ipynb (the Data page) and every chapter.
    """
    _check_positive("sr", sr, allow_none=True)
    _check_positive("duration", duration, allow_none=True)
    if not np.isfinite(offset) or offset < 0:
        raise ParameterError(f"offset must be a finite number of seconds >= 0, got {offset!r}")

    y, native_sr = _decode(path, offset=offset, duration=duration)  # (n_channels, n_frames)
    _check_samples(path, y, offset=offset)

    import librosa

    if mono:
        y = librosa.to_mono(y)  # mean over channels; (n_frames,)
    if sr is not None and native_sr != sr:
        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
    else:
        sr = native_sr
    y = np.asarray(y, dtype=np.float32)
    if duration is not None:
        y = fit_length(y, n_samples=int(round(duration * sr)))
    return y if mono else np.atleast_2d(y)


def load_full(path, *, sr: int = SR, mono: bool = True) -> np.ndarray:
    """Load a whole file (for cutting a long recording into :func:`windows`).

    Parameters
    ----------
    path : str or Path
    sr : int
        Target sampling rate in Hz.
    mono : bool
        Average the channels (default).

    Returns
    -------
    y : np.ndarray, shape (n_samples,) or (n_channels, n_samples), float32

    Raises
    ------
    AudioError
        As :func:`load`.

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    return load(path, sr=sr, duration=None, mono=mono)


def probe(path, *, duration: float | None = DURATION) -> dict:
    """Check that ``path`` gives a usable clip, fast (no resampling).

    Decodes the first ``duration`` seconds at the file's own rate, the part
    :func:`load` uses by default, and applies the same checks.

    Parameters
    ----------
    path : str or Path
    duration : float or None
        Seconds to decode and check; ``None`` checks the whole file.

    Returns
    -------
    dict
        ``samplerate`` (Hz), ``channels``, ``duration_s`` of the part read.

    Raises
    ------
    AudioError
        As :func:`load`.

    Notebook: notebooks/00_data.ipynb (the Data page, through mer.data).
    """
    y, native_sr = _decode(path, offset=0.0, duration=duration)
    _check_samples(path, y, offset=0.0)
    return {"samplerate": native_sr, "channels": y.shape[0], "duration_s": y.shape[1] / native_sr}


def fit_length(y: np.ndarray, *, n_samples: int) -> np.ndarray:
    """Cut ``y`` to ``n_samples`` or pad it with zeros at the end.

    Parameters
    ----------
    y : np.ndarray, shape (..., n)
    n_samples : int

    Returns
    -------
    np.ndarray, shape (..., n_samples)

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    if int(n_samples) != n_samples or n_samples < 1:
        raise ParameterError(f"n_samples must be a positive integer, got {n_samples!r}")
    import librosa

    return librosa.util.fix_length(np.asarray(y), size=int(n_samples), axis=-1)


def windows(y: np.ndarray, *, sr: int = SR, duration: float = DURATION,
            hop: float | None = None) -> np.ndarray:
    """Cut a long signal into windows of ``duration`` seconds.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,)
    sr : int
        Sampling rate of ``y`` in Hz.
    duration : float
        Window length in seconds.
    hop : float, optional
        Seconds between window starts; default ``duration`` (no overlap).

    Returns
    -------
    np.ndarray, shape (n_windows, round(duration * sr)), float32
        Whole windows only: a tail shorter than a window is dropped, except
        when ``y`` is shorter than one window, which gives one zero-padded
        window.

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    _check_positive("sr", sr)
    _check_positive("duration", duration)
    hop = duration if hop is None else hop
    _check_positive("hop", hop)
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"windows expects a mono signal of shape (n_samples,), got {y.shape}")
    length = int(round(duration * sr))
    step = max(1, int(round(hop * sr)))
    if y.size < length:
        return fit_length(y, n_samples=length)[np.newaxis, :]
    import librosa

    # frame(axis=0) gives (n_windows, length) as a view; copy so callers own it.
    return np.ascontiguousarray(librosa.util.frame(y, frame_length=length, hop_length=step, axis=0))


def _check_positive(name, value, *, allow_none=False):
    if value is None and allow_none:
        return
    try:
        ok = bool(np.isfinite(value)) and value > 0
    except TypeError:
        ok = False
    if not ok:
        raise ParameterError(f"{name} must be a positive number, got {value!r}")


def _check_samples(path, y, *, offset):
    """Raise AudioError if decoded ``y`` (n_channels, n_frames) is unusable."""
    if not np.all(np.isfinite(y)):
        raise AudioError(path, "contains NaN or infinite samples")
    if float(np.max(np.abs(y))) <= SILENCE_PEAK:
        raise AudioError(path, f"all-silent (peak <= {SILENCE_PEAK:g}, i.e. -80 dBFS)"
                         + (f" from {offset} s on" if offset else ""))


def _decode(path, *, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Decode ``duration`` seconds from ``offset`` at the file's own rate.

    Returns ``(y, sr)`` with ``y`` of shape (n_channels, n_frames), float32.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")

    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as handle:
            return _read_soundfile(path, handle, offset=offset, duration=duration)
    except sf.LibsndfileError as error:
        libsndfile_reason = str(error).replace(f"Error opening {str(path)!r}: ", "")

    # libsndfile older than 1.1 refuses WAV whose codec is MP3: hand the data
    # chunk to its MP3 decoder ourselves (RIFF parsing is short, see below).
    mp3 = _mp3_in_wav(path)
    if mp3 is not None:
        try:
            with sf.SoundFile(io.BytesIO(mp3), format="MP3") as handle:
                return _read_soundfile(path, handle, offset=offset, duration=duration)
        except sf.LibsndfileError as error:
            raise AudioError(path, f"undecodable: WAV with an MP3 codec whose MP3 data libsndfile "
                                   f"cannot decode ({error})") from None

    return _read_audioread(path, offset=offset, duration=duration, libsndfile_reason=libsndfile_reason)


def _read_soundfile(path, handle, *, offset, duration):
    sr = handle.samplerate
    if handle.frames == 0:
        raise AudioError(path, "zero-length: a valid header but no audio frames")
    start = int(round(offset * sr))
    if start >= handle.frames:
        raise AudioError(path, f"offset {offset} s lies past the end of the file "
                               f"({handle.frames / sr:.3f} s)")
    if start:
        handle.seek(start)
    frames = -1 if duration is None else int(np.ceil(duration * sr))
    try:
        y = handle.read(frames=frames, dtype="float32", always_2d=True)  # (n_frames, n_channels)
    except Exception as error:  # a truncated or corrupt body after a valid header
        raise AudioError(path, f"undecodable: {error}") from None
    if y.shape[0] == 0:
        raise AudioError(path, "zero-length: a valid header but no audio frames")
    return np.ascontiguousarray(y.T), sr


def _mp3_in_wav(path) -> bytes | None:
    """The MP3 stream inside a RIFF/WAVE file with format tag 0x0055, else None."""
    # Written by hand because neither soundfile nor the standard library's
    # `wave` module exposes the raw chunks of a WAV they cannot decode.
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        format_tag = None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                body = handle.read(size)
                if len(body) < 2:
                    return None
                format_tag = struct.unpack("<H", body[:2])[0]
                if format_tag != _WAVE_FORMAT_MPEGLAYER3:
                    return None
            elif chunk_id == b"data":
                if format_tag != _WAVE_FORMAT_MPEGLAYER3:
                    return None
                return handle.read(size)
            else:
                handle.seek(size, os.SEEK_CUR)
            if size % 2:  # chunks are padded to an even size
                handle.seek(1, os.SEEK_CUR)


def _read_audioread(path, *, offset, duration, libsndfile_reason):
    import audioread
    from librosa.util import buf_to_float

    try:
        with audioread.audio_open(str(path)) as handle:
            sr, channels = handle.samplerate, handle.channels
            start = int(round(offset * sr)) * channels
            stop = None if duration is None else start + int(np.ceil(duration * sr)) * channels
            chunks, read = [], 0
            for buffer in handle:
                frame = buf_to_float(buffer, n_bytes=2, dtype=np.float32)  # interleaved int16
                chunks.append(frame)
                read += frame.size
                if stop is not None and read >= stop:
                    break
    except audioread.NoBackendError:
        backends = [b.__name__ for b in audioread.available_backends()]
        hint = "" if any("FFmpeg" in b for b in backends) else " (installing ffmpeg may help)"
        raise AudioError(path, f"undecodable: libsndfile says {libsndfile_reason!r} and no "
                               f"audioread backend ({', '.join(backends)}) can read it{hint}") from None
    except (audioread.DecodeError, OSError, EOFError) as error:
        raise AudioError(path, f"undecodable: libsndfile says {libsndfile_reason!r}, "
                               f"audioread says {error!r}") from None
    y = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if y.size == 0:
        raise AudioError(path, "zero-length: a valid header but no audio frames")
    y = y[start:stop]
    if y.size == 0:
        raise AudioError(path, f"offset {offset} s lies past the end of the file")
    return np.ascontiguousarray(y.reshape(-1, channels).T), sr


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------


def write_wav(path, y: np.ndarray, *, sr: int = SR, subtype: str = "PCM_16") -> Path:
    """Write ``y`` to a WAV file, atomically.

    Parameters
    ----------
    path : str or Path
    y : np.ndarray, shape (n_samples,) or (n_channels, n_samples)
        Samples in [-1, 1]; values outside are clipped (with a warning in the
        log) rather than wrapped around by the integer conversion.
    sr : int
        Sampling rate in Hz.
    subtype : str
        soundfile subtype (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``).

    Returns
    -------
    pathlib.Path
        ``path``. If writing fails, a file already at ``path`` is untouched.

    Notebook: notebooks/04_sonification.ipynb.
    """
    return _write(path, y, sr=sr, format="WAV", subtype=subtype)


def write_ogg(path, y: np.ndarray, *, sr: int = SR, compression: float = OGG_COMPRESSION) -> Path:
    """Write ``y`` to an Ogg Vorbis file, atomically.

    Parameters
    ----------
    path : str or Path
    y : np.ndarray, shape (n_samples,) or (n_channels, n_samples)
        Samples in [-1, 1] (clipped otherwise).
    sr : int
        Sampling rate in Hz.
    compression : float
        Vorbis compression level, 0 (best quality) .. 1 (smallest).

    Returns
    -------
    pathlib.Path
        ``path``. If writing fails, a file already at ``path`` is untouched.

    Notebook: notebooks/04_sonification.ipynb.
    """
    if not 0.0 <= compression <= 1.0:
        raise ParameterError(f"compression must be in [0, 1], got {compression!r}")
    return _write(path, y, sr=sr, format="OGG", subtype="VORBIS", compression_level=compression)


def _prepare(y, *, sr) -> np.ndarray:
    """Check and shape ``y`` for soundfile: (n_frames, n_channels), clipped."""
    _check_positive("sr", sr)
    if int(sr) != sr:
        raise ParameterError(f"sr must be an integer number of Hz, got {sr!r}")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim not in (1, 2) or y.size == 0:
        raise ParameterError(f"y must have shape (n_samples,) or (n_channels, n_samples) and "
                             f"at least one sample, got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ParameterError("y contains NaN or infinite samples; cannot write them as audio")
    peak = float(np.max(np.abs(y)))
    if peak > 1.0:
        log.warning("clipping samples to [-1, 1] (peak %.3f) before writing", peak)
        y = np.clip(y, -1.0, 1.0)
    return y.T if y.ndim == 2 else y


def _write(path, y, *, sr, format, **options) -> Path:
    import soundfile as sf

    frames = _prepare(y, sr=sr)
    with store.atomic_path(path) as tmp:
        try:
            sf.write(str(tmp), frames, int(sr), format=format, **options)
        except (ValueError, TypeError, sf.LibsndfileError) as error:
            raise ParameterError(f"cannot write {path} as {format} with {options}: {error}") from None
    return Path(path)


def _ogg_bytes(y, *, sr, compression=OGG_COMPRESSION) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, _prepare(y, sr=sr), int(sr), format="OGG", subtype="VORBIS",
             compression_level=compression)
    return buffer.getvalue()


# ----------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------


def loudness(y: np.ndarray, *, sr: int = SR) -> float:
    """Integrated loudness of ``y`` in LUFS (ITU-R BS.1770-4, via pyloudnorm).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,) or (n_channels, n_samples)
    sr : int
        Sampling rate in Hz.

    Returns
    -------
    float
        LUFS; a full-scale 1 kHz sine reads -3.01 LUFS. ``-inf`` when every
        400 ms block is below the standard's absolute gate (-70 LUFS), e.g.
        digital silence.

    Raises
    ------
    ParameterError
        If ``y`` is shorter than one gating block (:data:`LOUDNESS_BLOCK_S`,
        400 ms): the standard defines no integrated loudness for it, and a
        guess would rank short clips wrongly.

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    import pyloudnorm

    _check_positive("sr", sr)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim not in (1, 2):
        raise ParameterError(f"y must have shape (n_samples,) or (n_channels, n_samples), got {y.shape}")
    n_samples = y.shape[-1]
    if n_samples < LOUDNESS_BLOCK_S * sr:
        raise ParameterError(f"y lasts {n_samples / sr * 1000:.0f} ms; integrated loudness "
                             f"(BS.1770) needs at least one {LOUDNESS_BLOCK_S * 1000:.0f} ms block")
    if not np.all(np.isfinite(y)):
        raise ParameterError("y contains NaN or infinite samples")
    meter = pyloudnorm.Meter(sr, block_size=LOUDNESS_BLOCK_S)
    return float(meter.integrated_loudness(y.T if y.ndim == 2 else y))


# ----------------------------------------------------------------------------
# Playing
# ----------------------------------------------------------------------------


def player(y: np.ndarray, *, sr: int = SR, label: str | None = None, normalize: bool = False):
    """A player with the clip embedded as Ogg Vorbis (about 45 KB per 10 s).

    For a few clips on a page. A page with many players should use
    :func:`player_file`, so the book does not carry megabytes of base64.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,) or (n_channels, n_samples)
    sr : int
        Sampling rate in Hz.
    label : str, optional
        Caption shown above the player.
    normalize : bool
        Scale to a peak of 0.99 first (for quiet signals, e.g. sonified
        relevance); off by default so loudness differences stay audible.

    Returns
    -------
    IPython.display.HTML
        ``<figure>`` with an ``<audio controls>`` whose source is a
        ``data:audio/ogg;base64,...`` URI.

    Notebook: notebooks/04_sonification.ipynb and the Data page.
    """
    from IPython.display import HTML

    y = _normalized(y) if normalize else y
    encoded = base64.b64encode(_ogg_bytes(y, sr=sr)).decode("ascii")
    return HTML(_audio_html(f"data:audio/ogg;base64,{encoded}", label))


def audio_dir() -> Path:
    """``<root>/_static/audio``: where :func:`player_file` writes by default."""
    return store.root() / "_static" / "audio"


def page_dir() -> Path:
    """``<root>/book/chapters``: where the executed chapters (the pages) live."""
    return store.root() / "book" / "chapters"


#: Suffixes :func:`page_file` replaces by ``.ogg``; any other dot stays in the name.
AUDIO_SUFFIXES = (".ogg", ".oga", ".wav", ".flac", ".mp3")


def player_file(y: np.ndarray, *, sr: int = SR, path, label: str | None = None,
                normalize: bool = False, page=None):
    """Write the clip as an OGG file and return a player that links to it.

    How the file reaches the built book: Jupyter Book 1.x adds a ``_static``
    folder beside ``_config.yml`` (here the repository root) to Sphinx's
    ``html_static_path``, and Sphinx copies that folder, subfolders kept, to
    ``_build/html/_static/``. Raw HTML in a notebook's output is passed
    through untouched, so a *relative* ``src`` works in the built book
    (``_build/html/book/chapters/x.html`` → ``../../_static/audio/...``) and
    in Jupyter opening ``book/chapters/x.ipynb`` alike, on a server or from
    ``file://``. Sphinx does not copy files named only in raw HTML, hence
    ``_static`` rather than a folder beside the notebook.

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,) or (n_channels, n_samples)
    sr : int
        Sampling rate in Hz.
    path : str or Path
        Where to write the OGG. A relative path is taken under
        :func:`audio_dir` (``"04_sonification/clip-7.ogg"``); an audio
        suffix is replaced by ``.ogg``, otherwise ``.ogg`` is appended
        (``"grid-t0.5"`` -> ``grid-t0.5.ogg``).
    label : str, optional
        Caption shown above the player.
    normalize : bool
        Scale to a peak of 0.99 first.
    page : str or Path, optional
        Folder of the page that shows the player; default :func:`page_dir`.
        The ``src`` is relative to it.

    Returns
    -------
    IPython.display.HTML
        ``<figure>`` with ``<audio controls src="../../_static/audio/...">``.

    Notebook: notebooks/04_sonification.ipynb.
    """
    from IPython.display import HTML

    return HTML(_audio_html(page_file(y, sr=sr, path=path, normalize=normalize, page=page), label))


def page_file(y: np.ndarray, *, sr: int = SR, path, normalize: bool = False, page=None) -> str:
    """Write the clip as an OGG file for a page; return its ``src`` relative to the page.

    The file half of :func:`player_file` (same ``path``, ``normalize`` and
    ``page``), for players whose markup is built elsewhere
    (:func:`mer.widgets.listening_slider`).

    Returns
    -------
    str
        ``"../../_static/audio/..."``, a POSIX path relative to ``page``.

    Notebook: notebooks/04_sonification.ipynb.
    """
    path = Path(path)
    # Only an audio suffix is replaced: with_suffix on "grid-t0.5-sonified" would
    # cut at the decimal point and give every threshold the same file.
    path = path.with_suffix(".ogg") if path.suffix.lower() in AUDIO_SUFFIXES else path.with_name(path.name + ".ogg")
    if not path.is_absolute():
        path = audio_dir() / path
    write_ogg(path, _normalized(y) if normalize else y, sr=sr)
    page = Path(page) if page is not None else page_dir()
    return Path(os.path.relpath(path.resolve(), page.resolve())).as_posix()


def _normalized(y):
    y = np.asarray(y, dtype=np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return y * (0.99 / peak) if peak > 0 else y


def _audio_html(src: str, label: str | None) -> str:
    caption = f"<figcaption>{html.escape(label)}</figcaption>" if label else ""
    return (f'<figure class="mer-player" style="margin:0.5em 0">{caption}'
            f'<audio controls preload="metadata">'
            f'<source src="{html.escape(src, quote=True)}" type="audio/ogg"></audio></figure>')
