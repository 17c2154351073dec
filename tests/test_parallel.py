"""joblib work runs locally or on a Dask cluster, with the same results."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from mer import MerError, ParameterError, parallel

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def square_root(x):
    return math.sqrt(x)


def test_map_locally_keeps_the_order():
    with parallel.backend(None, n_jobs=2) as info:
        assert info["backend"] == "loky" and parallel.active()["n_jobs"] == 2
        result = parallel.map(square_root, range(20), desc="sqrt", progress=False)
    assert result == [math.sqrt(x) for x in range(20)]
    assert parallel.active() == {}
    assert parallel.map(square_root, [4, 9], n_jobs=1, progress=False) == [2.0, 3.0]


def test_bad_scheduler_and_n_jobs_are_parameter_errors():
    with pytest.raises(ParameterError, match="scheduler"):
        with parallel.backend("127.0.0.1:8786"):
            pass
    with pytest.raises(ParameterError, match="n_jobs"):
        with parallel.backend(None, n_jobs=0):
            pass


def test_unreachable_scheduler_says_so(monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(MerError, match="cannot reach the Dask scheduler"):
        with parallel.backend("tcp://127.0.0.1:9"):
            pass


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as local_cluster:
        yield local_cluster


def test_features_through_a_dask_cluster_equal_the_local_ones(cluster, tmp_path, monkeypatch):
    from mer import features
    from mer.data import corpora

    monkeypatch.setenv("MER_DATA", str(tmp_path))
    clips = corpora.load_fourq(FIXTURES / "fourq", check_audio=False).clips.head(4)
    families = ("chroma", "key")
    local = features.extract(clips, families=families, n_jobs=1, cache=False, progress=False)
    with parallel.backend(cluster.scheduler_address, n_jobs=2) as info:
        assert info["backend"] == "dask" and info["workers"] == 2
        remote = features.extract(clips, families=families, n_jobs=2, cache=False, progress=False)
        roots = parallel.map(square_root, range(10), progress=False)
    assert roots == [math.sqrt(x) for x in range(10)]
    pd.testing.assert_frame_equal(remote, local)
    assert (local["status"] == "ok").all()
