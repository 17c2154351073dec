"""Headline numbers and the reproducibility stamp of a chapter.

A chapter calls :func:`record` for every number its prose cites (the number
is glued with myst-nb so the prose can reference it, and kept), and ends with
:func:`finish`, which writes the numbers to ``_build/results/<chapter>.json``
and shows the stamp: seed, parameters, package versions, git commit and run
time. The JSON holds only what the parameters determine (no clock, no host),
so two runs with the same parameters give byte-identical files.

Notebook: every chapter ends with ``mer.report.finish``.
"""

from __future__ import annotations

import html
import math
import platform
import subprocess
import time
from importlib import metadata
from typing import Any

import pandas as pd

from . import ParameterError, profiles, store

_STARTED = time.perf_counter()
_RESULTS: dict[str, Any] = {}

#: Packages whose versions the stamp lists.
STAMP_PACKAGES = (
    "numpy", "scipy", "pandas", "scikit-learn", "librosa", "torch", "transformers",
    "pretty_midi", "pyfluidsynth", "soundfile", "papermill", "jupyter-book", "captum",
)


def start() -> None:
    """Reset the recorded numbers and the clock (the runner's kernel is fresh;
    call this when re-running a chapter by hand in a live kernel).

    Notebook: any chapter, by hand in a live kernel.
    """
    global _STARTED
    _STARTED = time.perf_counter()
    _RESULTS.clear()


def _plain(value: Any) -> Any:
    """Turn numpy scalars into Python numbers and round floats to 10 significant
    digits, so the JSON does not change with the last bit of a BLAS sum."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def record(name: str, value: Any, *, display: bool = False) -> Any:
    """Keep ``value`` under ``name`` for the results file and glue it.

    Parameters
    ----------
    name : str
        Key in ``_build/results/<chapter>.json`` and the myst-nb glue name the
        prose uses (``{glue:text}`\\`name:.2f\\``).
    value : number, str, dict or list
        The number the prose cites. Floats are rounded to 10 significant digits.
    display : bool
        Also show the value in the notebook output.

    Returns
    -------
    The value as stored.

    Notebook: every chapter, for each number its prose cites.
    """
    if not name or not isinstance(name, str):
        raise ParameterError(f"record: name must be a non-empty string, got {name!r}")
    stored = _plain(value)
    _RESULTS[name] = stored
    try:  # glue only where myst-nb is present (it is, in the pinned environment)
        from myst_nb import glue  # only inside a chapter's kernel; myst_nb takes ~1 s to import

        glue(name, value, display=display)
    except ImportError:  # pragma: no cover - a bare install without the book
        pass
    return stored


def results() -> dict[str, Any]:
    """Return a copy of the numbers recorded so far.

    Notebook: every chapter (what :func:`finish` will write).
    """
    return dict(_RESULTS)


def git_commit() -> str:
    """The repository's ``HEAD`` commit, with ``+dirty`` if the tree has changes.

    Notebook: every chapter's stamp (:func:`finish`).
    """
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=store.root(), capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    try:
        commit = run("rev-parse", "--short=12", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"


def versions(packages: tuple[str, ...] = STAMP_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (``"not installed"`` where absent).

    Notebook: every chapter's stamp (:func:`finish`).
    """
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def stamp(chapter: str, params: dict[str, Any]) -> dict[str, Any]:
    """The reproducibility stamp of a run: what it needs to be run again.

    Notebook: every chapter's last cell (:func:`finish`).
    """
    return {
        "chapter": chapter,
        "seed": params.get("seed"),
        "parameters": {k: _plain(v) for k, v in sorted(params.items())},
        "versions": versions(),
        "commit": git_commit(),
        "mer_code": store.package_hash(),
        "run_time_s": round(time.perf_counter() - _STARTED, 1),
    }


def parameter_table(params: dict[str, Any]):
    """The parameters of a run as a table: name, value, what it does.

    Parameters
    ----------
    params : dict
        ``name -> value`` as the chapter runs with them.

    Returns
    -------
    pandas.DataFrame
        Index ``parameter``; columns ``value`` and ``what it does``
        (:data:`mer.profiles.DESCRIPTIONS`), in the order of ``params``.

    Notebook: every chapter's first code cell (through :func:`show_parameters`).
    """
    return pd.DataFrame({"value": [_shown(v) for v in params.values()],
                         "what it does": [profiles.describe(k) for k in params]},
                        index=pd.Index(list(params), name="parameter"))


def _shown(value: Any) -> str:
    return '""' if value == "" else str(_plain(value))


def show_parameters(params: dict[str, Any], *, chapter: str | None = None) -> None:
    """Display the parameters of this run as one small table.

    The chapter's ``parameters`` cell and Papermill's injected copy are hidden
    on the page (:func:`mer.runner.present`); this table is what the reader
    sees instead, with the command that changes a value.

    Parameters
    ----------
    params : dict
        ``name -> value`` as the chapter runs with them.
    chapter : str, optional
        The chapter's number and name (``"01_features"``), for the command line.

    Notebook: every chapter's first code cell.
    """
    table = parameter_table(params)
    number = chapter[:2] if chapter else "NN"
    body = "".join(f"<tr><td><code>{html.escape(name)}</code></td><td><code>{html.escape(value)}</code></td>"
                   f"<td>{html.escape(what)}</td></tr>"
                   for name, value, what in zip(table.index, table["value"], table["what it does"]))
    markup = (f"<details class='mer-parameters' open><summary>Parameters of this run ({len(table)}); "
              f"change one with <code>python -m mer run {number} -p NAME VALUE</code></summary>"
              "<table style='font-size:0.85em;line-height:1.25'><thead><tr><th>parameter</th><th>value</th><th>what it does</th>"
              f"</tr></thead><tbody>{body}</tbody></table></details>")
    try:  # optional: IPython is there in a notebook; a bare install prints the table
        from IPython.display import HTML, display  # optional outside a notebook (the caller falls back to text)

        display(HTML(markup))
    except ImportError:  # pragma: no cover
        print(table.to_string())


def finish(chapter: str, params: dict[str, Any], *, show: bool = True) -> dict[str, Any]:
    """Write the chapter's results and show its reproducibility stamp.

    Parameters
    ----------
    chapter : str
        The chapter's notebook name without suffix (``"01_features"``).
    params : dict
        The chapter's parameters as run (the ``parameters`` cell after
        Papermill's injection).
    show : bool
        Display the stamp as a table in the notebook.

    Returns
    -------
    dict
        The stamp. The results file holds ``{"chapter", "parameters",
        "results"}`` only: nothing that varies between identical runs.

    Notebook: every chapter's last cell.
    """
    payload = {
        "chapter": chapter,
        "parameters": {k: _plain(v) for k, v in sorted(params.items())},
        "results": dict(sorted(_RESULTS.items())),
    }
    store.write_json(store.results_dir() / f"{chapter}.json", payload)
    info = stamp(chapter, params)
    if show:
        _show_stamp(info)
    return info


def _show_stamp(info: dict[str, Any]) -> None:
    rows = [("seed", info["seed"]), ("commit", info["commit"]), ("mer code", info["mer_code"]),
            ("run time", f"{info['run_time_s']} s")]
    rows += [(f"parameter {k}", v) for k, v in info["parameters"].items()]
    rows += [(k, v) for k, v in info["versions"].items()]
    body = "".join(f"<tr><td>{html.escape(str(k))}</td><td><code>{html.escape(str(v))}</code></td></tr>"
                   for k, v in rows)
    markup = ("<details class='mer-stamp'><summary>Reproducibility stamp</summary>"
              f"<table>{body}</table></details>")
    try:  # optional: IPython is there in a notebook; a bare install prints the stamp
        from IPython.display import HTML, display  # optional outside a notebook (the caller falls back to text)

        display(HTML(markup))
    except ImportError:  # pragma: no cover
        print("\n".join(f"{k}: {v}" for k, v in rows))
