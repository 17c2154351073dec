"""Benchmark of :mod:`mer.sonify`: milliseconds to sonify one 10 s clip.

``sonify_ms_per_clip`` and ``sonify_mask_ms_per_clip`` in ``_build/bench.json``
(group ``sonify`` of :func:`mer.bench.run`).

Notebook: book/reproducing.md (through ``make bench``).
"""

from __future__ import annotations

import time

import numpy as np

from .. import spectrogram as spec
from ..sonify import mel_relevance_to_stft_mask, sonify


def benchmark(n: int = 5) -> dict[str, float]:
    """Milliseconds to sonify one 10 s clip (mask, kept and complement,
    loudness-matched), mean of ``n`` runs on this machine.

    Returns
    -------
    dict
        ``sonify_ms_per_clip``, ``sonify_mask_ms_per_clip``.

    Notebook: book/reproducing.md (through ``make bench``).
    """
    rng = np.random.default_rng(0)
    n_samples = int(spec.SR * 10)
    t = np.arange(n_samples) / spec.SR
    y = (0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n_samples)).astype(np.float32)
    relevance = rng.standard_normal((spec.N_MELS, spec.n_frames(n_samples)))
    sonify(y, relevance)  # warm-up (librosa, scipy)
    start = time.perf_counter()
    for _ in range(n):
        mel_relevance_to_stft_mask(relevance, n_samples=n_samples)
    mask_ms = (time.perf_counter() - start) / n * 1000
    start = time.perf_counter()
    for _ in range(n):
        sonify(y, relevance)
    total_ms = (time.perf_counter() - start) / n * 1000
    return {"sonify_ms_per_clip": round(total_ms, 1), "sonify_mask_ms_per_clip": round(mask_ms, 1)}
