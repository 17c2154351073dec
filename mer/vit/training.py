"""Training the ViT: the options as one object, and a loop that reads like one.

:func:`train` is AdamW with linear warm-up and cosine decay, SpecAugment-style
time and frequency masks, class-balanced sampling and a validation-based model
selection that leans towards later epochs. Every random draw of epoch ``e``
comes from generators seeded with ``(seed, e)``, and every epoch ends with a
checkpoint holding the weights, the AdamW moments and the scheduler state
(safetensors + JSON, never pickle): a killed run re-run with the same
arguments resumes after its last finished epoch and ends with bit-identical
weights. What is learnt is set by :class:`TrainOptions`; where and how the
run goes (folder, resume, threads, progress bars) by :func:`train`'s own
keywords.

Notebook: notebooks/02_vit.ipynb
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from sklearn.metrics import balanced_accuracy_score
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from .. import ParameterError
from ..metrics import ID2LABEL, LABEL2ID
from .augment import Transposer, balanced_order, epoch_generator, mixup, roll_time, spec_augment
from .checkpoint import (META_FILE, VALENCE_HEAD_FILE, checkpoint_dir, dataset_fingerprint, load_checkpoint,
                         restore_optimizer, save_tensors, write_final, write_resume)
from .inputs import augment_record, key_invariance_record, prepare, shift_set
from .model import SIZES, build_model, check_input_channels, predict_proba, valence_head
from .pretrain import PRETRAIN_DIR, masked_pretrain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """What :func:`train` learns and how: every option that names a checkpoint.

    Two runs with equal options on the same dataset write to the same
    content-hashed folder (:func:`mer.vit.checkpoint_dir` of
    :meth:`record`), so a finished one is read back and an interrupted one
    resumes. Change one field with ``dataclasses.replace(options, learning_rate=1e-3)``
    or pass it to :func:`train` as a keyword.

    Attributes
    ----------
    size : {"quick", "default", "thesis"}
        See :func:`mer.vit.build_model`.
    epochs : int
        Length of the warm-up + cosine schedule (``warmup_fraction`` of the
        steps warm up linearly, the rest decay to 0).
    batch_size : int
    learning_rate : float
        AdamW peak learning rate (``weight_decay`` decoupled).
    seed : int
        Seeds the weights and, per epoch, the balanced sampler and the masks.
    time_budget_s : float, optional
        Stop after the epoch that would otherwise overrun this many seconds of
        training (summed over resumed runs). The schedule is not stretched to
        it, so a run that fits its budget is reproducible; one that hits it is
        reported in ``meta["stopped"]``.
    weight_decay, warmup_fraction : float
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
        Local ImageNet ViT weights (see :func:`mer.vit.build_model`).
    time_shift : bool
        Roll every training example in time by a random whole number of patches.
    logmel : dict, optional
        :class:`mer.spectrogram.LogMelParams` overrides (``pool``, ``n_mels``...).
    patch_size : (int or None, int), optional
        See :func:`mer.vit.build_model`.
    dropout : float
        Dropout on the hidden states and attention probabilities during
        training (off in evaluation and in every explanation).
    mixup_alpha : float
        Mixup's Beta(alpha, alpha) parameter (0 = off; see :func:`mer.vit.mixup`).
    pretrain_epochs : int
        Before the supervised epochs, this many epochs of self-supervised
        masked spectrogram modelling on the training split's spectrograms
        (labels unread; :func:`mer.vit.masked_pretrain`), whose encoder then
        initialises the classifier. 0 = off. Checkpointed in the run's
        ``pretrain/`` folder and resumed like the rest.
    pretrain_mask_ratio, pretrain_span, pretrain_learning_rate : float, int, float
        See :func:`mer.vit.masked_pretrain`.
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
        shifts, :func:`mer.vit.shift_set`), from its own seeded stream. On the
        mel front end the linear STFT power is rescaled in frequency before
        the mel filterbank (Schlueter and Grill 2015; one precomputed matrix
        per shift, :func:`mer.spectrogram.transposed_filterbank`); on the
        log-frequency front end (``logmel={"front_end": "logfreq"}``) a crop
        window moves over a taller spectrogram (Schreiber and Mueller 2019;
        :func:`mer.spectrogram.crop`). Validation and test clips are not
        transposed. The model, its input and the map back to STFT bins stay
        those of the front end.
    canonicalise : {"tonic"}, optional
        Log-frequency front end only: move every clip (training, validation,
        test, and :func:`mer.vit.model_input`) to a canonical key estimated
        from the clip itself (:func:`mer.vit.canonical_semitones`) before the model.
    input_channels : {"spectrogram", "onsets"}
        What the patch embedding sees (:data:`mer.vit.INPUT_CHANNELS`):
        ``"onsets"`` adds where each bin's energy rises and falls from one
        frame to the next (:func:`mer.vit.onset_channels`), computed inside
        the model from its one-channel input. Not with ``pretrained`` or
        ``pretrain_epochs``.

    Notebook: notebooks/02_vit.ipynb
    """

    size: str = "default"
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 3e-4
    seed: int = 0
    time_budget_s: float | None = None
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    time_mask: int = 12
    freq_mask: int = 16
    patience: int = 12
    min_delta: float = 0.01
    pretrained: str | None = None
    time_shift: bool = False
    logmel: dict | None = None
    patch_size: tuple[int | None, int] | None = None
    dropout: float = 0.0
    mixup_alpha: float = 0.0
    pretrain_epochs: int = 0
    pretrain_mask_ratio: float = 0.5
    pretrain_span: int = 3
    pretrain_learning_rate: float = 1e-3
    valence_weight: float = 0.0
    transpose_augment: int | Sequence[int] = 0
    canonicalise: str | None = None
    input_channels: str = "spectrogram"

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ParameterError(f"need epochs >= 1, batch_size >= 1, learning_rate > 0; got {self.epochs}, "
                                 f"{self.batch_size}, {self.learning_rate}")
        if self.valence_weight < 0:
            raise ParameterError(f"valence_weight must be >= 0, got {self.valence_weight}")
        if self.valence_weight > 0 and self.mixup_alpha > 0:
            raise ParameterError("valence_weight and mixup_alpha cannot be combined "
                                 "(mixup blends labels, not valences)")
        if check_input_channels(self.input_channels) != "spectrogram" and (self.pretrained or self.pretrain_epochs):
            raise ParameterError(f"input_channels={self.input_channels!r} cannot be combined with pretrained "
                                 f"weights or masked pretraining (both expect a one-channel patch embedding)")

    @classmethod
    def of(cls, options: "TrainOptions | None" = None, **changes: Any) -> "TrainOptions":
        """``options`` (default: all defaults) with ``changes``; an unknown name is a :class:`ParameterError`."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ParameterError(f"unknown training option(s) {', '.join(unknown)}; "
                                 f"see mer.vit.TrainOptions")
        return dataclasses.replace(options or cls(), **changes)

    def record(self) -> dict[str, Any]:
        """The options as ``meta["train"]`` records them and :func:`checkpoint_dir` hashes them.

        ``logmel`` is left out (the checkpoint records the resolved front end
        beside it); options off by default appear only when on, so the folders
        of runs from before an option existed do not move.
        """
        hyper = {"size": self.size, "epochs": int(self.epochs), "batch_size": int(self.batch_size),
                 "learning_rate": float(self.learning_rate), "seed": int(self.seed),
                 "time_budget_s": self.time_budget_s,
                 "weight_decay": self.weight_decay, "warmup_fraction": self.warmup_fraction,
                 "label_smoothing": self.label_smoothing, "time_mask": self.time_mask,
                 "freq_mask": self.freq_mask, "patience": self.patience, "min_delta": self.min_delta,
                 "time_shift": bool(self.time_shift), "dropout": float(self.dropout),
                 "mixup_alpha": float(self.mixup_alpha), "pretrain_epochs": int(self.pretrain_epochs),
                 "pretrain_mask_ratio": float(self.pretrain_mask_ratio), "pretrain_span": int(self.pretrain_span),
                 "pretrain_learning_rate": float(self.pretrain_learning_rate), "pretrained": self.pretrained or None,
                 "patch_size": list(self.patch_size) if self.patch_size else None}
        if self.valence_weight:
            hyper["valence_weight"] = float(self.valence_weight)
        if shift_set(self.transpose_augment):
            hyper["transpose_augment"] = augment_record(self.transpose_augment)
        if self.canonicalise:
            hyper["canonicalise"] = str(self.canonicalise)
        if self.input_channels != "spectrogram":
            hyper["input_channels"] = str(self.input_channels)
        return hyper

    @property
    def patch_frames(self) -> int:
        """Frames per patch of the model trained (the input is padded to whole patches)."""
        return (self.patch_size or SIZES.get(self.size, SIZES["default"])["patch"])[1]

    @property
    def input_patch_frames(self) -> int:
        """Frames the input is padded to a multiple of (16 for pretrained ImageNet weights' square patches)."""
        return 16 if self.pretrained else self.patch_frames


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
        val_balanced_accuracy, learning_rate, selected``.
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


def train(dataset, options: TrainOptions | None = None, *, out_dir: str | Path | None = None, resume: bool = True,
          num_threads: int | None = None, n_jobs: int = 2, progress: bool = True, **changes: Any) -> TrainResult:
    """Train the ViT on a dataset's ``train`` split, selecting on ``val``.

    Parameters
    ----------
    dataset : mer.data.Dataset
        Clips with ``split`` in train/val/test (test is never read here).
    options : TrainOptions, optional
        What to learn and how (default: :class:`TrainOptions`'s defaults).
    out_dir : path, optional
        Checkpoint folder; default :func:`mer.vit.checkpoint_dir` of the
        dataset and :meth:`TrainOptions.record`.
    resume : bool
        Continue from the folder's last finished epoch (or return the finished
        model) instead of starting over.
    num_threads : int, optional
        ``torch.set_num_threads`` for the run.
    n_jobs : int
        Processes computing the spectrograms (cached; once per dataset).
    progress : bool
        Progress bars and one line per epoch.
    **changes
        Fields of :class:`TrainOptions` to change (``epochs=3``, ``seed=1``...).

    Returns
    -------
    TrainResult

    Notebook: notebooks/02_vit.ipynb
    """
    options = TrainOptions.of(options, **changes)
    if num_threads:
        torch.set_num_threads(int(num_threads))
    hyper = options.record()
    parallel = accelerator()
    progress = progress and parallel.is_main_process  # one process draws the bars
    with parallel.main_process_first():  # the log-mels are computed and cached once
        data = prepare(dataset, logmel=options.logmel, n_jobs=n_jobs, progress=progress,
                       patch_frames=options.input_patch_frames, transpose_augment=options.transpose_augment,
                       canonicalise=options.canonicalise)
    out = Path(out_dir) if out_dir else checkpoint_dir(dataset, logmel=data["logmel"], **hyper)
    out.mkdir(parents=True, exist_ok=True)
    meta = None
    if resume and (out / META_FILE).exists():
        meta = json.loads((out / META_FILE).read_text())
        if meta.get("status") == "done":
            model, meta = load_checkpoint(out)
            return TrainResult(model, out, meta, pd.DataFrame(meta["history"]))
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        run = _Run(dataset, data, options, hyper, out=out, resume=resume, parallel=parallel, progress=progress)
        try:
            if meta is not None and meta.get("status") == "training":
                run.restore(meta)
            for epoch in range(run.state["next_epoch"], options.epochs):
                if run.epoch(epoch):
                    break
        finally:
            run.close()
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
    return run.finish()


class _Run:
    """One training run's state: the model, its optimiser and schedule, the data and the progress so far.

    ``state`` is what a resumed run needs besides the tensors (history,
    selection, early-stopping counters, time spent, the next epoch).
    """

    def __init__(self, dataset, data: dict[str, Any], options: TrainOptions, hyper: dict[str, Any], *, out: Path,
                 resume: bool, parallel, progress: bool):
        self.options, self.out, self.parallel, self.progress = options, out, parallel, progress
        split, labels, specs = data["split"], data["labels"], data["specs"]
        self.x_train, self.y_train = torch.as_tensor(specs[split == "train"]), labels[split == "train"]
        self.has_val = (split == "val").any()
        self.x_val, self.y_val = specs[split == "val"], labels[split == "val"]
        n_mels, n_frames = specs.shape[2], specs.shape[3]
        shifts = shift_set(options.transpose_augment)
        self.transposer = Transposer(data, shifts, split == "train", options.input_patch_frames) if shifts else None
        self.valence_train, valence_standard = None, None
        if options.valence_weight:
            self.valence_train, valence_standard = _valence_targets(data["clips"], split)
        self.valence_standard = valence_standard
        self.model = build_model(options.size, n_mels=n_mels, n_frames=n_frames, patch_size=options.patch_size,
                                 pretrained=options.pretrained, seed=options.seed, dropout=options.dropout,
                                 input_channels=options.input_channels)
        pretrain_seconds, pretrain_history = self._pretrain(specs[split == "train"], resume)
        self.device = parallel.device
        self.model.to(self.device)
        # Under ``accelerate launch`` (several processes) the model is wrapped for
        # data-parallel training: each process runs its share of every batch and
        # the gradients are averaged, so each process's own AdamW and scheduler
        # take the same step. One process (tests, CPU, one GPU): ``net is model``.
        self.net = parallel.prepare_model(self.model) if parallel.num_processes > 1 else self.model
        self.trained = list(self.model.parameters())
        self.head, self.cls_tokens, self.hook = None, [], None
        if options.valence_weight:
            self.head = valence_head(self.model.config, seed=options.seed).to(self.device)
            self.trained += list(self.head.parameters())
            # The classifier's input is the CLS token; the hook hands it to the valence head
            # without a second forward pass (and through the data-parallel wrapper, if any).
            self.hook = self.model.classifier.register_forward_hook(
                lambda module, args, output: self.cls_tokens.append(args[0]))
        self.optimizer = torch.optim.AdamW(self.trained, lr=options.learning_rate, weight_decay=options.weight_decay)
        # An epoch is one balanced_order (its length does not depend on the draw).
        self.steps_per_epoch = math.ceil(len(balanced_order(self.y_train, generator=torch.Generator()))
                                         / options.batch_size)
        total_steps = self.steps_per_epoch * options.epochs
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, int(round(options.warmup_fraction * total_steps)), total_steps)
        self.best_state = _copy(self.model.state_dict())
        self.best_head = _copy(self.head.state_dict()) if self.head is not None else {}
        self.state = {"history": [], "selected_epoch": -1, "best_bacc": -1.0, "best_loss": float("inf"),
                      "since_selected": 0, "since_loss": 0, "train_seconds": 0.0, "stopped": "epochs",
                      "next_epoch": 0}
        self.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=options.label_smoothing)
        self.base = {"status": "training", "train": hyper, "logmel": data["logmel"], "stats": data["stats"],
                     "label2id": LABEL2ID, "id2label": {str(k): v for k, v in ID2LABEL.items()},
                     "model_config": self.model.config.to_dict(), "dataset": {
                         "name": dataset.name, "fingerprint": dataset_fingerprint(dataset.clips),
                         "n_train": int(len(self.y_train)), "n_val": int(len(self.y_val))},
                     "input_shape": [1, n_mels, n_frames],
                     "pretrain_seconds": pretrain_seconds, "pretrain_history": pretrain_history,
                     "key_invariance": key_invariance_record(data["logmel"], options.transpose_augment,
                                                             options.canonicalise)}
        if options.valence_weight:
            self.base["valence_standardisation"] = valence_standard

    def _pretrain(self, train_specs: np.ndarray, resume: bool) -> tuple[float, list]:
        """Masked spectrogram modelling before the supervised epochs, if asked for: (seconds, history)."""
        options = self.options
        if not options.pretrain_epochs:
            return 0.0, []
        if not resume:
            shutil.rmtree(self.out / PRETRAIN_DIR, ignore_errors=True)
        # The main process pretrains and writes; the others then read its result.
        with self.parallel.main_process_first():
            encoder = masked_pretrain(
                train_specs, self.model.config, out_dir=self.out / PRETRAIN_DIR, epochs=int(options.pretrain_epochs),
                batch_size=options.batch_size, learning_rate=options.pretrain_learning_rate,
                weight_decay=options.weight_decay,
                mask_ratio=options.pretrain_mask_ratio, span=options.pretrain_span, seed=options.seed,
                init=self.model.vit.state_dict(), progress=self.progress)
        self.model.vit.load_state_dict(encoder["state"])
        return encoder["seconds"], encoder["history"]

    def restore(self, meta: dict[str, Any]) -> None:
        """Continue after the last finished epoch of an interrupted run (``meta`` of its folder)."""
        tensors = load_file(str(self.out / meta["resume_file"]), device=str(self.device))
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        if self.head is not None:
            self.head.load_state_dict({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")})
            self.best_head = {k[len("best_head."):]: v for k, v in tensors.items() if k.startswith("best_head.")}
        restore_optimizer(self.optimizer, tensors, meta["optimizer"])
        self.scheduler.load_state_dict(dict(meta["scheduler"]))
        self.state.update(meta["progress"])
        log.info("resuming %s after epoch %d", self.out, self.state["next_epoch"] - 1)

    def epoch(self, epoch: int) -> bool:
        """Train one epoch, validate, select, checkpoint; True when training should stop."""
        started = time.perf_counter()
        row = self._fit(epoch)
        selected = self._validate(row)
        if selected:
            self.state["selected_epoch"] = epoch + 1
            self.best_state = _copy(self.model.state_dict())
            if self.head is not None:
                self.best_head = _copy(self.head.state_dict())
        row["selected"] = bool(selected)
        state = self.state
        state["history"].append(row)
        state["train_seconds"] += time.perf_counter() - started
        state["next_epoch"] = epoch + 1
        stop = None
        if self.has_val and min(state["since_selected"], state["since_loss"]) >= self.options.patience:
            stop = "early stopping"
        mean_epoch = state["train_seconds"] / len(state["history"])
        budget = self.options.time_budget_s
        if budget and state["train_seconds"] + mean_epoch > budget and epoch + 1 < self.options.epochs:
            stop = "time budget"
        if stop:
            state["stopped"] = stop
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        if self.progress:
            tqdm.write(f"epoch {epoch + 1}/{self.options.epochs}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
        if self.parallel.is_main_process:  # one writer; the others wait for it
            write_resume(self.out, epoch + 1, self.model, self.best_state, self.optimizer, self.scheduler, self.base,
                         state, head=self.head, best_head=self.best_head)
        self.parallel.wait_for_everyone()
        return bool(stop)

    def _fit(self, epoch: int) -> dict[str, Any]:
        """One pass over a balanced order of the training clips: the epoch's row of the history so far."""
        options, parallel = self.options, self.parallel
        torch.manual_seed(int(options.seed) * 1_000_003 + epoch)  # dropout, if any
        order = balanced_order(self.y_train, generator=epoch_generator(options.seed, epoch, 1))
        masks = epoch_generator(options.seed, epoch, 2)
        keys = epoch_generator(options.seed, epoch, 4)
        self.net.train()
        sums = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "valence_loss": 0.0, "valence_seen": 0.0}
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {epoch + 1}/{options.epochs}", leave=False,
                   disable=not self.progress)
        for step in bar:
            index = torch.as_tensor(order[step * options.batch_size:(step + 1) * options.batch_size])
            if len(index) < parallel.num_processes:
                continue  # a last batch too small to share: skipped alike in every process
            self._step(index, masks, keys, sums)
            bar.set_postfix(loss=f"{sums['loss'] / sums['seen']:.3f}", acc=f"{sums['correct'] / sums['seen']:.3f}")
        row = {"epoch": epoch + 1, "train_loss": sums["loss"] / sums["seen"],
               "train_acc": sums["correct"] / sums["seen"],
               "learning_rate": float(self.scheduler.get_last_lr()[0])}
        if self.head is not None:  # on this process's share of the batches
            row["train_valence_mse"] = sums["valence_loss"] / max(1.0, sums["valence_seen"])
        return row

    def _step(self, index, masks, keys, sums: dict[str, float]) -> None:
        """One optimiser step on the training clips ``index`` (augmented); adds to the epoch's ``sums``."""
        options, parallel, device = self.options, self.parallel, self.device
        batch = self.x_train[index] if self.transposer is None else self.transposer.batch(index.numpy(), generator=keys)
        # The masks are drawn for the whole batch in every process, so
        # the random stream does not depend on the number of processes.
        if options.time_shift:
            batch = roll_time(batch, generator=masks, step=options.patch_frames)
        batch = spec_augment(batch, generator=masks, time_mask=options.time_mask, freq_mask=options.freq_mask)
        target = torch.as_tensor(self.y_train[index.numpy()])
        other, lam = target, 1.0
        if options.mixup_alpha > 0:
            batch, other, lam = mixup(batch, target, generator=masks, alpha=options.mixup_alpha)
        share = slice(parallel.process_index, None, parallel.num_processes)
        batch, target, other = batch[share].to(device), target[share].to(device), other[share].to(device)
        self.cls_tokens.clear()
        logits = self.net(pixel_values=batch).logits
        # Mean over this process's share; averaged over processes by
        # the data-parallel wrapper (equal shares: the batch mean).
        loss = self.loss_fn(logits, target)
        if lam < 1.0:
            loss = lam * loss + (1.0 - lam) * self.loss_fn(logits, other)
        if self.head is not None:
            wanted = self.valence_train[index.numpy()][share.start::share.step].to(device)
            known = ~torch.isnan(wanted)
            if known.any():
                squared = (self.head(self.cls_tokens[-1]).squeeze(-1)[known] - wanted[known]) ** 2
                sums["valence_loss"] += float(squared.detach().sum())
                sums["valence_seen"] += int(known.sum())
                loss = loss + options.valence_weight * squared.mean()
        self.optimizer.zero_grad(set_to_none=True)
        parallel.backward(loss)
        if self.head is not None and parallel.num_processes > 1:
            # The head is outside the data-parallel wrapper: average its gradients by hand.
            for parameter in self.head.parameters():
                parameter.grad = parallel.reduce(parameter.grad, reduction="mean")
        torch.nn.utils.clip_grad_norm_(self.trained, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        step_sums = parallel.reduce(torch.stack([loss.detach() * len(target),
                                                 (logits.argmax(1) == target).sum().to(loss.dtype),
                                                 torch.tensor(float(len(target)), device=device)]),
                                    reduction="sum")
        sums["loss"] += float(step_sums[0])
        sums["correct"] += float(step_sums[1])
        sums["seen"] += float(step_sums[2])

    def _validate(self, row: dict[str, Any]) -> bool:
        """Score the validation split into ``row`` and update the selection counters; True = select this epoch."""
        if not self.has_val:
            return True
        state, min_delta = self.state, self.options.min_delta
        val = _evaluate_split(self.model, self.x_val, self.y_val, batch_size=64,
                              label_smoothing=self.options.label_smoothing)
        row.update(val_loss=val["loss"], val_acc=val["acc"], val_balanced_accuracy=val["balanced_accuracy"])
        selected = val["balanced_accuracy"] >= state["best_bacc"] - min_delta
        improved = val["balanced_accuracy"] > state["best_bacc"] + 1e-12
        state["best_bacc"] = max(state["best_bacc"], val["balanced_accuracy"])
        state["since_selected"] = 0 if (selected and improved) else state["since_selected"] + 1
        if val["loss"] < state["best_loss"]:
            state["best_loss"], state["since_loss"] = val["loss"], 0
        else:
            state["since_loss"] += 1
        return selected

    def close(self) -> None:
        """Remove the valence head's hook (also after an error)."""
        if self.hook is not None:
            self.hook.remove()

    def finish(self) -> TrainResult:
        """The selected weights, in eval mode on the CPU, written as the finished checkpoint."""
        self.model.load_state_dict(self.best_state)
        self.model.to("cpu").eval()  # chapters 3 and 4 explain it on the CPU
        if self.head is not None and self.parallel.is_main_process:
            save_tensors(self.out / VALENCE_HEAD_FILE, self.best_head,
                         {k: repr(v) for k, v in self.valence_standard.items()})
        meta = write_final(self.out, self.model, self.base, self.state) if self.parallel.is_main_process else None
        self.parallel.wait_for_everyone()
        if meta is None:
            meta = json.loads((self.out / META_FILE).read_text())
        return TrainResult(self.model, self.out, meta, pd.DataFrame(meta["history"]))


def _copy(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


def accelerator():
    """Hugging Face Accelerate's view of the run: one process unless started
    by ``accelerate launch`` (then one per GPU, ``process_index`` and
    ``num_processes`` from its environment). Without a GPU, the CPU.

    Notebook: book/corpora.md (training on several GPUs)
    """
    # accelerate takes ~6 s to import (it loads its CUDA and distributed support); only a training run needs it.
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def _evaluate_split(model, specs, labels, *, batch_size: int, label_smoothing: float) -> dict[str, float]:

    proba = predict_proba(model, specs, batch_size=batch_size)
    target = torch.as_tensor(labels)
    loss = torch.nn.functional.cross_entropy(torch.log(torch.as_tensor(proba).clamp_min(1e-12)), target)
    predicted = proba.argmax(1)
    return {"loss": float(loss), "acc": float((predicted == labels).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(labels, predicted))}


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
