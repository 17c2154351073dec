"""The ``chroma`` family: CQT chroma, its entropy and its key-relative profile.

Notebook: notebooks/01_features.ipynb
"""

from __future__ import annotations

import numpy as np

from ..tonality import PITCH_CLASSES
from .analysis import SR, Analysis, as_analysis, entropy, undefined
from .key import key_correlations

#: Scale-degree names of the key-relative chroma (semitones above the tonic).
DEGREES = ("1", "b2", "2", "b3", "3", "4", "#4", "5", "b6", "6", "b7", "7")


def chroma_features(y: np.ndarray | None = None, *, sr: int = SR, analysis: Analysis | None = None,
                    reasons: list | None = None) -> dict[str, float]:
    """Chroma statistics: pitch-class profile, its entropy, its key-relative form.

    ``chroma_<pc> = mean_t c[pc, t]`` with ``c`` the CQT chroma (each frame
    max-normalised, Müller 2015, sec. 3.1.2); ``chroma_entropy = -sum_p q_p
    log2 q_p`` of the normalised mean chroma ``q`` (0 bits: one pitch class,
    log2 12 = 3.58 bits: all equal); ``chroma_rel_<degree>`` is the mean
    chroma rotated so that the estimated tonic (:func:`mer.features.key_features`) is
    degree ``1``: the profile in scale degrees, comparable across transposed
    clips (``chroma_rel_b3`` vs ``chroma_rel_3`` is the minor vs major third).

    References
    ----------
    Müller, M. (2015). Fundamentals of Music Processing. Springer, ch. 3.
    Schörkhuber, C., & Klapuri, A. (2010). Constant-Q transform toolbox for
    music processing. SMC.

    Notebook: notebooks/01_features.ipynb
    """
    a = as_analysis(y, sr, analysis)
    names = ([f"chroma_{pc}" for pc in PITCH_CLASSES] + ["chroma_entropy"]
             + [f"chroma_rel_{d}" for d in DEGREES])
    if a.silent:
        return undefined(names, "chroma: silent clip", reasons)
    mean = a.chroma.mean(axis=1)
    out = {f"chroma_{pc}": float(v) for pc, v in zip(PITCH_CLASSES, mean)}
    out["chroma_entropy"] = entropy(mean)
    r = key_correlations(mean)
    if np.isfinite(r).all():
        tonic = int(np.argmax(r)) % 12
        rel = np.roll(mean, -tonic)
        out.update({f"chroma_rel_{d}": float(v) for d, v in zip(DEGREES, rel)})
    else:
        out.update(undefined([f"chroma_rel_{d}" for d in DEGREES], "chroma: no tonic (flat chroma)", reasons))
    return out
