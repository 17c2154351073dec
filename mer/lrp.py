"""Layer-wise Relevance Propagation for the ``transformers`` ViT, as modified gradients.

LRP redistributes the explained logit ``f(x)`` backwards, layer by layer, so
that every input bin receives a share ``R_i`` and the shares sum to ``f(x)``
(conservation). For a network built of linear maps, gradient x input *is*
LRP-0: ``x_i * df/dx_i`` summed over ``i`` gives ``f(x)`` minus what the
biases take. A transformer is not such a network: LayerNorm divides by a
function of its input, the attention softmax and the two attention matrix
products are not linear, and GELU is not positively homogeneous, so the plain
gradient neither conserves nor is LRP. Each rule below changes the backward
pass of one of those parts so that the gradient x input of the whole network
becomes an LRP explanation (the "efficient" formulation of AttnLRP, Achtibat
et al. 2024; lxt). One explanation costs one forward and one backward pass,
for a whole batch.

The rules (the chapter derives each; the names here are those it cites):

* :class:`IdentityRule` - element-wise activation (GELU): relevance passes
  through unchanged, ``R_in = R_out``; backward ``g * y / x``.
* :class:`LayerNormRule` - LayerNorm with its normalising scale (the standard
  deviation) treated as a constant: the layer becomes linear (centring,
  scaling by a constant, affine), so LRP-0 applies to it.
* :func:`cp_attention` - CP-LRP (Ali et al. 2022): the attention probabilities
  treated as constants, so the attention output is linear in the values.
* :func:`attnlrp_attention` - AttnLRP: the softmax rule (gradient x input of
  the softmax) and the uniform rule for the two matrix products
  (:class:`DivideGradient` halves the relevance at each factor).
* :class:`LinearRule` - epsilon and the sign-aware gamma rule on the encoder's
  linear layers (optional; ``epsilon=0, gamma=None`` is LRP-0, the plain
  gradient).

Everything is switched on by :func:`lrp_context` for one model and switched
off on exit: forward hooks found by module type (``nn.LayerNorm``,
``nn.Linear``, activation classes, ``ViTLayer``, ``ViTEmbeddings``), and an
attention function registered in transformers' ``ALL_ATTENTION_FUNCTIONS``
and selected through that model's ``config._attn_implementation`` only. The
model object is not rewritten and no class is patched, so other models in the
process are untouched.

No maintained library covers this model with these packages: lxt's PyPI
release (2.1) does not import with transformers 5.x (its BERT module imports a
removed helper) and its vision support is torchvision's ViT; zennit and captum
have no LayerNorm or attention rules. ``tests/test_lrp.py`` cross-checks these
rules against lxt's own rule functions wherever lxt imports.

Notebook: notebooks/03_lrp.ipynb
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from . import ParameterError

RULES = ("cp", "attn")
# The non-linear parts whose backward pass LRP replaces (see lrp_context(modified=...)).
PARTS = ("attention", "norm", "activation")

_REGISTERED: dict[str, int] = {}  # attention-function name -> number of open contexts using it


# ---------------------------------------------------------------------------
# The rules: small autograd functions
# ---------------------------------------------------------------------------

class IdentityRule(torch.autograd.Function):
    """Identity rule for an element-wise activation ``y = act(x)``.

    Forward returns ``y`` (computed by the module itself); backward returns
    ``g * y / x``, so ``x * grad_x = y * g``: the relevance of each unit passes
    through unchanged (AttnLRP, eq. 9). Where ``x == 0`` the relevance is 0
    either way.

    Notebook: notebooks/03_lrp.ipynb (section "GELU: the identity rule")
    """

    @staticmethod
    def forward(ctx, x, y):
        ratio = torch.where(x != 0, y / torch.where(x != 0, x, torch.ones_like(x)), torch.zeros_like(x))
        ctx.save_for_backward(ratio)
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None


class LayerNormRule(torch.autograd.Function):
    """LayerNorm with the normalising scale treated as a constant.

    ``y = (x - mean(x)) / sigma * w + b`` with ``sigma`` detached is linear in
    ``x``; its gradient is ``(w g - mean(w g)) / sigma`` (the centring is a
    linear map and conserves, the offset ``b`` absorbs its share).

    Notebook: notebooks/03_lrp.ipynb (section "LayerNorm")
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, n_dims):
        dims = tuple(range(-n_dims, 0))
        mean = x.mean(dim=dims, keepdim=True)
        sigma = (x.var(dim=dims, keepdim=True, unbiased=False) + eps).sqrt()
        x_hat = (x - mean) / sigma
        ctx.save_for_backward(x_hat, sigma, weight)
        ctx.dims = dims
        y = x_hat
        if weight is not None:
            y = y * weight
        if bias is not None:
            y = y + bias
        return y

    @staticmethod
    def backward(ctx, grad):
        x_hat, sigma, weight = ctx.saved_tensors
        dims = ctx.dims
        scaled = grad * weight if weight is not None else grad
        grad_x = (scaled - scaled.mean(dim=dims, keepdim=True)) / sigma
        outer = tuple(range(grad.ndim - len(dims)))
        grad_w = (grad * x_hat).sum(dim=outer) if weight is not None and ctx.needs_input_grad[1] else None
        grad_b = grad.sum(dim=outer) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None


class DivideGradient(torch.autograd.Function):
    """Identity forward; backward divides the gradient by ``factor``.

    The uniform rule for a product of two factors (AttnLRP, eq. 7): gradient x
    input gives *each* factor of ``a * b`` the full relevance of the product;
    halving the gradient at each factor splits it evenly and conserves.

    Notebook: notebooks/03_lrp.ipynb (section "Attention")
    """

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad / ctx.factor, None


def linear_rule(x: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, *, epsilon: float,
                gamma: float | None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Epsilon and sign-aware gamma rule on a linear layer's output ``z = x W^T + b``.

    Returns a tensor equal to ``z`` whose gradient makes ``x * grad_x`` the
    rule's relevance:

    * gamma: the contributions ``z_ij = x_i w_ji`` of the sign of ``z_j`` are
      amplified by ``1 + gamma``:
      ``z'_j = z_j + gamma * sum_i (z_ij)^{sign z_j}``, and
      ``R_i = sum_j z'_ij / z'_j * R_j``;
    * epsilon: the denominator is ``z'_j + epsilon * sign(z'_j)``, the
      relevance ``epsilon`` absorbs is lost on purpose (it damps weak,
      noisy activations).

    Both use the standard trick ``out = z' * (z / z')``, the ratio detached:
    the forward value stays ``z`` and the backward pass runs through ``z'``.

    Parameters
    ----------
    x : torch.Tensor, shape (..., in_features)
    z : torch.Tensor, shape (..., out_features)
        The layer's output as computed by the module.
    weight : torch.Tensor, shape (out_features, in_features)
    bias : torch.Tensor, shape (out_features,), optional
        The layer's bias (``z`` includes it).

    Notebook: notebooks/03_lrp.ipynb (sections "The epsilon rule" and "gamma")
    """
    z_mod = z
    if gamma:
        # The positive contributions sum_i (x_i w_ji)^+ need two products
        # (x+ W+ and x- W-); the negative ones are the rest of x W^T, so a
        # third and fourth product are not needed.
        positive = (nn.functional.linear(x.clamp(min=0), weight.clamp(min=0))
                    + nn.functional.linear(x.clamp(max=0), weight.clamp(max=0)))
        negative = (z if bias is None else z - bias) - positive
        z_mod = z + gamma * torch.where(z >= 0, positive, negative)
    denominator = z_mod
    if epsilon:
        sign = torch.where(z_mod >= 0, torch.ones_like(z_mod), -torch.ones_like(z_mod))
        denominator = z_mod + epsilon * sign
    safe = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
    return z_mod * (z / safe).detach()


# ---------------------------------------------------------------------------
# The attention rules, as attention functions for transformers' registry
# ---------------------------------------------------------------------------

def _scores(query, key, attention_mask, scaling, split: bool):
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    if split:  # uniform rule on q k^T: half the relevance of the scores to each factor
        query, key = DivideGradient.apply(query, 2.0), DivideGradient.apply(key, 2.0)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    return scores


def cp_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention with the probabilities treated as constants (CP-LRP).

    Same signature and outputs as transformers' ``eager_attention_forward``:
    ``query, key, value`` of shape (batch, heads, tokens, head_dim); returns
    the output (batch, tokens, heads, head_dim) and the probabilities. With
    ``A`` detached, ``A V`` is linear in ``V`` and LRP-0 conserves through it;
    no relevance reaches the queries and keys.

    Notebook: notebooks/03_lrp.ipynb (section "Attention")
    """
    scores = _scores(query, key, attention_mask, scaling, split=False)
    probabilities = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    output = torch.matmul(probabilities.detach(), value)  # CP-LRP: A is a constant
    return output.transpose(1, 2).contiguous(), probabilities


def attnlrp_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention with AttnLRP's softmax and uniform matmul rules.

    The softmax keeps its gradient: gradient x input of ``s -> softmax(s)`` is
    AttnLRP's softmax rule ``R_s = s * (R_A - A * sum R_A)``, which is not
    conservative (the chapter reports the loss). The two products ``q k^T``
    and ``A V`` take the uniform rule: :class:`DivideGradient` halves the
    gradient at each factor.

    Notebook: notebooks/03_lrp.ipynb (section "Attention")
    """
    scores = _scores(query, key, attention_mask, scaling, split=True)
    probabilities = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    output = torch.matmul(DivideGradient.apply(probabilities, 2.0), DivideGradient.apply(value, 2.0))
    return output.transpose(1, 2).contiguous(), probabilities


_ATTENTION = {"cp": cp_attention, "attn": attnlrp_attention}


# ---------------------------------------------------------------------------
# Finding the parts of a ViT by type
# ---------------------------------------------------------------------------

def _activation_types() -> tuple[type, ...]:
    """Element-wise activation module classes (transformers' and torch's)."""
    from transformers.activations import ACT2CLS

    found = {nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Sigmoid}
    for value in ACT2CLS.values():
        cls = value[0] if isinstance(value, tuple) else value
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            found.add(cls)
    return tuple(found)


def _vit_types() -> dict[str, type]:
    from transformers.models.vit import modeling_vit

    return {"layer": modeling_vit.ViTLayer, "embeddings": modeling_vit.ViTEmbeddings,
            "patch": modeling_vit.ViTPatchEmbeddings}


def vit_parts(model: nn.Module) -> dict[str, Any]:
    """The modules LRP needs, by type: ``blocks``, ``embeddings``, ``patch`` and the rest.

    Raises ParameterError if ``model`` is not a transformers ViT.

    Notebook: notebooks/03_lrp.ipynb
    """
    types = _vit_types()
    blocks = [m for m in model.modules() if isinstance(m, types["layer"])]
    embeddings = [m for m in model.modules() if isinstance(m, types["embeddings"])]
    patch = [m for m in model.modules() if isinstance(m, types["patch"])]
    if not blocks or len(embeddings) != 1 or len(patch) != 1:
        raise ParameterError(f"expected a transformers ViT (ViTLayer, ViTEmbeddings modules), got "
                             f"{type(model).__name__} with {len(blocks)} ViTLayer modules")
    convs = [m for m in patch[0].modules() if isinstance(m, nn.Conv2d)]
    in_blocks = {id(m) for block in blocks for m in block.modules()}
    activations = _activation_types()
    return {
        "blocks": blocks,
        "embeddings": embeddings[0],
        "patch": patch[0],
        "conv": convs[0],
        "norms": [m for m in model.modules() if isinstance(m, nn.LayerNorm)],
        "linears": [m for m in model.modules() if isinstance(m, nn.Linear)],
        "block_linears": [m for m in model.modules() if isinstance(m, nn.Linear) and id(m) in in_blocks],
        "activations": [m for m in model.modules() if isinstance(m, activations) and id(m) in in_blocks],
    }


def _config(model: nn.Module):
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "_attn_implementation"):
        raise ParameterError(f"{type(model).__name__} has no transformers config; expected a ViTForImageClassification")
    return config


# ---------------------------------------------------------------------------
# The context manager
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def attention_function(model: nn.Module, name: str, function) -> Iterator[None]:
    """Make ``model`` (and only it) use ``function`` as its attention.

    Registers ``function`` under ``name`` in transformers'
    ``ALL_ATTENTION_FUNCTIONS`` and sets ``model.config._attn_implementation``
    to ``name``; on exit restores the model's own implementation and withdraws
    ``name`` once no open context uses it. ``function`` has the signature of
    transformers' ``eager_attention_forward``.

    Notebook: notebooks/03_lrp.ipynb (also used by the attention baselines)
    """
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    config = _config(model)
    saved = config._attn_implementation
    _REGISTERED[name] = _REGISTERED.get(name, 0) + 1
    ALL_ATTENTION_FUNCTIONS[name] = function
    try:
        config._attn_implementation = name
        yield
    finally:
        config._attn_implementation = saved
        _REGISTERED[name] -= 1
        if _REGISTERED[name] == 0:
            del _REGISTERED[name]
            try:
                del ALL_ATTENTION_FUNCTIONS[name]
            except KeyError:  # pragma: no cover - withdrawn by someone else
                pass


@dataclass
class LRPState:
    """What an open :func:`lrp_context` holds: the rule and, after a backward
    pass, the relevance each kind of parameter absorbed, per sample.

    ``absorbed`` maps ``"bias"`` (linear and patch-embedding biases),
    ``"norm_offset"`` (LayerNorm offsets), ``"cls"`` and ``"position"`` to
    tensors of shape (batch,).
    """

    rule: str
    gamma: float | None
    epsilon: float
    absorbed: dict[str, list] = field(default_factory=dict)
    patch_output: torch.Tensor | None = None
    position: torch.Tensor | None = None

    def reset(self) -> None:
        self.absorbed = {"bias": [], "norm_offset": [], "cls": [], "position": []}
        self.patch_output = None

    def absorbed_per_sample(self, batch: int) -> dict[str, torch.Tensor]:
        out = {}
        for name, parts in self.absorbed.items():
            total = torch.zeros(batch, dtype=torch.float64)
            for part in parts:
                total += part.detach().to(torch.float64).cpu()
            out[name] = total
        return out


def _bias_sink(state: LRPState, kind: str, bias: torch.Tensor, feature_dim: int):
    """A tensor hook recording ``b * grad`` per sample (the bias' relevance)."""
    def hook(grad):
        b = bias.detach()
        if feature_dim == -1:
            share = grad * b
        else:  # conv output (batch, channels, h, w)
            share = grad * b.view(-1, *([1] * (grad.ndim - 2)))
        state.absorbed[kind].append(share.flatten(1).sum(1))
    return hook


@contextlib.contextmanager
def lrp_context(model: nn.Module, rule: str = "cp", gamma: float | None = None,
                epsilon: float = 0.0, account: bool = True,
                modified: tuple[str, ...] = PARTS) -> Iterator[LRPState]:
    """Switch LRP on for ``model`` inside a ``with`` block.

    Inside, ``x * d logit / dx`` is the LRP relevance of ``x``. On exit (also
    on an exception) every hook is removed, the model's attention
    implementation and training flag are restored and the registered attention
    function is withdrawn once no open context uses it.

    Parameters
    ----------
    model : transformers.ViTForImageClassification (or ViTModel)
    rule : {"cp", "attn"}
        ``"cp"``: CP-LRP, attention probabilities constant. ``"attn"``:
        AttnLRP's softmax and uniform matmul rules.
    gamma : float, optional
        Sign-aware gamma on the encoder blocks' linear layers (``None``: off).
    epsilon : float
        Epsilon rule on the encoder blocks' linear layers (0: LRP-0).
    account : bool
        Record what the biases, LayerNorm offsets, CLS token and position
        embeddings absorb (one tensor hook per biased layer). The relevance
        maps are the same without it; explainers that need only the maps
        switch it off, which saves the hooks' cost in the backward pass.
    modified : tuple of str
        Which non-linear parts get their LRP rule, any of :data:`PARTS`:
        ``"attention"`` (``rule``), ``"norm"`` (LayerNorm scale constant),
        ``"activation"`` (identity rule on the GELU). The parts left out keep
        their plain gradient. All three (the default) is LRP; fewer is an
        ablation that says which rule an explanation's behaviour comes from
        (``()`` with ``epsilon=0`` is gradient x input). Only the full set
        conserves.

    Yields
    ------
    LRPState
        Collects the relevance the biases, LayerNorm offsets, CLS token and
        position embeddings absorb during a backward pass.

    Notes
    -----
    The attention rule is selected through ``model.config`` only: a second
    model built from the *same* config object would follow it too.

    Notebook: notebooks/03_lrp.ipynb
    """
    if rule not in RULES:
        raise ParameterError(f"rule must be one of {RULES}, got {rule!r}")
    if gamma is not None and gamma < 0:
        raise ParameterError(f"gamma must be >= 0 or None, got {gamma!r}")
    if epsilon < 0:
        raise ParameterError(f"epsilon must be >= 0, got {epsilon!r}")
    unknown = set(modified) - set(PARTS)
    if unknown:
        raise ParameterError(f"modified parts must be among {PARTS}, got {sorted(unknown)}")
    parts = vit_parts(model)
    state = LRPState(rule=rule, gamma=gamma, epsilon=float(epsilon))
    state.reset()
    handles = []
    name = f"mer_lrp_{rule}"
    stack = contextlib.ExitStack()
    was_training = model.training

    def activation_hook(module, inputs, output):
        return IdentityRule.apply(inputs[0], output.detach())

    def norm_hook(module, inputs, output):
        out = LayerNormRule.apply(inputs[0], module.weight, module.bias, module.eps,
                                  len(module.normalized_shape))
        if account and module.bias is not None and out.requires_grad:
            out.register_hook(_bias_sink(state, "norm_offset", module.bias, -1))
        return out

    # The linear layers whose backward pass the epsilon/gamma rule modifies.
    ruled = {id(m) for m in parts["block_linears"]} if (gamma or epsilon) else set()

    def linear_hook(module, inputs, output):
        out = output
        if id(module) in ruled:
            out = linear_rule(inputs[0], output, module.weight, epsilon=epsilon, gamma=gamma, bias=module.bias)
        if account and module.bias is not None and output.requires_grad:
            # Gradient at z itself (after the rule's rescaling): the bias' share is b * grad.
            output.register_hook(_bias_sink(state, "bias", module.bias, -1))
        return out

    def conv_hook(module, inputs, output):
        if module.bias is not None and output.requires_grad:
            output.register_hook(_bias_sink(state, "bias", module.bias, 1))

    def patch_hook(module, inputs, output):
        state.patch_output = output.detach()

    def embeddings_hook(module, inputs, output):
        if not output.requires_grad or state.patch_output is None:
            return None
        patches = state.patch_output
        added = output.detach()
        position_patches = added[:, 1:] - patches  # position embeddings of the patch tokens
        position0 = _position_of_first_token(module, output)
        cls = added[:, 0] - position0

        def hook(grad):
            state.absorbed["position"].append((position_patches * grad[:, 1:]).flatten(1).sum(1)
                                              + (position0 * grad[:, 0]).sum(-1))
            state.absorbed["cls"].append((cls * grad[:, 0]).sum(-1))
        output.register_hook(hook)
        return None

    try:
        if "attention" in modified:
            stack.enter_context(attention_function(model, name, _ATTENTION[rule]))
        model.eval()
        for module in parts["activations"] if "activation" in modified else ():
            handles.append(module.register_forward_hook(activation_hook))
        for module in parts["norms"] if "norm" in modified else ():
            handles.append(module.register_forward_hook(norm_hook))
        for module in parts["linears"]:
            if account or id(module) in ruled:
                handles.append(module.register_forward_hook(linear_hook))
        if account:
            handles.append(parts["conv"].register_forward_hook(conv_hook))
            handles.append(parts["patch"].register_forward_hook(patch_hook))
            handles.append(parts["embeddings"].register_forward_hook(embeddings_hook))
        yield state
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
        stack.close()


def _position_of_first_token(embeddings: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """The position embedding of token 0, found as the embeddings module's own
    parameter with one row per token (no attribute names)."""
    n_tokens, width = output.shape[1], output.shape[2]
    for parameter in embeddings.parameters(recurse=False):
        if parameter.ndim == 3 and parameter.shape[1] == n_tokens and parameter.shape[2] == width:
            return parameter.detach()[0, 0]
    return torch.zeros(width, dtype=output.dtype, device=output.device)


# ---------------------------------------------------------------------------
# Relevance
# ---------------------------------------------------------------------------

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
              modified: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """LRP relevance of every input bin for a batch of spectrograms.

    One forward and one backward pass with the rules of :func:`lrp_context`.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    x : array or torch.Tensor, shape (batch, n_mels, n_frames) or (batch, 1, n_mels, n_frames)
        Model input (normalised log-mel).
    target : int, sequence of int or None
        Class explained per clip; ``None`` = the predicted class.
    rule : {"cp", "attn"}
    gamma, epsilon, modified : see :func:`lrp_context`
    versus : int, sequence of int or None
        Explain ``logit[target] - logit[versus]`` (class-contrastive).
    account : bool
        Also account for the relevance the biases, LayerNorm offsets, CLS
        token and position embeddings absorb (``absorbed``, ``lost``); with
        ``False`` those two entries are NaN and the maps are unchanged.

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
    with lrp_context(model, rule=rule, gamma=gamma, epsilon=epsilon, account=account,
                     modified=tuple(modified)) as state:
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
    import copy

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
    import pandas as pd

    out = relevance(model, x, target, rule=rule, gamma=gamma, epsilon=epsilon)
    total = out["relevance"].astype(np.float64).reshape(len(out["relevance"]), -1).sum(1)
    table = pd.DataFrame({"logit": out["explained"], "input": total, **out["absorbed"], "lost": out["lost"]})
    table["rel_error"] = np.abs(table["logit"] - table["input"]) / np.maximum(np.abs(table["logit"]), 1e-12)
    return table


# ---------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------

def _interleaved_times(functions: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each function, run in turn ``repeats`` times after a
    warm-up, so that load from other processes hits all of them alike."""
    for fn in functions.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def benchmark(*, batch_size: int = 16, repeats: int = 7, seed: int = 0) -> dict[str, Any]:
    """Wall time of an LRP explanation against one gradient x input.

    Same default-size model (random weights: timing does not depend on them),
    same batch of ``batch_size`` inputs (128 x 108), same run; medians over
    ``repeats`` rounds after a warm-up, the four methods interleaved in each round.

    Returns
    -------
    dict
        ``lrp_over_gradxinput_ratio`` (CP-LRP, no gamma; target <= 1.2),
        ``lrp_gamma_over_gradxinput_ratio`` (gamma = 0.25; target <= 4),
        ``lrp_attn_over_gradxinput_ratio`` (AttnLRP),
        ``lrp_accounted_over_gradxinput_ratio`` (CP-LRP with the absorbed
        relevance accounted for, as the conservation check runs it; the
        other LRP figures time the explanation alone, as the explainers run it),
        ``lrp_explanations_per_s`` (CP-LRP, batch of 16),
        ``lrp_ms_per_clip``, ``gradxinput_ms_per_clip``.

    Notebook: book/reproducing.md (``make bench``)
    """
    from . import vit

    torch.manual_seed(seed)
    model = vit.build_model("default", seed=seed)
    model.eval()
    x = torch.randn(batch_size, 1, 128, 108, generator=torch.Generator().manual_seed(seed))
    times = _interleaved_times({
        "grad": lambda: gradient_x_input(model, x),
        "cp": lambda: relevance(model, x, rule="cp", account=False),
        "attn": lambda: relevance(model, x, rule="attn", account=False),
        "gamma": lambda: relevance(model, x, rule="cp", gamma=0.25, account=False),
        "account": lambda: relevance(model, x, rule="cp"),
    }, repeats)
    grad_time, lrp_time, attn_time, gamma_time = times["grad"], times["cp"], times["attn"], times["gamma"]
    return {
        "lrp_over_gradxinput_ratio": round(lrp_time / grad_time, 3),
        "lrp_attn_over_gradxinput_ratio": round(attn_time / grad_time, 3),
        "lrp_gamma_over_gradxinput_ratio": round(gamma_time / grad_time, 3),
        "lrp_accounted_over_gradxinput_ratio": round(times["account"] / grad_time, 3),
        "lrp_explanations_per_s": round(batch_size / lrp_time, 1),
        "lrp_ms_per_clip": round(1000 * lrp_time / batch_size, 2),
        "gradxinput_ms_per_clip": round(1000 * grad_time / batch_size, 2),
        "lrp_batch_size": batch_size,
    }
