"""Loading, writing and measuring clips (players are :mod:`mer.display`'s).

Every clip the chapters see goes through :func:`load`: any file libsndfile or
audioread decodes (WAV, FLAC, OGG, MP3, and WAV files whose codec is MP3), as
mono float32 at :data:`SR` = 22 050 Hz, cut or padded to :data:`DURATION` =
10 s. Whether a file is usable at all is decided in one place,
:func:`inspect`, for ``python -m mer predict``, ``python -m mer explain``
and the datasets alike: a file that is missing, not a regular file,
unreadable (permissions), empty, undecodable, without frames, shorter than
:data:`MIN_DURATION_S`, all-silent or holding NaN samples raises
:class:`AudioError`, whose one-line message names the file, what is wrong
and what to do; :mod:`mer.data` turns it into a row of a dataset's
``rejected`` table (and a warning in the log). A usable file may still carry
notes (a low sampling rate, a file much longer than a window), which the
commands print and the explanation page shows. A file of any length is read
one window at a time by :func:`iter_windows`, so memory does not grow with it.

Decoding, in order:

1. libsndfile (through soundfile): WAV/FLAC/OGG/MP3 and, from libsndfile
   1.1 on, WAV whose codec is MPEG layer III (``WAVE_FORMAT_MPEGLAYER3``,
   tag ``0x0055``, common in real corpora).
2. If libsndfile refuses a WAV whose codec is MP3 (older libsndfile builds),
   the RIFF ``data`` chunk is handed to libsndfile's MP3 decoder as a stream.
3. audioread (FFmpeg / GStreamer / Core Audio, whatever is installed) for
   anything else, e.g. AAC/M4A. When that is FFmpeg, the samples are then
   read from ffmpeg's pipe directly (the same command and 16-bit samples),
   only as fast as they are used: audioread's own reader queues the whole
   decoded file in memory when the model is slower than the decoder.

Resampling is librosa's (soxr, high quality).

Notebook: notebooks/00_data.ipynb (the Data page) and every chapter.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

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
#: The least audio (seconds) a file must hold to be used at all, and a tail
#: must hold to become a (zero-padded) window of its own; one value for
#: ``python -m mer predict``, ``python -m mer explain`` and the datasets.
MIN_DURATION_S = 1.0
#: A file longer than this (seconds) is accepted with a note: it is read and
#: judged window by window (:func:`iter_windows`).
LONG_FILE_S = 600.0
#: Frames decoded at a time while a file is judged or windowed (65 536: about
#: 1.5 s at 44.1 kHz, 0.5 MB of stereo float32).
_BLOCK_FRAMES = 1 << 16

#: The names :func:`audio_files` takes for audio in a folder: the formats libsndfile and audioread (FFmpeg)
#: decode, by their usual suffixes (case ignored). A file named otherwise is listed as skipped, never read.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".aif", ".aiff",
                  ".aifc", ".wma", ".webm")

# RIFF format tag of MPEG layer III inside WAV (mmreg.h: WAVE_FORMAT_MPEGLAYER3).
_WAVE_FORMAT_MPEGLAYER3 = 0x0055


class AudioError(MerError):
    """A file cannot give a usable clip.

    Parameters
    ----------
    path : str or Path
        The file.
    reason : str
        What is wrong, in a few words ("empty file (0 bytes)"); whitespace is
        collapsed so the message stays on one line.
    hint : str, optional
        What to do about it ("export or copy it again").

    Attributes
    ----------
    path : str
    reason : str
        Kept apart from the path and the hint so a dataset's ``rejected``
        table can count reasons.
    hint : str

    Notes
    -----
    ``str(error)`` is the one line ``python -m mer predict``, ``python -m mer
    explain`` and the datasets' log show: ``cannot use audio file
    '<path>': <reason>; <hint>``.
    """

    def __init__(self, path, reason: str, hint: str = ""):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())
        self.hint = " ".join(str(hint).split())
        # The path as the user typed it (quotes and letters of any script kept),
        # only control characters escaped, so the message stays one line.
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in self.path)
        super().__init__(f"cannot use audio file '{shown}': {self.reason}"
                         + (f"; {self.hint}" if self.hint else ""))


# What to do, per problem (the second half of an AudioError's line).
_HINT_PATH = "check the path"
_HINT_ACCESS = "check the permissions of the file and of its folders (e.g. chmod a+r)"
_HINT_AGAIN = "export or copy it again"
_HINT_CONVERT = "convert it to WAV or FLAC (e.g. ffmpeg -i FILE out.wav) or export it again"
_HINT_SILENT = "check that it is the recording you meant (not a muted or empty export)"
_HINT_NAN = "export it again as integer PCM (e.g. 16-bit WAV)"


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`inspect` found out about a usable file.

    Attributes
    ----------
    path : str
    duration_s : float
        Length of the whole file in seconds (from the header, or counted
        while decoding when the whole file was read).
    samplerate : int
        The file's own rate in Hz.
    channels : int
        The file's channels (averaged to mono when read).
    target_sr : int
        The rate the model reads, in Hz (:data:`SR` by default).
    window_s : float
        The model's window in seconds (:data:`DURATION` by default).

    Notebook: notebooks/04_sonification.ipynb (the page of
    ``python -m mer explain`` shows :attr:`notes`).
    """

    path: str
    duration_s: float
    samplerate: int
    channels: int
    target_sr: int = SR
    window_s: float = DURATION

    def window_count(self) -> int:
        """Number of windows :func:`iter_windows` gives for this file.

        Whole windows of ``window_s``, plus the tail if it holds at least
        :data:`MIN_DURATION_S` (or if there is no whole window).
        """
        whole = int(math.floor(self.duration_s / self.window_s + 1e-9))
        tail = self.duration_s - whole * self.window_s
        return whole + int(tail >= MIN_DURATION_S - 1e-9 or whole == 0)

    @property
    def notes(self) -> tuple[str, ...]:
        """One sentence per thing the user should know, () for an ordinary file.

        A rate below ``target_sr`` (the model's upper bands stay empty), a
        file shorter than a window (padded with silence), a file longer than
        :data:`LONG_FILE_S` (read window by window). ``python -m mer predict``
        prints them, the explanation page and its JSON carry them.
        """
        notes = []
        if self.samplerate < self.target_sr:
            notes.append(f"{self.samplerate} Hz: resampled to {self.target_sr} Hz; it holds nothing above "
                         f"{self.samplerate / 2:.0f} Hz, while the model was trained on sound up to "
                         f"{self.target_sr / 2:.0f} Hz, so its upper mel bands are empty here and the "
                         f"prediction is less reliable")
        if self.duration_s < self.window_s:
            notes.append(f"{_span(self.duration_s)}: shorter than one {self.window_s:g} s window; the rest "
                         f"of the window is silence, which the model hears too")
        if self.duration_s > LONG_FILE_S:
            notes.append(f"{_span(self.duration_s)}: much longer than a {self.window_s:g} s window; read and "
                         f"judged window by window ({self.window_count()} windows)")
        return tuple(notes)


class Window(NamedTuple):
    """One window of :func:`iter_windows`.

    Attributes
    ----------
    start_s, end_s : float
        Where the window's real audio starts and ends in the file (seconds);
        ``end_s - start_s`` is less than the window for the padded tail.
    samples : np.ndarray, shape (round(window_s * sr),), float32
        Mono audio at the model's rate, zero-padded at the end if partial.
    partial : bool
        True for a window that holds less than a full window of audio.
    """

    start_s: float
    end_s: float
    samples: np.ndarray
    partial: bool


def _span(seconds: float) -> str:
    """``"45.0 s"``, ``"11 min 00 s"``, ``"2 h 00 min"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def audio_files(folder) -> tuple[list[Path], list[Path]]:
    """A folder's audio files by name (:data:`AUDIO_SUFFIXES`), and the other files it holds.

    Only the folder itself, not its sub-folders; hidden files (``.DS_Store``)
    are neither. Whether each audio file is usable is still :func:`inspect`'s
    to say. ``python -m mer predict FOLDER`` reads a folder of songs this way.

    Returns
    -------
    audio, others : list of Path
        Sorted by name.

    Notebook: README.md ("Your own song") shows the command.
    """
    audio, others = [], []
    for p in sorted(Path(folder).iterdir()):
        if p.is_file() and not p.name.startswith("."):
            (audio if p.suffix.lower() in AUDIO_SUFFIXES else others).append(p)
    return audio, others


# ----------------------------------------------------------------------------
# The rule: is a file usable?
# ----------------------------------------------------------------------------


def inspect(path, *, sr: int = SR, window_s: float = DURATION, seconds: float | None = None) -> AudioInfo:
    """Decide whether ``path`` is usable audio, and describe it.

    The one rule shared by ``python -m mer predict``, ``python -m mer
    explain``, :func:`iter_windows` and the datasets (:mod:`mer.data`). A file
    is refused, with an :class:`AudioError` naming it, what is wrong and what
    to do, if it is missing, not a regular file, not readable (permissions),
    empty (0 bytes), undecodable (by libsndfile and by audioread), without
    frames, shorter than :data:`MIN_DURATION_S`, all-silent (peak at or below
    :data:`SILENCE_PEAK`) or holds NaN/inf samples.

    Decoding starts at the beginning and goes block by block (memory does not
    grow with the file): at least the first window, then on until sound is
    heard, at most ``seconds``. The rest of a long file is judged window by
    window as :func:`iter_windows` reads it (NaN there stops it with the same
    reason).

    Parameters
    ----------
    path : str or Path
    sr : int
        The rate the audio will be read at (the model's), for the notes.
    window_s : float
        The model's window in seconds, for the notes and the window count.
    seconds : float, optional
        Only the first ``seconds`` will be used (a dataset's clip): judge
        silence there. Default: the whole file.

    Returns
    -------
    AudioInfo
        Duration, the file's own rate and channels, and :attr:`AudioInfo.notes`.

    Raises
    ------
    AudioError
        As above. Never another exception for a bad file.

    Notebook: notebooks/00_data.ipynb (the Data page: a dataset's
    ``rejected`` table) and notebooks/04_sonification.ipynb (the notes on
    the page of ``python -m mer explain``).
    """
    _check_positive("sr", sr)
    _check_positive("window_s", window_s)
    _check_positive("seconds", seconds, allow_none=True)
    with _open(path) as reader:
        native, channels = reader.samplerate, reader.channels
        first = int(math.ceil(window_s * native))
        limit = None if seconds is None else int(math.ceil(seconds * native))
        read, peak, complete = 0, 0.0, True
        blocks = reader.blocks(_BLOCK_FRAMES)
        for block in blocks:
            if limit is not None:
                block = block[: limit - read]
            _check_finite(path, block, start_s=read / native, sr=native)
            if len(block):
                peak = max(peak, float(np.max(np.abs(block))))
            read += len(block)
            if (limit is not None and read >= limit) or (read >= first and peak > SILENCE_PEAK):
                complete = False
                break
        frames = read if complete else reader.frames
        if frames is None:  # the decoder cannot tell the length: count the rest
            frames = read + sum(len(block) for block in blocks)
    if frames == 0:
        raise AudioError(path, "zero-length: a valid header but no audio frames", _HINT_AGAIN)
    duration_s = frames / native
    if duration_s < MIN_DURATION_S:
        raise AudioError(path, f"too short: {duration_s:.2f} s of audio, at least {MIN_DURATION_S:g} s needed",
                         f"use a recording of at least {MIN_DURATION_S:g} s")
    if peak <= SILENCE_PEAK:
        where = "" if complete else f" in the first {read / native:g} s"
        raise AudioError(path, f"all-silent{where} (peak <= {SILENCE_PEAK:g}, i.e. -80 dBFS)", _HINT_SILENT)
    return AudioInfo(path=str(path), duration_s=float(duration_s), samplerate=int(native),
                     channels=int(channels), target_sr=int(sr), window_s=float(window_s))


def iter_windows(path, *, sr: int = SR, duration: float = DURATION, max_windows: int | None = None,
                 info: AudioInfo | None = None) -> Iterator[Window]:
    """Read a file one window at a time: mono, at ``sr``, ``duration`` s each.

    Consecutive windows from the start; a tail of at least
    :data:`MIN_DURATION_S` becomes one more, zero-padded window (``partial``);
    a shorter tail is left out. The samples are exactly those of
    ``windows``-style cutting of :func:`load_full` (same mixing, same soxr
    resampler, run as a stream), but only about one window is held in
    memory, so a 2-hour file costs what a 10 s one does.

    Parameters
    ----------
    path : str or Path
    sr : int
        Rate of the windows in Hz (the model's).
    duration : float
        Window length in seconds.
    max_windows : int, optional
        Stop after this many windows (the rest of the file is not read).
    info : AudioInfo, optional
        The file's :func:`inspect` result, if already at hand; by default the
        file is inspected first, so a bad file raises before any window.

    Yields
    ------
    Window
        ``start_s, end_s, samples`` (shape ``(round(duration * sr),)``,
        float32), ``partial``.

    Raises
    ------
    AudioError
        From :func:`inspect`, or while reading (NaN/inf samples in a later
        window, a body that stops decoding).

    Notebook: notebooks/02_vit.ipynb (``python -m mer predict``) and
    notebooks/04_sonification.ipynb (``python -m mer explain``).
    """
    _check_positive("sr", sr)
    _check_positive("duration", duration)
    if max_windows is not None and (int(max_windows) != max_windows or max_windows < 1):
        raise ParameterError(f"max_windows must be a positive integer, got {max_windows!r}")
    if info is None:
        info = inspect(path, sr=sr, window_s=duration)
    length = int(round(duration * sr))
    with _open(path) as reader:
        native = reader.samplerate
        resampler = None
        if native != sr:
            import soxr  # optional fast resampler; librosa's own is used without it

            # The stream gives the samples librosa.resample(res_type="soxr_hq") gives on the whole file.
            resampler = soxr.ResampleStream(native, sr, 1, dtype="float32", quality="soxr_hq")
        pending = np.zeros(0, dtype=np.float32)
        n_in = n_out = index = 0
        for block in reader.blocks(_BLOCK_FRAMES):
            _check_finite(path, block, start_s=n_in / native, sr=native, window_s=duration)
            n_in += len(block)
            mono = np.mean(block, axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            out = resampler.resample_chunk(mono) if resampler is not None else mono
            n_out += len(out)
            pending = np.concatenate([pending, out]) if pending.size else np.asarray(out, dtype=np.float32)
            while pending.size >= length:
                yield Window(index * duration, (index + 1) * duration, pending[:length].copy(), False)
                pending = pending[length:]
                index += 1
                if max_windows is not None and index >= max_windows:
                    return
        if resampler is not None:
            out = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            n_out += len(out)
            pending = np.concatenate([pending, out])
            # librosa.resample fixes the length to ceil(n * sr / native).
            wanted = int(np.ceil(n_in * (float(sr) / native))) - (n_out - pending.size)
            pending = fit_length(pending, n_samples=wanted) if wanted > 0 else pending[:0]
        while pending.size >= length:  # whole windows the flush completed
            yield Window(index * duration, (index + 1) * duration, pending[:length].copy(), False)
            pending = pending[length:]
            index += 1
            if max_windows is not None and index >= max_windows:
                return
    if pending.size >= MIN_DURATION_S * sr or (index == 0 and pending.size):
        start = index * duration
        yield Window(start, start + pending.size / sr, fit_length(pending, n_samples=length), True)


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
        If the file is missing, unreadable, empty (0 bytes), has a header but
        no frames, cannot be decoded, has NaN/inf samples, is all-silent in
        the part read, or ``offset`` lies past its end (the checks of
        :func:`inspect`, on the part read; the minimum duration is
        :func:`inspect`'s alone, since a clip is padded).
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

    import librosa  # slow to import (numba); only the analysing functions need it

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
    """Load a whole file into memory (for short files; long ones: :func:`iter_windows`).

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
    """:func:`inspect` of the first ``duration`` seconds, as a dict.

    Parameters
    ----------
    path : str or Path
    duration : float or None
        Seconds that will be used and are judged; ``None``: the whole file.

    Returns
    -------
    dict
        ``samplerate`` (Hz), ``channels``, ``duration_s`` of the part judged
        (at most ``duration``).

    Raises
    ------
    AudioError
        As :func:`inspect`.

    Notebook: notebooks/00_data.ipynb (the Data page, through mer.data).
    """
    info = inspect(path, seconds=duration)
    used = info.duration_s if duration is None else min(info.duration_s, float(duration))
    return {"samplerate": info.samplerate, "channels": info.channels, "duration_s": used}


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
    import librosa  # slow to import (numba); only the analysing functions need it

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
        window. (A file on disk: :func:`iter_windows`, which keeps a tail of
        at least :data:`MIN_DURATION_S`.)

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
    import librosa  # slow to import (numba); only the analysing functions need it

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


def _check_finite(path, y, *, start_s: float = 0.0, sr: int | None = None, window_s: float | None = None):
    """Raise AudioError if ``y`` holds NaN/inf.

    With ``sr``, ``y`` is a block of shape (n_frames, n_channels) starting
    ``start_s`` seconds into the file, and the message says where.
    """
    finite = np.isfinite(y)
    if finite.all():
        return
    where = ""
    if sr is not None:
        at = start_s + int(np.argmin(finite.all(axis=1))) / sr
        where = f" (first at {at:.1f} s"
        if window_s is not None:
            k = int(at // window_s)
            where += f", in the window {k * window_s:g}-{(k + 1) * window_s:g} s"
        where += ")"
    elif start_s:
        where = f" (from {start_s:g} s on)"
    raise AudioError(path, f"contains NaN or infinite samples{where}", _HINT_NAN)


def _check_samples(path, y, *, offset):
    """Raise AudioError if decoded ``y`` (n_channels, n_frames) is unusable."""
    _check_finite(path, y, start_s=offset)
    if float(np.max(np.abs(y))) <= SILENCE_PEAK:
        raise AudioError(path, f"all-silent (peak <= {SILENCE_PEAK:g}, i.e. -80 dBFS)"
                         + (f" from {offset} s on" if offset else ""), _HINT_SILENT)


# ----------------------------------------------------------------------------
# Reading block by block, whatever decodes the file
# ----------------------------------------------------------------------------


class _Reader:
    """An open file, read block by block at its own rate.

    ``blocks(n)`` yields arrays of shape (<= n, channels), float32, from the
    current position to the end; ``frames`` is the header's count (None if
    the decoder cannot tell).
    """

    samplerate: int
    channels: int
    frames: int | None

    def blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def skip(self, n_frames: int) -> None:
        raise NotImplementedError


class _SoundFileReader(_Reader):
    def __init__(self, path, handle):
        self.path, self.handle = path, handle
        self.samplerate, self.channels, self.frames = handle.samplerate, handle.channels, handle.frames

    def skip(self, n_frames):
        self.handle.seek(n_frames)

    def blocks(self, n_frames):
        while True:
            try:
                block = self.handle.read(frames=n_frames, dtype="float32", always_2d=True)
            except Exception as error:  # a truncated or corrupt body after a valid header
                raise AudioError(self.path, f"undecodable: {error}", _HINT_CONVERT) from None
            if not len(block):
                return
            yield block


class _AudioreadReader(_Reader):
    def __init__(self, path, handle, libsndfile_reason):
        self.path, self.handle, self.libsndfile_reason = path, handle, libsndfile_reason
        self.samplerate, self.channels = int(handle.samplerate), int(handle.channels)
        duration = getattr(handle, "duration", None)
        self.frames = int(round(duration * self.samplerate)) if duration else None
        self._skip = 0

    def skip(self, n_frames):
        self._skip = n_frames

    def blocks(self, n_frames):
        import audioread  # fallback decoder, needed only for files soundfile cannot read
        from librosa.util import buf_to_float  # slow to import (numba); only the analysing functions need it

        pending, skip = np.zeros((0, self.channels), dtype=np.float32), self._skip
        try:
            for buffer in self.handle:
                frame = buf_to_float(buffer, n_bytes=2, dtype=np.float32)  # interleaved int16
                frame = frame[: frame.size - frame.size % self.channels].reshape(-1, self.channels)
                if skip:
                    dropped = min(skip, len(frame))
                    frame, skip = frame[dropped:], skip - dropped
                pending = np.concatenate([pending, frame]) if len(pending) else frame
                while len(pending) >= n_frames:
                    yield pending[:n_frames]
                    pending = pending[n_frames:]
        except (audioread.DecodeError, OSError, EOFError) as error:
            raise AudioError(self.path, f"undecodable: libsndfile says {self.libsndfile_reason!r}, "
                                        f"audioread says {error!r}", _HINT_CONVERT) from None
        if len(pending):
            yield pending


class _PipeReader(_Reader):
    """The 16-bit PCM audioread's ffmpeg backend gives, read straight from ffmpeg's pipe."""

    def __init__(self, path, ffmpeg, described: _Reader):
        self.path = path
        self.samplerate, self.channels, self.frames = described.samplerate, described.channels, described.frames
        self._skip = 0
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg never blocks on it
        # audioread runs `ffmpeg -i FILE -f s16le -`; "file:" keeps a name such as "http:x.m4a" a local file.
        self.proc = subprocess.Popen([ffmpeg, "-nostdin", "-v", "error", "-i", f"file:{Path(path).resolve()}",
                                      "-f", "s16le", "-"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr)

    def skip(self, n_frames):
        self._skip = n_frames

    def blocks(self, n_frames):
        from librosa.util import buf_to_float  # slow to import (numba); only the analysing functions need it

        frame_bytes = 2 * self.channels
        skip = self._skip * frame_bytes
        while skip:
            dropped = len(self.proc.stdout.read(min(skip, 1 << 20)))
            if not dropped:
                return
            skip -= dropped
        while True:
            data = self.proc.stdout.read(n_frames * frame_bytes)  # blocks until n bytes or the end
            data = data[: len(data) - len(data) % frame_bytes]
            if not data:
                return
            yield buf_to_float(data, n_bytes=2, dtype=np.float32).reshape(-1, self.channels)

    def close(self):
        self.proc.stdout.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._stderr.close()


@contextlib.contextmanager
def _open(path) -> Iterator[_Reader]:
    """Open ``path`` with the first decoder that reads it (module docstring), or raise AudioError."""
    path = Path(path)
    check_file(path)


    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        libsndfile_reason = str(error).replace(f"Error opening {str(path)!r}: ", "")
    else:
        with handle:
            yield _SoundFileReader(path, handle)
        return

    # libsndfile older than 1.1 refuses WAV whose codec is MP3: hand the data
    # chunk to its MP3 decoder ourselves (RIFF parsing is short, see below).
    mp3 = _mp3_in_wav(path)
    if mp3 is not None:
        try:
            handle = sf.SoundFile(io.BytesIO(mp3), format="MP3")
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(path, f"undecodable: WAV with an MP3 codec whose MP3 data libsndfile "
                                   f"cannot decode ({error})", _HINT_CONVERT) from None
        with handle:
            yield _SoundFileReader(path, handle)
        return

    import audioread  # fallback decoder, needed only for files soundfile cannot read

    try:
        handle = audioread.audio_open(str(path))
    except audioread.NoBackendError:
        backends = [b.__name__ for b in audioread.available_backends()]
        hint = "" if any("FFmpeg" in b for b in backends) else " (installing ffmpeg may help)"
        raise AudioError(path, f"undecodable: libsndfile says {libsndfile_reason!r} and no "
                               f"audioread backend ({', '.join(backends)}) can read it{hint}",
                         _HINT_CONVERT) from None
    except (audioread.DecodeError, OSError, EOFError) as error:
        raise AudioError(path, f"undecodable: libsndfile says {libsndfile_reason!r}, "
                               f"audioread says {error!r}", _HINT_CONVERT) from None
    with handle:
        reader = _AudioreadReader(path, handle, libsndfile_reason)
        if not reader.channels or not reader.samplerate:
            # ffmpeg "reads" some garbage (it resyncs an MPEG stream that is not there)
            # and reports no channels or rate: nothing can be decoded from it.
            raise AudioError(path, f"undecodable: libsndfile says {libsndfile_reason!r}, and ffmpeg finds "
                                   f"no audio stream in it ({reader.channels} channels, "
                                   f"{reader.samplerate} Hz)", _HINT_CONVERT)
        ffmpeg = shutil.which("ffmpeg") if type(handle).__name__ == "FFmpegAudioFile" else None
        if ffmpeg is None:
            yield reader
            return
    # audioread's ffmpeg backend reads ffmpeg's output in a thread into a queue
    # without bound: a consumer slower than the decoder (the model) holds the
    # whole decoded file. The same ffmpeg command read from its pipe only as
    # fast as it is used keeps memory at one block; audioread has told us the
    # rate, channels and length, and that ffmpeg decodes the file.
    pipe = _PipeReader(path, ffmpeg, reader)
    try:
        yield pipe
    finally:
        pipe.close()


def check_file(path) -> None:
    """The part of :func:`inspect`'s rule that needs no decoding.

    Cheap enough for every row of a dataset before anything is decoded
    (``check_audio=False`` in :mod:`mer.data` stops here).

    Parameters
    ----------
    path : str or Path

    Raises
    ------
    AudioError
        Unless ``path`` is a non-empty regular file this process may open for
        reading: "file not found", "not a regular file" (a folder, a FIFO,
        which would block a read forever, a device), "not readable:
        permission denied" (the file's mode, or a folder on the way that may
        not be entered), "empty file (0 bytes)".

    Notebook: notebooks/00_data.ipynb (the Data page: a dataset's
    ``rejected`` table).
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise AudioError(path, "file not found", _HINT_PATH) from None
    except PermissionError:  # a folder on the way may not be entered
        raise AudioError(path, "not readable: permission denied", _HINT_ACCESS) from None
    except OSError as error:
        raise AudioError(path, f"unreadable: {error.strerror or error}", _HINT_PATH) from None
    if not stat.S_ISREG(status.st_mode):  # a FIFO would block the read below forever
        raise AudioError(path, "not a regular file (a folder, pipe or device)", "give the path of an audio file")
    if status.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)", _HINT_AGAIN)
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        raise AudioError(path, "not readable: permission denied", _HINT_ACCESS) from None
    except OSError as error:
        raise AudioError(path, f"unreadable: {error.strerror or error}", _HINT_AGAIN) from None


def _decode(path, *, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Decode ``duration`` seconds from ``offset`` at the file's own rate.

    Returns ``(y, sr)`` with ``y`` of shape (n_channels, n_frames), float32.
    """
    with _open(path) as reader:
        sr = reader.samplerate
        if reader.frames == 0:
            raise AudioError(path, "zero-length: a valid header but no audio frames", _HINT_AGAIN)
        start = int(round(offset * sr))
        if reader.frames is not None and start >= reader.frames and isinstance(reader, _SoundFileReader):
            raise AudioError(path, f"offset {offset} s lies past the end of the file "
                                   f"({reader.frames / sr:.3f} s)")
        if start:
            reader.skip(start)
        wanted = math.inf if duration is None else int(np.ceil(duration * sr))
        chunks, read = [], 0
        for block in reader.blocks(_BLOCK_FRAMES if duration is None else max(1, min(wanted, 1 << 20))):
            chunks.append(block[: int(min(len(block), wanted - read))] if wanted < math.inf else block)
            read += len(chunks[-1])
            if read >= wanted:
                break
        channels = reader.channels
    if not read:
        if start:
            raise AudioError(path, f"offset {offset} s lies past the end of the file")
        raise AudioError(path, "zero-length: a valid header but no audio frames", _HINT_AGAIN)
    y = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return np.ascontiguousarray(y.reshape(-1, channels).T), sr


def _mp3_in_wav(path) -> bytes | None:
    """The MP3 stream inside a RIFF/WAVE file with format tag 0x0055, else None."""
    # Written by hand because neither soundfile nor the standard library's
    # `wave` module exposes the raw chunks of a WAV they cannot decode.
    try:
        with open(path, "rb") as handle:
            return _mp3_chunk(handle)
    except PermissionError:
        raise AudioError(path, "not readable: permission denied", _HINT_ACCESS) from None
    except OSError as error:
        raise AudioError(path, f"unreadable: {error.strerror or error}", _HINT_AGAIN) from None


def _mp3_chunk(handle) -> bytes | None:
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
    frames = _prepare(y, sr=sr)
    with store.atomic_path(path) as tmp:
        try:
            sf.write(str(tmp), frames, int(sr), format=format, **options)
        except (ValueError, TypeError, sf.LibsndfileError) as error:
            raise ParameterError(f"cannot write {path} as {format} with {options}: {error}") from None
    return Path(path)


def ogg_bytes(y: np.ndarray, *, sr: int, compression: float = OGG_COMPRESSION) -> bytes:
    """``y`` encoded as an Ogg Vorbis file in memory (what :func:`write_ogg` would write).

    Parameters and their meaning as for :func:`write_ogg`.

    Returns
    -------
    bytes
        The file's content, e.g. for a ``data:`` URI (:func:`mer.display.player`).

    Notebook: notebooks/04_sonification.ipynb (players embedded in the page).
    """
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
    import pyloudnorm  # pyloudnorm pulls scipy (~1 s); only loudness needs it

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
