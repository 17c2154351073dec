"""The checks of chapter 3: faithfulness, ground truth and sanity of relevance maps.

* Region perturbation (Samek et al. 2017): remove patches most relevant first
  (MoRF) or least relevant first (LeRF) in steps of 5 % of the patches,
  replacing them by the dataset-mean value in every channel the patch
  embedding reads (:func:`~mer.lrp.attribution.removal_input`: no other
  token's input changes), and follow p(explained class).
  Area under the curve over the removed fraction in [0, 1]: low MoRF and high
  LeRF area = faithful. Differences between explainers with paired-bootstrap
  95 % intervals over clips.
* A greedy search for the patch order (:func:`greedy_deletion`) that asks
  the model at every step: not an explainer, the reference for what an order
  of patches can reach on the model (:func:`search_reference`).
* Relevance mass accuracy and pointing game (Arras et al. 2022) on probe clips
  whose only class evidence lies in a known time window.
* Cascading model-parameter randomisation (Adebayo et al. 2018), top block
  first, scored by Spearman rank correlation with the trained model's maps;
  :func:`rule_ablation` runs it with LRP's non-linear rules one at a time.

Conservation lives in :func:`mer.lrp.conservation`.

Notebook: notebooks/03_lrp.ipynb
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import ParameterError
from ..metrics import HAPPY, LABEL2ID, LABELS, bootstrap_interval
from .attribution import patch_grid, per_patch, relevance, removal_input, remove_patches
from .composite import PARTS, vit_parts
from .explainers import explain_batched, spread_tokens


# ---------------------------------------------------------------------------
# Region perturbation
# ---------------------------------------------------------------------------

def perturbation_fractions(step: float = 0.05) -> np.ndarray:
    """Removed fractions ``0, step, ..., 1``.

    Notebook: notebooks/03_lrp.ipynb
    """
    if not 0 < step <= 0.5:
        raise ParameterError(f"perturbation step must be in (0, 0.5], got {step!r}")
    n = int(round(1 / step))
    return np.linspace(0.0, 1.0, n + 1)


def _p_target(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, batch_size: int) -> torch.Tensor:
    """p(target) per input, in batches, no gradient."""
    out = []
    for start in range(0, len(inputs), batch_size):
        p = torch.softmax(model(pixel_values=inputs[start:start + batch_size]).logits, -1)
        out.append(p.gather(1, target[start:start + batch_size, None])[:, 0])
    return torch.cat(out) if out else torch.zeros(0)


def _perturbation_setup(model: nn.Module, x, target, order: str, step: float, fill_value: float):
    """What region perturbation and the search share: the inputs and fill of
    :func:`~mer.lrp.attribution.removal_input`, the patch size, the number of
    patches, the patch counts removed at each step and the targets as a tensor."""
    if order not in ("morf", "lerf"):
        raise ParameterError(f"order must be 'morf' or 'lerf', got {order!r}")
    inputs, fill = removal_input(model, x, fill_value)
    n_clips, _, n_mels, n_frames = inputs.shape
    patch = patch_grid(model)
    n_patches = (n_mels // patch[0]) * (n_frames // patch[1])
    counts = np.rint(perturbation_fractions(step) * n_patches).astype(int)
    target = torch.as_tensor(np.broadcast_to(np.asarray(target), (n_clips,)).astype(np.int64))
    return inputs, fill, patch, n_patches, counts, target


def region_perturbation(model: nn.Module, x, relevance: np.ndarray, target, *, order: str = "morf",
                        step: float = 0.05, fill_value: float = 0.0, batch_size: int = 128) -> np.ndarray:
    """p(target) as patches are removed in order of their summed relevance.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    x : np.ndarray, shape (n_clips, 1, n_mels, n_frames) or (n_clips, n_mels, n_frames)
    relevance : np.ndarray, shape (n_clips, n_mels, n_frames)
    target : np.ndarray, shape (n_clips,), int
    order : {"morf", "lerf"}
        Most or least relevant patches first.
    step : float
        Fraction of the patches removed per step (0.05 = 5 %).
    fill_value : float
        The value a removed patch takes in the spectrogram (0 = dataset mean
        of normalised input); its derived channels, if the model has them,
        take 0 (:func:`~mer.lrp.attribution.removal_input`).

    Returns
    -------
    np.ndarray, shape (n_clips, n_steps + 1)
        p(target) after removing 0, step, ..., 100 % of the patches.

    Notebook: notebooks/03_lrp.ipynb
    """
    inputs, fill, patch, n_patches, counts, target = _perturbation_setup(model, x, target, order, step,
                                                                        fill_value)
    n_clips = len(inputs)
    patch_scores = per_patch(relevance, patch).reshape(n_clips, -1)
    # Stable sort: ties (constant maps) fall back to token order, the same for every explainer.
    ranking = np.argsort(-patch_scores if order == "morf" else patch_scores, axis=1, kind="stable")
    curves = np.zeros((n_clips, len(counts)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for k, count in enumerate(counts):
                removed = torch.zeros(n_clips, n_patches, dtype=torch.bool)
                if count:
                    removed.scatter_(1, torch.as_tensor(ranking[:, :count]), True)
                perturbed = remove_patches(inputs, removed, patch, fill)
                curves[:, k] = _p_target(model, perturbed, target, batch_size).numpy()
    finally:
        model.train(was_training)
    return curves


def greedy_deletion(model: nn.Module, x, target, *, order: str = "morf", step: float = 0.05,
                    fill_value: float = 0.0, batch_size: int = 512) -> np.ndarray:
    """A search for the patch order that makes p(target) fall fastest (MoRF)
    or slowest (LeRF), asking the model at every step.

    Not an explainer: a reference for what an *order* of patches can reach in
    :func:`region_perturbation` on this model. At each step of ``step`` (5 %
    of the patches) every patch still present is removed on its own, on top of
    those already removed, and the ones whose removal lowers (MoRF) or keeps
    (LeRF) p(target) most go next. It costs about ``n_patches / (2 step)``
    forward passes per clip (about 540 for 54 patches in 5 % steps), where an
    explainer costs one forward and one backward pass. Greedy, so not a bound:
    a better order may exist, but an explainer whose MoRF area is far above
    the search's leaves measurable room.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    x : np.ndarray, shape (n_clips, 1, n_mels, n_frames) or (n_clips, n_mels, n_frames)
    target : np.ndarray, shape (n_clips,), int
    order : {"morf", "lerf"}
    step, fill_value : as in :func:`region_perturbation`
    batch_size : int
        Perturbed inputs per forward pass.

    Returns
    -------
    np.ndarray, shape (n_clips, n_mels, n_frames), float32
        A map whose per-patch sums rank the patches in the order found (for
        ``"morf"`` the first removed is the largest; for ``"lerf"`` the
        smallest), so :func:`region_perturbation` with the same ``order``
        replays the search's curve.

    Notebook: notebooks/03_lrp.ipynb
    """
    inputs, fill, patch, n_patches, counts, target = _perturbation_setup(model, x, target, order, step,
                                                                        fill_value)
    n_clips, _, n_mels, n_frames = inputs.shape
    removed = torch.zeros(n_clips, n_patches, dtype=torch.bool)
    rank = torch.full((n_clips, n_patches), n_patches, dtype=torch.long)  # position in the order found
    taken = 0
    eye = torch.eye(n_patches, dtype=torch.bool)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for count in counts[1:]:
                need = int(count) - taken
                if need <= 0:
                    continue
                # Every (clip, patch still present) pair, removed on top of the clip's current removals.
                clip_idx, patch_idx = torch.nonzero(~removed, as_tuple=True)
                p = torch.cat([  # built a batch at a time: all candidates at once would be n_clips x n_patches inputs
                    _p_target(model, remove_patches(inputs[c], removed[c] | eye[q], patch, fill), target[c],
                              batch_size)
                    for c, q in zip(clip_idx.split(batch_size), patch_idx.split(batch_size))])
                score = torch.full((n_clips, n_patches), float("inf"))
                score[clip_idx, patch_idx] = p if order == "morf" else -p
                # Ties go to the lower patch index (stable), the same rule as region_perturbation's.
                chosen = torch.sort(score, dim=1, stable=True).indices[:, :need]
                rank.scatter_(1, chosen, torch.arange(taken, taken + need).expand(n_clips, need))
                removed.scatter_(1, chosen, True)
                taken = int(count)
    finally:
        model.train(was_training)
    # Larger value = removed earlier (MoRF) / later (LeRF), spread over each patch's bins as the
    # token-level explainers spread theirs.
    value = (n_patches - rank).to(torch.float32) if order == "morf" else rank.to(torch.float32)
    return spread_tokens(value, model, (n_mels, n_frames))


def search_reference(model: nn.Module, x, target, morf: dict[str, np.ndarray], lerf: dict[str, np.ndarray], *,
                     n_clips: int, step: float = 0.05, fill_value: float = 0.0) -> pd.DataFrame:
    """The explainers' perturbation areas beside :func:`greedy_deletion`'s, on
    the first ``n_clips`` clips.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    x : np.ndarray, shape (n, 1, n_mels, n_frames)
        The clips ``morf`` and ``lerf`` were measured on, in the same order.
    target : np.ndarray, shape (n,), int
    morf, lerf : dict name -> np.ndarray, shape (n, n_steps + 1)
        Curves of :func:`region_perturbation`.
    n_clips : int
        How many of the clips the search runs on (it costs about 540 forward
        passes per clip and order for 54 patches in 5 % steps).
    step, fill_value : as in :func:`region_perturbation`

    Returns
    -------
    pandas.DataFrame
        Index ``explainer`` (the explainers, then ``"greedy search"``), columns
        ``morf_auc``, ``lerf_auc``, ``gap`` (LeRF - MoRF) over those clips, and
        ``morf_above_search``: the explainer's MoRF area minus the search's.
        ``attrs["n_clips"]`` is the number of clips.

    Notebook: notebooks/03_lrp.ipynb
    """
    n = min(int(n_clips), len(x))
    if n < 1:
        raise ParameterError(f"n_clips must be at least 1, got {n_clips!r}")
    x, target = np.asarray(x)[:n], np.asarray(target)[:n]
    curves = {name: (np.asarray(morf[name])[:n], np.asarray(lerf[name])[:n]) for name in morf}
    searched = {order: greedy_deletion(model, x, target, order=order, step=step, fill_value=fill_value)
                for order in ("morf", "lerf")}
    curves["greedy search"] = tuple(region_perturbation(model, x, searched[order], target, order=order, step=step,
                                                        fill_value=fill_value) for order in ("morf", "lerf"))
    rows = {name: {"morf_auc": float(curve_area(m, step).mean()), "lerf_auc": float(curve_area(l, step).mean())}
            for name, (m, l) in curves.items()}
    table = pd.DataFrame(rows).T.rename_axis("explainer")
    table["gap"] = table["lerf_auc"] - table["morf_auc"]
    table["morf_above_search"] = table["morf_auc"] - table.loc["greedy search", "morf_auc"]
    table.attrs["n_clips"] = n
    return table


def curve_area(curves: np.ndarray, step: float = 0.05) -> np.ndarray:
    """Trapezoid area under each curve over the removed fraction in [0, 1].

    Notebook: notebooks/03_lrp.ipynb
    """
    fractions = perturbation_fractions(step)
    return np.trapezoid(np.asarray(curves, dtype=np.float64), fractions, axis=-1)


def select_epsilon(model: nn.Module, x, target, epsilons, *, explainer: str = "lrp", step: float = 0.05,
                   fill_value: float = 0.0) -> tuple[float, pd.DataFrame]:
    """Choose the epsilon of LRP's epsilon rule by MoRF area on held-out clips.

    Run it on the *validation* split: the chosen value is then scored on the
    test split by the chapter's checks, which never see the choice being made.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    x : np.ndarray, shape (n_clips, 1, n_mels, n_frames)
        Validation inputs.
    target : np.ndarray, shape (n_clips,), int
        Class explained per clip (the predicted one).
    epsilons : sequence of float
        Candidates; 0 is LRP-0.
    explainer : {"lrp", "attnlrp"}
    step : float
        Perturbation step, as in :func:`region_perturbation`.

    Returns
    -------
    best : float
        The candidate with the smallest mean MoRF area (ties: the smaller epsilon).
    table : pandas.DataFrame
        ``epsilon, morf_auc, lerf_auc, n_clips``, one row per candidate.

    Notebook: notebooks/03_lrp.ipynb
    """
    candidates = sorted({float(e) for e in epsilons})
    if not candidates or candidates[0] < 0:
        raise ParameterError(f"epsilons must be non-negative and not empty, got {epsilons!r}")
    rows = []
    for epsilon in candidates:
        maps = explain_batched(explainer, model, x, target, epsilon=epsilon)
        areas = {order: float(curve_area(region_perturbation(model, x, maps, target, order=order, step=step,
                                                             fill_value=fill_value), step).mean())
                 for order in ("morf", "lerf")}
        rows.append({"epsilon": epsilon, "morf_auc": areas["morf"], "lerf_auc": areas["lerf"], "n_clips": len(x)})
    table = pd.DataFrame(rows)
    best = float(table.sort_values(["morf_auc", "epsilon"]).iloc[0]["epsilon"])
    return best, table


def perturbation_summary(morf: dict[str, np.ndarray], lerf: dict[str, np.ndarray], *, step: float = 0.05,
                         reference: str = "lrp", n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Areas per explainer with bootstrap intervals, and paired differences to ``reference``.

    Parameters
    ----------
    morf, lerf : dict name -> np.ndarray, shape (n_clips, n_steps + 1)
        Curves of :func:`region_perturbation`, same clips in the same order.

    Returns
    -------
    pandas.DataFrame
        One row per explainer: ``morf_auc``, ``morf_low``, ``morf_high``,
        ``lerf_auc`` (with interval), ``gap`` = LeRF - MoRF area (with
        interval) and, against ``reference``: ``morf_diff`` = reference
        - explainer MoRF area with its paired-bootstrap interval
        (``morf_diff_low``, ``morf_diff_high``; negative = reference lower),
        ``morf_rel`` = relative change (reference / explainer - 1), and
        ``gap_diff`` (reference gap - explainer gap, with interval).

    Notebook: notebooks/03_lrp.ipynb
    """
    rows = []
    areas = {name: (curve_area(morf[name], step), curve_area(lerf[name], step)) for name in morf}
    ref_m, ref_l = areas.get(reference, (None, None))
    for name, (m, l) in areas.items():
        row: dict[str, Any] = {"explainer": name, "n_clips": len(m)}
        for key, values in (("morf", m), ("lerf", l), ("gap", l - m)):
            mean, low, high = bootstrap_interval(values, n_bootstrap=n_bootstrap, seed=seed)
            row.update({f"{key}_auc" if key != "gap" else "gap": mean, f"{key}_low": low, f"{key}_high": high})
        if ref_m is not None:
            mean, low, high = bootstrap_interval(ref_m - m, n_bootstrap=n_bootstrap, seed=seed)
            row.update({"morf_diff": mean, "morf_diff_low": low, "morf_diff_high": high,
                        "morf_rel": ref_m.mean() / m.mean() - 1 if m.mean() else np.nan})
            mean, low, high = bootstrap_interval((ref_l - ref_m) - (l - m), n_bootstrap=n_bootstrap, seed=seed)
            row.update({"gap_diff": mean, "gap_diff_low": low, "gap_diff_high": high})
        rows.append(row)
    return pd.DataFrame(rows).set_index("explainer")


# ---------------------------------------------------------------------------
# Ground truth on the probe set
# ---------------------------------------------------------------------------

def window_mask(n_frames: int, *, start_s: float, end_s: float, frame_s: float) -> np.ndarray:
    """Boolean mask of the frames whose centre lies in ``[start_s, end_s)``.

    Parameters
    ----------
    n_frames : int
    start_s, end_s : float
        The evidence window in seconds.
    frame_s : float
        Duration of one (pooled) frame in seconds.

    Returns
    -------
    np.ndarray, shape (n_frames,), bool

    Notebook: notebooks/03_lrp.ipynb
    """
    centres = (np.arange(n_frames) + 0.5) * frame_s
    return (centres >= start_s) & (centres < end_s)


def mass_accuracy(relevance: np.ndarray, masks: np.ndarray, *, patch: tuple[int, int] | None = None) -> np.ndarray:
    """Share of positive relevance inside the window, per clip.

    Parameters
    ----------
    relevance : np.ndarray, shape (n_clips, n_mels, n_frames)
    masks : np.ndarray, shape (n_clips, n_frames), bool
        The window's frames.
    patch : (int, int), optional
        If given, relevance is first summed per patch (token) and the
        positive part is taken per token; a token counts as inside by the
        share of its frames inside the window. ``None``: per bin.

    Returns
    -------
    np.ndarray, shape (n_clips,)
        NaN where a clip has no positive relevance.

    Notebook: notebooks/03_lrp.ipynb
    """
    r = np.asarray(relevance, dtype=np.float64)
    masks = np.asarray(masks, dtype=np.float64)
    if patch is None:
        positive = np.clip(r, 0, None).sum(1)  # (n_clips, n_frames)
        inside = (positive * masks).sum(1)
        total = positive.sum(1)
    else:
        ph, pw = patch
        tokens = np.clip(per_patch(r, patch), 0, None)  # (n_clips, rows, cols)
        cols = tokens.shape[2]
        share = masks[:, :cols * pw].reshape(len(masks), cols, pw).mean(2)  # (n_clips, cols)
        inside = (tokens * share[:, None, :]).sum((1, 2))
        total = tokens.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def pointing_game(relevance: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """1 where the most relevant bin lies inside the window, per clip.

    Notebook: notebooks/03_lrp.ipynb
    """
    r = np.asarray(relevance)
    flat = r.reshape(len(r), -1).argmax(1)
    frames = flat % r.shape[2]
    return np.asarray(masks)[np.arange(len(r)), frames].astype(float)


def qualifying_probes(label: np.ndarray, p_full: np.ndarray, p_no_window: np.ndarray) -> np.ndarray:
    """Probes on which the ground truth is valid: classified correctly, and
    losing at least half their margin over 0.5 when the window is removed.

    Parameters
    ----------
    label : np.ndarray, shape (n_clips,), int (sad 0, happy 1)
    p_full, p_no_window : np.ndarray, shape (n_clips, 2)
        Class probabilities with the window and without it (``path_no_window``).

    Returns
    -------
    np.ndarray, shape (n_clips,), bool

    Notebook: notebooks/03_lrp.ipynb
    """
    idx = np.arange(len(label))
    p_true = p_full[idx, label]
    p_true_no = p_no_window[idx, label]
    margin = p_true - 0.5
    return (margin > 0) & (p_true - p_true_no >= 0.5 * margin)


def probe_summary(label: np.ndarray, p_full: np.ndarray, p_no_window: np.ndarray,
                  scored: np.ndarray) -> pd.DataFrame:
    """What the probes say per class: how many are right, how much the window
    matters, and how many the ground-truth check scores.

    A probe can only qualify if its twin without the window's thirds (open
    fifths) is heard as less of its class. If the model hears the open fifths
    as one class already, that class's probes have little margin to lose and
    the check rests on the other class's probes; this table shows it.

    Parameters
    ----------
    label : np.ndarray, shape (n_clips,), int (sad 0, happy 1)
    p_full, p_no_window : np.ndarray, shape (n_clips, 2)
        Class probabilities with the window and without it.
    scored : np.ndarray, shape (n_clips,), bool
        The probes the check scores (:func:`qualifying_probes`, window small enough).

    Returns
    -------
    pandas.DataFrame
        Index ``label`` (the class names present), columns ``n``,
        ``accuracy``, ``drop_median`` (p(true class) with the window minus
        without), ``p_happy_no_window_median`` and ``n_scored``.

    Notebook: notebooks/03_lrp.ipynb
    """
    label = np.asarray(label, dtype=int)
    idx = np.arange(len(label))
    table = pd.DataFrame({"label": np.asarray(LABELS, dtype=object)[label],
                          "correct": p_full.argmax(1) == label,
                          "drop": p_full[idx, label] - p_no_window[idx, label],
                          "p_happy_no_window": p_no_window[:, LABEL2ID[HAPPY]],
                          "scored": np.asarray(scored, dtype=bool)})
    return table.groupby("label").agg(n=("drop", "size"), accuracy=("correct", "mean"),
                                      drop_median=("drop", "median"),
                                      p_happy_no_window_median=("p_happy_no_window", "median"),
                                      n_scored=("scored", "sum"))


# ---------------------------------------------------------------------------
# Cascading randomisation
# ---------------------------------------------------------------------------

def cascade_steps(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The cascade, top first: ``head`` (the modules after the last block:
    final LayerNorm and classifier), then each ViT block from the top, then
    the embeddings. Found by module type.

    Notebook: notebooks/03_lrp.ipynb
    """
    parts = vit_parts(model)
    blocks = parts["blocks"]
    in_blocks = {id(m) for b in blocks for m in b.modules()} | {id(m) for m in parts["embeddings"].modules()}
    head = [m for m in model.modules()
            if isinstance(m, (nn.Linear, nn.LayerNorm)) and id(m) not in in_blocks]
    steps = [("head", head)]
    for i in range(len(blocks), 0, -1):
        steps.append((f"block {i}", [blocks[i - 1]]))
    steps.append(("embeddings", [parts["embeddings"]]))
    return steps


def _randomise(modules: list[nn.Module], generator: torch.Generator) -> None:
    """Redraw every parameter from a normal with its own mean and standard
    deviation (constant tensors, e.g. an untrained LayerNorm, are redrawn around
    their value with the std of the model's weights)."""
    with torch.no_grad():
        for module in modules:
            for parameter in module.parameters():
                std = float(parameter.std()) if parameter.numel() > 1 else 0.0
                std = std if std > 0 else 0.02
                noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                parameter.copy_(parameter.mean() + std * noise)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr  # slow to import; only the randomisation checks need it

    a, b = np.ravel(a), np.ravel(b)
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def randomisation(model: nn.Module, x, target, explainer: Callable[..., np.ndarray], *,
                  seed: int = 0, absolute: bool = False, draws: int = 1) -> pd.DataFrame:
    """Cascading model-parameter randomisation, top block first.

    Parameters
    ----------
    model : transformers.ViTForImageClassification (not modified: a copy is randomised)
    x : np.ndarray, shape (n_clips, 1, n_mels, n_frames)
    target : np.ndarray, shape (n_clips,)
        Classes explained (kept fixed across steps: the trained model's).
    explainer : callable ``(model, x, target) -> (n_clips, n_mels, n_frames)``
    seed : int
        Seed of the first draw; draw ``d`` uses ``seed + d``.
    absolute : bool
        Correlate absolute values instead of signed relevance.
    draws : int
        Independent random cascades. The sign of a correlation after the head
        is redrawn is the draw's (a random classifier points either way), so one
        draw's signed value says little; ``spearman_abs`` pools ``|rho|`` over
        clips and draws.

    Returns
    -------
    pandas.DataFrame
        One row per step (``step`` 0 = trained model): ``randomised`` (the
        part randomised at this step, cumulative from the top),
        ``spearman`` (median over clips and draws of the rank correlation
        between the trained and randomised maps, per bin),
        ``spearman_low``/``_high`` (quartiles), ``spearman_abs`` (median of
        ``|rho|``), ``spearman_token``/``spearman_token_abs`` (the same on
        per-patch sums), ``draws``.

    Notebook: notebooks/03_lrp.ipynb
    """
    if draws < 1:
        raise ParameterError(f"draws must be >= 1, got {draws}")
    patch = patch_grid(model)
    reference = np.asarray(explainer(copy.deepcopy(model), x, target))
    ref_tokens = per_patch(reference, patch)
    f = np.abs if absolute else (lambda v: v)
    names = ["none"] + [name for name, _ in cascade_steps(model)]
    rho = {k: [] for k in range(len(names))}
    rho_t = {k: [] for k in range(len(names))}
    for draw in range(draws):
        generator = torch.Generator().manual_seed(seed + draw)
        work = copy.deepcopy(model)
        steps = [("none", [])] + cascade_steps(work)
        for k, (_, modules) in enumerate(steps):
            _randomise(modules, generator)
            maps = reference if k == 0 else np.asarray(explainer(work, x, target))
            tokens = per_patch(maps, patch)
            rho[k] += [_spearman(f(reference[i]), f(maps[i])) for i in range(len(maps))]
            rho_t[k] += [_spearman(f(ref_tokens[i]), f(tokens[i])) for i in range(len(maps))]
    rows = []
    for k, name in enumerate(names):
        r, t = np.array(rho[k]), np.array(rho_t[k])
        rows.append({"step": k, "randomised": name, "spearman": np.nanmedian(r),
                     "spearman_low": np.nanquantile(r, 0.25), "spearman_high": np.nanquantile(r, 0.75),
                     "spearman_abs": np.nanmedian(np.abs(r)), "spearman_token": np.nanmedian(t),
                     "spearman_token_abs": np.nanmedian(np.abs(t)), "draws": draws})
    return pd.DataFrame(rows)


# The ablation's settings: which of LRP's non-linear rules are on (mer.lrp.PARTS).
RULE_ABLATION = {
    "no rule (gradient x input)": (),
    "attention rule only": ("attention",),
    "LayerNorm rule only": ("norm",),
    "GELU rule only": ("activation",),
    "all three (LRP)": PARTS,
}


def rule_ablation(model: nn.Module, x, target, *, rule: str = "cp", seed: int = 0,
                  draws: int = 1) -> pd.DataFrame:
    """Cascading randomisation of LRP with one non-linear rule at a time.

    Which of LRP's modified backward passes (attention, LayerNorm scale,
    GELU) makes a map keep its pattern when the top of the network is
    redrawn? Each setting of :data:`RULE_ABLATION` explains with that subset
    of rules (the others keep their plain gradient; epsilon 0, so no rule at
    all is gradient x input) and goes through :func:`randomisation`.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    x : np.ndarray, shape (n_clips, 1, n_mels, n_frames)
    target : np.ndarray, shape (n_clips,)
    rule : {"cp", "attn"}
        The attention rule of the settings that include it.
    seed, draws : see :func:`randomisation`

    Returns
    -------
    pandas.DataFrame
        Index: the cascade's steps (``randomised``); one column per setting,
        the median ``|rho|`` with the trained model's map.

    Notebook: notebooks/03_lrp.ipynb
    """
    columns = {}
    for label, parts in RULE_ABLATION.items():
        def explainer(m, xs, t, parts=parts):
            return relevance(m, xs, t, rule=rule, modified=parts, account=False)["relevance"]
        table = randomisation(model, x, target, explainer, seed=seed, draws=draws)
        columns[label] = table.set_index("randomised")["spearman_abs"]
    return pd.DataFrame(columns)


__all__ = ["perturbation_fractions", "region_perturbation", "greedy_deletion", "search_reference", "curve_area",
           "select_epsilon", "perturbation_summary", "window_mask", "mass_accuracy", "pointing_game",
           "qualifying_probes", "cascade_steps", "randomisation", "RULE_ABLATION", "rule_ablation"]
