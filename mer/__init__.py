"""mer: the helper package of the explainable Music Emotion Recognition companion.

Every computation the chapters show lives here, one module or package per concept,
in the order of the data's path through the book:

``mer.audio``          loading, writing and measuring clips
``mer.data``           datasets in one table shape (synthetic default, manifests, corpora, Bach chorales, folk songs)
``mer.metrics``        the class labels, quadrants and scores with bootstrap intervals (one home)
``mer.tonality``       key profiles and the tonic of a clip
``mer.features``       chapter 1's features, one module per family; extraction and validation
``mer.interpretable``  chapter 1's interpretable models (scikit-learn) and their readings
``mer.spectrogram``    the log-mel and log-frequency front ends, and the map back to STFT bins
``mer.vit``            chapter 2's ViT: model, inputs, augmentation, training, checkpoints, scores
``mer.carryover``      whether a model carries over to other keys, SoundFonts, textures and real music
``mer.lrp``            chapter 3: LRP rules and composites, the explainers, the checks
``mer.sonify``         chapter 4: relevance as a mask on the audio, loudness matched
``mer.faithfulness``   chapter 4: whether a sonified explanation is faithful to the model
``mer.explain``        chapter 4: explaining the ViT's predictions on audio, per clip and per file
``mer.predict``        choosing a checkpoint and predicting a file
``mer.plots``          figures (the only module that draws)
``mer.display``        notebook display: players and quadrant rows (no computation)
``mer.widgets``        the interactive panels of chapters 1 and 4
``mer.report``         headline numbers and the reproducibility stamp of a chapter
``mer.profiles``       the ``quick`` / ``default`` / ``thesis`` parameter sets
``mer.runner``         executing the chapters with Papermill, caching, building the book
``mer.cli``            ``python -m mer``: argument parsing and terminal output only
``mer.bench``          ``make bench``: speed figures of this machine
``mer.store``          paths, content hashes and atomic writes under ``data/derived``
``mer.parallel``       the joblib / Dask fan-out of per-clip work
``mer.numba_cache``    where librosa's compiled kernels are cached, compiled once

Notebooks import these and keep to prose, a few calls and figures.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

# Library convention: the package logs, the application (runner, notebook)
# decides where the log goes.
logging.getLogger(__name__).addHandler(logging.NullHandler())

# Before any submodule imports librosa: numba must cache in a folder of this
# version, filled by one process at a time (see mer.numba_cache).
from . import numba_cache as _numba_cache  # noqa: E402

_numba_cache.configure()


class MerError(Exception):
    """Base class of every error the package raises on purpose."""


class ParameterError(MerError, ValueError):
    """A parameter has a value the function cannot work with."""
