"""Benchmark of :mod:`mer.parallel`: feature extraction in local processes and on a Dask cluster.

``features_local_clips_per_s``, ``features_dask_clips_per_s`` and the check that both give
the same table, in ``_build/bench.json`` (group ``parallel`` of :func:`mer.bench.run`).

Notebook: book/reproducing.md (make bench) and book/corpora.md.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import data, features
from ..parallel import backend


def benchmark(n_clips: int = 200, *, n_workers: int = 2) -> dict[str, Any]:
    """Feature extraction throughput, local processes against a local Dask cluster.

    The same :func:`mer.features.extract` call (audio families, cache off)
    runs on ``n_clips`` synthetic clips (``TimGM6mb`` SoundFont) with
    ``n_workers`` local processes, then through a
    ``dask.distributed.LocalCluster`` of ``n_workers`` single-threaded worker
    processes on the loopback interface. On one machine the cluster adds
    scheduling and transfer cost; the point is that the numbers are equal
    and the cost is small, so a real cluster scales the work out.

    Returns
    -------
    dict
        ``features_local_clips_per_s``, ``features_dask_clips_per_s``,
        ``features_dask_equal_local`` (bool: identical tables),
        ``features_parallel_n_clips``, ``features_parallel_n_workers``.

    Notebook: book/reproducing.md (make bench).
    """
    from distributed import LocalCluster  # optional: dask's distributed is needed only for a cluster

    dataset = data.load_dataset("synth", n_clips=n_clips, soundfont="TimGM6mb")
    families = features.AUDIO_FAMILIES

    start = time.perf_counter()
    with backend(None, n_jobs=n_workers):
        local = features.extract(dataset, families=families, n_jobs=n_workers, cache=False, progress=False)
    local_s = time.perf_counter() - start

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster:
        start = time.perf_counter()
        with backend(cluster.scheduler_address, n_jobs=n_workers):
            remote = features.extract(dataset, families=families, n_jobs=n_workers, cache=False,
                                      progress=False)
        dask_s = time.perf_counter() - start

    numeric = local.select_dtypes("number").columns
    equal = bool(local["clip_id"].tolist() == remote["clip_id"].tolist()
                 and np.allclose(local[numeric].to_numpy(float), remote[numeric].to_numpy(float),
                                 rtol=0, atol=0, equal_nan=True))
    n = len(dataset.clips)
    return {"features_local_clips_per_s": round(n / local_s, 2),
            "features_dask_clips_per_s": round(n / dask_s, 2),
            "features_dask_equal_local": equal,
            "features_parallel_n_clips": n,
            "features_parallel_n_workers": n_workers}
