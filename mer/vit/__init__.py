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

Optionally (``input_channels="onsets"``; off by default) the patch embedding
also sees where each bin's energy rises and falls from one frame to the next
(:func:`onset_channels`, computed inside the model from its one-channel
input). On the tonal writing it doubled the weight the model gives the tempo
and lifted the every-key design by 0.02-0.04 on every seed tried (book/design.md,
"Every key").

Optionally (``pretrain_epochs``; off in the default profile) the encoder first
learns without labels to fill in hidden spans of the training spectrograms
(:func:`masked_pretrain`), a stand-in for the pretrained weights the thesis
fine-tuned, which cannot be downloaded here.

The package, one module per concept:

==========================  ================================================================
:mod:`mer.vit.model`        the ViT (sizes, build, pretrained adaptation), predictions, representations
:mod:`mer.vit.inputs`       spectrograms as the model sees them; audio -> input; key-invariance options
:mod:`mer.vit.augment`      SpecAugment, time roll, mixup, balanced order, transposition
:mod:`mer.vit.pretrain`     masked spectrogram modelling
:mod:`mer.vit.training`     :class:`TrainOptions` and :func:`train`
:mod:`mer.vit.checkpoint`   folders on disk, :class:`Checkpoint`, loading and describing
:mod:`mer.vit.evaluation`   test-split scores with bootstrap intervals; the seed spread
:mod:`mer.vit.records`      which checkpoint is chapter 2's model
==========================  ================================================================

The command line (``python -m mer train``) is :mod:`mer.cli.train`; the
speed figures are :mod:`mer.bench.vit`.

Notebook: notebooks/02_vit.ipynb
"""


from __future__ import annotations

from .model import (SIZES, INPUT_CHANNELS, CheckpointError, PretrainedNotFound, model_config, onset_channels,
                    vit_from_config, build_model, predict_proba, representation, clip_representations,
                    valence_head)
from .inputs import (CANONICALISE, LOGFREQ_LOGMEL, STATS_CLIPS, shift_set, augment_record, key_options,
                     key_invariance_record, tall_logmel_params, canonical_semitones, clip_moves, tonic_profile,
                     audio_canonical_semitones, input_filterbank, crop_each, prepare, model_input, fit_input,
                     audio_input, audio_input_and_shift)
from .augment import spec_augment, roll_time, mixup, balanced_order, epoch_generator, Transposer
from .pretrain import PRETRAIN_DIR, span_mask, masked_pretrain
from .checkpoint import (META_FILE, WEIGHTS_FILE, VALENCE_HEAD_FILE, REQUIRED_META, CHECKPOINT_REMEDY,
                         Checkpoint, dataset_fingerprint, checkpoint_dir, load_checkpoint, weights_sha256,
                         describe_checkpoint, latest_checkpoint)
from .training import TrainOptions, TrainResult, train, accelerator, valence_weight_for
from .evaluation import Evaluation, evaluate, seed_spread
from .records import (CHAPTER_MODEL_DIR, LAST_PROFILE_FILE, chapter_model, chapter_model_records, chapter_options,
                      record_chapter_model, recorded_chapter_model)

__all__ = [
    "SIZES", "INPUT_CHANNELS", "CheckpointError", "PretrainedNotFound", "model_config", "onset_channels",
    "vit_from_config", "build_model", "predict_proba",
    "representation", "clip_representations", "valence_head", "CANONICALISE", "LOGFREQ_LOGMEL", "STATS_CLIPS",
    "shift_set", "augment_record", "key_options", "key_invariance_record", "tall_logmel_params",
    "canonical_semitones", "clip_moves", "tonic_profile", "audio_canonical_semitones", "input_filterbank", "crop_each",
    "prepare", "model_input", "fit_input", "audio_input", "audio_input_and_shift", "spec_augment", "roll_time",
    "mixup", "balanced_order", "epoch_generator", "Transposer", "PRETRAIN_DIR", "span_mask", "masked_pretrain",
    "META_FILE", "WEIGHTS_FILE", "VALENCE_HEAD_FILE", "REQUIRED_META", "CHECKPOINT_REMEDY", "Checkpoint",
    "dataset_fingerprint", "checkpoint_dir", "load_checkpoint", "weights_sha256", "describe_checkpoint",
    "latest_checkpoint", "TrainOptions", "TrainResult", "train", "accelerator", "valence_weight_for",
    "Evaluation", "evaluate", "seed_spread", "CHAPTER_MODEL_DIR", "LAST_PROFILE_FILE", "chapter_model", "chapter_options",
    "chapter_model_records", "record_chapter_model", "recorded_chapter_model",
]
