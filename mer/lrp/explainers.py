"""Explainers with one signature, so the checks of chapter 3 treat them alike.

``explain(name, model, x, target) -> relevance (batch, n_mels, n_frames)``.

- ``lrp``: CP-LRP (:func:`mer.lrp.relevance`, attention probabilities constant)
- ``attnlrp``: AttnLRP (softmax and uniform matmul rules)
- ``gradxinput``: gradient x input, no rules
- ``ig``: Integrated Gradients (captum), 32 steps from the dataset-mean input
- ``rollout``: attention rollout (Abnar & Zuidema 2020)
- ``chefer``: gradient-weighted attention rollout (Chefer et al. 2021,
  "Generic attention-model explainability")
- ``occlusion``: drop in the explained logit when one patch is set to the fill value
- ``random``: Gaussian noise (seeded): the floor every check must beat

Token-level methods (rollout, chefer, occlusion) spread each token's value
evenly over the bins of its patch, so a patch's bins sum to the token's value.

A new explainer is a function ``(model, x, target=None, **options) -> array
(batch, n_mels, n_frames)`` added to :data:`METHODS` (its key becomes the
name in :data:`EXPLAINERS`).

Notebook: notebooks/03_lrp.ipynb
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .. import ParameterError
from .attribution import (as_input, explained_output, gradient_x_input, patch_grid, relevance, removal_input,
                          remove_patches)
from .composite import PARTS
from .rules import attention_function

def spread_tokens(tokens: torch.Tensor, model: nn.Module, shape: tuple[int, int]) -> np.ndarray:
    """(batch, n_patches) token values -> (batch, n_mels, n_frames), each patch's
    bins sharing its token's value evenly.

    Parameters
    ----------
    tokens : torch.Tensor, shape (batch, n_patches)
        Row-major over the patch grid (the ViT's token order).
    model : transformers.ViTForImageClassification
        Gives the patch size.
    shape : (int, int)
        ``(n_mels, n_frames)`` of the input; bins outside the patch grid get 0.

    Returns
    -------
    np.ndarray, shape (batch, n_mels, n_frames), float32

    Notebook: notebooks/03_lrp.ipynb (token-level explainers; the greedy search's map)
    """
    ph, pw = patch_grid(model)
    rows, cols = shape[0] // ph, shape[1] // pw
    grid = tokens.detach().reshape(-1, rows, cols).to(torch.float32) / (ph * pw)
    out = grid.repeat_interleave(ph, 1).repeat_interleave(pw, 2)
    full = torch.zeros(grid.shape[0], *shape)
    full[:, :out.shape[1], :out.shape[2]] = out
    return full.numpy()


def _recording_attention(store: list):
    """An eager attention function that keeps the probabilities (and their gradient)."""
    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if scaling is None:
            scaling = query.size(-1) ** -0.5
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            scores = scores + attention_mask
        probabilities = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        if probabilities.requires_grad:
            probabilities.retain_grad()
        store.append(probabilities)
        output = torch.matmul(probabilities, value)
        return output.transpose(1, 2).contiguous(), probabilities
    return attention


def _attention_maps(model: nn.Module, x: torch.Tensor, target, with_grad: bool):
    store: list = []
    was_training = model.training
    model.eval()
    try:
        with attention_function(model, "mer_record_attention", _recording_attention(store)):
            with torch.set_grad_enabled(with_grad):
                logits = model(pixel_values=x).logits
                value, _ = explained_output(logits, target)
                if with_grad:
                    value.sum().backward(inputs=store)
    finally:
        model.train(was_training)
    return store


def rollout(model: nn.Module, x, target=None, **_: Any) -> np.ndarray:
    """Attention rollout: product over layers of ``0.5 (mean_h A) + 0.5 I``
    (rows renormalised); the CLS row over the patch tokens.

    Notebook: notebooks/03_lrp.ipynb
    """
    inputs = as_input(x)
    maps = _attention_maps(model, inputs, target, with_grad=False)
    n = maps[0].shape[-1]
    joint = torch.eye(n).expand(inputs.shape[0], n, n)
    for probs in maps:
        a = 0.5 * probs.mean(1) + 0.5 * torch.eye(n)
        a = a / a.sum(-1, keepdim=True)
        joint = a @ joint
    return spread_tokens(joint[:, 0, 1:], model, tuple(inputs.shape[-2:]))


def chefer(model: nn.Module, x, target=None, **_: Any) -> np.ndarray:
    """Gradient-weighted rollout (Chefer et al. 2021b): ``R <- R + mean_h((dy/dA * A)^+) R``
    from ``R = I``, layer by layer; the CLS row over the patch tokens.

    Notebook: notebooks/03_lrp.ipynb
    """
    inputs = as_input(x)
    maps = _attention_maps(model, inputs, target, with_grad=True)
    n = maps[0].shape[-1]
    joint = torch.eye(n).expand(inputs.shape[0], n, n).clone()
    for probs in maps:
        weighted = (probs.grad * probs).clamp(min=0).mean(1).detach()
        joint = joint + weighted @ joint
    return spread_tokens(joint[:, 0, 1:], model, tuple(inputs.shape[-2:]))


def occlusion(model: nn.Module, x, target=None, *, fill_value: float = 0.0, chunk: int = 256,
              **_: Any) -> np.ndarray:
    """Logit drop when one patch at a time is removed: set to ``fill_value``
    in every channel the patch embedding reads, as region perturbation
    removes it (:func:`~mer.lrp.attribution.removal_input`).

    Notebook: notebooks/03_lrp.ipynb
    """
    inputs, fill = removal_input(model, x, fill_value)
    patch = patch_grid(model)
    batch, _, n_mels, n_frames = inputs.shape
    n_patches = (n_mels // patch[0]) * (n_frames // patch[1])
    eye = torch.eye(n_patches, dtype=torch.bool)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(pixel_values=inputs).logits
            full, target_t = explained_output(logits, target)
            drops = torch.zeros(batch, n_patches)
            pairs = [(b, p) for b in range(batch) for p in range(n_patches)]
            for start in range(0, len(pairs), chunk):
                part = pairs[start:start + chunk]
                occluded = remove_patches(inputs[[b for b, _ in part]], eye[[p for _, p in part]], patch, fill)
                out = model(pixel_values=occluded).logits
                values = out.gather(1, target_t[[b for b, _ in part]][:, None])[:, 0]
                for i, (b, p) in enumerate(part):
                    drops[b, p] = full[b] - values[i]
    finally:
        model.train(was_training)
    return spread_tokens(drops, model, (n_mels, n_frames))


def integrated_gradients(model: nn.Module, x, target=None, *, fill_value: float = 0.0, n_steps: int = 32,
                         **_: Any) -> np.ndarray:
    """Integrated Gradients (captum), ``n_steps`` Gauss-Legendre steps from a
    constant input at ``fill_value`` (the dataset mean after normalisation).

    Notebook: notebooks/03_lrp.ipynb
    """
    from captum.attr import IntegratedGradients  # slow to import, and only this explainer needs it

    inputs = as_input(x)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, target_t = explained_output(model(pixel_values=inputs).logits, target)
        method = IntegratedGradients(lambda batch: model(pixel_values=batch).logits)
        attribution = method.attribute(inputs, baselines=torch.full_like(inputs, fill_value),
                                       target=target_t, n_steps=n_steps,
                                       internal_batch_size=max(n_steps, 8 * n_steps))
    finally:
        model.train(was_training)
    return attribution.detach()[:, 0].numpy()


def random_map(model: nn.Module, x, target=None, *, seed: int = 0, **_: Any) -> np.ndarray:
    """Standard-normal noise of the input's shape, from ``seed``.

    Notebook: notebooks/03_lrp.ipynb
    """
    inputs = as_input(x)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((inputs.shape[0], *inputs.shape[-2:])).astype(np.float32)


def _lrp(rule: str) -> Callable[..., np.ndarray]:
    def method(model, x, target=None, *, gamma=None, epsilon=0.0, modified=PARTS, **_: Any) -> np.ndarray:
        # Only the map: the bookkeeping of absorbed relevance is the
        # conservation check's (mer.lrp.relevance(account=True)).
        return relevance(model, x, target, rule=rule, gamma=gamma, epsilon=epsilon, account=False,
                         modified=modified)["relevance"]
    return method


def _gradxinput(model, x, target=None, **_: Any) -> np.ndarray:
    return gradient_x_input(model, x, target)


METHODS: dict[str, Callable[..., np.ndarray]] = {
    "lrp": _lrp("cp"),
    "attnlrp": _lrp("attn"),
    "gradxinput": _gradxinput,
    "ig": integrated_gradients,
    "rollout": rollout,
    "chefer": chefer,
    "occlusion": occlusion,
    "random": random_map,
}
#: The explainers' names, in the order the chapter lists them.
EXPLAINERS = tuple(METHODS)


def explain(name: str, model: nn.Module, x, target=None, **options: Any) -> np.ndarray:
    """Relevance of every input bin by explainer ``name``.

    Parameters
    ----------
    name : str
        One of :data:`EXPLAINERS`.
    model : transformers.ViTForImageClassification
    x : array or torch.Tensor, shape (batch, n_mels, n_frames) or (batch, 1, n_mels, n_frames)
    target : int, sequence of int or None
        Class explained per clip (``None``: the predicted class).
    **options
        ``fill_value`` (ig baseline, occlusion; default 0.0 = the dataset
        mean of normalised input), ``seed`` (random), ``gamma``/``epsilon``/``modified``
        (lrp, attnlrp; see :func:`mer.lrp.lrp_context`).

    Returns
    -------
    np.ndarray, shape (batch, n_mels, n_frames), float32

    Notebook: notebooks/03_lrp.ipynb
    """
    if name not in METHODS:
        raise ParameterError(f"unknown explainer {name!r}; expected one of {list(METHODS)}")
    return np.asarray(METHODS[name](model, x, target, **options), dtype=np.float32)


def explain_batched(name: str, model: nn.Module, x, target=None, *, batch_size: int = 32,
                    **options: Any) -> np.ndarray:
    """:func:`explain` over ``x`` in batches of ``batch_size`` (same result, bounded memory).

    Notebook: notebooks/03_lrp.ipynb
    """
    x = np.asarray(x, dtype=np.float32)
    target_arr = None if target is None else np.broadcast_to(np.asarray(target), (len(x),))
    parts = []
    for start in range(0, len(x), batch_size):
        t = None if target_arr is None else target_arr[start:start + batch_size]
        opts = dict(options)
        if name == "random":
            opts["seed"] = int(options.get("seed", 0)) + start
        parts.append(explain(name, model, x[start:start + batch_size], t, **opts))
    return np.concatenate(parts) if parts else np.zeros((0, *x.shape[-2:]), np.float32)


__all__ = ["EXPLAINERS", "METHODS", "spread_tokens", "rollout", "chefer", "occlusion", "integrated_gradients",
           "random_map", "explain", "explain_batched"]
