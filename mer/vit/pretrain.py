"""Self-supervised pretraining: masked spectrogram modelling (off in the default profile).

The encoder learns without labels to fill in hidden spans of the training
spectrograms (:func:`masked_pretrain`), a stand-in for the pretrained weights
the thesis fine-tuned, which cannot be downloaded here.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers import ViTModel, get_cosine_schedule_with_warmup

from .. import ParameterError, store
from .augment import epoch_generator
from .checkpoint import META_FILE, commit_epoch, drop_resume_files, restore_optimizer, save_tensors
from .model import CheckpointError

log = logging.getLogger(__name__)


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
                    learning_rate: float = 1e-3, weight_decay: float = 0.05, mask_ratio: float = 0.5, span: int = 3,
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
    epochs, batch_size, learning_rate, weight_decay : schedule (AdamW, 5 % warm-up, cosine)
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
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(specs) / batch_size)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(round(0.05 * steps_per_epoch * epochs)),
                                                steps_per_epoch * epochs)
    hyper = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "weight_decay": weight_decay,
             "mask_ratio": mask_ratio, "span": span, "seed": seed, "n_clips": int(len(specs))}
    history: list[dict] = []
    seconds, first = 0.0, 0
    if meta and meta.get("status") == "training":
        if meta["hyper"] != hyper:
            raise CheckpointError(f"{out} holds a pretraining run with other settings: {meta['hyper']}")
        tensors = load_file(str(out / meta["resume_file"]))
        encoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")})
        head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        restore_optimizer(optimizer, tensors, meta["optimizer"])
        scheduler.load_state_dict(meta["scheduler"])
        history, seconds, first = meta["history"], meta["seconds"], meta["epoch"]
    x_all = torch.as_tensor(specs)
    n_tokens = encoder.embeddings.patch_embeddings.num_patches
    for epoch in range(first, epochs):
        started = time.perf_counter()
        torch.manual_seed(int(seed) * 1_000_003 + epoch + 500_000)  # dropout, if any
        generator = epoch_generator(seed, epoch, 3)
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
        commit_epoch(out, epoch + 1, tensors, optimizer,
                      {"status": "training", "hyper": hyper, "scheduler": scheduler.state_dict(),
                       "history": history, "seconds": seconds})
    state = {k: v.detach().clone() for k, v in encoder.state_dict().items() if not k.startswith("embeddings.mask_token")}
    save_tensors(out / "encoder.safetensors", state, {"format": "pt"})
    store.write_json(meta_path, {"status": "done", "hyper": hyper, "epoch": epochs, "history": history,
                                 "seconds": seconds})
    drop_resume_files(out)
    return {"state": state, "history": history, "seconds": seconds}
