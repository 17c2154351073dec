"""Speed of the ViT on this machine: training steps, inference, the front ends (``make bench``).

Notebook: book/reproducing.md reports them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from .. import spectrogram, tonality
from ..vit import LOGFREQ_LOGMEL, build_model, predict_proba


def _mean_ms(fn, n: int) -> float:
    """Milliseconds per call of ``fn``, mean of ``n`` calls after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1000


def front_end_ms(params: spectrogram.LogMelParams | dict | None = None, n: int = 5) -> float:
    """Milliseconds for the spectrogram of one 10 s clip with ``params`` (default: the log-mel), mean of ``n``."""
    y = np.random.default_rng(0).standard_normal(int(spectrogram.SR * 10)).astype(np.float32) * 0.1
    return _mean_ms(lambda: spectrogram.logmel(y, params=params), n)


def benchmark(*, batch_size: int = 32, repeats: int = 3) -> dict[str, Any]:
    """Speed of the book's model (the every-key design) and of the classic one on this CPU.

    Returns
    -------
    dict
        ``vit_train_spectrograms_per_s``: forward + backward + AdamW step on
        batches of 32 inputs of the book's design (192 log-frequency rows x
        108 frames, with the onset channels). ``vit_infer_ms_per_clip``: one
        10 s clip from audio to probability, batch 1: the tonic estimate
        (CQT chroma), the log-frequency spectrogram and the model.
        ``vit_front_end_ms_per_clip`` and ``vit_tonic_ms_per_clip``: those
        two steps alone. ``vit_classic_train_spectrograms_per_s`` and
        ``vit_logmel_ms_per_clip``: the classic writing's design (128 mel
        bands, one channel) and its log-mel.

    Notebook: book/reproducing.md
    """
    params = spectrogram.LogMelParams(**LOGFREQ_LOGMEL)
    model = build_model("default", n_mels=params.n_mels, input_channels="onsets", seed=0)
    train_rate = _train_rate(model, n_rows=params.n_mels, batch_size=batch_size, repeats=repeats)
    classic_rate = _train_rate(build_model("default", seed=0), n_rows=128, batch_size=batch_size, repeats=repeats)
    model.eval()
    y = np.random.default_rng(0).standard_normal(spectrogram.SR * 10).astype(np.float32) * 0.1
    stats = {"mean": -40.0, "std": 20.0}

    def infer():
        # The steps of mer.vit.audio_input without a checkpoint: the tonic, the spectrogram, the model.
        shift = int(tonality.canonical_semitones(tonality.tonic_chroma(y)[None])[0])
        spec = spectrogram.normalize(spectrogram.logmel(y, params=params), stats)
        spec = np.roll(spec, 2 * shift, axis=1)[None]  # stands in for the taller image's crop (same cost order)
        return predict_proba(model, spec)

    infer_ms = _mean_ms(infer, 5)
    tonic_ms = _mean_ms(lambda: tonality.tonic_chroma(y), 3)
    return {"vit_train_spectrograms_per_s": round(train_rate, 1), "vit_infer_ms_per_clip": round(infer_ms, 1),
            "vit_front_end_ms_per_clip": round(front_end_ms(params), 1), "vit_tonic_ms_per_clip": round(tonic_ms, 1),
            "vit_parameters": int(sum(p.numel() for p in model.parameters())),
            "vit_classic_train_spectrograms_per_s": round(classic_rate, 1),
            "vit_logmel_ms_per_clip": round(front_end_ms(), 1)}


def _train_rate(model, *, n_rows: int, batch_size: int, repeats: int) -> float:
    """Spectrograms per second through forward, backward and an AdamW step, on random batches (after one warm-up step)."""

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randn(batch_size, 1, n_rows, 108)
    target = torch.randint(0, 2, (batch_size,), generator=torch.Generator().manual_seed(0))
    model.train()

    def step():
        loss = torch.nn.functional.cross_entropy(model(pixel_values=batch).logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return batch_size * repeats / (time.perf_counter() - start)
