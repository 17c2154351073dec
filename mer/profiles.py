"""The three parameter sets a chapter can be run with.

``quick``
    Seconds per chapter: a few dozen clips of the tonal writing rendered with
    the small TimGM6mb SoundFont, a tiny model, one short training run. For
    tests.
``default``
    The embedded synthetic dataset (the tonal writing: every key, six
    textures, three SoundFonts) and the every-key models the book reports,
    sized for a 2-core laptop CPU.
``thesis``
    A real corpus from the user's disk (``-p dataset deam -p data_dir ...``),
    a larger ViT, a GPU where there is one.

A profile is a flat mapping ``name -> value``. The runner passes to each
chapter only the names that chapter declares in its ``parameters`` cell, so a
profile may hold parameters of several chapters. ``-p NAME VALUE`` on the
command line overrides any of them.

Notebook: ``book/reproducing.md`` shows this table.
"""

from __future__ import annotations

from typing import Any

from . import ParameterError

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        # data
        "profile": "quick",
        "dataset": "synth",
        "data_dir": "",
        "n_clips": 48,
        "writing": "tonal",
        "soundfont": "TimGM6mb",
        "seed": 0,
        # chapter 1: features and interpretable models
        "families": "chroma,key,chords,midlevel,lowlevel",
        "model": "logreg",
        "cv_folds": 3,
        "n_bootstrap": 30,
        "n_jobs": 1,
        "scheduler": "",
        # chapter 2: the ViT (also read by chapters 3 and 4 to find its checkpoint)
        "model_size": "quick",
        "front_end": "logfreq",
        "canonicalise": "tonic",
        "input_channels": "onsets",
        "epochs": 1,
        "batch_size": 16,
        "learning_rate": 3e-4,
        "time_budget_s": 0,
        "pretrained": "",
        "pretrain_epochs": 0,
        "valence_weight": 5.0,
        "n_seeds": 2,
        "n_transposition_scores": 1,
        "n_heldout_clips": 8,
        "n_chorale_clips": 8,
        "n_folk_clips": 8,
        # chapter 3: LRP and its checks
        "n_examples": 1,
        "n_perturbation_clips": 8,
        "perturbation_step": 0.1,
        "n_search_clips": 4,
        "n_probe_clips": 8,
        "n_randomisation_clips": 4,
        "n_randomisation_draws": 1,
        "lrp_epsilons": "0,0.5",
        # chapter 4: sonification
        "n_per_quadrant": 2,
        "n_faithfulness_clips": 8,
    },
    "default": {
        "profile": "default",
        "dataset": "synth",
        "data_dir": "",
        "n_clips": 1200,
        "writing": "tonal",
        "soundfont": "",
        "seed": 0,
        "families": "chroma,key,chords,midlevel,lowlevel",
        "model": "logreg",
        "cv_folds": 5,
        "n_bootstrap": 200,
        "n_jobs": 2,
        "scheduler": "",
        "model_size": "default",
        "front_end": "logfreq",
        "canonicalise": "tonic",
        "input_channels": "onsets",
        "epochs": 30,
        "batch_size": 32,
        "learning_rate": 6e-4,
        "time_budget_s": 0,
        "pretrained": "",
        "pretrain_epochs": 0,
        "valence_weight": 5.0,
        "n_seeds": 3,
        "n_transposition_scores": 8,
        "n_heldout_clips": 96,
        "n_chorale_clips": 120,
        "n_folk_clips": 80,
        "n_examples": 1,
        "n_perturbation_clips": 200,
        "perturbation_step": 0.05,
        "n_search_clips": 40,
        "n_probe_clips": 60,
        "n_randomisation_clips": 32,
        "n_randomisation_draws": 3,
        "lrp_epsilons": "0,0.25,0.5,1,2",
        "n_per_quadrant": 2,
        "n_faithfulness_clips": 60,
    },
    "thesis": {
        "profile": "thesis",
        "dataset": "deam",
        "data_dir": "",
        "n_clips": 0,
        "writing": "tonal",
        "soundfont": "",
        "seed": 0,
        "families": "chroma,key,chords,midlevel,lowlevel",
        "model": "logreg",
        "cv_folds": 5,
        "n_bootstrap": 1000,
        "n_jobs": 2,
        "scheduler": "",
        "model_size": "thesis",
        "front_end": "logfreq",
        "canonicalise": "tonic",
        "input_channels": "onsets",
        "epochs": 30,
        "batch_size": 32,
        "learning_rate": 1e-4,
        "time_budget_s": 0,
        "pretrained": "",
        "pretrain_epochs": 0,
        "valence_weight": 5.0,
        "n_seeds": 3,
        "n_transposition_scores": 12,
        "n_heldout_clips": 240,
        "n_chorale_clips": 240,
        "n_folk_clips": 240,
        "n_examples": 2,
        "n_perturbation_clips": 400,
        "perturbation_step": 0.05,
        "n_search_clips": 60,
        "n_probe_clips": 60,
        "n_randomisation_clips": 64,
        "n_randomisation_draws": 3,
        "lrp_epsilons": "0,0.25,0.5,1,2",
        "n_per_quadrant": 3,
        "n_faithfulness_clips": 400,
    },
}


#: What each parameter does, in a line a reader can act on: the third column of
#: the parameter table every chapter shows (:func:`mer.report.show_parameters`).
#: It covers every profile entry and every parameter a chapter declares in its
#: ``parameters`` cell (``tests/test_book.py`` checks both).
DESCRIPTIONS: dict[str, str] = {
    "profile": "the profile the run started from (quick, default or thesis), recorded in the stamp",
    "dataset": "dataset adapter: synth (the generated set), manifest, deam, pmemo, fourq, ...",
    "data_dir": "where a real dataset lives (empty: its default location)",
    "n_clips": "number of synthetic clips (0: all clips of a corpus)",
    "writing": "how the synthetic clips are composed: tonal (every key, six textures) or classic (C only, block chords)",
    "soundfont": "General MIDI SoundFont that plays the synthetic clips (empty: the writing's own)",
    "seed": "seed of every random choice: data, splits, training, explanations",
    "families": "feature families the models use (chapter 2: its comparison row)",
    "model": "model of the interactive panel's first view (logreg or mlp)",
    "cv_folds": "cross-validation folds of every score",
    "n_bootstrap": "bootstrap resamples of the coefficient intervals",
    "n_jobs": "worker processes of the feature extraction",
    "scheduler": "empty: local processes; tcp://HOST:PORT: a Dask cluster",
    "model_size": "size of the ViT (quick, default, thesis)",
    "front_end": "the ViT's spectrogram: logfreq (24 bands per octave, a transposition is a shift) or mel",
    "canonicalise": "move each clip to its estimated tonic before the ViT hears it: tonic, or empty (off)",
    "input_channels": "the ViT's input: onsets (spectrogram, its rises and its falls) or spectrogram",
    "epochs": "training epochs of the ViT (model selection may keep an earlier one)",
    "batch_size": "training batch size",
    "learning_rate": "AdamW peak learning rate (warm-up, then cosine decay)",
    "time_budget_s": "stop training after this many seconds (0: no limit; a cut run is not reproducible)",
    "pretrained": "local ViT weights to fine-tune from (empty: from scratch)",
    "pretrain_epochs": "epochs of self-supervised masked-spectrogram pretraining (0: off)",
    "valence_weight": "weight of the valence regression beside the label (0: labels only)",
    "n_seeds": "training seeds whose scores show the spread (the first is the chapter's model)",
    "n_transposition_scores": "carry-over check: scores rendered in all twelve keys (twelve clips each)",
    "n_heldout_clips": "carry-over check: clips of each held-out set (SoundFont, texture, neutral cues; twice that in every key)",
    "n_chorale_clips": "real compositions: Bach chorales from music21's corpus scored by mode ranking, half major, half minor",
    "n_folk_clips": "real melodies: Essen collection folk songs (music21's corpus), a melody alone, scored as the chorales",
    "checkpoint": "a trained ViT to explain (empty: chapter 2's model for these parameters)",
    "explainers": "explanation methods compared (lrp, attnlrp, gradxinput, ig, rollout, chefer, occlusion, random)",
    "n_examples": "examples per confusion quadrant",
    "n_perturbation_clips": "held-out clips of the region-perturbation test",
    "perturbation_step": "share of patches removed per perturbation step",
    "n_search_clips": "clips of the greedy-search reference for the perturbation test",
    "n_probe_clips": "ground-truth probe clips",
    "n_randomisation_clips": "clips of the cascading-randomisation check",
    "n_randomisation_draws": "independent random cascades",
    "lrp_epsilons": "candidate epsilons of the LRP epsilon rule, chosen on the validation split",
    "n_per_quadrant": "clips per confusion quadrant with players",
    "threshold": "mask: drop time-frequency cells below this share of the peak relevance (0: off)",
    "top_k_percent": "mask: share of the time-frequency plane kept, in % (the most relevant cells)",
    "mask_exponent": "mask: exponent on the kept cells' relevance (0: kept cells whole)",
    "signed": "also play the evidence against the predicted class (negative relevance)",
    "n_faithfulness_clips": "held-out clips whose sonifications are scored",
}


def describe(name: str) -> str:
    """What parameter ``name`` does (:data:`DESCRIPTIONS`); ``""`` if undocumented."""
    return DESCRIPTIONS.get(name, "")


def get(name: str) -> dict[str, Any]:
    """Return a copy of profile ``name``.

    Raises
    ------
    ParameterError
        If ``name`` is not a known profile; the message lists the known ones.
    """
    if name not in PROFILES:
        raise ParameterError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    return dict(PROFILES[name])
