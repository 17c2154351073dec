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
* :func:`linear_rule` - epsilon and the sign-aware gamma rule on the encoder's
  linear layers (optional; ``epsilon=0, gamma=None`` is LRP-0, the plain
  gradient).

Each rule is also a small object that attaches itself to one module
(:class:`ActivationIdentity`, :class:`NormConstantScale`,
:class:`LinearEpsilonGamma`, :class:`AttentionFunction`, and the bookkeeping
of :class:`ConvBias` and :class:`EmbeddingOffsets`); a :class:`Composite`
maps them onto layer types, as zennit's composites do.

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

The package, one module per concept:

================================  ===========================================================
:mod:`mer.lrp.rules`              the rules (autograd functions) and the rule objects
:mod:`mer.lrp.composite`          layer keys, :class:`Composite`, the named composites,
                                  :func:`lrp_context`
:mod:`mer.lrp.attribution`        :func:`relevance`, gradient x input, conservation, patches
:mod:`mer.lrp.explainers`         every explainer behind one signature (:func:`explain`)
:mod:`mer.lrp.checks`             chapter 3's checks: perturbation, ground truth, randomisation
================================  ===========================================================

Adding an LRP rule: a :class:`Rule` subclass in :mod:`mer.lrp.rules`, placed
under its layer key in a composite (:meth:`Composite.with_rules`, or in
:func:`~mer.lrp.composite.vit_composite` to give it a name). Adding an
explainer: a function in :mod:`mer.lrp.explainers`, entered in its
``METHODS``. The speed figures are :mod:`mer.bench.lrp`.

Notebook: notebooks/03_lrp.ipynb
"""

from __future__ import annotations

from .attribution import (as_input, conservation, example_maps, explained_output, gradient_x_input, patch_grid,
                          per_patch, relevance, zero_offsets)
from .composite import (ATTENTION, BLOCK_ACTIVATIONS, BLOCK_LINEARS, PARTS, PATCH_CONV, RULES, Composite, Inside,
                        activation_types, lrp_context, part_rules, select, vit_composite, vit_parts)
from .explainers import EXPLAINERS, explain, explain_batched
from .rules import (ATTENTION_RULES, ActivationIdentity, AttentionFunction, ConvBias, DivideGradient,
                    EmbeddingOffsets, ForwardHookRule, IdentityRule, LayerNormRule, LinearEpsilonGamma, LRPState,
                    NormConstantScale, Rule, attention_function, attnlrp_attention, cp_attention, linear_rule)

__all__ = [
    # relevance maps
    "relevance", "gradient_x_input", "conservation", "zero_offsets", "as_input", "example_maps", "explained_output",
    "patch_grid", "per_patch",
    # the composite and the context
    "lrp_context", "LRPState", "Composite", "Inside", "ATTENTION", "BLOCK_LINEARS", "BLOCK_ACTIVATIONS",
    "PATCH_CONV", "RULES", "PARTS", "vit_composite", "part_rules", "select", "vit_parts", "activation_types",
    # the rules
    "IdentityRule", "LayerNormRule", "DivideGradient", "linear_rule", "cp_attention", "attnlrp_attention",
    "attention_function", "Rule", "ForwardHookRule", "ActivationIdentity", "NormConstantScale",
    "LinearEpsilonGamma", "ConvBias", "EmbeddingOffsets", "AttentionFunction", "ATTENTION_RULES",
    # explainers
    "EXPLAINERS", "explain", "explain_batched",
]
