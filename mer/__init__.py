"""mer: the helper package of the explainable Music Emotion Recognition companion.

Every computation the chapters show lives here, one module per concept:

``mer.audio``        loading, writing and playing clips
``mer.metrics``      the class labels, quadrants and scores with bootstrap intervals (one home)
``mer.data``         datasets in one table shape (synthetic default, manifests)
``mer.tonality``     key profiles and the tonic of a clip
``mer.carryover``    whether a model carries over to other keys, SoundFonts and textures
``mer.store``        paths, content hashes and atomic writes under ``data/derived``
``mer.report``       headline numbers and the reproducibility stamp of a chapter
``mer.profiles``     the ``quick`` / ``default`` / ``thesis`` parameter sets
``mer.runner``       ``python -m mer run``: Papermill, caching and the book build
``mer.plots``        figures (the only module that draws)
``mer.numba_cache``  where librosa's compiled kernels are cached, compiled once

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
