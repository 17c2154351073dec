"""Models of the feature route: scores, bootstrap intervals, ground-truth recovery.

Notebook: notebooks/01_features.ipynb
"""

import numpy as np
import pandas as pd
import pytest

from mer import ParameterError
from mer import features as F
from mer import interpretable


@pytest.fixture(scope="module")
def synth():
    from mer import data

    return data.load_dataset("synth", n_clips=24, soundfont="TimGM6mb", seed=0, n_jobs=2)


@pytest.fixture(scope="module")
def synth_features(synth):
    return F.extract(synth, n_jobs=1, progress=False)


@pytest.fixture(scope="module")
def design(synth, synth_features):
    columns = F.feature_columns(synth_features, ["key", "lowlevel", "midlevel"])
    return interpretable.design(synth, synth_features, columns=columns)


def test_cross_validated_scores_are_in_range(design):
    X, y = design
    result = interpretable.cross_validate(X, y, model="logreg", cv_folds=3, seed=0)
    for metric in ("accuracy", "balanced_accuracy", "roc_auc"):
        assert 0.0 <= result["scores"][metric] <= 1.0
    assert result["scores"]["roc_auc"] > 0.6  # the features carry the label
    assert result["oof"].notna().all() and result["oof"].between(0, 1).all()
    again = interpretable.cross_validate(X, y, model="logreg", cv_folds=3, seed=0)
    assert again["scores"] == result["scores"]


def test_bootstrap_intervals_contain_the_point_estimate(design):
    X, y = design
    table = interpretable.bootstrap_coefficients(X.iloc[:, :6], y, model="logreg", n_bootstrap=30, seed=0)
    assert ((table["ci_low"] <= table["coef"]) & (table["coef"] <= table["ci_high"])).all()


def test_imputation_handles_undefined_features(design):
    X, y = design
    X = X.copy()
    X.iloc[::3, 0] = np.nan
    assert interpretable.cross_validate(X, y, model="mlp", cv_folds=3, seed=0)["oof"].notna().all()


def test_ground_truth_recovery_ranks_the_true_weights(synth, synth_features):
    result = interpretable.ground_truth_recovery(synth, synth_features, proxies="score", target="valence", n_bootstrap=20,
                                                 seed=0)
    assert result["spearman_rho"] >= 0.8, result["table"]
    assert result["nuisance_max"] < 0.25
    # Signs of the cues measured on the score (brightness's proxy, the
    # spectral centroid, is too weak for a sign on 24 clips).
    cues = result["table"][result["table"]["proxy"].str.startswith("sym_")]
    assert cues["sign_ok"].all(), result["table"]
    # The score measures its cues exactly (sign-aligned: minor -> mode, etc.).
    assert np.allclose(cues["proxy_spearman"], 1.0), result["table"]
    assert result["table"].loc[result["table"]["nuisance"], "proxy_spearman"].isna().all()


def test_the_recovery_reading_is_written_from_the_run_and_admits_what_it_lacks(synth, synth_features):
    recovery = {p: interpretable.ground_truth_recovery(synth, synth_features, proxies=p, target="valence", n_bootstrap=20,
                                                       seed=0)
                for p in ("score", "audio")}
    text = interpretable.recovery_reading(recovery, clips=synth.clips)
    assert f"ρ = {recovery['score']['spearman_rho']:.2f}" in text
    assert f"ρ = {recovery['audio']['spearman_rho']:.2f}" in text
    cues = recovery["audio"]["table"].dropna(subset=["proxy_spearman"])
    cues = cues[cues["true_weight"] != 0]
    weakest = cues.loc[cues["proxy_spearman"].idxmin()]
    assert f"The weakest is {weakest['cue']} (ρ = {weakest['proxy_spearman']:.2f})" in text
    # A corpus has no generator weights and no ratings: the text says so instead of citing a number.
    assert "not measured" in interpretable.recovery_reading(None)
    assert not any(ch.isdigit() for ch in interpretable.regression_reading(None, None))
    assert interpretable.regression_reading(0.5, None).endswith("The dataset has no arousal ratings.")


def test_interpretability_table_includes_vit_when_present(tmp_path, design):
    X, y = design
    scores = interpretable.cross_validate(X, y, model="logreg", cv_folds=3)["scores"]
    rows = [{"model": "logreg", "features": "key", "n_features": X.shape[1], "scores": scores}]
    path = tmp_path / "02_vit.json"
    assert len(interpretable.interpretability_table(rows, vit_path=path)) == 1
    path.write_text('{"results": {"test_accuracy": 0.9, "test_balanced_accuracy": 0.88, "test_roc_auc": 0.95}}')
    table = interpretable.interpretability_table(rows, vit_path=path)
    assert table.iloc[1]["balanced_accuracy"] == 0.88 and table.iloc[1]["accuracy"] == 0.9


def test_unknown_model_is_a_parameter_error():
    with pytest.raises(ParameterError, match="unknown model"):
        interpretable.make_model("forest")


def test_band_statistics_baseline_scores_the_test_split(synth):
    result = interpretable.band_statistics_baseline(synth, n_bootstrap=50, progress=False)
    test = synth.clips[synth.clips["split"] == "test"]
    assert list(result["predictions"]["clip_id"]) == list(test["clip_id"])
    assert result["predictions"]["p_happy"].between(0, 1).all()
    metrics = result["metrics"].set_index("metric")
    assert set(metrics.index) >= {"balanced_accuracy", "roc_auc"}
    assert (metrics["n"] == len(test)).all()
    # The same inputs give the same numbers.
    again = interpretable.band_statistics_baseline(synth, n_bootstrap=50, progress=False)
    pd.testing.assert_frame_equal(result["metrics"], again["metrics"])


def test_split_scores_fit_on_train_and_val_and_score_the_test_clips(synth, design):
    X, y = design
    split = synth.clips.set_index("clip_id")["split"]
    result = interpretable.split_scores(X, y, split, n_bootstrap=50)
    predictions = result["predictions"]
    assert set(predictions["clip_id"]) == set(split[split == "test"].index) & set(X.index)
    assert (predictions["label"] == synth.clips.set_index("clip_id").loc[predictions["clip_id"], "label"].to_numpy()).all()
    # Test clips never reach the fit: changing their labels leaves the model (and the test probabilities) alone.
    flipped = y.copy()
    test_ids = list(predictions["clip_id"])
    flipped.loc[test_ids] = 1 - flipped.loc[test_ids]
    again = interpretable.split_scores(X, flipped, split, n_bootstrap=50)["predictions"]
    np.testing.assert_allclose(again["p_happy"], predictions["p_happy"])
    with pytest.raises(ParameterError, match="classifier"):
        interpretable.split_scores(X, y, split, model="linreg")
    with pytest.raises(ParameterError, match="test"):
        interpretable.split_scores(X, y, split.replace("test", "train"))


def test_cue_probes_read_a_cue_only_where_the_representation_holds_it(synth):
    from mer.data import synth as generator

    clips = synth.clips
    index = pd.Index(clips["clip_id"], name="clip_id")
    cues = generator.standardised_cues(clips).set_axis(index)
    rng = np.random.default_rng(0)
    representations = {
        "cues": cues + rng.normal(scale=0.01, size=cues.shape),
        "noise": pd.DataFrame(rng.normal(size=(len(clips), 6)), index=index),
        # Holds the tempo for the fitted clips only: what it learned there does not carry to the test clips.
        "tempo, fit clips only": pd.DataFrame({"t": np.where(clips["split"].eq("test"), rng.normal(size=len(clips)),
                                                             cues["tempo_bpm"])}, index=index),
    }
    table = interpretable.cue_probes(representations, clips, n_bootstrap=200).set_index(["representation", "cue"])
    n_test = int(clips["split"].eq("test").sum())
    assert len(table) == 3 * len(generator.WEIGHTS)
    assert (table["n_test"] == n_test).all() and (table["n_fit"] == len(clips) - n_test).all()
    assert (table.loc["cues", "r2"] > 0.95).all()
    assert (table.loc["noise", "r2"] < 0.5).all()
    assert table.loc[("tempo, fit clips only", "tempo_bpm"), "r2"] < 0.5
    assert (table["low"] <= table["high"]).all() and (table.loc["cues", "low"] > 0.9).all()
    again = interpretable.cue_probes(representations, clips, n_bootstrap=200).set_index(["representation", "cue"])
    pd.testing.assert_frame_equal(table, again)
    with pytest.raises(ParameterError, match="test"):
        interpretable.cue_probes({"cues": cues}, clips.assign(split="train"))


def _truth_table(n_clips: int, seed: int = 0) -> pd.DataFrame:
    """The generator's truth for ``n_clips`` clips, drawn without rendering any audio."""
    from mer.data import synth as generator

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clips):
        params = generator.sample_params(rng=rng)
        truth = generator.latent(params, noise_valence=params["noise_valence"])
        rows.append({"clip_id": f"c{i:04d}", "label": truth["label"], "split": ("train", "val", "test")[i % 3],
                     **{cue: params[cue] for cue in generator.WEIGHTS}})
    return pd.DataFrame(rows)


def test_reading_ceiling_falls_as_the_cues_are_heard_worse():
    clips = _truth_table(900)
    exact = interpretable.reading_ceiling(clips, n_draws=3)
    assert exact["n_test"] == 300 and exact["balanced_accuracy"] > 0.95
    blurred = interpretable.reading_ceiling(clips, r2=0.5, n_draws=3)["balanced_accuracy"]
    misheard_mode = interpretable.reading_ceiling(clips, mode_accuracy=0.85, n_draws=3)["balanced_accuracy"]
    nothing = interpretable.reading_ceiling(clips, r2=0.01, mode_accuracy=0.5, n_draws=3)["balanced_accuracy"]
    assert exact["balanced_accuracy"] - 0.05 > blurred > nothing
    assert exact["balanced_accuracy"] - 0.05 > misheard_mode > nothing
    assert nothing < 0.7
    # One cue blurred alone costs less than all of them; a cue left out of the dict is heard exactly.
    one = interpretable.reading_ceiling(clips, r2={"tempo_bpm": 0.5}, n_draws=3)["balanced_accuracy"]
    assert blurred < one <= exact["balanced_accuracy"] + 0.01
    first = interpretable.reading_ceiling(clips, r2=0.7, n_draws=3, seed=1)
    assert first == interpretable.reading_ceiling(clips, r2=0.7, n_draws=3, seed=1)
    grid = interpretable.reading_ceiling_grid(clips, r2=(1.0, 0.6), mode_accuracy=(1.0, 0.9), n_draws=2)
    assert len(grid) == 4 and set(grid.columns) >= {"r2", "mode_accuracy", "balanced_accuracy", "sd"}
    for bad in ({"r2": 0.0}, {"r2": {"register": 1.5}}, {"mode_accuracy": 0.4}, {"n_draws": 0}):
        with pytest.raises(ParameterError, match="reading_ceiling"):
            interpretable.reading_ceiling(clips, **bad)


def test_probe_ceilings_take_each_representations_measured_readings():
    from mer.data import synth as generator

    clips = _truth_table(600, seed=1)
    index = pd.Index(clips["clip_id"], name="clip_id")
    cues = generator.standardised_cues(clips).set_axis(index)
    rng = np.random.default_rng(0)
    representations = {"cues": cues + rng.normal(scale=0.01, size=cues.shape),
                       "half the cues": cues[["mode", "tempo_bpm", "velocity"]]}
    probes = interpretable.cue_probes(representations, clips, n_bootstrap=0)
    mode = probes[probes["cue"] == "mode"].set_index("representation")["sign_accuracy"]
    assert (mode > 0.99).all() and probes.loc[probes["cue"] != "mode", "sign_accuracy"].isna().all()
    table = interpretable.probe_ceilings(probes, clips, n_draws=3).set_index("representation")
    assert table.loc["cues", "balanced_accuracy"] > 0.95
    # Register, articulation and brightness are not held at all: their R² is floored at 0.01.
    assert table.loc["half the cues", "register"] == pytest.approx(0.01)
    assert table.loc["half the cues", "balanced_accuracy"] < table.loc["cues", "balanced_accuracy"] - 0.03
