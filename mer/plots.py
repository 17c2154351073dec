"""Figures for the chapters: the only module of ``mer`` that draws.

Each function takes arrays or DataFrames computed elsewhere and returns a
matplotlib ``Figure`` (or ``Axes`` where it draws into one given), so a
chapter cell is one call and the figure appears in the rendered book.

Sections, one per chapter, so the module reads in the order of the book.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

sns.set_theme(context="notebook", style="whitegrid")

# ---------------------------------------------------------------------------
# Data page (notebooks/00_data.ipynb)
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# Chapter 1: features (notebooks/01_features.ipynb)
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# Chapter 2: ViT (notebooks/02_vit.ipynb)
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# Chapter 3: LRP (notebooks/03_lrp.ipynb)
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# Chapter 4: sonification (notebooks/04_sonification.ipynb)
# ---------------------------------------------------------------------------
