"""The ``key`` family: key and mode by Krumhansl-Kessler profile correlation.

The tonal vocabulary (the 24 key profiles) lives in :mod:`mer.tonality`;
this module correlates a clip's chroma with it.

Notebook: notebooks/01_features.ipynb
"""

from __future__ import annotations

import numpy as np

from .. import ParameterError
from ..tonality import key_profiles  # the Krumhansl-Kessler profiles live with the key vocabulary
from .analysis import SR, Analysis, as_analysis, undefined


def key_correlations(chroma_mean: np.ndarray) -> np.ndarray:
    """Pearson correlation of a chroma vector with each of the 24 key profiles.

    ``r_k = corr(c, p_k)`` with ``p_k`` the Krumhansl-Kessler profile rotated
    to tonic ``k mod 12`` (major for k < 12, minor from 12), the
    Krumhansl-Schmuckler key-finding algorithm (Krumhansl 1990, ch. 4).

    Parameters
    ----------
    chroma_mean : np.ndarray, shape (12,)

    Returns
    -------
    r : np.ndarray, shape (24,)
        NaN where the chroma is constant (no pitch information).

    Notebook: notebooks/01_features.ipynb
    """
    c = np.asarray(chroma_mean, dtype=float)
    if c.shape != (12,):
        raise ParameterError(f"chroma_mean must have shape (12,), got {c.shape}")
    c = c - c.mean()
    norm = np.linalg.norm(c)
    if norm == 0 or not np.isfinite(norm):
        return np.full(24, np.nan)
    profiles = key_profiles()
    profiles = profiles - profiles.mean(axis=1, keepdims=True)
    return profiles @ c / (np.linalg.norm(profiles, axis=1) * norm)


def key_features(y: np.ndarray | None = None, *, sr: int = SR, analysis: Analysis | None = None,
                 reasons: list | None = None) -> dict[str, float]:
    """Key and mode by Krumhansl-Kessler profile correlation.

    The mean CQT chroma ``c`` is correlated with the 24 rotated probe-tone
    profiles (:func:`key_correlations`); the best one is the key.

    Returns
    -------
    dict
        ``key_tonic`` (0 = C .. 11 = B), ``key_minor`` (1 if the best key is
        minor), ``key_clarity = max_k r_k`` (how well any key fits, in [-1, 1]),
        ``key_minorness = max_minor r - max_major r`` (> 0: sounds minor).

    References
    ----------
    Krumhansl, C. L., & Kessler, E. J. (1982). Tracing the dynamic changes in
    perceived tonal organization. Psychological Review, 89(4), 334-368.

    Notebook: notebooks/01_features.ipynb
    """
    a = as_analysis(y, sr, analysis)
    names = ("key_tonic", "key_minor", "key_clarity", "key_minorness")
    if a.silent:
        return undefined(names, "key: silent clip", reasons)
    r = key_correlations(a.chroma.mean(axis=1))
    if not np.isfinite(r).all():
        return undefined(names, "key: flat chroma, no pitch content", reasons)
    best = int(np.argmax(r))
    return {"key_tonic": float(best % 12), "key_minor": float(best >= 12), "key_clarity": float(r[best]),
            "key_minorness": float(r[12:].max() - r[:12].max())}
