"""Relevance maps: one forward and one backward pass under a composite, and
what the chapter reads from them.

:func:`relevance` is LRP for a batch of spectrograms (the rules of
:func:`mer.lrp.composite.lrp_context`, or any :class:`~mer.lrp.composite.Composite`);
:func:`gradient_x_input` the same pass without rules; :func:`conservation`
checks that the input's relevance adds up to the explained logit on a copy
of the model without offsets (:func:`zero_offsets`). :func:`as_input`,
:func:`explained_output`, :func:`patch_grid`, :func:`per_patch`,
:func:`embedding_input`, :func:`removal_input` and :func:`remove_patches`
are what every explainer and check shares.

(Named ``attribution`` rather than ``relevance`` so that ``mer.lrp.relevance``
is the function, never a module.)

Notebook: notebooks/03_lrp.ipynb
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import ParameterError
from .composite import PARTS, Composite, lrp_context, vit_parts
from .rules import LRPState


def as_input(x) -> torch.Tensor:
    """Spectrograms as the model's input tensor, shape (batch, 1, n_mels, n_frames), float32.

    Parameters
    ----------
    x : array-like or torch.Tensor, shape (batch, n_mels, n_frames) or (batch, 1, n_mels, n_frames)

    Notebook: notebooks/03_lrp.ipynb (every explainer and check takes its input through it).
    """
    x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise ParameterError(f"expected spectrograms of shape (batch, n_mels, n_frames) or "
                             f"(batch, 1, n_mels, n_frames), got {tuple(x.shape)}")
    return x.detach().to(torch.float32)


class _Reached(Exception):
    """Raised by :func:`embedding_input`'s hook to stop the forward pass at the patch embedding."""


def embedding_input(model: nn.Module, x) -> torch.Tensor:
    """What the patch embedding's convolution of ``model`` reads for spectrograms ``x``.

    For a model whose patch embedding derives channels from its input (the
    onset channels of :func:`mer.vit.onset_channels`, added by a forward
    pre-hook) these are the derived channels; otherwise the input itself.
    Found by running the model up to that convolution, so ``mer.lrp`` needs
    no knowledge of how a model derives them. Such a model accepts this
    tensor as its input unchanged.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    x : array-like, shape (batch, n_mels, n_frames) or (batch, 1, n_mels, n_frames)

    Returns
    -------
    torch.Tensor, shape (batch, n_channels, n_mels, n_frames)

    Notebook: notebooks/03_lrp.ipynb
    """
    inputs = as_input(x)
    conv = vit_parts(model)["conv"]

    def stop(module, args):
        raise _Reached(args[0])

    handle = conv.register_forward_pre_hook(stop)
    try:
        with torch.no_grad():
            model(pixel_values=inputs)
    except _Reached as reached:
        return reached.args[0].detach()
    finally:
        handle.remove()
    raise ParameterError("the model never reached its patch embedding")  # pragma: no cover


def removal_input(model: nn.Module, x, fill_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """What a check removes patches from, and the value a removed patch takes, per channel.

    Region perturbation, the greedy search and occlusion all ask what the
    model says once a patch is gone. A patch is gone when the token it
    makes sees a constant: the spectrogram at ``fill_value`` and, on a model
    with the onset channels, no rise and no fall. So the patch is replaced in
    every channel the patch embedding reads (:func:`embedding_input`),
    after the channels are derived, and no other token's input changes;
    replaced in the spectrogram alone, the derived channels would show a rise
    and a fall at its edges, one of them in the next token, which no training
    clip had. On a one-channel model both ways are the same.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    x : array-like, shape (batch, n_mels, n_frames) or (batch, 1, n_mels, n_frames)
    fill_value : float
        The spectrogram's value in a removed patch (0 = dataset mean of the
        normalised input).

    Returns
    -------
    inputs : torch.Tensor, shape (batch, n_channels, n_mels, n_frames)
        Accepted by the model as it is.
    fill : torch.Tensor, shape (n_channels,)
        ``fill_value``, then 0 for every derived channel.

    Notebook: notebooks/03_lrp.ipynb
    """
    inputs = embedding_input(model, x)
    fill = torch.zeros(inputs.shape[1], dtype=inputs.dtype)
    fill[0] = fill_value
    return inputs, fill


def remove_patches(inputs: torch.Tensor, removed: torch.Tensor, patch: tuple[int, int],
                   fill: torch.Tensor) -> torch.Tensor:
    """``inputs`` with the removed patches replaced by ``fill``, in every channel.

    Parameters
    ----------
    inputs : torch.Tensor, shape (batch, n_channels, n_mels, n_frames)
        From :func:`removal_input`.
    removed : torch.Tensor, shape (batch, n_patches), bool
        Row-major over the patch grid (the ViT's token order).
    patch : tuple of int
        Patch size (:func:`patch_grid`).
    fill : torch.Tensor, shape (n_channels,)
        From :func:`removal_input`.

    Returns
    -------
    torch.Tensor, shape (batch, n_channels, n_mels, n_frames)

    Notebook: notebooks/03_lrp.ipynb
    """
    n, channels, n_mels, n_frames = inputs.shape
    ph, pw = patch
    rows, cols = n_mels // ph, n_frames // pw
    bins = removed.reshape(n, rows, cols).repeat_interleave(ph, 1).repeat_interleave(pw, 2)
    full = torch.zeros(n, n_mels, n_frames, dtype=torch.bool)
    full[:, :bins.shape[1], :bins.shape[2]] = bins
    return torch.where(full[:, None], fill.to(inputs.dtype)[None, :, None, None].expand_as(inputs), inputs)


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    batch = logits.shape[0]
    if target is None:
        return logits.argmax(-1)
    target = torch.as_tensor(np.array(target, dtype=np.int64)).reshape(-1)
    if target.numel() == 1:
        target = target.expand(batch)
    if target.numel() != batch or (target < 0).any() or (target >= logits.shape[1]).any():
        raise ParameterError(f"target must be a class index in [0, {logits.shape[1]}) or one per clip, "
                             f"got {target.tolist()}")
    return target


def explained_output(logits: torch.Tensor, target, versus=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The logit being explained, per clip: ``logit[target]`` or, with
    ``versus``, the contrast ``logit[target] - logit[versus]``.

    Returns
    -------
    value : torch.Tensor, shape (batch,)
    target : torch.Tensor, shape (batch,), long

    Notebook: notebooks/03_lrp.ipynb
    """
    target = _targets(target, logits)
    value = logits.gather(1, target[:, None])[:, 0]
    if versus is not None:
        versus = _targets(versus, logits)
        value = value - logits.gather(1, versus[:, None])[:, 0]
    return value, target


def patch_grid(model: nn.Module) -> tuple[int, int]:
    """Patch size ``(mel bands, frames)`` of a ViT, read from its patch convolution.

    Notebook: notebooks/03_lrp.ipynb
    """
    conv = vit_parts(model)["conv"]
    return tuple(int(k) for k in conv.kernel_size)


def per_patch(relevance: np.ndarray | torch.Tensor, patch: tuple[int, int]) -> np.ndarray:
    """Sum a per-bin map over each patch.

    Parameters
    ----------
    relevance : array, shape (batch, n_mels, n_frames)
    patch : (int, int)
        Patch height (mel bands) and width (frames).

    Returns
    -------
    np.ndarray, shape (batch, n_mels // patch[0], n_frames // patch[1])
        Row-major over the patch grid, the order of the ViT's tokens.

    Notebook: notebooks/03_lrp.ipynb
    """
    r = np.asarray(relevance.detach().cpu() if isinstance(relevance, torch.Tensor) else relevance,
                   dtype=np.float64)
    batch, n_mels, n_frames = r.shape
    ph, pw = patch
    rows, cols = n_mels // ph, n_frames // pw
    r = r[:, :rows * ph, :cols * pw].reshape(batch, rows, ph, cols, pw)
    return r.sum(axis=(2, 4))


def relevance(model: nn.Module, x, target=None, *, rule: str = "cp", gamma: float | None = None,
              epsilon: float = 0.0, versus=None, account: bool = True,
              modified: tuple[str, ...] = PARTS, composite: Composite | None = None) -> dict[str, Any]:
    """LRP relevance of every input bin for a batch of spectrograms.

    One forward and one backward pass with the rules of :func:`~mer.lrp.composite.lrp_context`.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    x : array or torch.Tensor, shape (batch, n_mels, n_frames) or (batch, 1, n_mels, n_frames)
        Model input (normalised log-mel).
    target : int, sequence of int or None
        Class explained per clip; ``None`` = the predicted class.
    rule : {"cp", "attn"}
    gamma, epsilon, modified : see :func:`~mer.lrp.composite.lrp_context`
    versus : int, sequence of int or None
        Explain ``logit[target] - logit[versus]`` (class-contrastive).
    account : bool
        Also account for the relevance the biases, LayerNorm offsets, CLS
        token and position embeddings absorb (``absorbed``, ``lost``); with
        ``False`` those two entries are NaN and the maps are unchanged.
    composite : Composite, optional
        Rules to apply instead of those ``rule``, ``gamma``, ``epsilon`` and
        ``modified`` name (:func:`mer.lrp.composite.vit_composite`); give
        one or the other.

    Returns
    -------
    dict
        ``relevance`` : np.ndarray (batch, n_mels, n_frames), float32;
        ``patch`` : np.ndarray (batch, n_rows, n_cols), per-patch sums;
        ``explained`` : np.ndarray (batch,), the logit (or contrast) explained;
        ``target`` : np.ndarray (batch,);
        ``logits`` : np.ndarray (batch, n_classes);
        ``absorbed`` : dict of np.ndarray (batch,) for ``bias``,
        ``norm_offset``, ``cls``, ``position``;
        ``lost`` : np.ndarray (batch,), what no part accounts for
        (``explained - input - absorbed``): zero for a conservative rule
        up to rounding; AttnLRP's softmax rule and epsilon lose some.

    Notebook: notebooks/03_lrp.ipynb
    """
    inputs = as_input(x).requires_grad_(True)
    if composite is None:
        context = lrp_context(model, rule=rule, gamma=gamma, epsilon=epsilon, account=account,
                              modified=tuple(modified))
    elif rule != "cp" or gamma is not None or epsilon != 0 or tuple(modified) != PARTS:
        raise ParameterError("give either a composite or rule/gamma/epsilon/modified, not both")
    else:
        context = composite.context(model, LRPState(rule="composite", gamma=None, epsilon=0.0, account=account))
    with context as state:
        state.reset()
        logits = model(pixel_values=inputs).logits
        value, target = explained_output(logits, target, versus)
        (grad,) = torch.autograd.grad(value.sum(), inputs)
        absorbed = state.absorbed_per_sample(inputs.shape[0])
    per_bin = (inputs.detach() * grad)[:, 0]
    input_total = per_bin.to(torch.float64).flatten(1).sum(1)
    explained = value.detach().to(torch.float64)
    if account:
        lost = explained - input_total - sum(absorbed.values())
    else:
        absorbed = {name: torch.full_like(explained, float("nan")) for name in absorbed}
        lost = torch.full_like(explained, float("nan"))
    return {
        "relevance": per_bin.numpy(),
        "patch": per_patch(per_bin, patch_grid(model)),
        "explained": explained.numpy(),
        "target": target.numpy(),
        "logits": logits.detach().numpy(),
        "absorbed": {k: v.numpy() for k, v in absorbed.items()},
        "lost": lost.numpy(),
    }


def example_maps(model: nn.Module, x, rows, titles, *, rule: str = "cp") -> list[tuple]:
    """What chapter 3 draws for some test clips: each input with the relevance of the predicted
    class and of Happy versus Sad, ready for :func:`mer.plots.lrp_examples`.

    Parameters
    ----------
    x : array or tensor, shape (n_clips, 1, n_rows, n_frames)
    rows : sequence of int
        The clips of ``x`` to explain (e.g. one quadrant of :func:`mer.metrics.sample_by_quadrant`).
    titles : mapping int -> str
        Each row's figure title.

    Returns
    -------
    list of (spec, own, contrast, title)
        Per row: ``x[row, 0]``, the :func:`relevance` of the predicted logit and of the Happy
        logit minus the Sad one (each shape (n_rows, n_frames)), and ``titles[row]``.

    Notebook: notebooks/03_lrp.ipynb
    """
    examples = []
    for i in rows:
        own = relevance(model, x[i:i + 1], rule=rule)
        contrast = relevance(model, x[i:i + 1], target=1, versus=0, rule=rule)
        examples.append((x[i, 0], own["relevance"][0], contrast["relevance"][0], titles[i]))
    return examples


def gradient_x_input(model: nn.Module, x, target=None, *, versus=None) -> np.ndarray:
    """Plain gradient x input (no rules): the baseline LRP is timed against.

    Returns
    -------
    np.ndarray, shape (batch, n_mels, n_frames)

    Notebook: notebooks/03_lrp.ipynb
    """
    inputs = as_input(x).requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        logits = model(pixel_values=inputs).logits
        value, _ = explained_output(logits, target, versus)
        (grad,) = torch.autograd.grad(value.sum(), inputs)
    finally:
        model.train(was_training)
    return (inputs.detach() * grad)[:, 0].numpy()


# ---------------------------------------------------------------------------
# Conservation
# ---------------------------------------------------------------------------

def zero_offsets(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every bias, LayerNorm offset, the CLS token and
    the position embeddings set to zero: the network LRP must conserve on.

    Found by type: biases of ``nn.Linear``/``nn.Conv2d``/``nn.LayerNorm`` and
    the embeddings module's own parameters (CLS token, position embeddings).

    Notebook: notebooks/03_lrp.ipynb (the conservation check)
    """
    clone = copy.deepcopy(model)
    parts = vit_parts(clone)
    with torch.no_grad():
        for module in clone.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.LayerNorm)) and module.bias is not None:
                module.bias.zero_()
        for parameter in parts["embeddings"].parameters(recurse=False):
            parameter.zero_()
    return clone


def conservation(model: nn.Module, x, target=None, *, rule: str = "cp", gamma: float | None = None,
                 epsilon: float = 0.0) -> "pd.DataFrame":
    """Sum of input relevance against the explained logit, per clip.

    Returns
    -------
    pandas.DataFrame
        One row per clip: ``logit``, ``input`` (sum of input relevance),
        ``bias``, ``norm_offset``, ``cls``, ``position`` (absorbed), ``lost``,
        ``rel_error`` = ``|logit - input| / |logit|``.

    Notebook: notebooks/03_lrp.ipynb
    """
    out = relevance(model, x, target, rule=rule, gamma=gamma, epsilon=epsilon)
    total = out["relevance"].astype(np.float64).reshape(len(out["relevance"]), -1).sum(1)
    table = pd.DataFrame({"logit": out["explained"], "input": total, **out["absorbed"], "lost": out["lost"]})
    table["rel_error"] = np.abs(table["logit"] - table["input"]) / np.maximum(np.abs(table["logit"]), 1e-12)
    return table


__all__ = ["as_input", "explained_output", "patch_grid", "per_patch", "relevance", "gradient_x_input",
           "zero_offsets", "conservation"]
