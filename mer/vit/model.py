"""The model: a stock ``transformers`` ViT for one-channel log-mel images, and what it computes.

:func:`build_model` makes a ``ViTForImageClassification`` from a ``ViTConfig``
of one of :data:`SIZES` (or adapts local ImageNet weights);
:func:`predict_proba` and :func:`representation` run it on normalised
spectrograms (:mod:`mer.vit.inputs`). No subclassing: chapter 3 swaps the
attention function through transformers' registry, and the optional onset
and release channels (:func:`onset_channels`) are a forward pre-hook on the
patch embedding that :func:`vit_from_config` installs.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import ViTConfig, ViTForImageClassification

from .. import MerError, ParameterError
from ..metrics import ID2LABEL, LABEL2ID
from .inputs import model_input


#: Model sizes. ``patch`` = (mel bands, frames) per patch; ``None`` = all bands.
SIZES: dict[str, dict[str, Any]] = {
    "quick": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 128, "patch": (None, 2)},
    "default": {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3,
                "intermediate_size": 384, "patch": (None, 2)},
    "thesis": {"hidden_size": 384, "num_hidden_layers": 8, "num_attention_heads": 6,
               "intermediate_size": 1536, "patch": (None, 2)},
}


#: What the patch embedding sees (``TrainOptions.input_channels``) -> its number of channels:
#: the spectrogram alone, or with two channels derived from it (:func:`onset_channels`).
INPUT_CHANNELS = {"spectrogram": 1, "onsets": 3}


def check_input_channels(name: str) -> str:
    """``name`` if it is one of :data:`INPUT_CHANNELS`, else a one-line :class:`ParameterError`."""
    if name not in INPUT_CHANNELS:
        raise ParameterError(f"unknown input_channels {name!r}; expected one of {sorted(INPUT_CHANNELS)}")
    return name


class CheckpointError(MerError):
    """A checkpoint folder is missing, incomplete or inconsistent."""


class PretrainedNotFound(MerError):
    """Pretrained weights were asked for but are not on this machine."""


def model_config(size: str = "default", *, n_mels: int = 128, n_frames: int = 108,
                 patch_size: tuple[int | None, int] | None = None, dropout: float = 0.0,
                 attn_implementation: str = "eager", input_channels: str = "spectrogram"):
    """The ``ViTConfig`` of a model size for ``(1, n_mels, n_frames)`` inputs.

    Parameters
    ----------
    size : {"quick", "default", "thesis"}
    n_mels, n_frames : int
        Input height and width; ``n_frames`` must be a multiple of the patch width.
    patch_size : (int or None, int), optional
        ``(mel bands, frames)`` of a patch; ``None`` bands = full height.
        Default: the size's own (full-height stripes 2 frames wide).
    input_channels : {"spectrogram", "onsets"}
        :data:`INPUT_CHANNELS`; ``"onsets"`` gives the patch embedding three
        input channels and records ``input_channels`` in the config, which
        :func:`vit_from_config` reads.

    Returns
    -------
    transformers.ViTConfig

    Notebook: notebooks/02_vit.ipynb
    """

    if size not in SIZES:
        raise ParameterError(f"unknown model size {size!r}; expected one of {sorted(SIZES)}")
    spec = dict(SIZES[size])
    bands, frames = patch_size if patch_size is not None else spec.pop("patch")
    spec.pop("patch", None)
    bands = n_mels if bands is None else int(bands)
    if n_mels % bands or n_frames % frames:
        raise ParameterError(f"input {n_mels} x {n_frames} is not a whole number of "
                             f"{bands} x {frames} patches")
    config = ViTConfig(**spec, image_size=(n_mels, n_frames), patch_size=(bands, frames),
                       num_channels=INPUT_CHANNELS[check_input_channels(input_channels)],
                       num_labels=2, id2label=dict(ID2LABEL), label2id=dict(LABEL2ID),
                       hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                       qkv_bias=True)
    if input_channels != "spectrogram":  # absent by default: the configs of earlier checkpoints stay as they were
        config.input_channels = input_channels
    config._attn_implementation = attn_implementation
    return config


def onset_channels(pixel_values: torch.Tensor) -> torch.Tensor:
    """The spectrogram with where its energy rises and where it falls, as three channels.

    A ViT whose patches are 2 frames wide sees a note's start or end only as
    a change inside or between patches; on the tonal writing it hardly
    weighted the tempo and the articulation (see book/design.md, "Every
    key"). These two channels give the patch embedding the frame-to-frame
    rise (onsets) and fall (releases) of every bin directly. Both are
    positively homogeneous functions of the input with no offset, so an
    explanation by gradient x input still sums to the logit, and every
    channel lies on the spectrogram's own time-frequency grid: the relevance
    of the input (one channel) is where the model looked, in bins chapter 4
    can sonify.

    Parameters
    ----------
    pixel_values : torch.Tensor, shape (batch, 1, n_mels, n_frames)
        Normalised spectrograms.

    Returns
    -------
    torch.Tensor, shape (batch, 3, n_mels, n_frames)
        The input, ``relu(x[t] - x[t-1])`` and ``relu(x[t-1] - x[t])`` (0 at
        the first frame).

    Notebook: book/design.md (section "Every key")
    """
    rise = torch.diff(pixel_values, dim=-1, prepend=pixel_values[..., :1])
    return torch.cat([pixel_values, torch.relu(rise), torch.relu(-rise)], dim=1)


def _derive_channels(module, args):
    # A one-channel spectrogram gets its derived channels; an input that already
    # has them (mer.lrp.attribution.embedding_input, which the perturbation
    # checks edit channel by channel) passes unchanged.
    if args[0].shape[1] == 1:
        return (onset_channels(args[0]),)
    return None


def vit_from_config(config) -> ViTForImageClassification:
    """``ViTForImageClassification(config)`` with the input channels its config names.

    Every model ``mer`` builds or loads goes through here, so a checkpoint
    trained with ``input_channels="onsets"`` gets its :func:`onset_channels`
    pre-hook back when loaded (the hook holds no weights; ``model.safetensors``
    is a stock ViT's with a three-channel patch embedding).

    Returns
    -------
    transformers.ViTForImageClassification
        Input ``pixel_values`` of shape (batch, 1, n_mels, n_frames) in either case.

    Notebook: notebooks/02_vit.ipynb
    """
    model = ViTForImageClassification(config)
    if check_input_channels(getattr(config, "input_channels", "spectrogram")) == "onsets":
        model.vit.embeddings.patch_embeddings.register_forward_pre_hook(_derive_channels)
    return model


def build_model(size: str = "default", *, n_mels: int = 128, n_frames: int = 108,
                patch_size: tuple[int | None, int] | None = None, pretrained: str | None = None,
                dropout: float = 0.0, attn_implementation: str = "eager", seed: int = 0,
                input_channels: str = "spectrogram"):
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
    input_channels : {"spectrogram", "onsets"}
        :data:`INPUT_CHANNELS` (:func:`onset_channels`); not with ``pretrained``.

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

    torch.manual_seed(seed)
    if pretrained:
        if input_channels != "spectrogram":
            raise ParameterError("input_channels other than 'spectrogram' cannot start from pretrained weights "
                                 "(their patch embedding has one channel here)")
        return _adapt_pretrained(pretrained, n_mels=n_mels, n_frames=n_frames,
                                 attn_implementation=attn_implementation)
    config = model_config(size, n_mels=n_mels, n_frames=n_frames, patch_size=patch_size,
                          dropout=dropout, attn_implementation=attn_implementation, input_channels=input_channels)
    return vit_from_config(config)


def _adapt_pretrained(pretrained: str, *, n_mels: int, n_frames: int, attn_implementation: str):

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

    clips = clips.reset_index(drop=True)
    width = model.config.hidden_size
    both = _encode(model, model_input(clips, meta, progress=progress),
                   lambda hidden: torch.cat([read(hidden) for read in _POOLINGS.values()], dim=1),
                   batch_size=64, width=width * len(_POOLINGS))
    index = pd.Index(clips["clip_id"], name="clip_id")
    return {name: pd.DataFrame(both[:, k * width:(k + 1) * width], index=index) for k, name in enumerate(_POOLINGS)}


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

    generator = torch.Generator().manual_seed(int(seed) + 7919)
    head = torch.nn.Linear(config.hidden_size, 1)
    with torch.no_grad():  # the default initialisation of nn.Linear, drawn from this stream
        bound = 1.0 / math.sqrt(config.hidden_size)
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    return head
