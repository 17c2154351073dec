"""The perceptual route: a Vision Transformer on log-mel spectrograms, Happy vs Sad.

The model is a stock ``transformers.ViTForImageClassification`` built from a
``ViTConfig`` for one-channel, non-square images (``num_channels=1``,
``image_size=(n_mels, n_frames)``). By default its patches are full-height
stripes: all 128 mel bands x 2 frames of the log-mel average-pooled 4x in time
(128 x 108 per 10 s), so the model sees 54 tokens, each one moment of the clip,
plus the CLS token it classifies from. The layers are transformers' own (no
subclassing), so chapter 3 can swap the attention function through
transformers' attention registry and derive LRP rules for the standard modules.

Training (:func:`train`) is AdamW with linear warm-up and cosine decay,
SpecAugment-style time and frequency masks, class-balanced sampling and a
validation-based model selection that leans towards later epochs (see
:func:`train`). Every random draw of epoch ``e`` comes from generators seeded
with ``(seed, e)``, and every epoch ends with a checkpoint holding the weights,
the AdamW moments and the scheduler state (safetensors + JSON, never pickle):
a killed run re-run with the same arguments resumes after its last finished
epoch and ends with bit-identical weights.

Key invariance (options, off by default; :func:`key_options`; the design is
recorded in ``meta["key_invariance"]``): ``logmel={"front_end": "logfreq"}``
swaps the mel filterbank for 24 log-frequency bands per octave, where a
transposition is a shift of two rows per semitone; ``transpose_augment``
transposes every training example by a random number of semitones (STFT
rescaled before the filterbank, or a crop offset on the log-frequency front
end); ``canonicalise="tonic"`` moves every clip, in training and after, to a
key estimated from the clip itself (:func:`canonical_semitones`), so the
twelve transpositions of a score reach the model as one input wherever the
estimate moves with them. Measured on the keyed synthetic set (1,200 clips,
keys -6..+6, chapter settings): augmentation alone made the model ignore the
mode within 30 epochs; canonicalisation learnt it.

Optionally (``pretrain_epochs``; off in the default profile) the encoder first
learns without labels to fill in hidden spans of the training spectrograms
(:func:`masked_pretrain`), a stand-in for the pretrained weights the thesis
fine-tuned, which cannot be downloaded here.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import MerError, ParameterError, cli, profiles, spectrogram, store, tonality
from .metrics import ID2LABEL, LABEL2ID, LABELS, bootstrap_metrics, called, label_codes, quadrant

log = logging.getLogger(__name__)

#: Model sizes. ``patch`` = (mel bands, frames) per patch; ``None`` = all bands.
SIZES: dict[str, dict[str, Any]] = {
    "quick": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 128, "patch": (None, 2)},
    "default": {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3,
                "intermediate_size": 384, "patch": (None, 2)},
    "thesis": {"hidden_size": 384, "num_hidden_layers": 8, "num_attention_heads": 6,
               "intermediate_size": 1536, "patch": (None, 2)},
}
META_FILE = "meta.json"
WEIGHTS_FILE = "model.safetensors"
VALENCE_HEAD_FILE = "valence_head.safetensors"


class CheckpointError(MerError):
    """A checkpoint folder is missing, incomplete or inconsistent."""


class PretrainedNotFound(MerError):
    """Pretrained weights were asked for but are not on this machine."""


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------

def model_config(size: str = "default", *, n_mels: int = 128, n_frames: int = 108,
                 patch_size: tuple[int | None, int] | None = None, dropout: float = 0.0,
                 attn_implementation: str = "eager"):
    """The ``ViTConfig`` of a model size for ``(1, n_mels, n_frames)`` inputs.

    Parameters
    ----------
    size : {"quick", "default", "thesis"}
    n_mels, n_frames : int
        Input height and width; ``n_frames`` must be a multiple of the patch width.
    patch_size : (int or None, int), optional
        ``(mel bands, frames)`` of a patch; ``None`` bands = full height.
        Default: the size's own (full-height stripes 2 frames wide).

    Returns
    -------
    transformers.ViTConfig

    Notebook: notebooks/02_vit.ipynb
    """
    from transformers import ViTConfig

    if size not in SIZES:
        raise ParameterError(f"unknown model size {size!r}; expected one of {sorted(SIZES)}")
    spec = dict(SIZES[size])
    bands, frames = patch_size if patch_size is not None else spec.pop("patch")
    spec.pop("patch", None)
    bands = n_mels if bands is None else int(bands)
    if n_mels % bands or n_frames % frames:
        raise ParameterError(f"input {n_mels} x {n_frames} is not a whole number of "
                             f"{bands} x {frames} patches")
    config = ViTConfig(**spec, image_size=(n_mels, n_frames), patch_size=(bands, frames), num_channels=1,
                       num_labels=2, id2label=dict(ID2LABEL), label2id=dict(LABEL2ID),
                       hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                       qkv_bias=True)
    config._attn_implementation = attn_implementation
    return config


def build_model(size: str = "default", *, n_mels: int = 128, n_frames: int = 108,
                patch_size: tuple[int | None, int] | None = None, pretrained: str | None = None,
                dropout: float = 0.0, attn_implementation: str = "eager", seed: int = 0):
    """A ``ViTForImageClassification`` for one-channel log-mel spectrograms.

    Parameters
    ----------
    size : {"quick", "default", "thesis"}
        ``quick``: 2 layers, width 64 (tests). ``default``: 4 layers, width
        192, 3 heads (about 1.3 M parameters). ``thesis``: 8 layers, width 384.
    n_mels, n_frames : int
        Input shape ``(1, n_mels, n_frames)``; 128 x 108 for 10 s pooled 4x.
    patch_size : (int or None, int), optional
        Patch ``(mel bands, frames)``; default full-height stripes 2 frames wide.
    pretrained : str, optional
        A local folder or a Hugging Face id already in the local cache holding
        ImageNet ViT weights (e.g. ``google/vit-base-patch16-224``). Its
        architecture and patch size replace ``size``/``patch_size``; the
        3-channel patch embedding is averaged to one channel and the position
        embeddings are interpolated (bicubic) to the mel x time patch grid.
        Never downloads: files must be present.
    attn_implementation : {"eager", "sdpa"}
        transformers' attention function (chapter 3 registers its own).
    seed : int
        ``torch.manual_seed`` before the weights are drawn.

    Returns
    -------
    transformers.ViTForImageClassification
        Input ``pixel_values`` of shape (batch, 1, n_mels, n_frames); logits
        (batch, 2) with sad = 0, happy = 1.

    Raises
    ------
    PretrainedNotFound
        If ``pretrained`` is neither a folder nor in the local Hugging Face cache.

    Notebook: notebooks/02_vit.ipynb
    """
    import torch
    from transformers import ViTForImageClassification

    torch.manual_seed(seed)
    if pretrained:
        return _adapt_pretrained(pretrained, n_mels=n_mels, n_frames=n_frames,
                                 attn_implementation=attn_implementation)
    config = model_config(size, n_mels=n_mels, n_frames=n_frames, patch_size=patch_size,
                          dropout=dropout, attn_implementation=attn_implementation)
    return ViTForImageClassification(config)


def _adapt_pretrained(pretrained: str, *, n_mels: int, n_frames: int, attn_implementation: str):
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    try:
        source_config = ViTConfig.from_pretrained(pretrained, local_files_only=True)
        source = ViTForImageClassification.from_pretrained(pretrained, local_files_only=True,
                                                           use_safetensors=True)  # never a pickle
    except (OSError, ValueError) as error:
        offline = " (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise PretrainedNotFound(
            f"pretrained ViT weights {pretrained!r} are not on this machine{offline}; this package "
            f"never downloads them. Fetch them where there is network (e.g. `hf download "
            f"{pretrained}`) and pass the local folder or keep them in the Hugging Face cache. "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    patch = source_config.patch_size
    patch = tuple(patch) if isinstance(patch, (tuple, list)) else (patch, patch)
    if n_mels % patch[0] or n_frames % patch[1]:
        raise ParameterError(f"input {n_mels} x {n_frames} is not a whole number of the pretrained "
                             f"{patch[0]} x {patch[1]} patches; pad n_frames to a multiple of {patch[1]}")
    config_dict = source_config.to_dict()
    for key in ("id2label", "label2id", "architectures", "_name_or_path", "transformers_version"):
        config_dict.pop(key, None)
    config_dict.update(image_size=[n_mels, n_frames], patch_size=list(patch), num_channels=1,
                       num_labels=2, id2label=dict(ID2LABEL), label2id=dict(LABEL2ID))
    config = ViTConfig(**config_dict)
    config._attn_implementation = attn_implementation
    model = ViTForImageClassification(config)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    key_proj = "vit.embeddings.patch_embeddings.projection.weight"
    state[key_proj] = state[key_proj].mean(dim=1, keepdim=True)  # RGB -> one channel
    key_pos = "vit.embeddings.position_embeddings"
    old = state[key_pos]
    side = int(round(math.sqrt(old.shape[1] - 1)))
    grid = old[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(n_mels // patch[0], n_frames // patch[1]),
                                           mode="bicubic", align_corners=False)
    state[key_pos] = torch.cat([old[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, old.shape[-1])], dim=1)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("classifier.")]:
        raise CheckpointError(f"pretrained weights {pretrained!r} do not fit a ViT: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def _encode(model, specs: np.ndarray, read, *, batch_size: int, width: int) -> np.ndarray:
    """``read(last_hidden_state)`` of every batch of ``specs``, concatenated (eval mode, no gradients).

    The one loop behind :func:`predict_proba` and :func:`clip_representations`.
    """
    import torch

    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(specs), batch_size):
            batch = torch.as_tensor(np.asarray(specs[start:start + batch_size], dtype=np.float32)).to(device)
            out.append(read(model.vit(pixel_values=batch).last_hidden_state).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def predict_proba(model, specs: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Class probabilities for normalised spectrograms.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    specs : np.ndarray, shape (n_clips, 1, n_mels, n_frames)
        Normalised log-mel (:func:`mer.spectrogram.normalize` with the
        checkpoint's statistics).

    Returns
    -------
    np.ndarray, shape (n_clips, 2)
        Columns sad, happy.

    Notebook: notebooks/02_vit.ipynb
    """
    import torch

    # The classification head reads the CLS token of the last hidden state, as the model's own forward does.
    return _encode(model, specs, lambda hidden: torch.softmax(model.classifier(hidden[:, 0]), dim=-1),
                   batch_size=batch_size, width=2)


def representation(model, specs: np.ndarray, *, pooling: str = "cls", batch_size: int = 64) -> np.ndarray:
    """The encoder's last hidden state of each clip, as one vector.

    ``"cls"`` is exactly what the classification head reads (the CLS token
    after the final LayerNorm: ``model.classifier(representation(...))`` are
    the logits); ``"mean"`` averages the patch tokens instead, which the head
    never sees but which holds what the encoder kept about each moment.
    Chapter 2 probes both for the generator's cues.

    Parameters
    ----------
    model : transformers.ViTForImageClassification
    specs : np.ndarray, shape (n_clips, 1, n_mels, n_frames)
        As for :func:`predict_proba`.
    pooling : {"cls", "mean"}
    batch_size : int

    Returns
    -------
    np.ndarray, shape (n_clips, hidden_size), float32

    Notebook: notebooks/02_vit.ipynb
    """
    if pooling not in _POOLINGS:
        raise ParameterError(f"pooling must be one of {list(_POOLINGS)}, got {pooling!r}")
    return _encode(model, specs, _POOLINGS[pooling], batch_size=batch_size, width=model.config.hidden_size)


_POOLINGS = {"cls": lambda hidden: hidden[:, 0], "mean": lambda hidden: hidden[:, 1:].mean(1)}


def clip_representations(model, clips: pd.DataFrame, meta: dict[str, Any], *, progress: bool = True
                         ) -> dict[str, pd.DataFrame]:
    """Every :func:`representation` of ``clips``, from one pass of the encoder.

    Returns
    -------
    dict pooling -> pandas.DataFrame, shape (n_clips, hidden_size)
        ``"cls"`` and ``"mean"``, index ``clip_id``.

    Notebook: notebooks/02_vit.ipynb
    """
    import torch

    clips = clips.reset_index(drop=True)
    width = model.config.hidden_size
    both = _encode(model, model_input(clips, meta, progress=progress),
                   lambda hidden: torch.cat([read(hidden) for read in _POOLINGS.values()], dim=1),
                   batch_size=64, width=width * len(_POOLINGS))
    index = pd.Index(clips["clip_id"], name="clip_id")
    return {name: pd.DataFrame(both[:, k * width:(k + 1) * width], index=index) for k, name in enumerate(_POOLINGS)}


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : transformers.ViTForImageClassification
        The selected model (see :func:`train`), in eval mode.
    checkpoint : pathlib.Path
        Folder with ``model.safetensors``, ``config.json`` and ``meta.json``.
    meta : dict
        Everything in ``meta.json``: normalisation stats, label map, log-mel
        parameters, training parameters, history, selected epoch, timing.
    history : pandas.DataFrame
        One row per epoch: ``epoch, train_loss, train_acc, val_loss, val_acc,
        val_balanced_accuracy, lr, selected``.
    """

    model: Any
    checkpoint: Path
    meta: dict[str, Any]
    history: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def train_seconds(self) -> float:
        """Supervised epochs plus self-supervised pretraining, if any."""
        return float(self.meta.get("train_seconds", float("nan"))) + float(self.meta.get("pretrain_seconds", 0.0))

    @property
    def best_epoch(self) -> int:
        return int(self.meta.get("selected_epoch", -1))


def spec_augment(batch, *, generator, time_mask: int = 12, freq_mask: int = 16):
    """SpecAugment-style masking: one time stripe and one band stripe per clip set to 0.

    Parameters
    ----------
    batch : torch.Tensor, shape (batch, 1, n_mels, n_frames)
        Normalised spectrograms (0 is the training mean).
    generator : torch.Generator
        Source of the mask positions and widths (seeded by the caller).
    time_mask, freq_mask : int
        Maximum widths in frames and mel bands (each drawn uniformly from 0..max).

    Returns
    -------
    torch.Tensor, same shape (a masked copy).

    Notebook: notebooks/02_vit.ipynb
    """
    import torch

    n, _, n_mels, n_frames = batch.shape

    def stripes(length: int, widest: int):
        width = torch.randint(0, widest + 1, (n,), generator=generator)
        start = (torch.rand(n, generator=generator) * (length - width + 1)).long()
        axis = torch.arange(length)
        return (axis[None] >= start[:, None]) & (axis[None] < (start + width)[:, None])

    masked = torch.zeros_like(batch, dtype=torch.bool)
    if time_mask > 0:
        masked |= stripes(n_frames, min(time_mask, n_frames))[:, None, None, :]
    if freq_mask > 0:
        masked |= stripes(n_mels, min(freq_mask, n_mels))[:, None, :, None]
    return batch.masked_fill(masked, 0.0)


def roll_time(batch, *, generator, step: int = 1):
    """Roll each clip circularly in time by a random multiple of ``step`` frames.

    The synthetic pieces are loops of bars, so a rolled clip is still a
    plausible clip with the same label; the model cannot tie a cue to a position.

    Parameters
    ----------
    batch : torch.Tensor, shape (batch, 1, n_mels, n_frames)
    generator : torch.Generator
    step : int
        Shift granularity (the patch width, so tokens keep their content).

    Returns
    -------
    torch.Tensor, same shape.

    Notebook: notebooks/02_vit.ipynb
    """
    import torch

    n, n_frames = batch.shape[0], batch.shape[-1]
    shifts = torch.randint(0, max(1, n_frames // step), (n,), generator=generator) * step
    index = (torch.arange(n_frames)[None] - shifts[:, None]) % n_frames
    return torch.gather(batch, 3, index[:, None, None, :].expand_as(batch))


def mixup(batch, target, *, generator, alpha: float):
    """Mixup (Zhang et al. 2018): each batch blended with a shuffled copy of itself.

    Parameters
    ----------
    batch : torch.Tensor, shape (batch, 1, n_mels, n_frames)
    target : torch.Tensor, shape (batch,)
    generator : torch.Generator
        Draws the permutation and the seed of the mixing weight.
    alpha : float
        The mixing weight ``lam`` is drawn from Beta(alpha, alpha), one per batch.

    Returns
    -------
    mixed : torch.Tensor, same shape as ``batch``
        ``lam * batch + (1 - lam) * batch[perm]``.
    other : torch.Tensor, shape (batch,)
        ``target[perm]``; the loss is ``lam * loss(target) + (1 - lam) * loss(other)``.
    lam : float

    Notebook: notebooks/02_vit.ipynb
    """
    import torch

    perm = torch.randperm(batch.shape[0], generator=generator)
    # numpy draws the Beta variate (torch's Beta takes no generator), seeded from the torch stream.
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator))).beta(alpha, alpha))
    return lam * batch + (1.0 - lam) * batch[perm], target[perm], lam


def balanced_order(labels: np.ndarray, *, generator) -> "np.ndarray":
    """One epoch of class-balanced sample indices, every clip at least once.

    Each class contributes as many indices as the largest class has clips:
    all of its own clips once, and a smaller class tops up with a draw of its
    clips without replacement (repeated as often as needed). So both classes
    are seen equally often and, unlike sampling with replacement (where an
    epoch of ``n`` draws leaves about a third of the clips unseen), no clip is
    skipped. With balanced classes an epoch is a plain permutation.

    Parameters
    ----------
    labels : np.ndarray of int, shape (n_clips,)
    generator : torch.Generator

    Returns
    -------
    np.ndarray of int, shape (n_classes_present * largest_class_count,)

    Notebook: notebooks/02_vit.ipynb
    """
    import torch

    labels = np.asarray(labels)
    members = [np.flatnonzero(labels == value) for value in np.unique(labels)]
    largest = max(len(m) for m in members)
    picks = []
    for clips in members:
        rounds = -(-largest // len(clips))  # whole shuffled passes, cut to the largest class's count
        drawn = torch.cat([torch.randperm(len(clips), generator=generator) for _ in range(rounds)])[:largest]
        picks.append(clips[drawn.numpy()])
    order = np.concatenate(picks)
    return order[torch.randperm(len(order), generator=generator).numpy()]


def _epoch_generator(seed: int, epoch: int, stream: int):
    import torch

    # Every epoch and purpose gets its own seed, so a resumed run draws
    # exactly what an uninterrupted one would without saving RNG states.
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch * 7 + stream)


def _dataset_fingerprint(clips: pd.DataFrame) -> str:
    return store.hash_params(clips[["clip_id", "label", "split"]].astype(str).values.tolist())


def shift_set(transpose_augment) -> tuple[int, ...]:
    """The semitone shifts :func:`train`'s ``transpose_augment`` draws from (uniformly).

    An int ``K`` means ``-K .. +K``; a sequence of ints is taken as given
    (e.g. ``(-7, -5, 0, 5, 7)``: the fifth and fourth a tonic estimate confuses).
    0 or an empty sequence: none.
    """
    if isinstance(transpose_augment, (int, np.integer)) and not isinstance(transpose_augment, bool):
        if not 0 <= transpose_augment <= 12:
            raise ParameterError(f"transpose_augment must be 0..12 semitones, got {transpose_augment!r}")
        return tuple(range(-int(transpose_augment), int(transpose_augment) + 1)) if transpose_augment else ()
    try:
        shifts = tuple(sorted({int(k) for k in transpose_augment}))
    except (TypeError, ValueError):
        raise ParameterError(f"transpose_augment must be an int or a sequence of ints, got {transpose_augment!r}") \
            from None
    if any(abs(k) > 12 for k in shifts):
        raise ParameterError(f"transpose_augment shifts must be within -12..12 semitones, got {shifts}")
    return shifts


def _augment_hyper(transpose_augment):
    """``transpose_augment`` as recorded (an int stays an int, so its checkpoint names do not move)."""
    if isinstance(transpose_augment, (int, np.integer)):
        return int(transpose_augment)
    return list(shift_set(transpose_augment))


#: Canonicalisation rules (:func:`train`'s ``canonicalise``).
CANONICALISE = ("tonic",)


def tall_logmel_params(params: "spectrogram.LogMelParams", semitones: int) -> "spectrogram.LogMelParams":
    """The log-frequency front end with room for ``semitones`` either way, un-floored (top_db None)."""
    from dataclasses import replace

    return replace(params, margin=int(math.ceil(semitones * params.bins_per_semitone)), top_db=None)


def canonical_semitones(clips: pd.DataFrame, meta_or_logmel: dict[str, Any], *, n_jobs: int = 2,
                        progress: bool = True) -> np.ndarray:
    """The transposition that brings each clip of a dataset table to the canonical key.

    :func:`mer.tonality.canonical_semitones` of the clips' CQT chroma
    (:func:`mer.tonality.chromas`, cached): the mode-free tonic estimate,
    wrapped into -5..6, and the clip moved by ``-tonic``. A clip transposed by
    ``k`` gets ``tonic + k``, so the twelve transpositions of a score reach
    the model as one input wherever the estimate follows them (98 % of pairs
    on the tonal writing). Errors (a tonic estimated on the dominant, mostly)
    become shifted inputs, not wrong labels.

    Parameters
    ----------
    clips : pandas.DataFrame
        Columns ``clip_id`` and ``path``.
    meta_or_logmel : dict
        A checkpoint's ``meta`` (its recorded profile is used) or the
        front end's parameters (the default profile).

    Returns
    -------
    np.ndarray of int, shape (n_clips,)
        Semitones to move each clip by (:func:`mer.spectrogram.crop`), in -6..5.

    Notebook: notebooks/02_vit.ipynb
    """
    logmel = meta_or_logmel.get("logmel", meta_or_logmel)
    chroma = tonality.chromas(clips, duration=spectrogram.LogMelParams(**logmel).duration, n_jobs=n_jobs,
                              progress=progress)
    return tonality.canonical_semitones(chroma, profile=_tonic_profile(meta_or_logmel))


def _tonic_profile(meta: dict[str, Any]) -> str:
    """The key profile a checkpoint canonicalises with (recorded in its meta; the default before it was)."""
    return (meta.get("key_invariance") or {}).get("tonic_profile") or tonality.DEFAULT_PROFILE


def audio_canonical_semitones(clips: np.ndarray, meta: dict[str, Any]) -> np.ndarray | None:
    """:func:`canonical_semitones` of audio clips for a canonicalising checkpoint; ``None`` otherwise.

    Parameters
    ----------
    clips : np.ndarray, shape (n_clips, n_samples)
        At the front end's sampling rate.
    """
    if not (meta.get("key_invariance") or {}).get("canonicalise"):
        return None
    chroma = np.stack([tonality.tonic_chroma(y, sr=int(meta["logmel"].get("sr", tonality.SR)))
                       for y in np.atleast_2d(clips)])
    return tonality.canonical_semitones(chroma, profile=_tonic_profile(meta))


def input_filterbank(meta: dict[str, Any], semitones: int = 0) -> np.ndarray:
    """The linear map from a clip's STFT power to the rows the model saw, for a clip moved by ``semitones``.

    The front end's filterbank (:func:`mer.spectrogram.filterbank`); when a
    canonicalising checkpoint moved the clip, the rows of the taller
    log-frequency filterbank that the crop kept (:func:`mer.spectrogram.crop`
    applied to the filterbank itself). Relevance per input row maps back to
    STFT bins through this matrix.

    Returns
    -------
    np.ndarray, shape (n_rows, 1 + n_fft // 2), float32

    Notebook: notebooks/04_sonification.ipynb
    """
    params = spectrogram.LogMelParams(**meta["logmel"])
    if not semitones:
        return spectrogram.filterbank(params)
    if params.front_end != "logfreq":
        raise ParameterError("only the logfreq front end moves a clip by whole semitones")
    tall_params = tall_logmel_params(params, abs(int(semitones)))
    return spectrogram.crop(spectrogram.filterbank(tall_params), tall_params, int(semitones)).copy()


def crop_each(tall: np.ndarray, tall_params, semitones: np.ndarray, top_db: float | None) -> np.ndarray:
    rows = [spectrogram.crop(tall[i], tall_params, int(k)) for i, k in enumerate(semitones)]
    out = np.stack(rows) if rows else tall[:, :, :0]
    return spectrogram.floor_db(out, top_db)


def prepare(dataset, *, logmel: dict | None = None, n_jobs: int = 2, progress: bool = True,
            patch_frames: int = 2, transpose_augment=0, canonicalise: str | None = None) -> dict[str, Any]:
    """Spectrograms of a dataset, normalised with training-split statistics.

    With ``transpose_augment`` (see :func:`train`) it also keeps what the
    augmentation needs: for the mel front end the training clips' linear STFT
    power pooled in time (``stft_train``, shape (n_train, 1, 1 + n_fft // 2,
    n_frames)); for the log-frequency front end every clip's spectrogram
    computed with margins and no dB floor (``tall``, with ``tall_logmel``).
    With ``canonicalise`` the log-frequency spectrograms are first moved to
    the canonical key (:func:`canonical_semitones`, ``canonical_semitones``).

    Returns
    -------
    dict
        ``specs`` (n_clips, 1, n_mels, n_frames) normalised float32, ``labels``
        (n_clips,) int, ``split`` (n_clips,) str, ``clip_ids``, ``stats``
        (from the training split only), ``logmel`` (parameters as dict).

    Notebook: notebooks/02_vit.ipynb
    """
    params = spectrogram.LogMelParams(**(logmel or {}))
    if params.margin:
        raise ParameterError("logmel's margin is set by train (transpose_augment, canonicalise), not by hand")
    if canonicalise is not None and (canonicalise not in CANONICALISE or params.front_end != "logfreq"):
        raise ParameterError(f"canonicalise must be one of {CANONICALISE} with front_end='logfreq', "
                             f"got {canonicalise!r} with {params.front_end!r}")
    shifts_drawn = shift_set(transpose_augment)
    reach = max((abs(k) for k in shifts_drawn), default=0)
    clips = dataset.clips.reset_index(drop=True)
    extra: dict[str, Any] = {}
    room = max(reach, 6 if canonicalise else 0) + (reach if canonicalise else 0)
    if params.front_end == "logfreq" and room:
        tall_params = tall_logmel_params(params, room)
        tall, ids = spectrogram.compute(clips, params=tall_params, n_jobs=n_jobs, progress=progress)
        shifts = (canonical_semitones(clips, params.to_dict(), n_jobs=n_jobs, progress=progress) if canonicalise
                  else np.zeros(len(clips), dtype=int))
        specs = crop_each(tall, tall_params, shifts, params.top_db)
        extra.update(tall=tall, tall_logmel=tall_params, canonical_semitones=shifts)
    else:
        specs, ids = spectrogram.compute(clips, params=params, n_jobs=n_jobs, progress=progress)
    split = clips["split"].astype(str).to_numpy()
    if not (split == "train").any():
        raise ParameterError(f"dataset {dataset.name!r} has no clip in split 'train'")
    if shifts_drawn and params.front_end == "mel":
        extra["stft_train"], _ = spectrogram.compute(clips[split == "train"], params=params, n_jobs=n_jobs,
                                                     progress=progress, stft=True)
    if shifts_drawn:
        stats = _transposed_stats(specs[split == "train"], params, shifts_drawn, extra,
                                  split == "train")
    else:
        stats = spectrogram.fit_normalizer(specs[split == "train"])
    specs = spectrogram.normalize(specs, stats)
    remainder = specs.shape[-1] % patch_frames
    if remainder:  # pad with the training mean (0 after normalising) to whole patches
        specs = np.pad(specs, [(0, 0)] * 3 + [(0, patch_frames - remainder)])
    return {"specs": specs, "labels": label_codes(clips["label"]).to_numpy(), "split": split,
            "clip_ids": ids, "stats": stats, "logmel": params.to_dict(), "clips": clips, **extra}


#: At most this many training clips (every n-th) estimate the band statistics of the transposed inputs.
STATS_CLIPS = 240


def _transposed_stats(train_specs: np.ndarray, params, shifts: tuple[int, ...], extra: dict, train_rows: np.ndarray
                      ) -> dict[str, Any]:
    """Per-band mean and spread of the training inputs over every transposition the augmentation draws.

    Statistics of the untransposed clips alone would normalise a band that
    the training keys leave nearly empty by a spread of a decibel or so, and a
    transposition that fills it would then reach tens of units. Fitted over
    the drawn ``shifts`` (each equally weighted, every n-th
    training clip up to :data:`STATS_CLIPS`), the statistics describe what the
    model is trained on; validation and test inputs use them unchanged.
    """
    import torch

    n_train = len(train_specs)
    pick = np.arange(0, n_train, max(1, -(-n_train // STATS_CLIPS)))
    total = total_sq = 0.0
    count = 0
    for k in shifts:
        if params.front_end == "mel":
            bank = torch.as_tensor(spectrogram.transposed_filterbank(params, k))
            power = torch.einsum("mf,bft->bmt", bank, torch.as_tensor(extra["stft_train"][pick, 0])).numpy()
            db = spectrogram.floor_db(10.0 * np.log10(np.maximum(power, spectrogram.AMIN)), params.top_db)
        else:
            tall = extra["tall"][train_rows][pick]
            db = crop_each(tall, extra["tall_logmel"], extra["canonical_semitones"][train_rows][pick] + k,
                            params.top_db)[:, 0]
        db = db.astype(np.float64)
        total = total + db.sum(axis=(0, 2))
        total_sq = total_sq + (db ** 2).sum(axis=(0, 2))
        count += db.shape[0] * db.shape[2]
    mean = total / count
    std = np.maximum(np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0)), spectrogram.MIN_BAND_STD_DB)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "n_clips": int(len(pick)),
            "transpositions": [int(k) for k in shifts]}


class _Transposer:
    """Training batches transposed by a random number of semitones per example.

    Mel front end: the stored linear STFT power times
    :func:`mer.spectrogram.transposed_filterbank` of the drawn shift (one
    precomputed matrix per shift), then dB, the floor and the normalisation of
    the model's input. Log-frequency front end: a crop of the spectrogram
    computed with margins (:func:`mer.spectrogram.crop`), then the floor and
    the normalisation. Shift 0 reproduces the un-augmented input.
    """

    def __init__(self, data: dict, shifts: tuple[int, ...], train_rows: np.ndarray, patch_frames: int):
        import torch

        params = spectrogram.LogMelParams(**data["logmel"])
        self.params, self.patch_frames = params, patch_frames
        self.choices = torch.as_tensor(list(shifts), dtype=torch.long)
        self.mean = torch.as_tensor(np.asarray(data["stats"]["mean"], np.float32))[:, None]
        self.std = torch.as_tensor(np.asarray(data["stats"]["std"], np.float32))[:, None]
        if params.front_end == "mel":
            self.source = torch.as_tensor(data["stft_train"][:, 0])  # (n_train, n_bins, n_frames)
            self.banks = torch.as_tensor(np.stack([spectrogram.transposed_filterbank(params, int(k))
                                                   for k in shifts]))
        else:
            self.source = torch.as_tensor(data["tall"][train_rows][:, 0])  # (n_train, n_rows, n_frames)
            self.tall = spectrogram.LogMelParams(**data["tall_logmel"]) if isinstance(data["tall_logmel"], dict) \
                else data["tall_logmel"]
            self.base = torch.as_tensor(np.asarray(data["canonical_semitones"])[train_rows])

    def batch(self, index: np.ndarray, *, generator):
        import torch

        drawn = torch.randint(0, len(self.choices), (len(index),), generator=generator)
        shifts = self.choices[drawn]
        source = self.source[torch.as_tensor(index)]
        if self.params.front_end == "mel":
            power = torch.einsum("bmf,bft->bmt", self.banks[drawn], source)
            db = 10.0 * torch.log10(power.clamp_min(spectrogram.AMIN))
        else:
            moved = self.base[torch.as_tensor(index)] + shifts
            offset = self.tall.margin - torch.round(moved * self.params.bins_per_semitone).long()
            rows = offset[:, None] + torch.arange(self.params.n_mels)[None]
            db = torch.gather(source, 1, rows[:, :, None].expand(-1, -1, source.shape[-1]))
        if self.params.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - float(self.params.top_db))
        x = ((db - self.mean) / self.std)[:, None]
        remainder = x.shape[-1] % self.patch_frames
        if remainder:
            x = torch.nn.functional.pad(x, (0, self.patch_frames - remainder))
        return x.float()


def _evaluate_split(model, specs, labels, *, batch_size: int, label_smoothing: float) -> dict[str, float]:
    import torch
    from sklearn.metrics import balanced_accuracy_score

    proba = predict_proba(model, specs, batch_size=batch_size)
    target = torch.as_tensor(labels)
    loss = torch.nn.functional.cross_entropy(torch.log(torch.as_tensor(proba).clamp_min(1e-12)), target)
    predicted = proba.argmax(1)
    return {"loss": float(loss), "acc": float((predicted == labels).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(labels, predicted))}


def _save_tensors(path: Path, tensors: dict, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with store.atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def _optimizer_tensors(optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            tensors[f"optimizer.{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"]}


def _restore_optimizer(optimizer, tensors: dict, groups: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


def valence_head(config, *, seed: int = 0):
    """The linear valence head of :func:`train`'s ``valence_weight`` (CLS token -> one number).

    Its own seed stream (``seed`` + 7919), so switching it on does not move
    the classifier's initial weights.

    Returns
    -------
    torch.nn.Linear
        ``hidden_size -> 1``.

    Notebook: notebooks/02_vit.ipynb
    """
    import torch

    generator = torch.Generator().manual_seed(int(seed) + 7919)
    head = torch.nn.Linear(config.hidden_size, 1)
    with torch.no_grad():  # the default initialisation of nn.Linear, drawn from this stream
        bound = 1.0 / math.sqrt(config.hidden_size)
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    return head


def valence_weight_for(dataset, weight: float) -> float:
    """``weight``, or 0 (with a logged warning) when ``dataset`` has no valences to regress.

    The chapters ask for the valence loss of :func:`train` by default; a
    dataset that carries only labels (a manifest of ``path,label``) is
    trained on its labels instead of failing.

    Notebook: notebooks/02_vit.ipynb, notebooks/03_lrp.ipynb, notebooks/04_sonification.ipynb
    """
    if not weight:
        return 0.0
    try:  # the same test train() makes
        _valence_targets(dataset.clips, dataset.clips["split"].astype(str).to_numpy())
    except ParameterError as error:
        log.warning("dataset %r: %s; valence_weight %g -> 0 (labels only)", dataset.name, error, weight)
        return 0.0
    return float(weight)


def _valence_targets(clips: pd.DataFrame, split: np.ndarray):
    """The training clips' valences standardised on the training split (NaN where unknown), and the
    centre and spread used (synthetic valences are centred on neutral already; rated corpora on their scale)."""
    import torch

    if "valence" not in clips.columns:
        raise ParameterError("valence_weight needs a 'valence' column in the dataset's clips")
    valence = pd.to_numeric(clips["valence"], errors="coerce").to_numpy(dtype=np.float64)[split == "train"]
    known = valence[~np.isnan(valence)]
    if len(known) < 2 or not known.std() > 0:
        raise ParameterError(f"valence_weight needs varying valences on the training clips; "
                             f"{len(known)} of {len(valence)} have one")
    if len(known) < len(valence):
        log.warning("valence_weight: %d of %d training clips have no valence and are left out of that loss",
                    len(valence) - len(known), len(valence))
    centre, scale = float(known.mean()), float(known.std())
    return torch.as_tensor((valence - centre) / scale, dtype=torch.float32), {"centre": centre, "scale": scale}


# ---------------------------------------------------------------------------
# Self-supervised pretraining: masked spectrogram modelling
# ---------------------------------------------------------------------------

PRETRAIN_DIR = "pretrain"


def span_mask(n_clips: int, n_tokens: int, *, ratio: float, span: int, generator):
    """Random spans of tokens to hide, about ``ratio`` of each clip's tokens.

    Parameters
    ----------
    n_clips, n_tokens : int
    ratio : float
        Share of tokens hidden, in (0, 1). Spans start at ``ratio * n_tokens /
        span`` distinct random tokens; where spans overlap or meet the end,
        fewer are hidden (measured: about 0.4 for ratio 0.5, span 3, 54 tokens).
    span : int
        Tokens per span (3 stripes of 186 ms = 0.56 s): a single hidden stripe
        could be copied from its neighbours, a span must be inferred from the
        music around it (the chord, the beat).
    generator : torch.Generator

    Returns
    -------
    torch.Tensor, shape (n_clips, n_tokens), bool (True = hidden).

    Notebook: notebooks/02_vit.ipynb
    """
    import torch

    if not 0 < ratio < 1 or span < 1:
        raise ParameterError(f"need 0 < ratio < 1 and span >= 1, got {ratio!r}, {span!r}")
    n_starts = min(n_tokens, max(1, round(ratio * n_tokens / span)))
    starts = torch.rand(n_clips, n_tokens, generator=generator).argsort(dim=1)[:, :n_starts]
    mask = torch.zeros(n_clips, n_tokens, dtype=torch.bool)
    for offset in range(span):
        mask.scatter_(1, (starts + offset).clamp(max=n_tokens - 1), True)
    return mask


def _patch_rows(specs, patch: tuple[int, int]):
    """(batch, 1, n_mels, n_frames) -> (batch, n_patches, ph * pw) in the order of the
    patch embedding's tokens (row-major over the mel x time patch grid)."""
    n, _, h, w = specs.shape
    ph, pw = patch
    grid = specs.reshape(n, h // ph, ph, w // pw, pw).permute(0, 1, 3, 2, 4)
    return grid.reshape(n, (h // ph) * (w // pw), ph * pw)


def masked_pretrain(specs: np.ndarray, config, *, out_dir: str | Path, epochs: int = 40, batch_size: int = 32,
                    lr: float = 1e-3, weight_decay: float = 0.05, mask_ratio: float = 0.5, span: int = 3,
                    seed: int = 0, init: dict | None = None, progress: bool = True) -> dict:
    """Pretrain the ViT encoder by filling in hidden spans of unlabelled spectrograms.

    Masked spectrogram modelling in the manner of SimMIM (Xie et al. 2022) and
    SSAST (Gong et al. 2022): hidden tokens are replaced by transformers' own
    learned mask token (``ViTModel(use_mask_token=True)``), the encoder runs on
    the whole sequence, and a linear head predicts every hidden patch's
    normalised log-mel values; the loss is their mean squared error. No label
    is read. transformers' ``ViTForMaskedImageModeling`` is not used because its
    decoder assumes a square patch grid; the stripes form a 1 x 54 grid.

    Parameters
    ----------
    specs : np.ndarray, shape (n_clips, 1, n_mels, n_frames)
        Normalised spectrograms (chapter 2: the training split's).
    config : transformers.ViTConfig
        The classifier's configuration (same encoder).
    out_dir : path
        Where the stage checkpoints itself after every epoch (weights, AdamW
        moments, scheduler: safetensors and JSON) and resumes from, like
        :func:`train`; ``encoder.safetensors`` once done.
    epochs, batch_size, lr, weight_decay : schedule (AdamW, 5 % warm-up, cosine)
    mask_ratio, span : see :func:`span_mask`
    seed : int
        Seeds the clip order and the masks of every epoch.
    init : dict, optional
        Initial encoder weights (the classifier's ``vit`` state); default: drawn.
    progress : bool

    Returns
    -------
    dict
        ``state`` (encoder weights for ``model.vit.load_state_dict``, the mask
        token left out), ``history`` (reconstruction loss per epoch), ``seconds``.

    Notebook: notebooks/02_vit.ipynb
    """
    import torch
    from safetensors.torch import load_file
    from tqdm.auto import tqdm
    from transformers import ViTModel, get_cosine_schedule_with_warmup

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if meta and meta.get("status") == "done":
        return {"state": load_file(str(out / "encoder.safetensors")), "history": meta["history"],
                "seconds": meta["seconds"]}
    torch.manual_seed(seed)
    encoder = ViTModel(config, add_pooling_layer=False, use_mask_token=True)
    if init is not None:
        encoder.load_state_dict(init, strict=False)  # all but the mask token
    patch = tuple(config.patch_size) if isinstance(config.patch_size, (list, tuple)) else (config.patch_size,) * 2
    head = torch.nn.Linear(config.hidden_size, patch[0] * patch[1])
    parameters = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(specs) / batch_size)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(round(0.05 * steps_per_epoch * epochs)),
                                                steps_per_epoch * epochs)
    hyper = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
             "mask_ratio": mask_ratio, "span": span, "seed": seed, "n_clips": int(len(specs))}
    history: list[dict] = []
    seconds, first = 0.0, 0
    if meta and meta.get("status") == "training":
        if meta["hyper"] != hyper:
            raise CheckpointError(f"{out} holds a pretraining run with other settings: {meta['hyper']}")
        tensors = load_file(str(out / meta["resume_file"]))
        encoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")})
        head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        _restore_optimizer(optimizer, tensors, meta["optimizer"])
        scheduler.load_state_dict(meta["scheduler"])
        history, seconds, first = meta["history"], meta["seconds"], meta["epoch"]
    x_all = torch.as_tensor(specs)
    n_tokens = encoder.embeddings.patch_embeddings.num_patches
    for epoch in range(first, epochs):
        started = time.perf_counter()
        torch.manual_seed(int(seed) * 1_000_003 + epoch + 500_000)  # dropout, if any
        generator = _epoch_generator(seed, epoch, 3)
        order = torch.randperm(len(x_all), generator=generator)
        encoder.train()
        total = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"pretrain {epoch + 1}/{epochs}", leave=False, disable=not progress)
        for step in bar:
            x = x_all[order[step * batch_size:(step + 1) * batch_size]]
            hidden = span_mask(len(x), n_tokens, ratio=mask_ratio, span=span, generator=generator)
            tokens = encoder(pixel_values=x, bool_masked_pos=hidden).last_hidden_state[:, 1:]
            error = ((head(tokens) - _patch_rows(x, patch)) ** 2).mean(-1)
            loss = error[hidden].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(x)
            bar.set_postfix(loss=f"{total / min(len(x_all), (step + 1) * batch_size):.3f}")
        seconds += time.perf_counter() - started
        history.append({"epoch": epoch + 1, "reconstruction_loss": total / len(x_all)})
        log.info("pretrain epoch %d: loss %.4f", epoch + 1, history[-1]["reconstruction_loss"])
        tensors = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
        tensors.update({f"head.{k}": v for k, v in head.state_dict().items()})
        _commit_epoch(out, epoch + 1, tensors, optimizer,
                      {"status": "training", "hyper": hyper, "scheduler": scheduler.state_dict(),
                       "history": history, "seconds": seconds})
    state = {k: v.detach().clone() for k, v in encoder.state_dict().items() if not k.startswith("embeddings.mask_token")}
    _save_tensors(out / "encoder.safetensors", state, {"format": "pt"})
    store.write_json(meta_path, {"status": "done", "hyper": hyper, "epoch": epochs, "history": history,
                                 "seconds": seconds})
    _drop_resume_files(out)
    return {"state": state, "history": history, "seconds": seconds}


def key_invariance_record(logmel: dict, transpose_augment, canonicalise: str | None) -> dict[str, Any]:
    """The design that makes a checkpoint (in)sensitive to the key, as stored in ``meta["key_invariance"]``."""
    params = spectrogram.LogMelParams(**logmel)
    method = None
    if transpose_augment:
        method = "stft-rescale before the mel filterbank" if params.front_end == "mel" else "log-frequency crop offset"
    return {"front_end": params.front_end,
            "bins_per_semitone": params.bins_per_semitone if params.front_end == "logfreq" else None,
            "transpose_augment_semitones": _augment_hyper(transpose_augment),
            "augment_shifts": list(shift_set(transpose_augment)), "augment_method": method,
            "canonicalise": canonicalise,
            "tonic_profile": tonality.DEFAULT_PROFILE if canonicalise else None,
            "canonical_rule": (f"tonic of the best-correlating mode-free {tonality.DEFAULT_PROFILE} profile on "
                               "librosa's chroma_cqt of the clip; clip moved by -tonic (-6..+5)")
            if canonicalise else None}


def checkpoint_dir(dataset, **params: Any) -> Path:
    """Default checkpoint folder: ``data/derived/vit/vit-<hash>`` of the dataset and parameters."""
    return store.artefact_path("vit", {"dataset": dataset.name, "clips": _dataset_fingerprint(dataset.clips),
                                       **params}, code=__name__)


def train(dataset, *, size: str = "default", epochs: int = 20, batch_size: int = 32, lr: float = 3e-4,
          seed: int = 0, time_budget_s: float | None = None, out_dir: str | Path | None = None,
          resume: bool = True, weight_decay: float = 0.05, warmup_fraction: float = 0.1,
          label_smoothing: float = 0.1, time_mask: int = 12, freq_mask: int = 16,
          patience: int = 12, min_delta: float = 0.01, pretrained: str | None = None, time_shift: bool = False,
          logmel: dict | None = None, patch_size: tuple[int | None, int] | None = None,
          num_threads: int | None = None, n_jobs: int = 2, progress: bool = True,
          dropout: float = 0.0, mixup_alpha: float = 0.0, pretrain_epochs: int = 0,
          pretrain_mask_ratio: float = 0.5, pretrain_span: int = 3, pretrain_lr: float = 1e-3,
          valence_weight: float = 0.0, transpose_augment=0, canonicalise: str | None = None) -> TrainResult:
    """Train the ViT on a dataset's ``train`` split, selecting on ``val``.

    Parameters
    ----------
    dataset : mer.data.Dataset
        Clips with ``split`` in train/val/test (test is never read here).
    size : {"quick", "default", "thesis"}
        See :func:`build_model`.
    epochs : int
        Length of the warm-up + cosine schedule (``warmup_fraction`` of the
        steps warm up linearly, the rest decay to 0).
    batch_size : int
    lr : float
        AdamW peak learning rate (``weight_decay`` decoupled).
    seed : int
        Seeds the weights and, per epoch, the balanced sampler and the masks.
    time_budget_s : float, optional
        Stop after the epoch that would otherwise overrun this many seconds of
        training (summed over resumed runs). The schedule is not stretched to
        it, so a run that fits its budget is reproducible; one that hits it is
        reported in ``meta["stopped"]``.
    out_dir : path, optional
        Checkpoint folder; default :func:`checkpoint_dir` of the dataset and
        every parameter here.
    resume : bool
        Continue from the folder's last finished epoch (or return the finished
        model) instead of starting over.
    label_smoothing : float
        Cross-entropy label smoothing.
    time_mask, freq_mask : int
        Widest SpecAugment stripe in frames / mel bands (0 = off).
    patience, min_delta : int, float
        Model selection and early stopping on the validation split. An epoch
        becomes the selected model when its validation balanced accuracy is at
        least the best so far minus ``min_delta``: near-ties go to the later,
        longer-trained model, so a small validation split that an early
        shortcut model (e.g. a pure mode detector) happens to fit perfectly
        does not freeze the selection. Training stops early when neither the
        selection nor the validation loss has improved for ``patience`` epochs.
    pretrained : str, optional
        Local ImageNet ViT weights (see :func:`build_model`).
    logmel : dict, optional
        :class:`mer.spectrogram.LogMelParams` overrides (``pool``, ``n_mels``...).
    num_threads : int, optional
        ``torch.set_num_threads`` for the run.
    dropout : float
        Dropout on the hidden states and attention probabilities during
        training (off in evaluation and in every explanation).
    mixup_alpha : float
        Mixup's Beta(alpha, alpha) parameter (0 = off; see :func:`mixup`).
    pretrain_epochs : int
        Before the supervised epochs, this many epochs of self-supervised
        masked spectrogram modelling on the training split's spectrograms
        (labels unread; :func:`masked_pretrain`), whose encoder then
        initialises the classifier. 0 = off. Checkpointed in the run's
        ``pretrain/`` folder and resumed like the rest.
    pretrain_mask_ratio, pretrain_span, pretrain_lr : float, int, float
        See :func:`masked_pretrain`.
    valence_weight : float
        Weight of a second loss (0 = off): a linear head on the same CLS
        token the classifier reads regresses each training clip's valence
        (the dataset's ``valence`` column, standardised on the training
        split), by mean squared error, beside the cross-entropy.
        The label says only which side of neutral a clip lies on; the
        valence also says how far, so a clip whose mode and tempo pull in
        opposite directions still teaches the encoder to weigh both. Clips
        without a valence are left out of that loss. The head is part of
        training only: the checkpoint's model stays a plain two-logit
        classifier, and the head is saved beside it (``valence_head.safetensors``).
    transpose_augment : int or sequence of int
        Key augmentation (0 = off): every training example of every epoch is
        transposed by a random whole number of semitones in
        ``-transpose_augment .. +transpose_augment`` (or drawn from the given
        shifts, :func:`shift_set`), from its own seeded stream. On the mel front end the linear STFT power is rescaled in
        frequency before the mel filterbank (Schlueter and Grill 2015; one
        precomputed matrix per shift, :func:`mer.spectrogram.transposed_filterbank`);
        on the log-frequency front end (``logmel={"front_end": "logfreq"}``) a
        crop window moves over a taller spectrogram (Schreiber and Mueller
        2019; :func:`mer.spectrogram.crop`). Validation and test clips are not
        transposed. The model, its input and the map back to STFT bins stay
        those of the front end.
    canonicalise : {"tonic"}, optional
        Log-frequency front end only: move every clip (training, validation,
        test, and :func:`model_input`) to a canonical key estimated from the
        clip itself (:func:`canonical_semitones`) before the model.

    Returns
    -------
    TrainResult

    Notebook: notebooks/02_vit.ipynb
    """
    import torch
    from safetensors.torch import load_file
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ParameterError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    if valence_weight < 0:
        raise ParameterError(f"valence_weight must be >= 0, got {valence_weight}")
    if valence_weight > 0 and mixup_alpha > 0:
        raise ParameterError("valence_weight and mixup_alpha cannot be combined (mixup blends labels, not valences)")
    if num_threads:
        torch.set_num_threads(int(num_threads))
    hyper = {"size": size, "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
             "seed": int(seed), "time_budget_s": time_budget_s, "weight_decay": weight_decay,
             "warmup_fraction": warmup_fraction, "label_smoothing": label_smoothing,
             "time_mask": time_mask, "freq_mask": freq_mask, "patience": patience, "min_delta": min_delta,
             "time_shift": bool(time_shift), "dropout": float(dropout), "mixup_alpha": float(mixup_alpha),
             "pretrain_epochs": int(pretrain_epochs), "pretrain_mask_ratio": float(pretrain_mask_ratio),
             "pretrain_span": int(pretrain_span), "pretrain_lr": float(pretrain_lr),
             "pretrained": pretrained or None, "patch_size": list(patch_size) if patch_size else None}
    if valence_weight:  # only when on, so the checkpoints of label-only runs keep their folders
        hyper["valence_weight"] = float(valence_weight)
    if shift_set(transpose_augment):  # likewise
        hyper["transpose_augment"] = _augment_hyper(transpose_augment)
    if canonicalise:
        hyper["canonicalise"] = str(canonicalise)
    patch_frames = (patch_size or SIZES.get(size, SIZES["default"])["patch"])[1]
    accelerator = _accelerator()
    progress = progress and accelerator.is_main_process  # one process draws the bars
    with accelerator.main_process_first():  # the log-mels are computed and cached once
        data = prepare(dataset, logmel=logmel, n_jobs=n_jobs, progress=progress,
                       patch_frames=16 if pretrained else patch_frames, transpose_augment=transpose_augment,
                       canonicalise=canonicalise)
    out = Path(out_dir) if out_dir else checkpoint_dir(dataset, logmel=data["logmel"], **hyper)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / META_FILE

    if resume and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("status") == "done":
            model, meta = load_checkpoint(out)
            return TrainResult(model, out, meta, pd.DataFrame(meta["history"]))
    else:
        meta = None

    split, labels, specs = data["split"], data["labels"], data["specs"]
    x_train, y_train = torch.as_tensor(specs[split == "train"]), labels[split == "train"]
    has_val = (split == "val").any()
    x_val, y_val = specs[split == "val"], labels[split == "val"]
    n_mels, n_frames = specs.shape[2], specs.shape[3]
    transposer = _Transposer(data, shift_set(transpose_augment), split == "train",
                             16 if pretrained else patch_frames) if shift_set(transpose_augment) else None
    valence_train, valence_standard = None, None
    if valence_weight:
        valence_train, valence_standard = _valence_targets(data["clips"], split)

    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    model = build_model(size, n_mels=n_mels, n_frames=n_frames, patch_size=patch_size,
                        pretrained=pretrained, seed=seed, dropout=dropout)
    pretrain_seconds, pretrain_history = 0.0, []
    if pretrain_epochs:
        if not resume:
            shutil.rmtree(out / PRETRAIN_DIR, ignore_errors=True)
        # The main process pretrains and writes; the others then read its result.
        with accelerator.main_process_first():
            pretrained_encoder = masked_pretrain(
                specs[split == "train"], model.config, out_dir=out / PRETRAIN_DIR, epochs=int(pretrain_epochs),
                batch_size=batch_size, lr=pretrain_lr, weight_decay=weight_decay, mask_ratio=pretrain_mask_ratio,
                span=pretrain_span, seed=seed, init=model.vit.state_dict(), progress=progress)
        model.vit.load_state_dict(pretrained_encoder["state"])
        pretrain_seconds, pretrain_history = pretrained_encoder["seconds"], pretrained_encoder["history"]
    device = accelerator.device
    model.to(device)
    # Under ``accelerate launch`` (several processes) the model is wrapped for
    # data-parallel training: each process runs its share of every batch and
    # the gradients are averaged, so each process's own AdamW and scheduler
    # take the same step. One process (tests, CPU, one GPU): ``net is model``.
    net = accelerator.prepare_model(model) if accelerator.num_processes > 1 else model
    trained = list(model.parameters())
    head, cls_tokens = None, []
    if valence_weight:
        head = valence_head(model.config, seed=seed).to(device)
        trained += list(head.parameters())
        # The classifier's input is the CLS token; the hook hands it to the valence head
        # without a second forward pass (and through the data-parallel wrapper, if any).
        hook = model.classifier.register_forward_hook(lambda module, args, output: cls_tokens.append(args[0]))
    optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=weight_decay)
    # An epoch is one balanced_order (its length does not depend on the draw).
    steps_per_epoch = math.ceil(len(balanced_order(y_train, generator=torch.Generator())) / batch_size)
    total_steps = steps_per_epoch * epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(round(warmup_fraction * total_steps)), total_steps)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_head = {k: v.detach().clone() for k, v in head.state_dict().items()} if head is not None else {}
    progress_state = {"history": [], "selected_epoch": -1, "best_bacc": -1.0, "best_loss": float("inf"),
                      "since_selected": 0, "since_loss": 0, "train_seconds": 0.0, "stopped": "epochs",
                      "next_epoch": 0}

    if meta is not None and meta.get("status") == "training":
        tensors = load_file(str(out / meta["resume_file"]), device=str(device))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        if head is not None:
            head.load_state_dict({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")})
            best_head = {k[len("best_head."):]: v for k, v in tensors.items() if k.startswith("best_head.")}
        _restore_optimizer(optimizer, tensors, meta["optimizer"])
        scheduler_state = dict(meta["scheduler"])
        scheduler.load_state_dict(scheduler_state)
        progress_state.update(meta["progress"])
        log.info("resuming %s after epoch %d", out, progress_state["next_epoch"] - 1)

    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    base = {"status": "training", "train": hyper, "logmel": data["logmel"], "stats": data["stats"],
            "label2id": LABEL2ID, "id2label": {str(k): v for k, v in ID2LABEL.items()},
            "model_config": model.config.to_dict(), "dataset": {"name": dataset.name,
            "fingerprint": _dataset_fingerprint(dataset.clips),
            "n_train": int(len(y_train)), "n_val": int(len(y_val))}, "input_shape": [1, n_mels, n_frames],
            "pretrain_seconds": pretrain_seconds, "pretrain_history": pretrain_history,
            "key_invariance": key_invariance_record(data["logmel"], transpose_augment, canonicalise)}
    if valence_weight:
        base["valence_standardisation"] = valence_standard
    try:
        for epoch in range(progress_state["next_epoch"], epochs):
            started = time.perf_counter()
            torch.manual_seed(int(seed) * 1_000_003 + epoch)  # dropout, if any
            order = balanced_order(y_train, generator=_epoch_generator(seed, epoch, 1))
            masks = _epoch_generator(seed, epoch, 2)
            keys = _epoch_generator(seed, epoch, 4)
            net.train()
            total_loss = correct = seen = valence_loss = valence_seen = 0.0
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                       disable=not progress)
            for step in bar:
                index = torch.as_tensor(order[step * batch_size:(step + 1) * batch_size])
                if len(index) < accelerator.num_processes:
                    continue  # a last batch too small to share: skipped alike in every process
                batch = x_train[index] if transposer is None else transposer.batch(index.numpy(), generator=keys)
                # The masks are drawn for the whole batch in every process, so
                # the random stream does not depend on the number of processes.
                if time_shift:
                    batch = roll_time(batch, generator=masks, step=patch_frames)
                batch = spec_augment(batch, generator=masks, time_mask=time_mask, freq_mask=freq_mask)
                target = torch.as_tensor(y_train[index.numpy()])
                other, lam = target, 1.0
                if mixup_alpha > 0:
                    batch, other, lam = mixup(batch, target, generator=masks, alpha=mixup_alpha)
                share = slice(accelerator.process_index, None, accelerator.num_processes)
                batch, target, other = batch[share].to(device), target[share].to(device), other[share].to(device)
                cls_tokens.clear()
                logits = net(pixel_values=batch).logits
                # Mean over this process's share; averaged over processes by
                # the data-parallel wrapper (equal shares: the batch mean).
                loss = loss_fn(logits, target)
                if lam < 1.0:
                    loss = lam * loss + (1.0 - lam) * loss_fn(logits, other)
                if head is not None:
                    wanted = valence_train[index.numpy()][share.start::share.step].to(device)
                    known = ~torch.isnan(wanted)
                    if known.any():
                        squared = (head(cls_tokens[-1]).squeeze(-1)[known] - wanted[known]) ** 2
                        valence_loss += float(squared.detach().sum())
                        valence_seen += int(known.sum())
                        loss = loss + valence_weight * squared.mean()
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                if head is not None and accelerator.num_processes > 1:
                    # The head is outside the data-parallel wrapper: average its gradients by hand.
                    for parameter in head.parameters():
                        parameter.grad = accelerator.reduce(parameter.grad, reduction="mean")
                torch.nn.utils.clip_grad_norm_(trained, 1.0)
                optimizer.step()
                scheduler.step()
                step_sums = accelerator.reduce(torch.stack([loss.detach() * len(target),
                                                            (logits.argmax(1) == target).sum().to(loss.dtype),
                                                            torch.tensor(float(len(target)), device=device)]),
                                               reduction="sum")
                total_loss += float(step_sums[0])
                correct += float(step_sums[1])
                seen += float(step_sums[2])
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
            row = {"epoch": epoch + 1, "train_loss": total_loss / seen, "train_acc": correct / seen,
                   "lr": float(scheduler.get_last_lr()[0])}
            if head is not None:  # on this process's share of the batches
                row["train_valence_mse"] = valence_loss / max(1.0, valence_seen)
            if has_val:
                val = _evaluate_split(model, x_val, y_val, batch_size=64, label_smoothing=label_smoothing)
                row.update(val_loss=val["loss"], val_acc=val["acc"], val_balanced_accuracy=val["balanced_accuracy"])
                selected = val["balanced_accuracy"] >= progress_state["best_bacc"] - min_delta
                improved = val["balanced_accuracy"] > progress_state["best_bacc"] + 1e-12
                progress_state["best_bacc"] = max(progress_state["best_bacc"], val["balanced_accuracy"])
                progress_state["since_selected"] = 0 if (selected and improved) else progress_state["since_selected"] + 1
                if val["loss"] < progress_state["best_loss"]:
                    progress_state["best_loss"], progress_state["since_loss"] = val["loss"], 0
                else:
                    progress_state["since_loss"] += 1
            else:
                selected = True
            if selected:
                progress_state["selected_epoch"] = epoch + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if head is not None:
                    best_head = {k: v.detach().clone() for k, v in head.state_dict().items()}
            row["selected"] = bool(selected)
            progress_state["history"].append(row)
            progress_state["train_seconds"] += time.perf_counter() - started
            progress_state["next_epoch"] = epoch + 1
            stop = None
            if has_val and min(progress_state["since_selected"], progress_state["since_loss"]) >= patience:
                stop = "early stopping"
            mean_epoch = progress_state["train_seconds"] / len(progress_state["history"])
            if time_budget_s and progress_state["train_seconds"] + mean_epoch > time_budget_s and epoch + 1 < epochs:
                stop = "time budget"
            if stop:
                progress_state["stopped"] = stop
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
            if progress:
                tqdm.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(
                    f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
            if accelerator.is_main_process:  # one writer; the others wait for it
                _write_resume(out, epoch + 1, model, best_state, optimizer, scheduler, base, progress_state,
                              head=head, best_head=best_head)
            accelerator.wait_for_everyone()
            if stop:
                break
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        if head is not None:
            hook.remove()

    model.load_state_dict(best_state)
    model.to("cpu").eval()  # chapters 3 and 4 explain it on the CPU
    if head is not None and accelerator.is_main_process:
        _save_tensors(out / VALENCE_HEAD_FILE, best_head, {k: repr(v) for k, v in valence_standard.items()})
    meta = _write_final(out, model, base, progress_state) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    if meta is None:
        meta = json.loads(meta_path.read_text())
    return TrainResult(model, out, meta, pd.DataFrame(meta["history"]))


def _accelerator():
    """Hugging Face Accelerate's view of the run: one process unless started
    by ``accelerate launch`` (then one per GPU, ``process_index`` and
    ``num_processes`` from its environment). Without a GPU, the CPU.

    Notebook: book/corpora.md (training on several GPUs)
    """
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def _commit_epoch(out: Path, epoch: int, tensors: dict, optimizer, meta: dict) -> None:
    """Write an epoch's resume state: ``tensors`` plus the AdamW moments as
    safetensors, then ``meta.json`` naming that file (the commit point), then
    drop older resume files. Shared by fine-tuning and pretraining."""
    optimizer_tensors, groups = _optimizer_tensors(optimizer)
    name = f"resume-e{epoch:04d}.safetensors"
    _save_tensors(out / name, {**tensors, **optimizer_tensors}, {"epoch": str(epoch)})
    store.write_json(out / META_FILE, dict(meta, resume_file=name, optimizer=groups, epoch=epoch))
    _drop_resume_files(out, keep=name)


def _drop_resume_files(out: Path, keep: str | None = None) -> None:
    for old in out.glob("resume-e*.safetensors"):
        if old.name != keep:
            old.unlink()


def _write_resume(out: Path, epoch: int, model, best_state, optimizer, scheduler, base, progress_state, *,
                  head=None, best_head=None) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_state.items()})
    if head is not None:
        tensors.update({f"head.{k}": v for k, v in head.state_dict().items()})
        tensors.update({f"best_head.{k}": v for k, v in best_head.items()})
    _commit_epoch(out, epoch, tensors, optimizer,
                  dict(base, scheduler=scheduler.state_dict(), progress=progress_state,
                       history=progress_state["history"]))


def _write_final(out: Path, model, base, progress_state) -> dict[str, Any]:
    _save_tensors(out / WEIGHTS_FILE, model.state_dict(), {"format": "pt"})
    store.write_json(out / "config.json", model.config.to_dict())
    meta = dict(base, status="done", epoch=progress_state["next_epoch"], history=progress_state["history"],
                selected_epoch=progress_state["selected_epoch"], train_seconds=progress_state["train_seconds"],
                stopped=progress_state["stopped"])
    store.write_json(out / META_FILE, meta)
    _drop_resume_files(out)
    return meta


#: Keys of ``meta.json`` a checkpoint cannot be used without.
REQUIRED_META = ("model_config", "logmel", "stats", "input_shape")
#: What to do about a broken checkpoint (the end of every :class:`CheckpointError` it raises).
CHECKPOINT_REMEDY = ("delete that folder and re-run chapter 2 (python -m mer run 02_vit --force), "
                     "or pass another --checkpoint DIR")


def load_checkpoint(path: str | Path, *, attn_implementation: str = "eager"):
    """Load a finished checkpoint folder (safetensors and JSON only, no pickle).

    Returns
    -------
    model : transformers.ViTForImageClassification, in eval mode
    meta : dict
        ``meta.json``: ``stats`` (normalisation), ``logmel`` (parameters),
        ``id2label``, ``history``, ``train`` (hyper-parameters)...

    Raises
    ------
    CheckpointError
        If the folder has no finished model, or it is broken: ``meta.json``
        unreadable, truncated or without a key of :data:`REQUIRED_META`,
        ``model.safetensors`` truncated, not safetensors, or of another
        shape than ``meta.json``'s model. The message is one line naming the
        folder and saying what to do (:data:`CHECKPOINT_REMEDY`).

    Notebook: notebooks/02_vit.ipynb
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import ViTConfig, ViTForImageClassification

    path = Path(path)
    meta_path, weights = path / META_FILE, path / WEIGHTS_FILE

    def broken(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: {what}; {CHECKPOINT_REMEDY}")

    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path}: no such folder; run chapter 2 (python -m mer run 02_vit) "
                              f"or pass another --checkpoint DIR")
    if not meta_path.is_file() or not weights.is_file():
        absent = [name for name, file in ((META_FILE, meta_path), (WEIGHTS_FILE, weights)) if not file.is_file()]
        raise broken(f"not a finished ViT checkpoint ({' and '.join(absent)} missing)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise broken(f"{META_FILE} is unreadable or truncated ({_one_line(error)})") from error
    if not isinstance(meta, dict):
        raise broken(f"{META_FILE} holds a {type(meta).__name__}, not an object")
    if meta.get("status", "done") != "done":
        raise broken(f"its training has not finished (status {meta.get('status')!r})")
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise broken(f"{META_FILE} lacks {', '.join(missing)}")
    try:
        config = ViTConfig.from_dict(meta["model_config"])
        config._attn_implementation = attn_implementation
        model = ViTForImageClassification(config)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise broken(f"{META_FILE}'s model_config does not describe a ViT ({_one_line(error)})") from error
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise broken(f"{WEIGHTS_FILE} is damaged or truncated ({_one_line(error)})") from error
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first_difference = [line for line in str(error).splitlines()[1:] if line.strip()] or [str(error)]
        raise broken(f"{WEIGHTS_FILE} does not fit {META_FILE}'s model_config "
                     f"({_one_line(first_difference[0])})") from error
    model.eval()
    return model, meta


def _one_line(error: BaseException, width: int = 120) -> str:
    """The first line of an error's message, shortened to ``width`` characters."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= width else text[:width - 3] + "..."


def chapter_model(dataset, *, checkpoint: str | Path = "", size: str = "default", epochs: int = 12,
                  batch_size: int = 32, lr: float = 3e-4, seed: int = 0, time_budget_s: float | None = None,
                  pretrained: str | None = None, pretrain_epochs: int = 0, valence_weight: float = 0.0,
                  front_end: str = "mel", transpose_augment: int = 0, canonicalise: str | None = None,
                  progress: bool = True):
    """Chapter 2's model for ``dataset`` and these training parameters.

    Chapters 3 and 4 explain the model chapter 2 trained. They declare the
    same training parameters, so this call names the same content-hashed
    checkpoint folder as chapter 2's :func:`train` and returns that model
    without training; if chapter 2 has not run (a chapter re-run alone), it
    trains it exactly as chapter 2 would. ``checkpoint`` overrides all of it.
    ``front_end``, ``transpose_augment`` and ``canonicalise`` are the
    key-invariance options of :func:`train` (:func:`key_options`); their
    defaults name the checkpoints of before these options.

    Returns
    -------
    model : transformers.ViTForImageClassification
        In eval mode.
    meta : dict
        The checkpoint's ``meta.json``.
    path : pathlib.Path
        The checkpoint folder.

    Notebook: notebooks/03_lrp.ipynb, notebooks/04_sonification.ipynb
    """
    if not checkpoint:
        checkpoint = train(dataset, size=size, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                           time_budget_s=time_budget_s or None, pretrained=pretrained or None,
                           pretrain_epochs=int(pretrain_epochs), valence_weight=float(valence_weight),
                           progress=progress, **key_options(front_end, transpose_augment, canonicalise)).checkpoint
    model, meta = load_checkpoint(checkpoint)
    return model, meta, Path(checkpoint)


#: The log-frequency front end's parameters for :func:`key_options` (chapters, command line):
#: 192 bands at 24 per octave, E1 (41 Hz) to 10.2 kHz.
LOGFREQ_LOGMEL = {"front_end": "logfreq", "n_mels": 192, "bins_per_octave": 24}


def key_options(front_end: str = "mel", transpose_augment: int = 0, canonicalise: str | None = None
                ) -> dict[str, Any]:
    """:func:`train` keywords for a key-invariance design; ``{}`` for the default (mel, none).

    Notebook: notebooks/02_vit.ipynb
    """
    if front_end not in spectrogram.FRONT_ENDS:
        raise ParameterError(f"front_end must be one of {spectrogram.FRONT_ENDS}, got {front_end!r}")
    options: dict[str, Any] = {}
    if front_end == "logfreq":
        options["logmel"] = dict(LOGFREQ_LOGMEL)
    if shift_set(transpose_augment):
        options["transpose_augment"] = _augment_hyper(transpose_augment)
    if canonicalise:
        options["canonicalise"] = str(canonicalise)
    return options


def latest_checkpoint(size: str = "default") -> Path | None:
    """The most recently finished checkpoint of model ``size`` under ``data/derived/vit``.

    Not a default for anything: after chapter 2's seed spread it is the last
    seed's model, not the chapter's (:func:`recorded_chapter_model` is).
    """
    found = []
    for meta_path in (store.derived_dir() / "vit").glob(f"*/{META_FILE}"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("status") == "done" and meta.get("train", {}).get("size") == size \
                and (meta_path.parent / WEIGHTS_FILE).exists():
            found.append((meta_path.stat().st_mtime, meta_path.parent))
    return max(found)[1] if found else None


#: Folder under ``data/derived`` of the records of chapter 2's model, one per profile.
CHAPTER_MODEL_DIR = "chapter-model"
#: The record naming the profile chapter 2 was last rendered with.
LAST_PROFILE_FILE = "last.json"
#: A profile's name is a file name of its record: a plain word, never a path.
PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def chapter_model_records() -> Path:
    """``data/derived/chapter-model``: where :func:`record_chapter_model` writes."""
    return store.derived_dir() / CHAPTER_MODEL_DIR


def weights_sha256(checkpoint: str | Path, *, length: int = 12) -> str:
    """Short SHA-256 of a checkpoint's ``model.safetensors``: which model spoke.

    Notebook: notebooks/02_vit.ipynb (``python -m mer predict`` and ``explain`` print it)
    """
    digest = hashlib.sha256()
    with open(Path(checkpoint) / WEIGHTS_FILE, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def _chapter_model_record(profile: str) -> Path:
    """``data/derived/chapter-model/<profile>.json``; a profile is a plain name, never a path."""
    if not PROFILE_NAME.fullmatch(str(profile)):
        raise ParameterError(f"profile must be a plain name (letters, digits, _ and -), got {profile!r}")
    return chapter_model_records() / f"{profile}.json"


def record_chapter_model(checkpoint: str | Path, *, profile: str) -> Path:
    """Record ``checkpoint`` as chapter 2's model for ``profile``, and ``profile`` as rendered last.

    ``python -m mer predict`` and ``explain`` use this model by default, the
    one chapters 3 and 4 explain (:func:`chapter_model` names the same
    folder), not the newest checkpoint on disk, which after the seed spread
    is the last seed's.

    Writes, each atomically, ``data/derived/chapter-model/<profile>.json``
    (``profile``, ``checkpoint`` relative to ``data/derived``,
    ``weights_sha256``, ``dataset``) and then ``last.json`` (``profile``).

    Parameters
    ----------
    checkpoint : str or Path
        A finished checkpoint folder under ``data/derived/vit`` (:func:`train`).
    profile : str
        The profile chapter 2 runs with.

    Returns
    -------
    pathlib.Path
        The profile's record.

    Notebook: notebooks/02_vit.ipynb
    """
    record_path = _chapter_model_record(profile)
    folder = Path(checkpoint).resolve()
    model, meta = load_checkpoint(folder)
    del model
    derived = store.derived_dir().resolve()
    try:
        relative = folder.relative_to(derived).as_posix()
    except ValueError:
        relative = str(folder)  # a checkpoint passed from elsewhere stays absolute
    record = {"profile": profile, "checkpoint": relative, "weights_sha256": weights_sha256(folder),
              "dataset": meta.get("dataset", {}).get("name")}
    path = store.write_json(record_path, record)
    store.write_json(chapter_model_records() / LAST_PROFILE_FILE, {"profile": profile})
    return path


def recorded_chapter_model(profile: str | None = None) -> dict[str, Any] | None:
    """What :func:`record_chapter_model` recorded for ``profile`` (default: the profile rendered last).

    Returns
    -------
    dict or None
        The record with ``checkpoint`` as an absolute :class:`~pathlib.Path`
        (it may no longer exist); ``None`` if chapter 2 has recorded no model
        for that profile (or none at all, for ``profile=None``).

    Raises
    ------
    CheckpointError
        If a record exists but cannot be read.

    Notebook: notebooks/02_vit.ipynb
    """
    records = chapter_model_records()

    def read(path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(record, dict):
                raise TypeError(f"a {type(record).__name__}, not an object")
            return record
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as error:
            raise CheckpointError(f"the record of chapter 2's model {path} is unreadable ({_one_line(error)}); "
                                  f"re-run chapter 2 (python -m mer run 02_vit --force)") from error

    if profile is None:
        last = read(records / LAST_PROFILE_FILE)
        if last is None or not last.get("profile"):
            return None
        profile = str(last["profile"])
        if not PROFILE_NAME.fullmatch(profile):
            raise CheckpointError(f"the record {records / LAST_PROFILE_FILE} names no profile ({profile!r}); "
                                  f"re-run chapter 2 (python -m mer run 02_vit --force)")
    record = read(_chapter_model_record(profile))
    if record is None or "checkpoint" not in record:
        return None
    return dict(record, profile=profile, checkpoint=store.derived_dir() / record["checkpoint"])


def describe_checkpoint(checkpoint: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """What identifies a model to a reader: its folder, weights, data and score.

    Parameters
    ----------
    checkpoint : str or Path
        The checkpoint folder.
    meta : dict
        Its ``meta.json`` (:func:`load_checkpoint`).

    Returns
    -------
    dict
        ``folder`` (relative to the repository when inside it),
        ``weights_sha256`` (:func:`weights_sha256`), ``size``, ``dataset``,
        ``n_train``, ``n_val``, ``test_balanced_accuracy`` (from the
        ``evaluation-test.json`` :func:`evaluate` wrote beside it; ``None``
        if the model was never scored).

    Notebook: notebooks/02_vit.ipynb (``python -m mer predict`` and ``explain`` show it)
    """
    folder = Path(checkpoint)
    try:
        shown = folder.resolve().relative_to(store.root().resolve()).as_posix()
    except ValueError:
        shown = str(folder)
    data = meta.get("dataset") or {}
    score = None
    evaluation = folder / "evaluation-test.json"
    if evaluation.is_file():
        try:
            rows = json.loads(evaluation.read_text(encoding="utf-8"))["metrics"]
            score = next(float(row["value"]) for row in rows if row["metric"] == "balanced_accuracy")
        except (OSError, ValueError, KeyError, TypeError, StopIteration) as error:
            log.warning("%s: no test score read (%s)", evaluation, _one_line(error))
    return {"folder": shown, "weights_sha256": weights_sha256(folder),
            "size": (meta.get("train") or {}).get("size"), "dataset": data.get("name"),
            "n_train": data.get("n_train"), "n_val": data.get("n_val"), "test_balanced_accuracy": score}


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------

@dataclass
class Evaluation:
    """What :func:`evaluate` returns.

    Attributes
    ----------
    metrics : pandas.DataFrame
        ``metric, value, low, high, n`` for accuracy, balanced_accuracy, f1,
        roc_auc (``low``/``high``: bootstrap 95 % percentile interval).
    confusion : pandas.DataFrame
        2 x 2 counts, rows = true label, columns = predicted (sad, happy).
    predictions : pandas.DataFrame
        ``clip_id, label, p_happy, predicted, quadrant, path`` per clip.
    path : pathlib.Path
        Where ``predictions`` was written (``predictions-<split>.csv``).
    """

    metrics: pd.DataFrame
    confusion: pd.DataFrame
    predictions: pd.DataFrame
    path: Path

    def value(self, metric: str) -> float:
        return float(self.metrics.set_index("metric").loc[metric, "value"])


def evaluate(checkpoint: str | Path | TrainResult, dataset, *, split: str = "test", n_bootstrap: int = 1000,
             seed: int = 0, n_jobs: int = 2, progress: bool = True) -> Evaluation:
    """Score a checkpoint on a held-out split and save per-clip predictions.

    Parameters
    ----------
    checkpoint : path or TrainResult
    dataset : mer.data.Dataset
        The dataset the model was trained on (normalisation statistics come
        from the checkpoint, not from this split).
    split : str
        ``"test"`` (default) or ``"val"``.

    Returns
    -------
    Evaluation
        Also writes ``predictions-<split>.csv`` and ``evaluation-<split>.json``
        beside the checkpoint, for chapters 3 and 4.

    Notebook: notebooks/02_vit.ipynb
    """
    if isinstance(checkpoint, TrainResult):
        model, meta, folder = checkpoint.model, checkpoint.meta, checkpoint.checkpoint
    else:
        folder = Path(checkpoint)
        model, meta = load_checkpoint(folder)
    every = dataset.clips.reset_index(drop=True)
    rows = (every["split"] == split).to_numpy()
    if not rows.any():
        raise ParameterError(f"dataset {dataset.name!r} has no clip in split {split!r}")
    # The whole table's log-mel is the one train() cached; take the split from it.
    specs = model_input(every, meta, n_jobs=n_jobs, progress=progress)[rows]
    clips = every[rows].reset_index(drop=True)
    proba = predict_proba(model, specs)
    labels = label_codes(clips["label"]).to_numpy()
    p_happy = proba[:, 1]
    predicted = called(p_happy)
    predictions = pd.DataFrame({"clip_id": clips["clip_id"].astype(str), "label": clips["label"],
                                "p_happy": p_happy.astype(float), "predicted": predicted})
    predictions["quadrant"] = [quadrant(a, b) for a, b in zip(predictions["label"], predictions["predicted"])]
    predictions["path"] = clips["path"].astype(str)
    metrics = bootstrap_metrics(labels, p_happy, n_bootstrap=n_bootstrap, seed=seed)
    confusion = pd.crosstab(pd.Categorical(predictions["label"], categories=list(LABELS)),
                            pd.Categorical(predictions["predicted"], categories=list(LABELS)),
                            rownames=["true"], colnames=["predicted"], dropna=False)
    path = folder / f"predictions-{split}.csv"
    store.write_csv(path, predictions)
    store.write_json(folder / f"evaluation-{split}.json",
                     {"metrics": metrics.to_dict(orient="records"), "confusion": confusion.values.tolist(),
                      "n_bootstrap": n_bootstrap, "seed": seed})
    return Evaluation(metrics, confusion, predictions, path)


def seed_spread(dataset, seeds, *, progress: bool = True, **train_options: Any) -> pd.DataFrame:
    """Train and test one design once per seed: how much of a score is the draw.

    Each seed gets its own checkpoint (:func:`checkpoint_dir` includes the
    seed, so a seed already trained is read back, and an interrupted one
    resumes), and is scored on the ``test`` split like the chapter's model.
    The seed moves the initial weights, the sampler's order and the
    SpecAugment masks; the data and its split stay the same.

    Parameters
    ----------
    dataset : mer.data.Dataset
    seeds : iterable of int
    progress : bool
    **train_options
        Everything else :func:`train` takes (``size``, ``epochs``, ``lr``...).

    Returns
    -------
    pandas.DataFrame
        One row per seed: ``seed, balanced_accuracy, roc_auc, accuracy,
        train_seconds, selected_epoch, checkpoint``; ``attrs["mean"]`` and
        ``attrs["sd"]`` of the balanced accuracy (sample standard deviation;
        NaN for one seed).

    Notebook: notebooks/02_vit.ipynb
    """
    if "seed" in train_options:
        raise ParameterError("seed_spread takes the seeds as its own argument, not seed=")
    rows = []
    for seed in seeds:
        result = train(dataset, seed=int(seed), progress=progress, **train_options)
        # As the chapter evaluates its own model (same bootstrap seed), so the
        # evaluation files of a seed that is also the chapter's are rewritten unchanged.
        metrics = evaluate(result, dataset, seed=int(seed), progress=progress)
        values = metrics.metrics.set_index("metric")["value"]
        rows.append({"seed": int(seed), "balanced_accuracy": float(values["balanced_accuracy"]),
                     "roc_auc": float(values["roc_auc"]), "accuracy": float(values["accuracy"]),
                     "train_seconds": round(result.train_seconds, 1), "selected_epoch": result.best_epoch,
                     "checkpoint": result.checkpoint.name})
    if not rows:
        raise ParameterError("seed_spread needs at least one seed")
    table = pd.DataFrame(rows)
    scores = table["balanced_accuracy"]
    table.attrs.update(mean=float(scores.mean()), sd=float(scores.std(ddof=1)) if len(scores) > 1 else float("nan"))
    return table


def model_input(clips: pd.DataFrame, meta: dict[str, Any], *, n_jobs: int = 2, progress: bool = True) -> np.ndarray:
    """Normalised, patch-padded log-mel of ``clips`` as a checkpoint expects them.

    Returns
    -------
    np.ndarray, shape (n_clips, 1, n_mels, n_frames)

    Notebook: notebooks/02_vit.ipynb
    """
    if (meta.get("key_invariance") or {}).get("canonicalise"):
        params = spectrogram.LogMelParams(**meta["logmel"])
        tall_params = tall_logmel_params(params, 6)
        tall, _ = spectrogram.compute(clips, params=tall_params, n_jobs=n_jobs, progress=progress)
        specs = crop_each(tall, tall_params, canonical_semitones(clips, meta, n_jobs=n_jobs, progress=progress),
                           params.top_db)
    else:
        specs, _ = spectrogram.compute(clips, params=meta["logmel"], n_jobs=n_jobs, progress=progress)
    return fit_input(spectrogram.normalize(specs, meta["stats"]), meta)


def fit_input(specs: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Pad normalised spectrograms with 0 to the checkpoint's input width."""
    width = meta["input_shape"][-1]
    if specs.shape[-1] < width:
        specs = np.pad(specs, [(0, 0)] * (specs.ndim - 1) + [(0, width - specs.shape[-1])])
    return specs[..., :width]


# ---------------------------------------------------------------------------
# Command line and benchmark
# ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``python -m mer train [--profile NAME] [--dataset synth] [--epochs N] ... [--debug]``.

    Trains (or resumes) the ViT, evaluates it on the test split and prints
    the metrics and the checkpoint folder. A bad number is refused as
    argparse refuses a bad choice (status 2); any other error is one line on
    stderr (status 1; ``--debug`` adds the traceback).
    """
    from .data import load_dataset

    parser = argparse.ArgumentParser(prog="python -m mer train", description="Train the chapter 2 ViT.")
    parser.add_argument("--profile", default="default", choices=sorted(profiles.PROFILES))
    for name, kind in (("dataset", str), ("data-dir", str), ("n-clips", cli.non_negative_int), ("soundfont", str),
                       ("seed", cli.non_negative_int), ("epochs", cli.positive_int),
                       ("batch-size", cli.positive_int), ("learning-rate", cli.positive_float),
                       ("time-budget-s", cli.non_negative_float), ("pretrained", str),
                       ("pretrain-epochs", cli.non_negative_int), ("valence-weight", cli.non_negative_float),
                       ("out-dir", str), ("transpose-augment", cli.non_negative_int)):
        parser.add_argument(f"--{name}", type=kind, default=None)
    parser.add_argument("--model-size", choices=sorted(SIZES), default=None)
    parser.add_argument("--front-end", choices=spectrogram.FRONT_ENDS, default=None)
    parser.add_argument("--canonicalise", choices=CANONICALISE, default=None)
    parser.add_argument("--writing", choices=("classic", "tonal"), default=None,
                        help="the synthetic set's composer (tonal: every key, textures, three SoundFonts)")
    parser.add_argument("--no-resume", dest="resume", action="store_false")
    parser.add_argument("-q", "--quiet", action="store_true")
    cli.add_debug(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    params = profiles.get(args.profile)
    for key, value in vars(args).items():
        if value is not None and key not in ("profile", "resume", "quiet", "debug"):
            params[key] = value

    def run() -> int:
        options = {"n_clips": params.get("n_clips"), "soundfont": params.get("soundfont"), "seed": params.get("seed", 0)}
        options = {k: v for k, v in options.items() if v not in (None, "", 0) or k == "seed"}
        if args.writing == "tonal":
            options["writing"] = "tonal"
            if args.soundfont is None:  # the profile's one SoundFont is the classic writing's
                options.pop("soundfont", None)
        name = params.get("dataset", "synth")
        if name not in ("synth", "synth_probe"):
            options = {}
        accelerator = _accelerator()
        with accelerator.main_process_first():  # under accelerate launch: render or read the data once
            dataset = load_dataset(name, params.get("data_dir") or None, **options)
        result = train(dataset, size=params.get("model_size", "default"), epochs=int(params.get("epochs", 20)),
                       batch_size=int(params.get("batch_size", 32)), lr=float(params.get("learning_rate", 3e-4)),
                       seed=int(params.get("seed", 0)), time_budget_s=params.get("time_budget_s") or None,
                       pretrained=params.get("pretrained") or None, out_dir=params.get("out_dir"),
                       pretrain_epochs=int(params.get("pretrain_epochs", 0)),
                       valence_weight=float(params.get("valence_weight", 0.0)),
                       resume=args.resume, progress=not args.quiet,
                       **key_options(params.get("front_end") or "mel", int(params.get("transpose_augment") or 0),
                                     params.get("canonicalise") or None))
        if not accelerator.is_main_process:
            return 0  # the main process evaluates and writes the predictions
        evaluation = evaluate(result, dataset, seed=int(params.get("seed", 0)), progress=not args.quiet)
        print(evaluation.metrics.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"checkpoint: {result.checkpoint}")
        print(f"predictions: {evaluation.path}")
        return 0

    return cli.guarded("python -m mer train", run, debug=args.debug,
                       interrupted="interrupted; run the same command again to resume")


def benchmark(*, batch_size: int = 32, repeats: int = 3) -> dict[str, Any]:
    """Speed of the default model on this CPU.

    Returns
    -------
    dict
        ``vit_train_spectrograms_per_s``: forward + backward + AdamW step on
        batches of 32 default-size inputs (128 x 108). ``vit_infer_ms_per_clip``:
        one 10 s clip from audio to probability (log-mel included), batch 1.
        ``vit_logmel_ms_per_clip``: the log-mel part alone.
        ``vit_every_key_train_spectrograms_per_s``: the same step for the
        every-key design's input (192 log-frequency rows x 108);
        ``vit_every_key_tonic_ms_per_clip``: its tonic estimate (CQT chroma).

    Notebook: book/reproducing.md
    """
    model = build_model("default", seed=0)
    train_rate = _train_rate(model, n_rows=128, batch_size=batch_size, repeats=repeats)
    model.eval()
    y = np.random.default_rng(0).standard_normal(spectrogram.SR * 10).astype(np.float32) * 0.1
    stats = {"mean": -40.0, "std": 20.0}

    def infer():
        spec = spectrogram.normalize(spectrogram.logmel(y), stats)[None]
        return predict_proba(model, spec)

    infer()
    start = time.perf_counter()
    for _ in range(5):
        infer()
    infer_ms = (time.perf_counter() - start) / 5 * 1000
    return {"vit_train_spectrograms_per_s": round(train_rate, 1), "vit_infer_ms_per_clip": round(infer_ms, 1),
            "vit_logmel_ms_per_clip": round(spectrogram.benchmark_logmel_ms(), 1),
            "vit_parameters": int(sum(p.numel() for p in model.parameters())),
            **_every_key_benchmark(y, batch_size=batch_size, repeats=repeats)}


def _train_rate(model, *, n_rows: int, batch_size: int, repeats: int) -> float:
    """Spectrograms per second through forward, backward and an AdamW step, on random batches (after one warm-up step)."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randn(batch_size, 1, n_rows, 108)
    target = torch.randint(0, 2, (batch_size,), generator=torch.Generator().manual_seed(0))
    model.train()

    def step():
        loss = torch.nn.functional.cross_entropy(model(pixel_values=batch).logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return batch_size * repeats / (time.perf_counter() - start)


def _every_key_benchmark(y: np.ndarray, *, batch_size: int, repeats: int) -> dict[str, Any]:
    """Speed of the every-key design (``--front-end logfreq --canonicalise tonic``): its larger input and its tonic step."""
    params = spectrogram.LogMelParams(**LOGFREQ_LOGMEL)
    train_rate = _train_rate(build_model("default", n_mels=params.n_mels, seed=0), n_rows=params.n_mels,
                             batch_size=batch_size, repeats=repeats)
    tonality.tonic_chroma(y)
    start = time.perf_counter()
    for _ in range(3):
        tonality.tonic_chroma(y)
    tonic_ms = (time.perf_counter() - start) / 3 * 1000
    return {"vit_every_key_train_spectrograms_per_s": round(train_rate, 1),
            "vit_every_key_tonic_ms_per_clip": round(tonic_ms, 1)}
