"""The LRP rules: autograd functions that change one part's backward pass, and
the rule objects that attach them to a module.

Two layers, as in zennit (``rules.py`` and ``core.py``):

* the *computation* of each rule, one autograd function or function per
  rule the chapter derives: :class:`IdentityRule` (GELU),
  :class:`LayerNormRule` (LayerNorm scale constant), :class:`DivideGradient`
  (the uniform rule of a product), :func:`linear_rule` (epsilon and gamma),
  :func:`cp_attention` and :func:`attnlrp_attention` (attention functions
  with the signature of transformers' ``eager_attention_forward``);
* the *rule objects*, one per rule, each knowing how to attach itself to one
  module and how to come off again: :meth:`Rule.attach` registers the
  module's forward hook (or, for :class:`AttentionFunction`, the model's
  attention implementation) and returns handles whose ``remove()`` detaches
  it. :class:`ActivationIdentity`, :class:`NormConstantScale`,
  :class:`LinearEpsilonGamma`, :class:`ConvBias`, :class:`EmbeddingOffsets`
  and :class:`AttentionFunction` are all there is;
  :class:`mer.lrp.composite.Composite` maps them onto a model's layer types.

The rule objects also record, when :attr:`LRPState.account` is set, the
relevance each kind of offset absorbs (biases, LayerNorm offsets, CLS token,
position embeddings) in the :class:`LRPState` of the open context.

A new rule is a subclass of :class:`Rule` (usually of
:class:`ForwardHookRule`, implementing :meth:`ForwardHookRule.forward`)
placed in a composite under the layer type it is for.

Notebook: notebooks/03_lrp.ipynb (section "The rules, derived")
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.vit.modeling_vit import ViTPatchEmbeddings

from .. import ParameterError

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



# ---------------------------------------------------------------------------
# Selecting an attention function for one model
# ---------------------------------------------------------------------------

def _config(model: nn.Module):
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "_attn_implementation"):
        raise ParameterError(f"{type(model).__name__} has no transformers config; expected a ViTForImageClassification")
    return config


class AttentionRegistration:
    """``function`` registered as ``model``'s (and only its) attention; :meth:`remove` undoes it.

    Registers ``function`` under ``name`` in transformers'
    ``ALL_ATTENTION_FUNCTIONS`` and sets ``model.config._attn_implementation``
    to ``name``; :meth:`remove` restores the model's own implementation and
    withdraws ``name`` once no open registration uses it.

    Parameters
    ----------
    model : transformers.ViTForImageClassification (or ViTModel)
    name : str
    function : callable
        Same signature as transformers' ``eager_attention_forward``.

    Notebook: notebooks/03_lrp.ipynb (through :func:`attention_function`)
    """

    def __init__(self, model: nn.Module, name: str, function: Callable) -> None:
        self.config = _config(model)
        self.name = name
        self.saved = self.config._attn_implementation
        self.removed = False
        _REGISTERED[name] = _REGISTERED.get(name, 0) + 1
        ALL_ATTENTION_FUNCTIONS[name] = function
        try:
            self.config._attn_implementation = name
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Restore the model's attention implementation; withdraw the function once unused."""
        if self.removed:
            return
        self.removed = True
        self.config._attn_implementation = self.saved
        _REGISTERED[self.name] -= 1
        if _REGISTERED[self.name] == 0:
            del _REGISTERED[self.name]
            try:
                del ALL_ATTENTION_FUNCTIONS[self.name]
            except KeyError:  # pragma: no cover - withdrawn by someone else
                pass


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
    registration = AttentionRegistration(model, name, function)
    try:
        yield
    finally:
        registration.remove()


# ---------------------------------------------------------------------------
# What an open context records
# ---------------------------------------------------------------------------

@dataclass
class LRPState:
    """What an open :func:`mer.lrp.lrp_context` holds: the rule and, after a backward
    pass, the relevance each kind of parameter absorbed, per sample.

    ``absorbed`` maps ``"bias"`` (linear and patch-embedding biases),
    ``"norm_offset"`` (LayerNorm offsets), ``"cls"`` and ``"position"`` to
    tensors of shape (batch,). ``account`` says whether the rules record them
    (see ``lrp_context(account=...)``).
    """

    rule: str
    gamma: float | None
    epsilon: float
    absorbed: dict[str, list] = field(default_factory=dict)
    patch_output: torch.Tensor | None = None
    position: torch.Tensor | None = None
    account: bool = True

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


def bias_sink(state: LRPState, kind: str, bias: torch.Tensor, feature_dim: int):
    """A tensor hook recording ``b * grad`` per sample (the bias' relevance).

    Parameters
    ----------
    state : LRPState
        Receives the share in ``state.absorbed[kind]``, a tensor of shape (batch,).
    kind : str
        ``"bias"`` or ``"norm_offset"``.
    bias : torch.Tensor, shape (features,)
    feature_dim : int
        -1 for an output (batch, ..., features); 1 for a convolution's
        output (batch, channels, h, w).

    Notebook: notebooks/03_lrp.ipynb (the absorbed relevance of the conservation check)
    """
    def hook(grad):
        b = bias.detach()
        if feature_dim == -1:
            share = grad * b
        else:  # conv output (batch, channels, h, w)
            share = grad * b.view(-1, *([1] * (grad.ndim - 2)))
        state.absorbed[kind].append(share.flatten(1).sum(1))
    return hook


def position_of_first_token(embeddings: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """The position embedding of token 0, found as the embeddings module's own
    parameter with one row per token (no attribute names).

    Parameters
    ----------
    embeddings : ViTEmbeddings
    output : torch.Tensor, shape (batch, n_tokens, width)
        The embeddings module's output.

    Returns
    -------
    torch.Tensor, shape (width,)
        Zeros if no such parameter exists.

    Notebook: notebooks/03_lrp.ipynb (the absorbed relevance of the conservation check)
    """
    n_tokens, width = output.shape[1], output.shape[2]
    for parameter in embeddings.parameters(recurse=False):
        if parameter.ndim == 3 and parameter.shape[1] == n_tokens and parameter.shape[2] == width:
            return parameter.detach()[0, 0]
    return torch.zeros(width, dtype=output.dtype, device=output.device)


# ---------------------------------------------------------------------------
# The rule objects: one rule, attached to one module
# ---------------------------------------------------------------------------

class Rule:
    """An LRP rule as an object: it attaches itself to one module and detaches.

    Subclasses implement :meth:`attach`. A :class:`mer.lrp.composite.Composite`
    maps rule objects onto the layer types of a model and calls
    :meth:`attach` for every module it selects, in order; on exit it calls
    ``remove()`` on every handle returned, in reverse order.

    Notebook: notebooks/03_lrp.ipynb
    """

    def attach(self, module: nn.Module, state: LRPState) -> list[Any]:
        """Register this rule on ``module``.

        Parameters
        ----------
        module : torch.nn.Module
            One module the composite selected for this rule (the model
            itself for :class:`AttentionFunction`).
        state : LRPState
            The open context's state: the rule reads ``state.account`` and
            records absorbed relevance in it.

        Returns
        -------
        list
            Handles with a ``remove()`` method that detach the rule (empty
            if the rule has nothing to do here).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({options})"


class ForwardHookRule(Rule):
    """A rule that works through one forward hook on its module.

    :meth:`forward` receives the module's input and output and returns a
    tensor equal to the output whose backward pass is the rule's (or
    ``None`` to keep the output). :meth:`wanted` says whether the hook is
    needed at all in a context (a hook that would do nothing costs time in
    the backward pass).

    Notebook: notebooks/03_lrp.ipynb
    """

    def wanted(self, state: LRPState) -> bool:
        """Whether to register the hook in a context with this ``state``."""
        return True

    def forward(self, module: nn.Module, inputs: tuple, output: torch.Tensor,
                state: LRPState) -> torch.Tensor | None:
        """The forward hook's body: ``output`` with this rule's backward pass (or ``None``)."""
        raise NotImplementedError

    def attach(self, module: nn.Module, state: LRPState) -> list[Any]:
        if not self.wanted(state):
            return []
        return [module.register_forward_hook(functools.partial(self.forward, state=state))]


class ActivationIdentity(ForwardHookRule):
    """The identity rule on an element-wise activation (GELU): :class:`IdentityRule`.

    Notebook: notebooks/03_lrp.ipynb (section "GELU: the identity rule")
    """

    def forward(self, module, inputs, output, state):
        return IdentityRule.apply(inputs[0], output.detach())


class NormConstantScale(ForwardHookRule):
    """LayerNorm with its scale a constant (:class:`LayerNormRule`); with
    ``state.account`` the offset's absorbed relevance is recorded as ``"norm_offset"``.

    Notebook: notebooks/03_lrp.ipynb (section "LayerNorm")
    """

    def forward(self, module, inputs, output, state):
        out = LayerNormRule.apply(inputs[0], module.weight, module.bias, module.eps,
                                  len(module.normalized_shape))
        if state.account and module.bias is not None and out.requires_grad:
            out.register_hook(bias_sink(state, "norm_offset", module.bias, -1))
        return out


class LinearEpsilonGamma(ForwardHookRule):
    """Epsilon and gamma rule on a linear layer (:func:`linear_rule`); LRP-0
    (the plain gradient) with ``epsilon=0, gamma=None``.

    With ``state.account`` the bias' absorbed relevance is recorded as
    ``"bias"``, taken at the layer's own output (after the rule's rescaling).

    Parameters
    ----------
    epsilon : float
        0: no epsilon.
    gamma : float, optional
        ``None`` (or 0): no gamma.

    Notebook: notebooks/03_lrp.ipynb (sections "The epsilon rule" and "gamma")
    """

    def __init__(self, epsilon: float = 0.0, gamma: float | None = None) -> None:
        self.epsilon = epsilon
        self.gamma = gamma

    @property
    def active(self) -> bool:
        """Whether the backward pass differs from LRP-0's (the plain gradient)."""
        return bool(self.gamma or self.epsilon)

    def wanted(self, state):
        return state.account or self.active

    def forward(self, module, inputs, output, state):
        out = output
        if self.active:
            out = linear_rule(inputs[0], output, module.weight, epsilon=self.epsilon, gamma=self.gamma,
                              bias=module.bias)
        if state.account and module.bias is not None and output.requires_grad:
            # Gradient at z itself (after the rule's rescaling): the bias' share is b * grad.
            output.register_hook(bias_sink(state, "bias", module.bias, -1))
        return out


class ConvBias(ForwardHookRule):
    """LRP-0 on a convolution (the patch embedding): with ``state.account`` its
    bias' absorbed relevance is recorded as ``"bias"``; otherwise nothing to do.

    Notebook: notebooks/03_lrp.ipynb (the conservation check)
    """

    def wanted(self, state):
        return state.account

    def forward(self, module, inputs, output, state):
        if module.bias is not None and output.requires_grad:
            output.register_hook(bias_sink(state, "bias", module.bias, 1))


class EmbeddingOffsets(Rule):
    """What a ViT's embeddings add to the patch embedding (CLS token, position
    embeddings) absorbs, recorded as ``"cls"`` and ``"position"`` with
    ``state.account``; otherwise nothing to do.

    Attaches two forward hooks: on the embeddings' patch embedding (its output
    kept in ``state.patch_output``) and on the embeddings module (the
    difference to the patch output is the offset).

    Notebook: notebooks/03_lrp.ipynb (the conservation check)
    """

    def attach(self, module, state):
        if not state.account:
            return []
        patch = [m for m in module.modules() if isinstance(m, ViTPatchEmbeddings)][0]
        return [patch.register_forward_hook(functools.partial(self.patch_output, state=state)),
                module.register_forward_hook(functools.partial(self.offsets, state=state))]

    @staticmethod
    def patch_output(module, inputs, output, state):
        """Forward hook of the patch embedding: keep its output."""
        state.patch_output = output.detach()

    @staticmethod
    def offsets(module, inputs, output, state):
        """Forward hook of the embeddings: record what the CLS token and position embeddings absorb."""
        if not output.requires_grad or state.patch_output is None:
            return None
        patches = state.patch_output
        added = output.detach()
        position_patches = added[:, 1:] - patches  # position embeddings of the patch tokens
        position0 = position_of_first_token(module, output)
        cls = added[:, 0] - position0

        def hook(grad):
            state.absorbed["position"].append((position_patches * grad[:, 1:]).flatten(1).sum(1)
                                              + (position0 * grad[:, 0]).sum(-1))
            state.absorbed["cls"].append((cls * grad[:, 0]).sum(-1))
        output.register_hook(hook)
        return None


class AttentionFunction(Rule):
    """An attention rule: the model's attention implementation replaced by ``function``.

    Attached to the model itself (the attention is selected through its
    config, for this model only): registers ``function`` under ``name`` as
    :func:`attention_function` does, and withdraws it on ``remove()``.

    Parameters
    ----------
    name : str
        The name registered in transformers' ``ALL_ATTENTION_FUNCTIONS``.
    function : callable
        Same signature as transformers' ``eager_attention_forward``
        (:func:`cp_attention`, :func:`attnlrp_attention`).

    Notebook: notebooks/03_lrp.ipynb (section "Attention")
    """

    def __init__(self, name: str, function: Callable) -> None:
        self.name = name
        self.function = function

    def attach(self, module, state):
        return [AttentionRegistration(module, self.name, self.function)]

    def __repr__(self) -> str:
        return f"AttentionFunction({self.name!r}, {self.function.__name__})"


#: The attention rules ``lrp_context(rule=...)`` selects by name.
ATTENTION_RULES = {"cp": AttentionFunction("mer_lrp_cp", cp_attention),
                   "attn": AttentionFunction("mer_lrp_attn", attnlrp_attention)}

__all__ = ["IdentityRule", "LayerNormRule", "DivideGradient", "linear_rule", "cp_attention",
           "attnlrp_attention", "AttentionRegistration", "attention_function", "LRPState", "bias_sink",
           "position_of_first_token", "Rule", "ForwardHookRule", "ActivationIdentity", "NormConstantScale",
           "LinearEpsilonGamma", "ConvBias", "EmbeddingOffsets", "AttentionFunction", "ATTENTION_RULES"]
