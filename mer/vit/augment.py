"""Training-time augmentation and sampling: SpecAugment masks, time roll, mixup, balanced order, transposition.

Every draw comes from a generator seeded by ``(seed, epoch, stream)``
(:func:`epoch_generator`), so a resumed run draws what an uninterrupted one would.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import numpy as np
import torch

from .. import spectrogram


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


def epoch_generator(seed: int, epoch: int, stream: int):

    # Every epoch and purpose gets its own seed, so a resumed run draws
    # exactly what an uninterrupted one would without saving RNG states.
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch * 7 + stream)


class Transposer:
    """Training batches transposed by a random number of semitones per example.

    Mel front end: the stored linear STFT power times
    :func:`mer.spectrogram.transposed_filterbank` of the drawn shift (one
    precomputed matrix per shift), then dB, the floor and the normalisation of
    the model's input. Log-frequency front end: a crop of the spectrogram
    computed with margins (:func:`mer.spectrogram.crop`), then the floor and
    the normalisation. Shift 0 reproduces the un-augmented input.
    """

    def __init__(self, data: dict, shifts: tuple[int, ...], train_rows: np.ndarray, patch_frames: int):

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
