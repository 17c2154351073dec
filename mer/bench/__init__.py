"""``make bench``: speed and memory figures, written to ``_build/bench.json``.

Benchmarks, not timed tests: they measure this machine and are reported in
the issues' notes and the Reproducing page; no test fails on a number here.
Each module of this package measures one part of ``mer`` with a
``benchmark()`` function returning a flat dict (:data:`GROUPS`); :func:`run`
calls them, adds the synthetic sets' generation times and the whole book's
cold and warm build times, and merges everything into the file.
``python -m mer bench`` (:mod:`mer.cli.bench`) is its command.

Keys (each documented where it is measured):

- ``synth_generate_s``: the profile's synthetic set (the tonal writing:
  twelve keys, textures, the training SoundFonts) generated from nothing
  with ``n_jobs=2``;
- ``synth_classic_generate_s``: the same size in the classic writing (every
  clip in C, FluidR3_GM);
- ``book_cold_s``, ``book_warm_s``: every chapter executed and the book
  built from no derived artefact (the rendered audio excepted), then the
  same with nothing changed;
- ``features_*``, ``vit_*``, ``lrp_*``, ``sonify_*``: from
  ``mer.bench.features.benchmark``, ``mer.bench.parallel.benchmark``,
  ``mer.bench.vit.benchmark``, ``mer.bench.lrp.benchmark``,
  ``mer.bench.sonify.benchmark``.

Notebook: book/reproducing.md reports them.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .. import profiles, store
from ..data import synth, synth_options

log = logging.getLogger(__name__)

#: Modules of this package whose ``benchmark()`` is called, in this order; their
#: names are the groups of :func:`run` (``mer.bench.sonify`` is the group ``sonify``).
GROUPS = ("features", "parallel", "vit", "lrp", "sonify")


def synth_generate_s(profile: str = "default") -> dict[str, Any]:
    """Generate the profile's synthetic set (its writing, SoundFonts and size) into an empty folder and time it."""
    params = profiles.get(profile)
    with tempfile.TemporaryDirectory(prefix="mer-bench-synth-") as tmp:
        start = time.perf_counter()
        dataset = synth.load(Path(tmp) / "synth", n_jobs=2, **synth_options(
            "synth", n_clips=params["n_clips"], writing=params["writing"], soundfont=params["soundfont"],
            seed=params["seed"]))
        elapsed = time.perf_counter() - start
    return {"synth_generate_s": round(elapsed, 2), "synth_generate_n_clips": len(dataset.clips),
            "synth_generate_clips_per_s": round(len(dataset.clips) / elapsed, 1),
            "synth_generate_writing": params["writing"]}


def synth_classic_generate_s(profile: str = "default") -> dict[str, Any]:
    """Generate the profile's number of clips in the classic writing (FluidR3_GM) into an empty folder and time it."""
    params = profiles.get(profile)
    with tempfile.TemporaryDirectory(prefix="mer-bench-classic-") as tmp:
        start = time.perf_counter()
        dataset = synth.load(Path(tmp) / "classic", n_clips=params["n_clips"], seed=params["seed"],
                             writing="classic", n_jobs=2)
        elapsed = time.perf_counter() - start
    return {"synth_classic_generate_s": round(elapsed, 2), "synth_classic_generate_n_clips": len(dataset.clips),
            "synth_classic_generate_clips_per_s": round(len(dataset.clips) / elapsed, 1)}


def book_times(profile: str = "default") -> dict[str, Any]:
    """Run every chapter and build the book with no derived artefact (cold),
    then again with nothing changed (warm), each as ``python -m mer run``.

    The cold run starts from an empty ``data/derived`` (no features, no
    checkpoint, no relevance) but reads the rendered synthetic audio from
    ``data/synth``: rendering is measured on its own by ``synth_generate_s``.
    """
    with tempfile.TemporaryDirectory(prefix="mer-bench-data-") as tmp:
        rendered = store.data_dir() / "synth"
        rendered.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "synth").symlink_to(rendered, target_is_directory=True)
        env = dict(os.environ, MER_DATA=tmp)
        times = {}
        for key, extra in (("book_cold_s", ["--force"]), ("book_warm_s", [])):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mer", "run", "--profile", profile, *extra],
                           cwd=store.root(), env=env, check=True)
            times[key] = round(time.perf_counter() - start, 1)
    return times


def run(keys: list[str] | None = None, *, profile: str = "default") -> dict[str, Any]:
    """Run the benchmarks and merge their figures into ``_build/bench.json``.

    Parameters
    ----------
    keys : list of str, optional
        Restrict to these groups: ``synth``, ``synth_classic``, ``book`` or one of
        :data:`GROUPS` (``features``, ``parallel``, ``vit``, ``lrp``, ``sonify``). ``None`` runs all.
    profile : str
        Profile whose dataset and model sizes are measured.

    Returns
    -------
    dict
        Everything now in ``_build/bench.json``.
    """
    path = store.build_dir() / "bench.json"
    figures: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    groups: dict[str, Callable[[], dict[str, Any]]] = {
        "synth": lambda: synth_generate_s(profile),
        "synth_classic": lambda: synth_classic_generate_s(profile),
    }
    for short in GROUPS:
        # Imported by name so that a group whose module or optional dependency is
        # missing is skipped, and only the groups asked for need torch and the rest.
        try:
            module = importlib.import_module(f"{__name__}.{short}")
        except ImportError:
            continue
        if hasattr(module, "benchmark"):
            groups[short] = module.benchmark
    groups["book"] = lambda: book_times(profile)
    for name, measure in groups.items():
        if keys and name not in keys:
            continue
        log.info("benchmark %s", name)
        start = time.perf_counter()
        result = measure()
        print(f"{name}: {json.dumps(result)} ({time.perf_counter() - start:.0f} s)", flush=True)
        figures.update(result)
        figures["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                              "platform": platform.platform()}
        store.write_json(path, figures)
    return figures



__all__ = ["GROUPS", "synth_generate_s", "synth_classic_generate_s", "book_times", "run"]
