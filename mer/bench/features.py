"""Benchmark of :mod:`mer.features`: throughput of the full audio feature set on one core.

``features_realtime_factor_per_core`` and its companions, in ``_build/bench.json``
(group ``features`` of :func:`mer.bench.run`).

Notebook: notebooks/01_features.ipynb (make bench)
"""

from __future__ import annotations

import time

import librosa

from ..features import AUDIO_FAMILIES, SR, clip_features, render_test_clip


def benchmark(n_clips: int = 8, *, seed: int = 0) -> dict[str, float]:
    """Throughput of the full audio feature set on 10 s clips, one core.

    Clips are rendered with FluidSynth (TimGM6mb, random triads and a melody),
    so the measure does not depend on a dataset on disk. The first clip is a
    warm-up whose time, numba's JIT compilation mostly, is reported apart.

    Returns
    -------
    dict
        ``features_realtime_factor_per_core`` (audio seconds per second of one
        core, full feature set), ``features_clips_per_second``,
        ``features_chroma_cqt_realtime_factor`` (librosa.feature.chroma_cqt
        alone: the floor any chroma-based extractor pays),
        ``features_first_call_s`` (warm-up incl. numba compilation),
        ``features_n_clips``.

    Notebook: notebooks/01_features.ipynb (make bench)
    """
    clips = [render_test_clip(seed=seed + i) for i in range(n_clips + 1)]
    start = time.process_time()
    clip_features(clips[0], families=AUDIO_FAMILIES)
    first = time.process_time() - start
    # process_time: CPU seconds of this process, so the figure is per core
    # even when other jobs share the machine (BLAS threads would inflate it;
    # the extractors are single-threaded numpy/numba).
    start = time.process_time()
    for y in clips[1:]:
        clip_features(y, families=AUDIO_FAMILIES)
    full = time.process_time() - start
    librosa.feature.chroma_cqt(y=clips[0], sr=SR)
    start = time.process_time()
    for y in clips[1:]:
        librosa.feature.chroma_cqt(y=y, sr=SR)
    floor = time.process_time() - start
    audio_s = n_clips * len(clips[1]) / SR
    return {"features_realtime_factor_per_core": round(audio_s / full, 1),
            "features_clips_per_second": round(n_clips / full, 2),
            "features_chroma_cqt_realtime_factor": round(audio_s / floor, 1),
            "features_first_call_s": round(first, 2),
            "features_n_clips": n_clips}

