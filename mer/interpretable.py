"""Linear and shallow models on interpretable features, and what they recover.

The scikit-learn models of chapter 1 (the ViT of chapter 2 is :mod:`mer.vit`).
Every model is a scikit-learn ``Pipeline``: median imputation of undefined
features (a silent stretch has no key, a clip without onsets no rhythm), then
standardisation, then the model, so coefficients are *standardised*: the
change in log-odds (or valence) per standard deviation of a feature.

- :func:`cross_validate`: seeded stratified k-fold scores (accuracy, balanced
  accuracy, ROC AUC; R² for regression) and out-of-fold predictions;
- :func:`bootstrap_coefficients`: standardised coefficients with 95 %
  percentile bootstrap intervals;
- :func:`permutation_importances`: the shallow network's explanation;
- :func:`ground_truth_recovery`: Spearman ρ between recovered importance and
  the synthetic generator's true cue weights;
- :func:`interpretability_table`: accuracy beside interpretability, for every
  model of the book (the ViT of chapter 2 when its results exist);
- :func:`features_baseline`, :func:`band_statistics_baseline`,
  :func:`cue_probes`, :func:`reading_ceiling`: chapter 2's interpretable
  baselines on the ViT's split and the linear probes of its representations.

Notebook: notebooks/01_features.ipynb and notebooks/02_vit.ipynb
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, balanced_accuracy_score, r2_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from . import ParameterError, spectrogram, store
from . import features as F
from .data import synth
from .metrics import HAPPY, LABELS, SAD, bootstrap_metrics, label_codes

log = logging.getLogger(__name__)

#: Models of the chapter: name -> (task, what explains it).
MODELS = {
    "logreg": ("classification", "standardised coefficients with 95 % bootstrap intervals (global, exact)"),
    "mlp": ("classification", "permutation importance (global, post hoc)"),
    "linreg": ("regression", "standardised coefficients with 95 % bootstrap intervals (global, exact)"),
}


def make_model(name: str = "logreg", *, seed: int = 0, hidden: int = 16):
    """The chapter's pipeline: median imputation, standardisation, model.

    Parameters
    ----------
    name : {"logreg", "mlp", "linreg"}
        Logistic regression (L2, C = 1), a one-hidden-layer network
        (``hidden`` ReLU units, L2 1e-2, LBFGS), or linear regression with
        a ridge penalty chosen by efficient leave-one-out CV over
        ``10**-2 .. 10**3`` (RidgeCV: ordinary least squares with ~50
        features on a few dozen clips overfits; with many clips the chosen
        penalty is small and the coefficients are those of least squares).
    seed : int
        Seed of the network's initialisation.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``impute`` (SimpleImputer, median), ``scale`` (StandardScaler),
        ``model``.

    Notebook: notebooks/01_features.ipynb
    """
    if name == "logreg":
        model = LogisticRegression(C=1.0, max_iter=2000)
    elif name == "mlp":
        model = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1e-2, solver="lbfgs", max_iter=2000,
                              random_state=seed)
    elif name == "linreg":
        model = RidgeCV(alphas=np.logspace(-2, 3, 11))
    else:
        raise ParameterError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                     ("scale", StandardScaler()), ("model", model)])


def design(dataset, features: pd.DataFrame, *, columns: Sequence[str],
           target: str = "label") -> tuple[pd.DataFrame, pd.Series]:
    """Feature matrix and target, aligned on ``clip_id``; rejected clips dropped.

    Parameters
    ----------
    dataset : mer.data.Dataset or pandas.DataFrame
        The clips (``clip_id``, ``label``, ``valence``, ``arousal``...).
    features : pandas.DataFrame
        From :func:`mer.features.extract`.
    columns : sequence of str
        Feature columns (or clip columns, e.g. a nuisance such as ``transpose``).
    target : str
        ``"label"`` (coded sad = 0, happy = 1), ``"valence"`` or ``"arousal"``.

    Returns
    -------
    X : pandas.DataFrame, shape (n_clips, n_columns)
        Index ``clip_id``; NaN where a feature is undefined (the pipeline imputes).
    y : pandas.Series, shape (n_clips,)

    Notebook: notebooks/01_features.ipynb
    """
    clips = dataset.clips if hasattr(dataset, "clips") else dataset
    if not columns:
        raise ParameterError("design: no feature columns given")
    table = clips.merge(features, on="clip_id", how="inner", suffixes=("_clip", ""))
    if "status" in table:
        dropped = table.loc[table["status"] != "ok", "clip_id"].tolist()
        if dropped:
            log.warning("design: %d clip(s) without features left out: %s", len(dropped), dropped[:5])
        table = table[table["status"] == "ok"]
    missing = [c for c in columns if c not in table]
    if missing:
        raise ParameterError(f"design: unknown columns {missing}")
    if target not in table:
        raise ParameterError(f"design: the dataset has no target column {target!r}")
    table = table[table[target].notna()]
    X = table.set_index("clip_id")[list(columns)].astype(float)
    y = table.set_index("clip_id")[target]
    y = pd.Series(label_codes(y).to_numpy(), index=y.index, name="label") if target == "label" else y.astype(float)
    return X, y


def _task(model: str) -> str:
    if model not in MODELS:
        raise ParameterError(f"unknown model {model!r}; expected one of {sorted(MODELS)}")
    return MODELS[model][0]


def cross_validate(X: pd.DataFrame, y: pd.Series, *, model: str = "logreg", cv_folds: int = 5,
                   seed: int = 0) -> dict[str, Any]:
    """Seeded k-fold scores and out-of-fold predictions of ``model``.

    Classification uses StratifiedKFold (shuffled with ``seed``) and reports
    accuracy, balanced accuracy and ROC AUC; regression uses KFold and R².

    Parameters
    ----------
    X : pandas.DataFrame, shape (n_clips, n_features)
    y : pandas.Series, shape (n_clips,)
    model : {"logreg", "mlp", "linreg"}
    cv_folds : int
        At least 2 and at most the size of the smaller class.

    Returns
    -------
    dict
        ``scores``: metric -> mean over folds, ``scores_sd``: metric -> SD,
        ``oof``: pandas.Series of out-of-fold P(happy) (or predicted value),
        indexed by ``clip_id``.

    Notebook: notebooks/01_features.ipynb
    """
    task = _task(model)
    if cv_folds < 2:
        raise ParameterError(f"cv_folds must be >= 2, got {cv_folds!r}")
    if task == "classification":
        smallest = int(pd.Series(y).value_counts().min())
        if smallest < cv_folds:
            raise ParameterError(f"cv_folds={cv_folds} exceeds the smaller class ({smallest} clips)")
        splitter = StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=cv_folds, shuffle=True, random_state=seed)
    oof = pd.Series(np.nan, index=X.index, name="prediction")
    per_fold: dict[str, list[float]] = {}
    for train, test in splitter.split(X, y):
        pipe = make_model(model, seed=seed).fit(X.iloc[train], y.iloc[train])
        if task == "classification":
            p = pipe.predict_proba(X.iloc[test])[:, 1]
            oof.iloc[test] = p
            yt = y.iloc[test]
            fold = {"accuracy": accuracy_score(yt, p > 0.5), "balanced_accuracy": balanced_accuracy_score(yt, p > 0.5),
                    "roc_auc": roc_auc_score(yt, p) if yt.nunique() == 2 else np.nan}
        else:
            pred = pipe.predict(X.iloc[test])
            oof.iloc[test] = pred
            fold = {"r2": r2_score(y.iloc[test], pred)}
        for k, v in fold.items():
            per_fold.setdefault(k, []).append(float(v))
    return {"scores": {k: float(np.nanmean(v)) for k, v in per_fold.items()},
            "scores_sd": {k: float(np.nanstd(v)) for k, v in per_fold.items()},
            "oof": oof}


def coefficients(X: pd.DataFrame, y: pd.Series, *, model: str = "logreg") -> pd.Series:
    """Standardised coefficients of ``model`` fitted on all of ``X``.

    Returns
    -------
    coef : pandas.Series, shape (n_features,)
        Log-odds of Happy (logreg) or valence units (linreg) per SD of each feature.

    Notebook: notebooks/01_features.ipynb
    """
    if model not in ("logreg", "linreg"):
        raise ParameterError(f"coefficients: {model!r} has none; expected 'logreg' or 'linreg'")
    pipe = make_model(model).fit(X, y)
    return pd.Series(np.ravel(pipe.named_steps["model"].coef_), index=X.columns, name="coef")


def bootstrap_coefficients(X: pd.DataFrame, y: pd.Series, *, model: str = "logreg", n_bootstrap: int = 200,
                           seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Standardised coefficients with percentile bootstrap intervals.

    The pipeline (imputation and scaling included) is refitted on ``n_bootstrap``
    resamples of the clips drawn with replacement (stratified by class for
    classification, so every resample has both classes); the interval is the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (Efron & Tibshirani
    1993, ch. 13).

    Returns
    -------
    pandas.DataFrame, shape (n_features, 5)
        Index ``feature``; columns ``coef`` (fit on all clips), ``ci_low``,
        ``ci_high``, ``boot_sd``, ``excludes_zero``; sorted by ``|coef|``.

    Notebook: notebooks/01_features.ipynb
    """
    if n_bootstrap < 10:
        raise ParameterError(f"n_bootstrap must be >= 10 for an interval, got {n_bootstrap!r}")
    rng = np.random.default_rng(seed)
    point = coefficients(X, y, model=model)
    draws = np.empty((n_bootstrap, X.shape[1]))
    yv = np.asarray(y)
    groups = [np.flatnonzero(yv == c) for c in np.unique(yv)] if model == "logreg" else [np.arange(len(yv))]
    for b in range(n_bootstrap):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        draws[b] = coefficients(X.iloc[idx], y.iloc[idx], model=model).to_numpy()
    alpha = (1 - level) / 2
    table = pd.DataFrame({"coef": point, "ci_low": np.quantile(draws, alpha, axis=0),
                          "ci_high": np.quantile(draws, 1 - alpha, axis=0), "boot_sd": draws.std(axis=0)},
                         index=pd.Index(X.columns, name="feature"))
    table["excludes_zero"] = (table["ci_low"] > 0) | (table["ci_high"] < 0)
    return table.reindex(table["coef"].abs().sort_values(ascending=False).index)


def permutation_importances(X: pd.DataFrame, y: pd.Series, *, model: str = "mlp", cv_folds: int = 5,
                            seed: int = 0, n_repeats: int = 5) -> pd.DataFrame:
    """Permutation importance of each feature, on held-out folds.

    For each fold the model is fitted on the training part; each feature of
    the held-out part is shuffled ``n_repeats`` times and the drop of ROC AUC
    (or R²) recorded (Breiman 2001; sklearn.inspection.permutation_importance).
    Held-out, so it measures what the model *uses to generalise*.

    Returns
    -------
    pandas.DataFrame, shape (n_features, 2)
        Index ``feature``; ``importance`` (mean drop over folds and repeats),
        ``sd``; sorted by importance.

    Notebook: notebooks/01_features.ipynb
    """
    task = _task(model)
    splitter = (StratifiedKFold if task == "classification" else KFold)(n_splits=cv_folds, shuffle=True,
                                                                        random_state=seed)
    scoring = "roc_auc" if task == "classification" else "r2"
    drops = []
    for train, test in splitter.split(X, y):
        pipe = make_model(model, seed=seed).fit(X.iloc[train], y.iloc[train])
        result = permutation_importance(pipe, X.iloc[test], y.iloc[test], scoring=scoring, n_repeats=n_repeats,
                                        random_state=seed)
        drops.append(result.importances)  # (n_features, n_repeats)
    drops = np.concatenate(drops, axis=1)
    table = pd.DataFrame({"importance": drops.mean(axis=1), "sd": drops.std(axis=1)},
                         index=pd.Index(X.columns, name="feature"))
    return table.sort_values("importance", ascending=False)


# ----------------------------------------------------------------------------
# Ground-truth recovery on the synthetic set
# ----------------------------------------------------------------------------

#: One feature per cue of the generator's label rule. ``"audio"``: extracted
#: from the audio by mer.features; ``"score"``: read from the MIDI score
#: (brightness has no score proxy, so the spectral centroid stands for it).
CUE_PROXIES = {
    "audio": {"mode": "key_minorness", "tempo_bpm": "tempo_bpm", "register": "melody_pitch_midi",
              "articulation": "ml_articulation", "velocity": "rms_peak_db",
              "brightness": "spectral_centroid_pitched_hz"},
    "score": {"mode": "sym_minor", "tempo_bpm": "sym_tempo_bpm", "register": "sym_mean_pitch",
              "articulation": "sym_articulation", "velocity": "sym_velocity",
              "brightness": "spectral_centroid_hz"},
}
#: Nuisance factors entered beside the cue proxies (weight 0 in the generator):
#: the transposition and chord inversion as drawn (``clips`` columns); one
#: that does not vary in the dataset is left out.
NUISANCES = ("transpose", "voicing")


def true_weights(dataset) -> pd.Series:
    """The generator's weights of the latent valence (``generator.json``).

    Returns
    -------
    pandas.Series
        cue -> weight (on standardised cues; signed).

    Notebook: notebooks/01_features.ipynb
    """
    info = getattr(dataset, "info", {}) or {}
    weights = info.get("weights")
    if weights is None and hasattr(dataset, "root"):
        path = Path(dataset.root) / "generator.json"
        if path.exists():
            weights = json.loads(path.read_text()).get("weights")
    if not weights:
        raise ParameterError("the dataset has no generator weights (only the synthetic set has them)")
    return pd.Series(weights, name="true_weight", dtype=float)


def ground_truth_recovery(dataset, features: pd.DataFrame, *, proxies: str = "score", target: str = "valence",
                          n_bootstrap: int = 100, seed: int = 0) -> dict[str, Any]:
    """Does the feature route recover the generator's cue weights?

    A linear regression of the valence (``target="valence"``: the quantity
    the generator's weights define) or a logistic regression of Happy vs Sad
    (``target="label"``: what a classifier sees), both the chapter's
    pipeline, on exactly one proxy feature per cue (:data:`CUE_PROXIES`) plus
    the nuisance factors (:data:`NUISANCES`). The recovered importance of a cue
    is the absolute standardised coefficient of its proxy; Spearman's ρ
    compares its ranking over the six cues with that of the absolute true
    weights. Signs are compared too (a minorness proxy carries the mode
    weight with the opposite sign, so its sign is flipped: ``sign``).

    Parameters
    ----------
    proxies : {"score", "audio"}
        Which proxy set (:data:`CUE_PROXIES`).
    n_bootstrap : int
        Bootstrap resamples for the coefficients' intervals.

    Returns
    -------
    dict
        ``table`` (pandas.DataFrame: cue, proxy, true_weight, coef, ci_low,
        ci_high, importance, relative_importance, sign_ok, proxy_spearman
        (Spearman's rho of the sign-aligned proxy with the clip's true cue
        value: how well the proxy measures its cue); nuisances with
        true weight 0), ``spearman_rho``, ``spearman_p``, ``nuisance_max``
        (largest nuisance importance relative to the largest cue
        importance), ``proxies``.

    Notebook: notebooks/01_features.ipynb
    """
    if proxies not in CUE_PROXIES:
        raise ParameterError(f"proxies must be one of {sorted(CUE_PROXIES)}, got {proxies!r}")
    mapping = CUE_PROXIES[proxies]
    weights = true_weights(dataset)
    clips = dataset.clips if hasattr(dataset, "clips") else dataset
    # A nuisance the generator held fixed (the key, with ``max_transpose=0``)
    # has no variance to regress on: it is left out, not given a zero column.
    nuisances = [n for n in NUISANCES if n in clips and clips[n].nunique() > 1]
    merged = features.drop(columns=[c for c in nuisances if c in features], errors="ignore")
    merged = merged.merge(clips[["clip_id", *nuisances]], on="clip_id", how="left")
    columns = [mapping[c] for c in weights.index] + nuisances
    if target not in ("valence", "label"):
        raise ParameterError(f"target must be 'valence' or 'label', got {target!r}")
    X, y = design(dataset, merged, columns=columns, target=target)
    coefs = bootstrap_coefficients(X, y, model="linreg" if target == "valence" else "logreg",
                                   n_bootstrap=n_bootstrap, seed=seed)
    # Proxies measured in the opposite direction of their cue: minorness and
    # minor (cue: major = +1), staccato-ness (cue: legato = 1).
    flip = {"key_minorness": -1.0, "ml_minorness": -1.0, "sym_minor": -1.0, "ml_articulation": -1.0}
    # How well each proxy measures its cue, clip by clip (the generator's
    # realised cue values are columns of ``clips``).
    cue_columns = [c for c in weights.index if c in clips]
    truth = merged[["clip_id"]].merge(clips[["clip_id", *cue_columns]], on="clip_id", how="left")
    rows = []
    for cue, w in list(weights.items()) + [(n, 0.0) for n in nuisances]:
        feature = mapping.get(cue, cue)
        sign = flip.get(feature, 1.0)
        c = coefs.loc[feature]
        lo, hi = sorted((sign * c["ci_low"], sign * c["ci_high"]))
        fidelity = np.nan
        if cue not in nuisances and cue in truth:
            value = truth[cue].map({"major": 1.0, "minor": -1.0}) if cue == "mode" else truth[cue]
            ok = merged[feature].notna().to_numpy() & value.notna().to_numpy()
            if ok.sum() > 2:
                fidelity = float(spearmanr(sign * merged[feature].to_numpy()[ok], value.to_numpy()[ok])[0])
        rows.append({"cue": cue, "proxy": feature, "nuisance": cue in nuisances, "true_weight": w,
                     "coef": sign * c["coef"], "ci_low": lo, "ci_high": hi,
                     "importance": abs(c["coef"]), "proxy_spearman": fidelity})
    table = pd.DataFrame(rows)
    top = table.loc[~table["nuisance"], "importance"].max()
    table["relative_importance"] = table["importance"] / top
    table["sign_ok"] = np.where(table["nuisance"], np.nan, np.sign(table["coef"]) == np.sign(table["true_weight"]))
    cues = table[~table["nuisance"]]
    rho, p = spearmanr(cues["importance"], cues["true_weight"].abs())
    return {"table": table, "spearman_rho": float(rho), "spearman_p": float(p),
            "nuisance_max": float(table.loc[table["nuisance"], "relative_importance"].max()) if nuisances else np.nan,
            "proxies": proxies, "target": target}


def regression_reading(valence_r2: float | None, arousal_r2: float | None) -> str:
    """One sentence on the valence and arousal regressions, from what was measured.

    Parameters
    ----------
    valence_r2, arousal_r2 : float or None
        Cross-validated R² of :func:`cross_validate` with ``model="linreg"``;
        ``None`` where the dataset has no such ratings.

    Returns
    -------
    str
        Markdown; says which ratings the dataset lacks instead of citing a number.

    Notebook: notebooks/01_features.ipynb
    """
    measured = {name: r2 for name, r2 in (("valence", valence_r2), ("arousal", arousal_r2)) if r2 is not None}
    if not measured:
        return ("This dataset has no continuous valence or arousal ratings, so no regression of them is "
                "fitted.")
    parts = [f"{name} {r2:.2f}" for name, r2 in measured.items()]
    missing = [name for name in ("valence", "arousal") if name not in measured]
    text = f"Linear regression of the continuous ratings (cross-validated R²): {' and '.join(parts)}."
    if missing:
        text += f" The dataset has no {missing[0]} ratings."
    return text


def recovery_reading(recovery: dict[str, dict] | None, *, clips: pd.DataFrame | None = None) -> str:
    """What the ground-truth recovery found, written from its tables.

    Every number and every comparison in the text comes from ``recovery``:
    the rank correlations, the largest nuisance, each audio proxy's
    agreement with its cue, and which proxy is the weakest.

    Parameters
    ----------
    recovery : dict or None
        ``{"score": ..., "audio": ...}``, each a :func:`ground_truth_recovery`
        result; ``None`` for a dataset without generator weights.
    clips : pandas.DataFrame, optional
        The dataset's clips; if every clip has the same ``tonic``, the text
        says so where it explains a weak register estimate.

    Returns
    -------
    str
        Markdown.

    Notebook: notebooks/01_features.ipynb
    """
    if recovery is None:
        return ("The true weights are known only for the synthetic set; this dataset has none, so whether "
                "the model recovers the true cause is not measured here.")
    score, sound = recovery["score"], recovery["audio"]
    sentences = [
        f"With the score's measurements the rank correlation of the recovered importances with the true "
        f"weights is ρ = {score['spearman_rho']:.2f}, and the largest nuisance factor reaches "
        f"{score['nuisance_max']:.2f} of the largest cue's importance. With the audio proxies it is "
        f"ρ = {sound['spearman_rho']:.2f}: the recovered ranking is only as good as each extractor."]
    table = sound["table"].dropna(subset=["proxy_spearman"])
    table = table[table["true_weight"] != 0] if "true_weight" in table else table
    if not table.empty:
        listed = ", ".join(f"{row.cue} {row.proxy_spearman:.2f}" for row in table.itertuples())
        weakest = table.loc[table["proxy_spearman"].idxmin()]
        sentences.append(f"How well each audio proxy measures its cue, clip by clip (Spearman's ρ with the "
                         f"generator's value): {listed}. The weakest is {weakest['cue']} "
                         f"(ρ = {weakest['proxy_spearman']:.2f}).")
        if weakest["cue"] == "register" and clips is not None and "tonic" in clips \
                and clips["tonic"].nunique() == 1:
            sentences.append("Every clip of this set is in one key, so its chords sound the same pitches in "
                             "every clip, and their note starts outweigh the melody's in the salience the "
                             "register estimator follows.")
    return " ".join(sentences)


def split_scores(X: pd.DataFrame, y: pd.Series, split: pd.Series, *, model: str = "logreg",
                 n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Fit on the ``train`` and ``val`` clips, score on ``test``: the ViT's split.

    Chapter 1 cross-validates over every clip; chapter 2's ViT is scored on a
    held-out ``test`` split. This puts an interpretable model on that same
    split, so the two rows of chapter 2's comparison count the same clips.
    Nothing is selected on ``val`` (the pipeline's settings are fixed), so it
    is training data here, while the ViT spends it on model selection.

    Parameters
    ----------
    X : pandas.DataFrame, shape (n_clips, n_features)
        Index ``clip_id`` (from :func:`design`).
    y : pandas.Series, shape (n_clips,)
        Label codes (sad 0, happy 1), index ``clip_id``.
    split : pandas.Series
        ``clip_id`` -> ``train`` / ``val`` / ``test``.
    model : {"logreg", "mlp"}
    n_bootstrap, seed : int
        Bootstrap of the test metrics; ``seed`` also seeds the network.

    Returns
    -------
    dict
        ``metrics`` (pandas.DataFrame ``metric, value, low, high, n``, as
        :func:`mer.metrics.bootstrap_metrics`), ``predictions`` (``clip_id, label,
        p_happy`` on ``test``), ``features`` (``X``, every clip), ``model``
        (the fitted pipeline, for scoring other clips:
        :func:`mer.carryover.features_predictor`).

    Notebook: notebooks/02_vit.ipynb
    """
    if _task(model) != "classification":
        raise ParameterError(f"split_scores needs a classifier, got {model!r}")
    where = split.reindex(X.index).astype(str).to_numpy()
    fit, test = np.isin(where, ("train", "val")), where == "test"
    if not fit.any() or not test.any():
        raise ParameterError("split_scores needs train/val and test clips")
    pipe = make_model(model, seed=seed).fit(X[fit], y[fit])
    p_happy = pipe.predict_proba(X[test])[:, list(pipe.classes_).index(1)]
    labels = y[test].to_numpy()
    predictions = pd.DataFrame({"clip_id": X.index[test], "label": [LABELS[int(v)] for v in labels],
                                "p_happy": p_happy})
    return {"metrics": bootstrap_metrics(labels, p_happy, n_bootstrap=n_bootstrap, seed=seed),
            "predictions": predictions, "features": X, "model": pipe}


def cue_probes(representations: dict[str, pd.DataFrame], clips: pd.DataFrame, *, n_bootstrap: int = 1000,
               seed: int = 0) -> pd.DataFrame:
    """How well each synthetic cue can be read linearly from each representation.

    A linear probe (Alain & Bengio 2017): for every cue of
    :data:`mer.data.synth.WEIGHTS`, :func:`make_model` ``"linreg"`` (ridge,
    penalty by leave-one-out CV) is fitted from a representation to the
    standardised cue on the ``train`` and ``val`` clips and scored by R² on
    the ``test`` clips, with a percentile bootstrap 95 % interval over the
    test clips (the fit held fixed). A cue a representation does not hold
    linearly scores near 0 (below 0 is worse than predicting the mean);
    no classifier head on top of that representation can weight it.

    Parameters
    ----------
    representations : dict name -> pandas.DataFrame, shape (n_clips, n_dims)
        Index ``clip_id``; clips missing from a representation (rejected by
        it) are left out of its rows only.
    clips : pandas.DataFrame
        A synthetic dataset's clips (``clip_id``, ``split`` and the truth
        columns).
    n_bootstrap, seed : int

    Returns
    -------
    pandas.DataFrame
        One row per representation and cue: ``representation, cue, r2, low,
        high, n_fit, n_test``.

    Notebook: notebooks/02_vit.ipynb
    """
    truth = clips.set_index("clip_id")
    cues, split = synth.standardised_cues(truth), truth["split"].astype(str)
    rng = np.random.default_rng(seed)
    rows = []
    for name, X in representations.items():
        ids = X.index[X.index.isin(cues.index)]
        fit = ids[split.loc[ids].isin(["train", "val"]).to_numpy()]
        test = ids[(split.loc[ids] == "test").to_numpy()]
        if len(fit) < 3 or len(test) < 3:
            raise ParameterError(f"cue_probes needs train/val and test clips in {name!r}, "
                                 f"got {len(fit)} and {len(test)}")
        draws = rng.integers(0, len(test), size=(n_bootstrap, len(test)))
        for cue in cues.columns:
            target_fit, target_test = cues.loc[fit, cue].to_numpy(), cues.loc[test, cue].to_numpy()
            predicted = make_model("linreg").fit(X.loc[fit], target_fit).predict(X.loc[test])
            residual = (target_test - predicted) ** 2
            r2 = 1 - residual.sum() / ((target_test - target_test.mean()) ** 2).sum()
            # R² of every resample at once: the fit stays, the test clips are redrawn.
            t = target_test[draws]
            spread = ((t - t.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
            resampled = 1 - residual[draws].sum(axis=1) / np.where(spread > 0, spread, np.nan)
            low, high = np.nanpercentile(resampled, [2.5, 97.5]) if n_bootstrap else (np.nan, np.nan)
            # For the mode (+1 / -1) also the share of test clips whose reading has the right sign:
            # the mode accuracy a reader of this representation gets (see :func:`reading_ceiling`).
            sign = float(np.mean(np.sign(predicted) == target_test)) if cue == "mode" else np.nan
            rows.append({"representation": name, "cue": cue, "r2": float(r2), "low": float(low),
                         "high": float(high), "sign_accuracy": sign, "n_fit": len(fit), "n_test": len(test)})
    return pd.DataFrame(rows)


def reading_ceiling(clips: pd.DataFrame, *, r2: float | dict[str, float] = 1.0, mode_accuracy: float = 1.0,
                    n_draws: int = 20, seed: int = 0) -> dict[str, float]:
    """The test balanced accuracy a linear reader of imperfectly heard cues can reach.

    A thought experiment on the synthetic set's truth, not on audio: every
    clip's six cues (:func:`mer.data.synth.standardised_cues`) are "heard"
    with independent errors, the mode flipped with probability
    ``1 - mode_accuracy`` and every other cue given Gaussian noise so that
    the noisy reading explains a share ``r2`` of the cue's variance (the R²
    of the best linear estimate of the cue from its reading, as in
    :func:`cue_probes`). A logistic regression (:func:`make_model`
    ``"logreg"``) is fitted on the noisy readings of the ``train`` and
    ``val`` clips and scored on the noisy readings of the ``test`` clips,
    once per draw of the noise. So it says how well a model must hear each
    cue before its balanced accuracy can pass a given level: with
    ``r2=1, mode_accuracy=1`` it is the Bayes-like ceiling of the
    generator's labels (their own noise aside).

    Parameters
    ----------
    clips : pandas.DataFrame
        A synthetic dataset's clips (``label``, ``split`` and the truth columns).
    r2 : float or dict cue -> float
        The share of variance heard, in (0, 1], for the non-mode cues: one
        value for all of them, or one per cue (a cue left out of the dict is
        heard exactly).
    mode_accuracy : float
        In [0.5, 1]: the share of clips whose mode is heard right.
    n_draws, seed : int
        Draws of the reading noise, and their seed.

    Returns
    -------
    dict
        ``balanced_accuracy`` (mean over draws), ``sd`` (over draws), ``n_test``.

    Notebook: notebooks/02_vit.ipynb
    """
    cues = synth.standardised_cues(clips)
    shares = {cue: (r2.get(cue, 1.0) if isinstance(r2, dict) else float(r2)) for cue in cues.columns if cue != "mode"}
    bad = {cue: v for cue, v in shares.items() if not 0 < v <= 1}
    if bad:
        raise ParameterError(f"reading_ceiling needs r2 in (0, 1], got {bad}")
    if not 0.5 <= mode_accuracy <= 1:
        raise ParameterError(f"reading_ceiling needs mode_accuracy in [0.5, 1], got {mode_accuracy}")
    if n_draws < 1:
        raise ParameterError(f"reading_ceiling needs n_draws >= 1, got {n_draws}")
    split = clips["split"].astype(str).to_numpy()
    fit, test = np.isin(split, ["train", "val"]), split == "test"
    if fit.sum() < 3 or test.sum() < 3:
        raise ParameterError(f"reading_ceiling needs train/val and test clips, got {fit.sum()} and {test.sum()}")
    y = label_codes(clips["label"]).to_numpy()
    z = cues.to_numpy(dtype=np.float64)
    columns = list(cues.columns)
    # Noise of variance var(z) (1 - R²) / R² leaves the reading an R² of exactly R² for z.
    noise_sd = np.array([0.0 if cue == "mode" else z[:, j].std() * np.sqrt((1 - shares[cue]) / shares[cue])
                         for j, cue in enumerate(columns)])
    mode = columns.index("mode")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_draws):
        heard = z + rng.standard_normal(z.shape) * noise_sd
        flipped = rng.random(len(z)) >= mode_accuracy
        heard[flipped, mode] = -heard[flipped, mode]
        model = make_model("logreg").fit(heard[fit], y[fit])
        scores.append(balanced_accuracy_score(y[test], model.predict(heard[test])))
    return {"balanced_accuracy": float(np.mean(scores)), "sd": float(np.std(scores)), "n_test": int(test.sum())}


def probe_ceilings(probes: pd.DataFrame, clips: pd.DataFrame, *, n_draws: int = 20,
                   seed: int = 0) -> pd.DataFrame:
    """:func:`reading_ceiling` at the readings :func:`cue_probes` measured in each representation.

    Each representation's test R² per non-mode cue (below 0.01, that is not
    heard, taken as 0.01) and its mode ``sign_accuracy`` (at least 0.5) are
    the noise levels: what a linear reader of cues heard exactly that well
    could reach.

    Parameters
    ----------
    probes : pandas.DataFrame
        :func:`cue_probes` (``representation, cue, r2, sign_accuracy``).
    clips : pandas.DataFrame
        The synthetic clips the probes were fitted on.

    Returns
    -------
    pandas.DataFrame
        One row per representation: ``representation, mode_accuracy``, the
        R² of each non-mode cue, ``balanced_accuracy, sd``.

    Notebook: notebooks/02_vit.ipynb
    """
    rows = []
    for name, group in probes.groupby("representation", sort=False):
        table = group.set_index("cue")
        r2 = {cue: float(np.clip(value, 0.01, 1.0)) for cue, value in table["r2"].items() if cue != "mode"}
        mode_accuracy = float(np.clip(table.loc["mode", "sign_accuracy"], 0.5, 1.0))
        ceiling = reading_ceiling(clips, r2=r2, mode_accuracy=mode_accuracy, n_draws=n_draws, seed=seed)
        rows.append({"representation": name, "mode_accuracy": mode_accuracy, **r2,
                     "balanced_accuracy": ceiling["balanced_accuracy"], "sd": ceiling["sd"]})
    return pd.DataFrame(rows)


def reading_ceiling_grid(clips: pd.DataFrame, *, r2: Sequence[float] = (1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5),
                         mode_accuracy: Sequence[float] = (1.0, 0.97, 0.95, 0.9, 0.85), n_draws: int = 20,
                         seed: int = 0) -> pd.DataFrame:
    """:func:`reading_ceiling` over a grid: every non-mode cue heard at R² ``r2``, the mode at ``mode_accuracy``.

    Returns
    -------
    pandas.DataFrame
        One row per pair: ``r2, mode_accuracy, balanced_accuracy, sd, n_test``.

    Notebook: notebooks/02_vit.ipynb
    """
    return pd.DataFrame([{"r2": float(share), "mode_accuracy": float(accuracy),
                          **reading_ceiling(clips, r2=share, mode_accuracy=accuracy, n_draws=n_draws, seed=seed)}
                         for share in r2 for accuracy in mode_accuracy])


def features_baseline(dataset, *, families: Sequence[str], n_jobs: int = 2, n_bootstrap: int = 1000,
                      seed: int = 0) -> dict[str, Any]:
    """Chapter 1's logistic regression on musical features, on the ViT's split.

    The feature table is :func:`mer.features.extract`'s (read from chapter 1's
    cache when it ran on the same clips); the model uses the columns of
    ``families`` that chapter 1's model reads (:func:`mer.features.model_columns`:
    no absolute pitch class) and is fitted and scored by :func:`split_scores`.

    Returns
    -------
    dict
        As :func:`split_scores`.

    Notebook: notebooks/02_vit.ipynb
    """
    table = F.extract(dataset, families=F.extractable_families(dataset.clips), n_jobs=n_jobs)
    columns = F.model_columns(table[table["status"] == "ok"], families)
    X, y = design(dataset, table, columns=columns)
    return split_scores(X, y, dataset.clips.set_index("clip_id")["split"], model="logreg",
                        n_bootstrap=n_bootstrap, seed=seed)


def band_statistics_baseline(dataset, *, logmel: dict | None = None, n_jobs: int = 2, n_bootstrap: int = 1000,
                             seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """The chapter's logistic regression on per-band statistics of the ViT's log-mel.

    The baseline a spectrogram model must beat: :func:`make_model` ``"logreg"``
    on :func:`mer.spectrogram.band_statistics` (mean, spread and flux of every
    mel band; no order of events), computed from the same log-mel the ViT
    reads (``logmel`` as for :func:`mer.vit.train`), fitted and scored by
    :func:`split_scores` (train + val / test).

    Returns
    -------
    dict
        As :func:`split_scores`.

    Notebook: notebooks/02_vit.ipynb
    """
    clips = dataset.clips.reset_index(drop=True)
    specs, _ = spectrogram.compute(clips, params=spectrogram.LogMelParams(**(logmel or {})), n_jobs=n_jobs,
                                   progress=progress)
    X = pd.DataFrame(spectrogram.band_statistics(specs), index=pd.Index(clips["clip_id"], name="clip_id"))
    return representation_scores(dataset, X, n_bootstrap=n_bootstrap, seed=seed)


def representation_scores(dataset, X: pd.DataFrame, *, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The chapter's logistic regression on any per-clip representation, on the ViT's split.

    :func:`split_scores` with the dataset's labels and split; chapter 2 scores
    the band statistics and the ViT's own CLS token (a new head on a frozen
    encoder) this way.

    Parameters
    ----------
    dataset : mer.data.Dataset
    X : pandas.DataFrame, shape (n_clips, n_dims)
        Index ``clip_id``.

    Returns
    -------
    dict
        As :func:`split_scores`.

    Notebook: notebooks/02_vit.ipynb
    """
    truth = dataset.clips.set_index("clip_id")
    y = pd.Series(label_codes(truth["label"]).to_numpy(), index=truth.index).reindex(X.index)
    return split_scores(X, y, truth["split"], model="logreg", n_bootstrap=n_bootstrap, seed=seed)


# ----------------------------------------------------------------------------
# Accuracy beside interpretability
# ----------------------------------------------------------------------------


def vit_results(path: str | Path | None = None) -> dict[str, Any] | None:
    """Chapter 2's headline numbers (``_build/results/02_vit.json``), or None.

    Parameters
    ----------
    path : path, optional
        The results file; default chapter 2's under :func:`mer.store.results_dir`.

    Returns
    -------
    dict or None
        Its ``results``; None if the file is missing or unreadable.

    Notebook: notebooks/01_features.ipynb (the ViT's row of :func:`interpretability_table`)
    """
    path = Path(path) if path else store.results_dir() / "02_vit.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text()).get("results", {})
    except (OSError, json.JSONDecodeError) as err:
        log.warning("cannot read %s: %s", path, err)
        return None


def _pick(results: dict[str, Any], metric: str) -> float:
    # Chapter 2 may name them test_balanced_accuracy, balanced_accuracy, ...
    exact = [k for k in results if k == metric or k.endswith("_" + metric)]
    if metric == "accuracy":
        exact = [k for k in exact if "balanced" not in k]
    preferred = sorted(exact, key=lambda k: (not k.startswith("test"), len(k)))
    for key in preferred:
        if isinstance(results[key], (int, float)):
            return float(results[key])
    return np.nan


def interpretability_table(rows: list[dict[str, Any]], *, vit_path: str | Path | None = None) -> pd.DataFrame:
    """Accuracy beside interpretability, one row per model.

    Parameters
    ----------
    rows : list of dict
        Each ``{"model", "features", "n_features", "scores": {...}}`` from
        :func:`cross_validate`.
    vit_path : path, optional
        Chapter 2's results file; its row is added when it exists.

    Returns
    -------
    pandas.DataFrame
        ``model, inputs, n_parameters_or_features, accuracy,
        balanced_accuracy, roc_auc, explanation, evaluated_by``.

    Notebook: notebooks/01_features.ipynb
    """
    out = []
    for row in rows:
        scores = row["scores"]
        out.append({"model": row["model"], "inputs": row.get("features", ""),
                    "n_inputs": row.get("n_features"), "accuracy": scores.get("accuracy", np.nan),
                    "balanced_accuracy": scores.get("balanced_accuracy", np.nan),
                    "roc_auc": scores.get("roc_auc", np.nan),
                    "explanation": MODELS.get(row["model"], ("", row.get("explanation", "")))[1],
                    "evaluated_by": row.get("evaluated_by", "cross-validation")})
    vit = vit_results(vit_path)
    if vit:
        out.append({"model": "ViT (chapter 2)", "inputs": "log-mel spectrogram", "n_inputs": np.nan,
                    "accuracy": _pick(vit, "accuracy"), "balanced_accuracy": _pick(vit, "balanced_accuracy"),
                    "roc_auc": _pick(vit, "roc_auc"),
                    "explanation": "relevance per mel bin x frame (LRP, post hoc, local; chapter 3)",
                    "evaluated_by": "held-out test split"})
    return pd.DataFrame(out)


def most_typical(oof: pd.Series, *, n: int = 2) -> dict[str, list[str]]:
    """The ``n`` clips the model finds most Happy-looking and most Sad-looking.

    Parameters
    ----------
    oof : pandas.Series
        Out-of-fold P(happy) by ``clip_id`` (:func:`cross_validate`).

    Returns
    -------
    dict
        ``{"happy": [clip_id, ...], "sad": [clip_id, ...]}``.

    Notebook: notebooks/01_features.ipynb
    """
    ranked = oof.dropna().sort_values()
    return {HAPPY: ranked.index[::-1][:n].tolist(), SAD: ranked.index[:n].tolist()}
