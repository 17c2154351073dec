"""Rules mapped onto a ViT's layer types and applied in a context: the composite.

A :class:`Composite` is an ordered mapping from *layer keys* to rule objects
(:mod:`mer.lrp.rules`), the idea of zennit's composites. A key selects
modules of a model:

* a module type or a tuple of types (``nn.LayerNorm``, ``nn.Linear``,
  ``ViTEmbeddings``...): every module of that type;
* ``Inside(outer, types)``: only those inside a module of type ``outer``
  (``Inside(ViTLayer, nn.Linear)``: the encoder blocks' linear layers, not
  the classifier);
* :data:`ATTENTION`: the model's attention implementation (the model
  itself, whose config selects it).

Every module gets the rule of the *first* key that selects it; the rules
are attached key by key in the mapping's order, and removed on exit.

:func:`vit_composite` builds the composites the strings of
:func:`lrp_context` name, from two small registries:
:data:`mer.lrp.rules.ATTENTION_RULES` (``rule="cp"`` or ``"attn"``) and
:func:`part_rules` (the non-linear parts of ``modified``), plus the
epsilon/gamma rule on the blocks' linear layers and the bookkeeping of the
offsets (classifier bias, patch-embedding bias, CLS and position).
:func:`lrp_context` builds one and enters it.

Notebook: notebooks/03_lrp.ipynb (section "The rules, derived")
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from torch import nn
from transformers.activations import ACT2CLS
from transformers.models.vit.modeling_vit import ViTEmbeddings, ViTLayer, ViTPatchEmbeddings

from .. import ParameterError
from .rules import (ATTENTION_RULES, ActivationIdentity, ConvBias, EmbeddingOffsets, LinearEpsilonGamma, LRPState,
                    NormConstantScale, Rule)

#: The names of ``lrp_context(rule=...)``: the attention rules.
RULES = tuple(ATTENTION_RULES)
# The non-linear parts whose backward pass LRP replaces (see lrp_context(modified=...)).
PARTS = ("attention", "norm", "activation")


# ---------------------------------------------------------------------------
# Finding the parts of a ViT by type
# ---------------------------------------------------------------------------

def activation_types() -> tuple[type, ...]:
    """Element-wise activation module classes (transformers' and torch's).

    Returns
    -------
    tuple of type
        ``nn.GELU``, ``nn.ReLU``, ... and every module class of transformers'
        ``ACT2CLS``, sorted by name.

    Notebook: notebooks/03_lrp.ipynb (the GELU rule applies to them)
    """
    found = {nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Sigmoid}
    for value in ACT2CLS.values():
        cls = value[0] if isinstance(value, tuple) else value
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            found.add(cls)
    return tuple(sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__)))


def vit_parts(model: nn.Module) -> dict[str, Any]:
    """The modules LRP needs, by type: ``blocks``, ``embeddings``, ``patch`` and the rest.

    Raises ParameterError if ``model`` is not a transformers ViT.

    Notebook: notebooks/03_lrp.ipynb
    """
    blocks = [m for m in model.modules() if isinstance(m, ViTLayer)]
    embeddings = [m for m in model.modules() if isinstance(m, ViTEmbeddings)]
    patch = [m for m in model.modules() if isinstance(m, ViTPatchEmbeddings)]
    if not blocks or len(embeddings) != 1 or len(patch) != 1:
        raise ParameterError(f"expected a transformers ViT (ViTLayer, ViTEmbeddings modules), got "
                             f"{type(model).__name__} with {len(blocks)} ViTLayer modules")
    convs = [m for m in patch[0].modules() if isinstance(m, nn.Conv2d)]
    in_blocks = {id(m) for block in blocks for m in block.modules()}
    activations = activation_types()
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


# ---------------------------------------------------------------------------
# Layer keys and the composite
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Inside:
    """Layer key: modules of type ``types`` inside a module of type ``outer``.

    Parameters
    ----------
    outer : type or tuple of type
        E.g. ``ViTLayer`` (an encoder block).
    types : type or tuple of type
        E.g. ``nn.Linear``.

    Notebook: notebooks/03_lrp.ipynb
    """

    outer: type | tuple[type, ...]
    types: type | tuple[type, ...]


class AttentionImplementation:
    """Layer key of the model's attention implementation (:data:`ATTENTION`):
    selects the model itself, whose config names the attention function."""

    def __repr__(self) -> str:
        return "ATTENTION"


#: Layer key of the model's attention implementation.
ATTENTION = AttentionImplementation()
#: The encoder blocks' linear layers (query, key, value, output, MLP), not the classifier.
BLOCK_LINEARS = Inside(ViTLayer, nn.Linear)
#: The encoder blocks' element-wise activations (the MLP's GELU).
BLOCK_ACTIVATIONS = Inside(ViTLayer, activation_types())
#: The patch embedding's convolution.
PATCH_CONV = Inside(ViTPatchEmbeddings, nn.Conv2d)


def select(model: nn.Module, key) -> list[nn.Module]:
    """The modules of ``model`` a layer key selects, in ``model.modules()`` order.

    Parameters
    ----------
    model : torch.nn.Module
    key : type, tuple of type, Inside or ATTENTION

    Returns
    -------
    list of torch.nn.Module

    Notebook: notebooks/03_lrp.ipynb
    """
    if key is ATTENTION:
        return [model]
    if isinstance(key, Inside):
        inside = {id(m) for outer in model.modules() if isinstance(outer, key.outer) for m in outer.modules()}
        return [m for m in model.modules() if isinstance(m, key.types) and id(m) in inside]
    return [m for m in model.modules() if isinstance(m, key)]


class Composite:
    """Rule objects mapped onto layer keys, applied to one model in a context.

    Parameters
    ----------
    layer_map : mapping of layer key -> Rule
        In order: each module gets the rule of the first key that selects
        it (:func:`select`), and rules are attached key by key.

    Examples
    --------
    CP-LRP with the epsilon rule on the blocks' linear layers, the same as
    ``lrp_context(model, rule="cp", epsilon=0.5)``::

        composite = vit_composite("cp").with_rules({BLOCK_LINEARS: LinearEpsilonGamma(epsilon=0.5)})
        with composite.context(model, LRPState(rule="cp", gamma=None, epsilon=0.5)) as state:
            ...

    Notebook: notebooks/03_lrp.ipynb
    """

    def __init__(self, layer_map: Mapping[Any, Rule]) -> None:
        self.layer_map = dict(layer_map)

    def __repr__(self) -> str:
        return f"Composite({self.layer_map!r})"

    def with_rules(self, rules: Mapping[Any, Rule]) -> "Composite":
        """A copy with ``rules`` put in: a key already mapped keeps its place, a new key goes last."""
        return Composite({**self.layer_map, **rules})

    def attachments(self, model: nn.Module) -> list[tuple[nn.Module, Rule]]:
        """Every (module, rule) pair the composite attaches to ``model``, in order.

        A module selected by several type keys takes the first key's rule;
        :data:`ATTENTION` selects the model whatever else does.
        """
        claimed: set[int] = set()
        pairs = []
        for key, rule in self.layer_map.items():
            for module in select(model, key):
                if key is not ATTENTION:
                    if id(module) in claimed:
                        continue
                    claimed.add(id(module))
                pairs.append((module, rule))
        return pairs

    @contextlib.contextmanager
    def context(self, model: nn.Module, state: LRPState) -> Iterator[LRPState]:
        """Apply the rules to ``model`` (in eval mode) inside a ``with`` block.

        On exit (also on an exception) every rule is detached, last first,
        and the model's training flag is restored.

        Yields
        ------
        LRPState
            ``state``, which the rules record into.
        """
        pairs = self.attachments(model)
        was_training = model.training
        handles: list[Any] = []
        try:
            model.eval()
            for module, rule in pairs:
                handles += rule.attach(module, state)
            yield state
        finally:
            for handle in reversed(handles):
                handle.remove()
            model.train(was_training)


# ---------------------------------------------------------------------------
# The named composites and lrp_context
# ---------------------------------------------------------------------------

def part_rules(rule: str = "cp") -> dict[str, tuple[Any, Rule]]:
    """The non-linear parts of a ViT (:data:`PARTS`), each as its layer key and its rule.

    In the order they are attached: the attention (the rule ``rule`` names
    in :data:`mer.lrp.rules.ATTENTION_RULES`), the blocks' activations
    (identity rule), every LayerNorm (scale constant).

    Notebook: notebooks/03_lrp.ipynb
    """
    return {"attention": (ATTENTION, ATTENTION_RULES[rule]),
            "activation": (BLOCK_ACTIVATIONS, ActivationIdentity()),
            "norm": (nn.LayerNorm, NormConstantScale())}


def vit_composite(rule: str = "cp", *, gamma: float | None = None, epsilon: float = 0.0,
                  modified: tuple[str, ...] = PARTS) -> Composite:
    """The composite that ``lrp_context``'s arguments name (see :func:`lrp_context`).

    Returns
    -------
    Composite
        The rules of ``modified`` (:func:`part_rules`), then
        :class:`~mer.lrp.rules.LinearEpsilonGamma` with ``epsilon``/``gamma``
        on the blocks' linear layers, LRP-0 on the other linear layers (the
        classifier), :class:`~mer.lrp.rules.ConvBias` on the patch
        convolution and :class:`~mer.lrp.rules.EmbeddingOffsets` on the
        embeddings (the last three only record absorbed relevance).

    Raises
    ------
    ParameterError
        For an unknown ``rule``, a negative ``gamma`` or ``epsilon``, or a
        part not in :data:`PARTS`.

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
    layer_map = dict(entry for part, entry in part_rules(rule).items() if part in modified)
    layer_map[BLOCK_LINEARS] = LinearEpsilonGamma(epsilon=epsilon, gamma=gamma)
    layer_map[nn.Linear] = LinearEpsilonGamma()  # the classifier: LRP-0, its bias accounted for
    layer_map[PATCH_CONV] = ConvBias()
    layer_map[ViTEmbeddings] = EmbeddingOffsets()
    return Composite(layer_map)


@contextlib.contextmanager
def lrp_context(model: nn.Module, rule: str = "cp", gamma: float | None = None,
                epsilon: float = 0.0, account: bool = True,
                modified: tuple[str, ...] = PARTS) -> Iterator[LRPState]:
    """Switch LRP on for ``model`` inside a ``with`` block.

    Inside, ``x * d logit / dx`` is the LRP relevance of ``x``. On exit (also
    on an exception) every hook is removed, the model's attention
    implementation and training flag are restored and the registered attention
    function is withdrawn once no open context uses it. The rules are those of
    :func:`vit_composite` (forward hooks found by module type and an
    attention function selected through ``model.config`` only).

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
    composite = vit_composite(rule, gamma=gamma, epsilon=epsilon, modified=modified)
    vit_parts(model)  # a ParameterError for anything but a transformers ViT, before the model is touched
    state = LRPState(rule=rule, gamma=gamma, epsilon=float(epsilon), account=account)
    state.reset()
    with composite.context(model, state):
        yield state


__all__ = ["RULES", "PARTS", "activation_types", "vit_parts", "Inside", "AttentionImplementation", "ATTENTION",
           "BLOCK_LINEARS", "BLOCK_ACTIVATIONS", "PATCH_CONV", "select", "Composite", "part_rules",
           "vit_composite", "lrp_context"]
