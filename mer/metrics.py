"""Labels, quadrants and classification metrics with bootstrap intervals: the one home.

Every chapter and the command line name the classes, code them and score
predictions through this module, so that "balanced accuracy [95 % CI]" means
the same computation on every page.

* :data:`LABELS`: the class names; a label's integer code is its index
  (sad = 0, happy = 1), as the ViT's logits are ordered.
* :func:`label_codes`, :func:`label_names`: names to codes and back;
  :func:`called` turns p(happy) into names at :data:`THRESHOLD`.
* :func:`quadrant`: TP/TN/FP/FN with Happy the positive class (chapters 3 and 4
  pick their examples by it).
* :func:`classification_metrics`, :func:`bootstrap_metrics`: accuracy,
  balanced accuracy, F1 and ROC AUC, with percentile-bootstrap intervals over
  clips (chapter 2, chapter 1's refit, the carry-over checks, the CLI).
* :func:`bootstrap_interval`: the mean (or median) of per-clip values with its interval
  (the paired bootstrap of chapter 3's perturbation tests).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import ParameterError

#: Class names; the integer code of a label is its index (sad = 0, happy = 1).
LABELS = ("sad", "happy")
SAD, HAPPY = LABELS
#: The ViT's label maps (Hugging Face ``config.label2id`` / ``id2label``).
LABEL2ID = {name: code for code, name in enumerate(LABELS)}
ID2LABEL = dict(enumerate(LABELS))
#: p(happy) at or above which a clip is called Happy.
THRESHOLD = 0.5
#: Confusion-matrix quadrants, Happy the positive class.
QUADRANTS = ("TP", "TN", "FP", "FN")


def label_codes(labels) -> "pd.Series":
    """Integer codes of ``labels`` (sad = 0, happy = 1).

    Notebook: every chapter (the ViT's targets, chapter 1's design matrix).
    """
    series = pd.Series(labels)
    unknown = sorted(set(series) - set(LABELS))
    if unknown:
        raise ParameterError(f"unknown labels {unknown}; expected {LABELS}")
    return series.map(LABEL2ID).astype(int)


def label_names(codes) -> np.ndarray:
    """Class names of integer codes (0 -> ``"sad"``, 1 -> ``"happy"``)."""
    return np.asarray(LABELS, dtype=object)[np.asarray(codes, dtype=int)]


def called(p_happy) -> np.ndarray:
    """The class each p(happy) calls at :data:`THRESHOLD`: ``"happy"`` or ``"sad"``, shape of ``p_happy``."""
    return np.where(np.asarray(p_happy, dtype=float) >= THRESHOLD, HAPPY, SAD)


def quadrant(label: str, predicted: str) -> str:
    """``TP``/``TN``/``FP``/``FN`` with Happy the positive class.

    Notebook: notebooks/02_vit.ipynb (and chapters 3 and 4 pick examples by it).
    """
    return {(HAPPY, HAPPY): "TP", (SAD, SAD): "TN", (SAD, HAPPY): "FP", (HAPPY, SAD): "FN"}[(label, predicted)]


def sample_by_quadrant(quadrants, n: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Up to ``n`` clips of each quadrant, drawn at random without replacement.

    Parameters
    ----------
    quadrants : array-like of str, shape (n_clips,)
        Each clip's quadrant (:func:`quadrant`).
    n : int
    seed : int
        One generator, drawn from in the order of :data:`QUADRANTS`.

    Returns
    -------
    dict quadrant -> np.ndarray of int
        Row positions; empty for a quadrant with no clip.

    Notebook: notebooks/03_lrp.ipynb (the example relevance maps)
    """
    rng = np.random.default_rng(seed)
    quadrants = np.asarray(quadrants)
    chosen = {}
    for q in QUADRANTS:
        rows = np.flatnonzero(quadrants == q)
        chosen[q] = rng.choice(rows, size=min(n, len(rows)), replace=False) if len(rows) else rows
    return chosen


def classification_metrics(labels: np.ndarray, p_happy: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, F1 (Happy positive) and ROC AUC.

    Parameters
    ----------
    labels : np.ndarray, shape (n,), int (sad 0, happy 1)
    p_happy : np.ndarray, shape (n,)

    Notebook: notebooks/02_vit.ipynb
    """
    # scikit-learn takes about a second to import; only scoring needs it, not every `mer` import.
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    predicted = (p_happy >= THRESHOLD).astype(int)
    both = len(np.unique(labels)) == 2
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)) if both else float("nan"),
            "f1": float(f1_score(labels, predicted, zero_division=0)),
            "roc_auc": float(roc_auc_score(labels, p_happy)) if both else float("nan")}


def _resampled_metrics(labels: np.ndarray, p_happy: np.ndarray, index: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`classification_metrics` of every resample ``index[b]`` at once.

    Written with numpy instead of calling scikit-learn per resample: its input
    checks cost about 2 ms a call, so 1000 resamples of four metrics took 7-9 s
    (each chapter-2 run evaluates six models). Same definitions: balanced
    accuracy is the mean recall of the two classes, F1 is 0 when undefined
    (``zero_division=0``), ROC AUC is the Mann-Whitney statistic with average
    ranks for ties. Tested against scikit-learn.

    Parameters
    ----------
    labels, p_happy : np.ndarray, shape (n,)
    index : np.ndarray, shape (n_resamples, n), int

    Returns
    -------
    dict of str -> np.ndarray, shape (n_resamples,)
        NaN balanced accuracy and ROC AUC where a resample holds one class.
    """
    from scipy.stats import rankdata  # scipy.stats is slow to import; only the resampled AUC needs it

    y = labels[index].astype(bool)
    p = p_happy[index]
    predicted = p >= THRESHOLD
    positives = y.sum(1)
    negatives = y.shape[1] - positives
    tp = (predicted & y).sum(1)
    tn = (~predicted & ~y).sum(1)
    fp, fn = negatives - tn, positives - tp
    both = (positives > 0) & (negatives > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        balanced = np.where(both, (tp / positives + tn / negatives) / 2, np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        ranks = rankdata(p, axis=1)
        auc = np.where(both, ((ranks * y).sum(1) - positives * (positives + 1) / 2) / (positives * negatives),
                       np.nan)
    return {"accuracy": (predicted == y).mean(1), "balanced_accuracy": balanced, "f1": f1, "roc_auc": auc}


def bootstrap_metrics(labels: np.ndarray, p_happy: np.ndarray, *, n_bootstrap: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """Metrics with bootstrap 95 % percentile intervals (clips resampled with replacement).

    Resamples that hold only one class are left out of every interval.

    Returns
    -------
    pandas.DataFrame
        ``metric, value, low, high, n``.

    Notebook: notebooks/02_vit.ipynb
    """
    labels, p_happy = np.asarray(labels), np.asarray(p_happy, dtype=np.float64)
    point = classification_metrics(labels, p_happy)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(labels), (n_bootstrap, len(labels)))
    draws = _resampled_metrics(labels, p_happy, index) if n_bootstrap else {name: np.zeros(0) for name in point}
    valid = ~np.isnan(draws["balanced_accuracy"]) if n_bootstrap else np.zeros(0, dtype=bool)
    rows = []
    for name, value in point.items():
        values = draws[name][valid]
        low, high = (np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan))
        rows.append({"metric": name, "value": value, "low": float(low), "high": float(high), "n": len(labels)})
    return pd.DataFrame(rows)


def bootstrap_interval(values: np.ndarray, *, n_bootstrap: int = 2000, seed: int = 0,
                       level: float = 0.95, statistic=np.mean) -> tuple[float, float, float]:
    """A statistic of ``values`` (their mean unless given) and its percentile-bootstrap interval.

    The values (clips, or a transposition set's scores) are resampled with
    replacement. Applied to per-clip differences, the mean's interval is the
    paired bootstrap (chapter 3); the median spread over transposed scores
    has its interval in chapter 2.

    Parameters
    ----------
    values : array-like, shape (n,)
    statistic : callable
        A NumPy reduction taking ``axis`` (``np.mean``, ``np.median``).

    Returns
    -------
    value, low, high : float
        NaN bounds when ``n_bootstrap`` is 0.

    Notebook: notebooks/03_lrp.ipynb
    """
    values = np.asarray(values, dtype=np.float64)
    point = float(statistic(values))
    if n_bootstrap == 0:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_bootstrap, len(values)))
    draws = statistic(values[idx], axis=1)
    alpha = (1 - level) / 2
    return point, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


__all__ = ["LABELS", "SAD", "HAPPY", "LABEL2ID", "ID2LABEL", "THRESHOLD", "QUADRANTS", "label_codes", "label_names",
           "called", "quadrant", "sample_by_quadrant", "classification_metrics", "bootstrap_metrics",
           "bootstrap_interval"]
