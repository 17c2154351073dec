"""Benchmark of :mod:`mer.lrp`: the time of an LRP explanation against one gradient x input.

``lrp_*`` and ``gradxinput_ms_per_clip`` in ``_build/bench.json`` (group
``lrp`` of :func:`mer.bench.run`).

Notebook: book/reproducing.md (``make bench``)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..lrp import gradient_x_input, relevance
from ..vit import build_model


def _interleaved_times(functions: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each function, run in turn ``repeats`` times after a
    warm-up, so that load from other processes hits all of them alike."""
    for fn in functions.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def benchmark(*, batch_size: int = 16, repeats: int = 7, seed: int = 0) -> dict[str, Any]:
    """Wall time of an LRP explanation against one gradient x input.

    Same default-size model (random weights: timing does not depend on them),
    same batch of ``batch_size`` inputs (128 x 108), same run; medians over
    ``repeats`` rounds after a warm-up, the four methods interleaved in each round.

    Returns
    -------
    dict
        ``lrp_over_gradxinput_ratio`` (CP-LRP, no gamma; target <= 1.2),
        ``lrp_gamma_over_gradxinput_ratio`` (gamma = 0.25; target <= 4),
        ``lrp_attn_over_gradxinput_ratio`` (AttnLRP),
        ``lrp_accounted_over_gradxinput_ratio`` (CP-LRP with the absorbed
        relevance accounted for, as the conservation check runs it; the
        other LRP figures time the explanation alone, as the explainers run it),
        ``lrp_explanations_per_s`` (CP-LRP, batch of 16),
        ``lrp_ms_per_clip``, ``gradxinput_ms_per_clip``.

    Notebook: book/reproducing.md (``make bench``)
    """
    torch.manual_seed(seed)
    model = build_model("default", seed=seed)
    model.eval()
    x = torch.randn(batch_size, 1, 128, 108, generator=torch.Generator().manual_seed(seed))
    times = _interleaved_times({
        "grad": lambda: gradient_x_input(model, x),
        "cp": lambda: relevance(model, x, rule="cp", account=False),
        "attn": lambda: relevance(model, x, rule="attn", account=False),
        "gamma": lambda: relevance(model, x, rule="cp", gamma=0.25, account=False),
        "account": lambda: relevance(model, x, rule="cp"),
    }, repeats)
    grad_time, lrp_time, attn_time, gamma_time = times["grad"], times["cp"], times["attn"], times["gamma"]
    return {
        "lrp_over_gradxinput_ratio": round(lrp_time / grad_time, 3),
        "lrp_attn_over_gradxinput_ratio": round(attn_time / grad_time, 3),
        "lrp_gamma_over_gradxinput_ratio": round(gamma_time / grad_time, 3),
        "lrp_accounted_over_gradxinput_ratio": round(times["account"] / grad_time, 3),
        "lrp_explanations_per_s": round(batch_size / lrp_time, 1),
        "lrp_ms_per_clip": round(1000 * lrp_time / batch_size, 2),
        "gradxinput_ms_per_clip": round(1000 * grad_time / batch_size, 2),
        "lrp_batch_size": batch_size,
    }
