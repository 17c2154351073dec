"""mer.metrics: the one home of the labels, the quadrants and the scores with their intervals."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from mer import ParameterError, metrics

REPO = Path(__file__).resolve().parent.parent


def test_vectorised_bootstrap_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    p_happy = np.round(rng.random(40), 1)  # ties, as a small model's probabilities have
    index = rng.integers(0, 40, (50, 40))
    index[0] = np.flatnonzero(labels == 1)[0]  # a resample with one class only
    fast = metrics._resampled_metrics(labels, p_happy, index)
    for b in range(1, len(index)):
        expected = metrics.classification_metrics(labels[index[b]], p_happy[index[b]])
        for name, value in expected.items():
            assert fast[name][b] == pytest.approx(value), (name, b)
    assert np.isnan(fast["balanced_accuracy"][0]) and np.isnan(fast["roc_auc"][0])
    table = metrics.bootstrap_metrics(labels, p_happy, n_bootstrap=200).set_index("metric")
    assert (table["low"] <= table["value"]).all() and (table["value"] <= table["high"]).all()
    assert metrics.bootstrap_metrics(labels, p_happy, n_bootstrap=0)["low"].isna().all()


def test_labels_codes_quadrants_and_calls_agree():
    assert metrics.LABELS == ("sad", "happy") and metrics.LABEL2ID == {"sad": 0, "happy": 1}
    assert metrics.label_codes(["happy", "sad", "happy"]).tolist() == [1, 0, 1]
    assert metrics.label_names([1, 0]).tolist() == ["happy", "sad"]
    assert metrics.called([0.5, 0.49, 0.9]).tolist() == ["happy", "sad", "happy"]  # 0.5 calls Happy
    assert [metrics.quadrant(t, p) for t, p in (("happy", "happy"), ("sad", "sad"), ("sad", "happy"),
                                                ("happy", "sad"))] == list(metrics.QUADRANTS)
    with pytest.raises(ParameterError, match="unknown labels"):
        metrics.label_codes(["happy", "glad"])


def test_the_class_names_are_defined_once():
    """A second tuple or map of the class names in mer/ would let two chapters disagree on the codes."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "mer").rglob("*.py"))
    pattern = re.compile(r"""\(\s*["']sad["']\s*,\s*["']happy["']\s*\)|\{\s*["']sad["']\s*:\s*0|\{\s*0\s*:\s*["']sad["']""")
    found = [f"{name}:{i}" for name in files for i, line in enumerate((REPO / name).read_text().splitlines(), 1)
             if pattern.search(line)]
    assert found == ["mer/metrics.py:" + str(next(i for i, line in enumerate(
        (REPO / "mer/metrics.py").read_text().splitlines(), 1) if line.startswith("LABELS =")))], found


def test_bootstrap_interval_of_a_mean_holds_the_mean():
    values = np.random.default_rng(1).normal(0.3, 1.0, 200)
    mean, low, high = metrics.bootstrap_interval(values, n_bootstrap=500)
    assert mean == pytest.approx(values.mean()) and low < mean < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(len(values)), rel=0.25)


def test_bootstrap_interval_of_a_median_of_few_values_is_wide_and_held_by_them():
    """Chapter 2's spread over transpositions is a median over eight scores: its interval must say how little
    eight settle, and can only run between values the scores took."""
    spreads = np.array([0.02, 0.04, 0.05, 0.06, 0.09, 0.24, 0.43, 0.96])
    median, low, high = metrics.bootstrap_interval(spreads, statistic=np.median, n_bootstrap=2000, seed=0)
    assert median == pytest.approx(0.075)
    assert spreads.min() <= low < 0.06 and 0.2 < high <= spreads.max()
    assert metrics.bootstrap_interval(spreads, statistic=np.median, n_bootstrap=2000, seed=0) == (median, low, high)
    assert np.isnan(metrics.bootstrap_interval(spreads, statistic=np.median, n_bootstrap=0)[1:]).all()


def test_sample_by_quadrant_draws_up_to_n_of_each_quadrant_reproducibly():
    quadrants = np.array(["TP", "TN", "TP", "FN", "TP", "TN"])
    chosen = metrics.sample_by_quadrant(quadrants, 2, seed=3)
    assert list(chosen) == list(metrics.QUADRANTS)
    assert len(chosen["TP"]) == 2 and set(chosen["TP"]) <= {0, 2, 4}
    assert list(chosen["TN"]) in ([1, 5], [5, 1]) and list(chosen["FN"]) == [3] and len(chosen["FP"]) == 0
    again = metrics.sample_by_quadrant(quadrants, 2, seed=3)
    assert all(np.array_equal(chosen[q], again[q]) for q in metrics.QUADRANTS)

