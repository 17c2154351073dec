"""The three parameter sets a chapter can be run with.

``quick``
    Seconds per chapter: a few dozen clips rendered with the small TimGM6mb
    SoundFont, a tiny model, one short training run. For tests.
``default``
    The embedded synthetic dataset (FluidR3_GM SoundFont) and the models the
    book reports, sized for a 2-core laptop CPU.
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
        "profile": "quick",
        "dataset": "synth",
        "data_dir": "",
        "n_clips": 48,
        "soundfont": "TimGM6mb",
        "seed": 0,
    },
    "default": {
        "profile": "default",
        "dataset": "synth",
        "data_dir": "",
        "n_clips": 480,
        "soundfont": "FluidR3_GM",
        "seed": 0,
    },
    "thesis": {
        "profile": "thesis",
        "dataset": "deam",
        "data_dir": "",
        "n_clips": 0,
        "soundfont": "FluidR3_GM",
        "seed": 0,
    },
}


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
