"""The baselines of chapter 3 behave as their definitions say, through one signature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mer.lrp import checks, explainers

N_MELS, N_FRAMES = 16, 12


@pytest.fixture(scope="module")
def model():
    from transformers import ViTConfig, ViTForImageClassification

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=[N_MELS, N_FRAMES], patch_size=[16, 2], num_channels=1, num_labels=2)
    yield ViTForImageClassification(config).eval()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(3, 1, N_MELS, N_FRAMES)).astype(np.float32)


def logits(model, x):
    with torch.no_grad():
        return model(pixel_values=torch.as_tensor(x)).logits.numpy()


def test_unknown_explainer_is_a_parameter_error(model, x):
    from mer import ParameterError

    with pytest.raises(ParameterError, match="unknown explainer"):
        explainers.explain("saliency", model, x, 0)


def test_integrated_gradients_is_complete(model, x):
    r = explainers.explain("ig", model, x, 1, fill_value=0.0)
    expected = logits(model, x)[:, 1] - logits(model, np.zeros_like(x))[:, 1]
    np.testing.assert_allclose(r.reshape(3, -1).sum(1), expected, rtol=0.05, atol=1e-3)


def test_occlusion_is_the_logit_drop_per_patch(model, x):
    r = explainers.explain("occlusion", model, x, 0, fill_value=0.0)
    occluded = x.copy()
    occluded[:, :, :, 4:6] = 0.0
    drop = logits(model, x)[:, 0] - logits(model, occluded)[:, 0]
    np.testing.assert_allclose(r[:, :, 4:6].sum((1, 2)), drop, rtol=1e-4, atol=1e-6)


def test_rollout_is_a_distribution_over_tokens(model, x):
    r = explainers.explain("rollout", model, x)
    assert (r >= 0).all()
    assert r.reshape(3, -1).sum(1).max() <= 1.0 + 1e-5  # CLS row minus its own share


def test_chefer_and_random_and_batching(model, x):
    c = explainers.explain("chefer", model, x, 1)
    assert np.isfinite(c).all() and (c >= 0).all()
    a = explainers.explain("random", model, x, seed=3)
    b = explainers.explain("random", model, x, seed=3)
    assert np.array_equal(a, b)
    whole = explainers.explain("lrp", model, x, 1)
    parts = explainers.explain_batched("lrp", model, x, 1, batch_size=2)
    np.testing.assert_allclose(whole, parts, rtol=1e-5, atol=1e-7)


def test_perturbation_curve_starts_at_the_model_probability(model, x):
    r = explainers.explain("gradxinput", model, x, 1)
    curves = checks.region_perturbation(model, x, r, np.ones(3, int), step=0.5)
    p = torch.softmax(torch.as_tensor(logits(model, x)), -1).numpy()[:, 1]
    np.testing.assert_allclose(curves[:, 0], p, rtol=1e-5)
    assert np.allclose(curves[:, -1], curves[0, -1])  # all removed: every clip is the same input
