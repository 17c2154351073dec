"""Where the per-clip work runs: local processes, or a Dask cluster.

Feature extraction and spectrograms are loops over clips written with
joblib (``Parallel(...)(delayed(f)(clip) for clip in clips)``). joblib asks
its *active backend* where to run them, so the same code runs

* in local worker processes (joblib's ``loky`` backend, the default), or
* on a Dask distributed cluster (joblib's ``dask`` backend), when the work
  is wrapped in ``with mer.parallel.backend(scheduler="tcp://HOST:PORT"):``.

Nothing else changes: the functions, their arguments and their results are
the same, so a chapter gives the same numbers on a laptop and on a cluster
(``tests/test_parallel.py`` checks it on a two-worker ``LocalCluster``).

``python -m mer run --scheduler tcp://HOST:PORT`` (or ``-p scheduler ...``)
enters :func:`backend` around a chapter's work. Start a cluster with::

    dask scheduler --host 0.0.0.0 --port 8786          # on one machine
    dask worker tcp://SCHEDULER-HOST:8786 --nthreads 1  # on each worker machine

The workers need the same Python environment and the ``mer`` package
importable (the repository on a shared path or ``pip install -e``), and the
audio files at the same paths (a shared file system): a task sends a clip's
*path*, not its samples.

Notebook: notebooks/01_features.ipynb (feature extraction) and book/corpora.md.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterable, Iterator

from joblib import Parallel, delayed, parallel_config
from tqdm.auto import tqdm

from . import MerError, ParameterError, numba_cache

log = logging.getLogger(__name__)

#: Workers used when neither the caller nor an active backend says.
DEFAULT_N_JOBS = 2
#: Seconds to wait for a Dask scheduler before giving up.
CONNECT_TIMEOUT_S = 10

_active: dict[str, Any] = {}


def _scheduler_address(scheduler) -> str | None:
    """``None`` for local work, else the ``tcp://HOST:PORT`` of a scheduler."""
    if scheduler is None or (isinstance(scheduler, str) and scheduler.strip().lower() in ("", "local", "none")):
        return None
    address = getattr(scheduler, "scheduler_address", scheduler)  # a LocalCluster or a Client
    if not isinstance(address, str) or "://" not in address:
        raise ParameterError(f"scheduler must be None/'local' or a Dask scheduler address such as "
                             f"'tcp://127.0.0.1:8786', got {scheduler!r}")
    return address


@contextlib.contextmanager
def backend(scheduler=None, *, n_jobs: int = DEFAULT_N_JOBS) -> Iterator[dict]:
    """Run joblib work inside the block locally or on a Dask cluster.

    Parameters
    ----------
    scheduler : str, dask.distributed.LocalCluster or None
        ``None``, ``""`` or ``"local"``: local processes (joblib's ``loky``
        backend). ``"tcp://HOST:PORT"`` (or a cluster object with a
        ``scheduler_address``): joblib's ``dask`` backend on that cluster;
        a ``dask.distributed.Client`` is opened for the block and closed
        after it.
    n_jobs : int
        Local worker processes. On a cluster the workers are the cluster's;
        ``n_jobs`` then only bounds how many tasks joblib submits at once
        (``-1``: no bound).

    Yields
    ------
    dict
        ``backend`` (``"loky"`` or ``"dask"``), ``n_jobs``, ``scheduler``
        (address or ``None``), and ``workers`` (number of Dask workers).

    Raises
    ------
    ParameterError
        For a scheduler that is not an address, or ``n_jobs`` of 0.
    mer.MerError
        If the scheduler cannot be reached within :data:`CONNECT_TIMEOUT_S`.

    Notebook: notebooks/01_features.ipynb and book/corpora.md (scaling out).
    """

    if not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ParameterError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}")
    address = _scheduler_address(scheduler)
    previous = dict(_active)
    if address is None:
        info = {"backend": "loky", "n_jobs": n_jobs, "scheduler": None, "workers": n_jobs}
        try:
            _active.clear()
            _active.update(info)
            with parallel_config(backend="loky", n_jobs=n_jobs):
                yield info
        finally:
            _active.clear()
            _active.update(previous)
        return

    from distributed import Client  # optional: only a Dask cluster needs it


    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise MerError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT_S} s: "
                       f"{error}; start one with `dask scheduler` and `dask worker {address}`") from None
    try:
        workers = len(client.scheduler_info().get("workers", {}))
        info = {"backend": "dask", "n_jobs": n_jobs, "scheduler": address, "workers": workers}
        log.info("joblib work goes to the Dask cluster at %s (%d workers)", address, workers)
        _active.clear()
        _active.update(info)
        with parallel_config(backend="dask", n_jobs=n_jobs, client=client):
            yield info
    finally:
        _active.clear()
        _active.update(previous)
        client.close()


def active() -> dict:
    """The backend of the innermost :func:`backend` block (``{}`` outside any)."""
    return dict(_active)


def map(func: Callable, items: Iterable, *, desc: str = "", n_jobs: int | None = None,
        progress: bool = True, batch_size: int | str = "auto") -> list:
    """``[func(item) for item in items]`` on the active backend, with a progress bar.

    Parameters
    ----------
    func : callable
        A module-level function (it is pickled to the workers).
    items : iterable
        Its arguments, one per call.
    desc : str
        Label of the tqdm progress bar.
    n_jobs : int, optional
        Workers; default: the active :func:`backend`'s, else
        :data:`DEFAULT_N_JOBS`. ``1`` runs in this process (no pickling).
    progress : bool
        Show the progress bar.
    batch_size : int or "auto"
        Items per task (joblib's ``batch_size``).

    Returns
    -------
    list
        The results, in the order of ``items``.

    Notebook: notebooks/01_features.ipynb (through mer.features) and book/corpora.md.
    """

    items = list(items)
    if n_jobs is None:
        n_jobs = _active.get("n_jobs", DEFAULT_N_JOBS)
    if not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise ParameterError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}")
    if n_jobs == 1 and _active.get("backend") != "dask":
        iterator = (func(item) for item in items)
    else:
        # Workers must find librosa's kernels compiled, not compile them at once (numba#10128).
        numba_cache.prepare()
        iterator = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=batch_size)(
            delayed(func)(item) for item in items)
    return list(tqdm(iterator, total=len(items), desc=desc or getattr(func, "__name__", "map"),
                     disable=not progress))
