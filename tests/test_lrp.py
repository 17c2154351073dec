"""LRP for the transformers ViT: conservation, the context manager, batching,
and the checks of chapter 3 on a tiny model trained here on a task whose
evidence is known (a band lit inside one 2-frame window)."""

from __future__ import annotations

import copy
import types

import numpy as np
import pandas as pd
import pytest
import torch

from mer import ParameterError, lrp, metrics
from mer.lrp import checks, explainers

N_MELS, N_FRAMES, PATCH = 16, 24, (16, 2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine two
    threads contend and a training step takes 20x longer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_vit(seed: int = 0, **overrides):
    from transformers import ViTConfig, ViTForImageClassification

    options = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   image_size=[N_MELS, N_FRAMES], patch_size=list(PATCH), num_channels=1, num_labels=2,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    options.update(overrides)
    torch.manual_seed(seed)
    model = ViTForImageClassification(ViTConfig(**options))
    return model.eval()


def randomise_offsets(model, seed=1):
    """Give biases, LayerNorm weights/offsets non-trivial values (init leaves them 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


def band_task(n: int, seed: int):
    """Noise spectrograms; class evidence only inside one random 2-frame window:
    happy (1) lights mel rows 3-5, sad (0) rows 10-12."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.5, size=(n, 1, N_MELS, N_FRAMES)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    starts = 2 * rng.integers(0, N_FRAMES // 2, n)
    masks = np.zeros((n, N_FRAMES), bool)
    for i in range(n):
        rows = slice(3, 6) if labels[i] == 1 else slice(10, 13)
        x[i, 0, rows, starts[i]:starts[i] + 2] += 2.5
        masks[i, starts[i]:starts[i] + 2] = True
    return x, labels, masks


@pytest.fixture(scope="module")
def trained():
    """A tiny ViT trained for a few seconds on :func:`band_task` (fixed seed)."""
    torch.manual_seed(0)
    model = tiny_vit(seed=0)
    x, y, _ = band_task(1024, seed=0)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    for step in range(300):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(pixel_values=xt[idx]).logits, yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xv, yv, mv = band_task(96, seed=1)
    with torch.no_grad():
        acc = (model(pixel_values=torch.as_tensor(xv)).logits.argmax(-1).numpy() == yv).mean()
    assert acc > 0.9, f"tiny model did not learn the band task (accuracy {acc:.2f})"
    return model, xv, yv, mv


def test_cp_lrp_conserves_on_zeroed_offsets():
    model = lrp.zero_offsets(randomise_offsets(tiny_vit(seed=3)))
    x = torch.randn(16, 1, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(0))
    table = lrp.conservation(model, x, rule="cp")
    assert table["rel_error"].median() <= 1e-6
    attn = lrp.conservation(model, x, rule="attn")
    # AttnLRP's softmax rule is not conservative: its loss is reported, not hidden.
    assert np.isfinite(attn["rel_error"]).all()
    print(f"CP median rel. error {table['rel_error'].median():.2e}; AttnLRP {attn['rel_error'].median():.2e}")


def test_cp_lrp_conserves_through_the_onset_channels():
    """The derived channels are positively homogeneous with no offset: relevance on the
    one-channel input still sums to the logit, and it lies on the spectrogram's grid."""
    from transformers import ViTConfig

    from mer import vit

    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=[N_MELS, N_FRAMES], patch_size=list(PATCH), num_channels=3, num_labels=2)
    config.input_channels = "onsets"
    torch.manual_seed(5)
    model = lrp.zero_offsets(randomise_offsets(vit.vit_from_config(config).eval()))
    x = torch.randn(16, 1, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(2))
    table = lrp.conservation(model, x, rule="cp")
    assert table["rel_error"].median() <= 1e-6
    assert lrp.relevance(model, x[:2], rule="cp")["relevance"].shape[-2:] == (N_MELS, N_FRAMES)


def onset_vit(seed: int):
    """A tiny ViT with the onset and release channels, as chapter 2's model has them."""
    from transformers import ViTConfig

    from mer import vit

    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=[N_MELS, N_FRAMES], patch_size=list(PATCH), num_channels=3, num_labels=2)
    config.input_channels = "onsets"
    torch.manual_seed(seed)
    return vit.vit_from_config(config).eval()


def test_removing_a_stripe_changes_no_other_tokens_input():
    """Region perturbation, on a model that derives its onset channels, replaces
    the stripe in every channel the patch embedding reads: the token of the
    stripe sees the fill value and no rise or fall, every other token sees what
    it saw before. Filling the spectrogram before the channels are derived
    would have put a rise into the next token."""
    from mer import vit

    model = onset_vit(seed=6)
    x, y, _ = band_task(3, seed=3)
    seen = []
    hook = lrp.vit_parts(model)["conv"].register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    n_patches = N_FRAMES // PATCH[1]
    k = 4  # the stripe removed first: frames 8-9
    ranking = np.zeros((len(x), N_MELS, N_FRAMES), np.float32)
    ranking[..., 2 * k:2 * k + 2] = 1.0
    try:
        curve = checks.region_perturbation(model, x, ranking, y, order="morf", step=1 / n_patches, fill_value=0.3)
        occluded = explainers.explain("occlusion", model, x, y, fill_value=0.3)
    finally:
        hook.remove()
    before, after = seen[0], seen[1]  # nothing removed, then stripe k
    assert before.shape == (3, 3, N_MELS, N_FRAMES)
    inside = np.zeros(N_FRAMES, bool)
    inside[2 * k:2 * k + 2] = True
    torch.testing.assert_close(after[..., ~inside], before[..., ~inside], rtol=0, atol=0)
    assert torch.all(after[:, 0, :, inside] == 0.3) and torch.all(after[:, 1:, :, inside] == 0)
    # The stripe filled before the channels are derived: the next token's first frame rises.
    filled = torch.as_tensor(x).clone()
    filled[..., inside] = 0.3
    edged = vit.onset_channels(filled)
    assert not torch.equal(edged[..., 2 * k + 2], before[..., 2 * k + 2])
    # The model reads the three channels as it reads the spectrogram they come from.
    with torch.no_grad():
        p_derived = torch.softmax(model(pixel_values=before).logits, -1)
        p_plain = torch.softmax(model(pixel_values=torch.as_tensor(x)).logits, -1)
    torch.testing.assert_close(p_derived, p_plain, rtol=0, atol=0)
    np.testing.assert_allclose(curve[:, 0], p_plain.gather(1, torch.as_tensor(y)[:, None])[:, 0].numpy(), atol=1e-6)
    # Occlusion removes stripes the same way: its drop for stripe k is the logit lost in `after`.
    with torch.no_grad():
        logit_after = model(pixel_values=after).logits.gather(1, torch.as_tensor(y)[:, None])[:, 0]
        logit_full = model(pixel_values=before).logits.gather(1, torch.as_tensor(y)[:, None])[:, 0]
    np.testing.assert_allclose(occluded[:, 0, 2 * k], (logit_full - logit_after).numpy() / (N_MELS * 2), rtol=1e-4,
                               atol=1e-6)


def test_absorbed_relevance_accounts_for_the_logit():
    """With offsets present, input + biases + LayerNorm offsets + CLS + position = logit (CP)."""
    model = randomise_offsets(tiny_vit(seed=4))
    x = torch.randn(8, 1, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(1))
    out = lrp.relevance(model, x, rule="cp")
    assert np.abs(out["lost"]).max() <= 1e-5 * np.abs(out["explained"]).max() + 1e-6
    assert np.abs(out["absorbed"]["bias"]).max() > 0
    assert np.abs(out["absorbed"]["position"]).max() > 0
    # Without the bookkeeping the maps are the same and nothing pretends to be accounted for.
    for kwargs in ({}, {"gamma": 0.25}, {"epsilon": 0.5}):
        kept = lrp.relevance(model, x, rule="cp", **kwargs)
        bare = lrp.relevance(model, x, rule="cp", account=False, **kwargs)
        np.testing.assert_array_equal(bare["relevance"], kept["relevance"])
        assert np.isnan(bare["lost"]).all() and all(np.isnan(v).all() for v in bare["absorbed"].values())


def test_epsilon_and_gamma_lose_or_keep_as_documented():
    model = lrp.zero_offsets(tiny_vit(seed=5))
    x = torch.randn(8, 1, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(2))
    gamma = lrp.conservation(model, x, rule="cp", gamma=0.25)
    assert gamma["rel_error"].median() <= 1e-5  # gamma redistributes, conserves
    eps = lrp.relevance(model, x, rule="cp", epsilon=1.0)
    plain = lrp.relevance(model, x, rule="cp")
    assert not np.allclose(eps["relevance"], plain["relevance"])


def test_each_rule_switches_off_alone_and_only_all_three_conserve():
    model = lrp.zero_offsets(randomise_offsets(tiny_vit(seed=6)))
    x = torch.randn(8, 1, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(3))
    none = lrp.relevance(model, x, target=1, modified=(), account=False)["relevance"]
    np.testing.assert_allclose(none, lrp.gradient_x_input(model, x, target=1), rtol=0, atol=1e-6)
    errors = {}
    for parts in [(), ("attention",), ("norm",), ("activation",), ("attention", "norm"), lrp.PARTS]:
        out = lrp.relevance(model, x, target=1, modified=parts)
        errors[parts] = float(np.median(np.abs(out["relevance"].reshape(8, -1).sum(1) - out["explained"])
                                        / np.abs(out["explained"])))
    print(errors)
    assert errors[lrp.PARTS] <= 1e-6
    assert all(error > 1e-4 for parts, error in errors.items() if parts != lrp.PARTS)
    with pytest.raises(ParameterError, match="modified"):
        lrp.relevance(model, x, modified=("softmax",))


def test_rule_ablation_runs_the_cascade_per_rule(trained):
    model, x, y, _ = trained
    table = checks.rule_ablation(model, x[:16], y[:16], seed=0, draws=1)
    assert list(table.columns) == list(checks.RULE_ABLATION)
    assert (table.loc["none"] == 1.0).all()
    # No rule at all is gradient x input: the same cascade gives the same numbers.
    gxi = checks.randomisation(model, x[:16], y[:16], lambda m, xs, t: lrp.gradient_x_input(m, xs, t),
                                   seed=0, draws=1).set_index("randomised")["spearman_abs"]
    pd.testing.assert_series_equal(table["no rule (gradient x input)"], gxi, check_names=False)
    # All three is the chapter's LRP (epsilon 0).
    full = checks.randomisation(model, x[:16], y[:16], lambda m, xs, t: explainers.explain("lrp", m, xs, t),
                                    seed=0, draws=1).set_index("randomised")["spearman_abs"]
    pd.testing.assert_series_equal(table["all three (LRP)"], full, check_names=False)


def test_relevance_shapes():
    model = tiny_vit()
    out = lrp.relevance(model, np.zeros((3, N_MELS, N_FRAMES), np.float32) + 0.1, target=1)
    assert out["relevance"].shape == (3, N_MELS, N_FRAMES)
    assert out["patch"].shape == (3, 1, N_FRAMES // 2)
    assert np.allclose(out["patch"].sum((1, 2)), out["relevance"].reshape(3, -1).sum(1), atol=1e-5)
    assert set(out["absorbed"]) == {"bias", "norm_offset", "cls", "position"}
    for name in explainers.EXPLAINERS:
        r = explainers.explain(name, model, np.ones((2, 1, N_MELS, N_FRAMES), np.float32), 0)
        assert r.shape == (2, N_MELS, N_FRAMES), name


def test_batch_equals_per_sample():
    model = randomise_offsets(tiny_vit(seed=6))
    x = torch.randn(5, 1, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(3))
    for rule in ("cp", "attn"):
        batch = lrp.relevance(model, x, target=1, rule=rule)
        for i in range(5):
            one = lrp.relevance(model, x[i:i + 1], target=1, rule=rule)
            np.testing.assert_allclose(one["relevance"][0], batch["relevance"][i], rtol=1e-4, atol=1e-6)
            for key, value in one["absorbed"].items():
                np.testing.assert_allclose(value[0], batch["absorbed"][key][i], rtol=1e-4, atol=1e-6)


def _outputs_and_grads(model, x):
    model.zero_grad()
    inputs = x.clone().requires_grad_(True)
    logits = model(pixel_values=inputs).logits
    logits[:, 1].sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    return logits.detach(), inputs.grad.clone(), grads


def test_context_restores_the_model_and_leaves_others_alone():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    model = randomise_offsets(tiny_vit(seed=7))
    other = randomise_offsets(tiny_vit(seed=8))
    x = torch.randn(4, 1, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(4))
    impl = model.config._attn_implementation
    before = _outputs_and_grads(model, x)
    other_before = _outputs_and_grads(other, x)
    state = copy.deepcopy(model.state_dict())
    model.train()
    with lrp.lrp_context(model, rule="attn", gamma=0.25):
        assert model.config._attn_implementation.startswith("mer_lrp")
        assert other.config._attn_implementation == impl
        inside = _outputs_and_grads(other, x)  # the unrelated model runs normally meanwhile
        assert not torch.allclose(_outputs_and_grads(model, x)[1], before[1])
    assert model.training  # training flag restored
    model.eval()
    with pytest.raises(RuntimeError):
        with lrp.lrp_context(model, rule="cp"):
            raise RuntimeError("boom")
    after = _outputs_and_grads(model, x)
    assert model.config._attn_implementation == impl
    assert not any(k.startswith("mer_lrp") for k in ALL_ATTENTION_FUNCTIONS)
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())
    for a, b in zip(state.values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert all(torch.equal(a, b) for a, b in zip(before[2], after[2]))
    for a, b in zip(other_before, inside):
        if isinstance(a, list):
            assert all(torch.equal(p, q) for p, q in zip(a, b))
        else:
            assert torch.equal(a, b)


def test_a_rule_object_plugged_into_a_composite_equals_the_string_path():
    """A composite mapping the blocks' linear layers to an epsilon (or gamma) rule
    object gives the same relevance, absorbed and lost as rule="cp", epsilon=...
    (the string path), bit for bit; so does AttnLRP with gamma."""
    from torch import nn
    from transformers.models.vit.modeling_vit import ViTEmbeddings, ViTLayer

    model = randomise_offsets(tiny_vit(seed=10))
    x = torch.randn(4, 1, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(6))
    by_hand = lrp.Composite({
        lrp.ATTENTION: lrp.ATTENTION_RULES["cp"],
        lrp.Inside(ViTLayer, lrp.activation_types()): lrp.ActivationIdentity(),
        nn.LayerNorm: lrp.NormConstantScale(),
        lrp.Inside(ViTLayer, nn.Linear): lrp.LinearEpsilonGamma(epsilon=0.5),
        nn.Linear: lrp.LinearEpsilonGamma(),  # the first key wins: the blocks' layers keep epsilon
        lrp.PATCH_CONV: lrp.ConvBias(),
        ViTEmbeddings: lrp.EmbeddingOffsets(),
    })
    ours = lrp.relevance(model, x, target=1, composite=by_hand)
    strings = lrp.relevance(model, x, target=1, rule="cp", epsilon=0.5)
    for key in ("relevance", "lost", "explained"):
        np.testing.assert_array_equal(ours[key], strings[key])
    for key in strings["absorbed"]:
        np.testing.assert_array_equal(ours["absorbed"][key], strings["absorbed"][key])
    assert not np.allclose(ours["relevance"], lrp.relevance(model, x, target=1, rule="cp")["relevance"])
    gamma = lrp.vit_composite("attn").with_rules({lrp.BLOCK_LINEARS: lrp.LinearEpsilonGamma(gamma=0.25)})
    np.testing.assert_array_equal(lrp.relevance(model, x, target=1, composite=gamma, account=False)["relevance"],
                                  lrp.relevance(model, x, target=1, rule="attn", gamma=0.25, account=False)["relevance"])
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ParameterError, match="composite"):
        lrp.relevance(model, x, composite=gamma, epsilon=0.5)


def test_a_new_rule_class_plugs_in_by_layer_type():
    """A rule written outside the package (here: the plain gradient, a forward
    hook that keeps the output) mapped onto the GELUs is the ablation without
    the GELU rule; and the composite detaches it on exit."""

    class PlainGradient(lrp.ForwardHookRule):
        calls = 0

        def forward(self, module, inputs, output, state):
            PlainGradient.calls += 1
            return None

    model = lrp.zero_offsets(randomise_offsets(tiny_vit(seed=11)))
    x = torch.randn(4, 1, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(7))
    composite = lrp.vit_composite("cp").with_rules({lrp.BLOCK_ACTIVATIONS: PlainGradient()})
    ours = lrp.relevance(model, x, target=0, composite=composite)
    assert PlainGradient.calls == 2  # one GELU per block, one forward pass
    ablation = lrp.relevance(model, x, target=0, modified=("attention", "norm"))
    np.testing.assert_array_equal(ours["relevance"], ablation["relevance"])
    assert np.abs(ours["lost"]).max() > 1e-4 * np.abs(ours["explained"]).max()  # GELU's gradient does not conserve
    assert [type(rule).__name__ for _, rule in composite.attachments(model)].count("PlainGradient") == 2
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())


def test_faithfulness_ordering_on_trained_tiny_model(trained):
    model, x, y, _ = trained
    step = 1 / 12  # one patch per step
    areas = {}
    for name in ("lrp", "gradxinput", "random"):
        r = explainers.explain(name, model, x, y)
        curve = checks.region_perturbation(model, x, r, y, order="morf", step=step)
        areas[name] = checks.curve_area(curve, step)
    print({k: round(v.mean(), 3) for k, v in areas.items()})
    assert areas["lrp"].mean() < areas["random"].mean()
    assert areas["lrp"].mean() < areas["gradxinput"].mean()
    _, low, high = metrics.bootstrap_interval(areas["lrp"] - areas["random"])
    assert high < 0


def test_epsilon_is_chosen_by_morf_area_and_reported_for_every_candidate(trained):
    model, x, y, _ = trained
    best, table = checks.select_epsilon(model, x, y, [1.0, 0, 0.25, 0.25], step=1 / 12)
    assert list(table["epsilon"]) == [0.0, 0.25, 1.0]  # sorted, duplicates dropped
    assert best == table.loc[table["morf_auc"].idxmin(), "epsilon"]
    # the table's areas are the checks' own, recomputed here for one candidate
    r = explainers.explain("lrp", model, x, y, epsilon=0.25)
    area = checks.curve_area(checks.region_perturbation(model, x, r, y, order="morf", step=1 / 12), 1 / 12)
    assert table.loc[table["epsilon"] == 0.25, "morf_auc"].item() == pytest.approx(area.mean())
    with pytest.raises(ParameterError):
        checks.select_epsilon(model, x, y, [-1.0])


def test_probe_summary_shows_which_class_the_ground_truth_rests_on():
    """A model that hears the twins' open fifths as Happy: Happy probes lose nothing
    without the window and none qualifies; the Sad ones carry the check."""
    label = np.array([1, 1, 1, 0, 0, 0])
    p_full = np.array([[0.1, 0.9], [0.2, 0.8], [0.6, 0.4], [0.8, 0.2], [0.9, 0.1], [0.3, 0.7]])
    p_no = np.array([[0.1, 0.9], [0.15, 0.85], [0.5, 0.5], [0.2, 0.8], [0.1, 0.9], [0.2, 0.8]])
    scored = checks.qualifying_probes(label, p_full, p_no)
    table = checks.probe_summary(label, p_full, p_no, scored)
    assert list(table.index) == ["happy", "sad"]
    assert table.loc["happy", "n_scored"] == 0 and table.loc["sad", "n_scored"] == 2
    assert table.loc["happy", "accuracy"] == pytest.approx(2 / 3) and table.loc["sad", "n"] == 3
    assert table.loc["happy", "drop_median"] == pytest.approx(-0.05)
    assert table.loc["sad", "drop_median"] == pytest.approx(0.6)
    assert table.loc["sad", "p_happy_no_window_median"] == pytest.approx(0.8)


def test_ground_truth_mass_accuracy_on_trained_tiny_model(trained):
    model, x, y, masks = trained
    r = explainers.explain("lrp", model, x, y)
    per_bin = checks.mass_accuracy(r, masks)
    per_token = checks.mass_accuracy(r, masks, patch=PATCH)
    print(f"mass accuracy per bin {np.nanmean(per_bin):.3f}, per token {np.nanmean(per_token):.3f}, "
          f"pointing {checks.pointing_game(r, masks).mean():.2f}")
    assert np.nanmean(per_token) >= 0.8


def test_randomisation_destroys_the_lrp_map(trained):
    model, x, y, _ = trained
    table = checks.randomisation(model, x[:32], y[:32], lambda m, xs, t: explainers.explain("lrp", m, xs, t),
                                     seed=0, draws=2)
    print(table)
    assert table.loc[0, "spearman"] == pytest.approx(1.0)
    assert table.loc[0, "spearman_abs"] == pytest.approx(1.0)
    top_two = table.index[table["randomised"] == "block 1"][0]  # 2-layer model: blocks 2 and 1 = top two
    assert table.loc[top_two, "spearman_abs"] <= 0.2
    assert (table["draws"] == 2).all()


def test_randomisation_flags_a_model_independent_map(trained):
    """A map that ignores the model (edge detection of the input) keeps |rho| = 1 at every step."""
    model, x, y, _ = trained

    def edges(m, xs, t):
        return np.abs(np.diff(np.asarray(xs)[:, 0], axis=-1, prepend=0))

    table = checks.randomisation(model, x[:8], y[:8], edges, seed=0, draws=2)
    assert (table["spearman_abs"] > 0.999).all()


def _lxt():
    try:
        import lxt.efficient.patches as patches
        import lxt.efficient.rules as rules
    except Exception:  # ImportError, or lxt's own imports failing with this transformers
        return None
    return patches, rules


@pytest.mark.skipif(_lxt() is None, reason="lxt does not import here")
def test_matches_lxt_rules():
    """Our AttnLRP and CP-LRP equal lxt's rule functions applied to a copy of the same model."""
    from transformers.models.vit.modeling_vit import eager_attention_forward

    patches, _ = _lxt()
    model = randomise_offsets(tiny_vit(seed=9))
    x = torch.randn(4, 1, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(5))
    for rule, wrap in (("attn", patches.wrap_attention_forward), ("cp", patches.cp_wrap_attention_forward)):
        ours = lrp.relevance(model, x, target=1, rule=rule)["relevance"]
        theirs_model = copy.deepcopy(model)
        for module in theirs_model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.forward = types.MethodType(patches.layer_norm_forward, module)
            elif isinstance(module, lrp.activation_types()):
                module.original_forward = module.forward
                module.forward = types.MethodType(patches.non_linear_forward, module)
        with lrp.attention_function(theirs_model, "lxt_reference", wrap(eager_attention_forward)):
            inputs = x.clone().requires_grad_(True)
            theirs_model(pixel_values=inputs).logits[:, 1].sum().backward()
        theirs = (inputs * inputs.grad)[:, 0].detach().numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-5 * np.abs(theirs).max())


def test_gamma_rule_matches_its_definition_on_one_layer():
    """R_i = sum_j z'_ij / z'_j R_j with z'_ij = z_ij + gamma (z_ij)^{sign z_j} and
    z'_j = z_j + gamma sum_i (z_ij)^{sign z_j} (the bias keeps its share), written out in full."""
    g = torch.Generator().manual_seed(7)
    layer = torch.nn.Linear(6, 4)
    x = torch.randn(3, 6, generator=g, requires_grad=True)
    relevance_out = torch.randn(3, 4, generator=g)
    gamma = 0.25
    z = layer(x)
    out = lrp.linear_rule(x, z, layer.weight, epsilon=0.0, gamma=gamma, bias=layer.bias)
    assert torch.allclose(out, z)
    (grad,) = torch.autograd.grad((out * (relevance_out / z).detach()).sum(), x)
    ours = (x * grad).detach()
    contributions = x.detach()[:, None, :] * layer.weight.detach()[None]  # (batch, out, in)
    positive_out = (z.detach() >= 0)[..., None]
    boosted = contributions + gamma * torch.where(positive_out, contributions.clamp(min=0),
                                                  contributions.clamp(max=0))
    denominator = z.detach() + (boosted - contributions).sum(-1)
    reference = (boosted / denominator[..., None] * relevance_out[..., None]).sum(1)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_greedy_deletion_is_the_reference_no_explainer_beats(trained):
    """The search asks the model at every step, so its MoRF curve is at or below
    every explainer's and its LeRF curve at or above, on the same clips; its
    first removal is the single patch whose removal lowers p(target) most."""
    model, x, y, _ = trained
    x, y = x[:24], y[:24]
    step = 1 / 12  # one patch per step: the search is exact for the first step
    morf_map = checks.greedy_deletion(model, x, y, step=step)
    lerf_map = checks.greedy_deletion(model, x, y, order="lerf", step=step)
    greedy_morf = checks.region_perturbation(model, x, morf_map, y, order="morf", step=step)
    greedy_lerf = checks.region_perturbation(model, x, lerf_map, y, order="lerf", step=step)
    # The first step: every single-patch removal, by hand.
    singles = np.stack([checks.region_perturbation(model, x, np.eye(12)[p].repeat(2)[None, None, :]
                                                       .repeat(len(x), 0).repeat(N_MELS, 1), y,
                                                       order="morf", step=step)[:, 1] for p in range(12)], 1)
    np.testing.assert_allclose(greedy_morf[:, 1], singles.min(1), atol=1e-6)
    np.testing.assert_allclose(greedy_lerf[:, 1], singles.max(1), atol=1e-6)
    for name in ("lrp", "gradxinput", "occlusion", "random"):
        r = explainers.explain(name, model, x, y)
        morf = checks.region_perturbation(model, x, r, y, order="morf", step=step)
        lerf = checks.region_perturbation(model, x, r, y, order="lerf", step=step)
        assert np.all(greedy_morf[:, 1] <= morf[:, 1] + 1e-6), name  # step one is exact per clip
        assert checks.curve_area(greedy_morf, step).mean() <= checks.curve_area(morf, step).mean() + 1e-6
        assert checks.curve_area(greedy_lerf, step).mean() >= checks.curve_area(lerf, step).mean() - 1e-6
    with pytest.raises(ParameterError):
        checks.greedy_deletion(model, x, y, order="middle")
