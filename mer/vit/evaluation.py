"""Scoring a checkpoint on a held-out split, and the spread of a design over seeds.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .. import ParameterError, store
from ..metrics import LABELS, bootstrap_metrics, called, label_codes, quadrant
from .checkpoint import load_checkpoint
from .inputs import model_input
from .model import predict_proba
from .training import TrainOptions, TrainResult, train


@dataclass
class Evaluation:
    """What :func:`evaluate` returns.

    Attributes
    ----------
    metrics : pandas.DataFrame
        ``metric, value, low, high, n`` for accuracy, balanced_accuracy, f1,
        roc_auc (``low``/``high``: bootstrap 95 % percentile interval).
    confusion : pandas.DataFrame
        2 x 2 counts, rows = true label, columns = predicted (sad, happy).
    predictions : pandas.DataFrame
        ``clip_id, label, p_happy, predicted, quadrant, path`` per clip.
    path : pathlib.Path
        Where ``predictions`` was written (``predictions-<split>.csv``).
    """

    metrics: pd.DataFrame
    confusion: pd.DataFrame
    predictions: pd.DataFrame
    path: Path

    def value(self, metric: str) -> float:
        return float(self.metrics.set_index("metric").loc[metric, "value"])


def evaluate(checkpoint: str | Path | TrainResult, dataset, *, split: str = "test", n_bootstrap: int = 1000,
             seed: int = 0, n_jobs: int = 2, progress: bool = True) -> Evaluation:
    """Score a checkpoint on a held-out split and save per-clip predictions.

    Parameters
    ----------
    checkpoint : path or TrainResult
    dataset : mer.data.Dataset
        The dataset the model was trained on (normalisation statistics come
        from the checkpoint, not from this split).
    split : str
        ``"test"`` (default) or ``"val"``.

    Returns
    -------
    Evaluation
        Also writes ``predictions-<split>.csv`` and ``evaluation-<split>.json``
        beside the checkpoint, for chapters 3 and 4.

    Notebook: notebooks/02_vit.ipynb
    """
    if isinstance(checkpoint, TrainResult):
        model, meta, folder = checkpoint.model, checkpoint.meta, checkpoint.checkpoint
    else:
        folder = Path(checkpoint)
        model, meta = load_checkpoint(folder)
    every = dataset.clips.reset_index(drop=True)
    rows = (every["split"] == split).to_numpy()
    if not rows.any():
        raise ParameterError(f"dataset {dataset.name!r} has no clip in split {split!r}")
    # The whole table's log-mel is the one train() cached; take the split from it.
    specs = model_input(every, meta, n_jobs=n_jobs, progress=progress)[rows]
    clips = every[rows].reset_index(drop=True)
    proba = predict_proba(model, specs)
    labels = label_codes(clips["label"]).to_numpy()
    p_happy = proba[:, 1]
    predicted = called(p_happy)
    predictions = pd.DataFrame({"clip_id": clips["clip_id"].astype(str), "label": clips["label"],
                                "p_happy": p_happy.astype(float), "predicted": predicted})
    predictions["quadrant"] = [quadrant(a, b) for a, b in zip(predictions["label"], predictions["predicted"])]
    predictions["path"] = clips["path"].astype(str)
    metrics = bootstrap_metrics(labels, p_happy, n_bootstrap=n_bootstrap, seed=seed)
    confusion = pd.crosstab(pd.Categorical(predictions["label"], categories=list(LABELS)),
                            pd.Categorical(predictions["predicted"], categories=list(LABELS)),
                            rownames=["true"], colnames=["predicted"], dropna=False)
    path = folder / f"predictions-{split}.csv"
    store.write_csv(path, predictions)
    store.write_json(folder / f"evaluation-{split}.json",
                     {"metrics": metrics.to_dict(orient="records"), "confusion": confusion.values.tolist(),
                      "n_bootstrap": n_bootstrap, "seed": seed})
    return Evaluation(metrics, confusion, predictions, path)


def seed_spread(dataset, seeds, options: TrainOptions | None = None, *, progress: bool = True, n_jobs: int = 2,
                num_threads: int | None = None, **changes: Any) -> pd.DataFrame:
    """Train and test one design once per seed: how much of a score is the draw.

    Each seed gets its own checkpoint (:func:`checkpoint_dir` includes the
    seed, so a seed already trained is read back, and an interrupted one
    resumes), and is scored on the ``test`` split like the chapter's model.
    The seed moves the initial weights, the sampler's order and the
    SpecAugment masks; the data and its split stay the same.

    Parameters
    ----------
    dataset : mer.data.Dataset
    seeds : iterable of int
    options : TrainOptions, optional
        The design (its ``seed`` is replaced by each of ``seeds``).
    progress, n_jobs, num_threads
        As for :func:`train`.
    **changes
        Fields of :class:`TrainOptions` to change (``size``, ``epochs``, ``learning_rate``...).

    Returns
    -------
    pandas.DataFrame
        One row per seed: ``seed, balanced_accuracy, roc_auc, accuracy,
        train_seconds, selected_epoch, checkpoint``; ``attrs["mean"]`` and
        ``attrs["sd"]`` of the balanced accuracy (sample standard deviation;
        NaN for one seed).

    Notebook: notebooks/02_vit.ipynb
    """
    if "seed" in changes:
        raise ParameterError("seed_spread takes the seeds as its own argument, not seed=")
    options = TrainOptions.of(options, **changes)
    rows = []
    for seed in seeds:
        result = train(dataset, replace(options, seed=int(seed)), progress=progress, n_jobs=n_jobs,
                       num_threads=num_threads)
        # As the chapter evaluates its own model (same bootstrap seed), so the
        # evaluation files of a seed that is also the chapter's are rewritten unchanged.
        metrics = evaluate(result, dataset, seed=int(seed), n_jobs=n_jobs, progress=progress)
        values = metrics.metrics.set_index("metric")["value"]
        rows.append({"seed": int(seed), "balanced_accuracy": float(values["balanced_accuracy"]),
                     "roc_auc": float(values["roc_auc"]), "accuracy": float(values["accuracy"]),
                     "train_seconds": round(result.train_seconds, 1), "selected_epoch": result.best_epoch,
                     "checkpoint": result.checkpoint.name})
    if not rows:
        raise ParameterError("seed_spread needs at least one seed")
    table = pd.DataFrame(rows)
    scores = table["balanced_accuracy"]
    table.attrs.update(mean=float(scores.mean()), sd=float(scores.std(ddof=1)) if len(scores) > 1 else float("nan"))
    return table
