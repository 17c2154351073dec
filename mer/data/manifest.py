"""Any corpus described by a CSV manifest: ``path,label`` and optional columns.

The generic adapter for a real dataset on the user's disk. The manifest is a
CSV file with at least the columns

``path``
    the audio file, absolute or relative to the CSV's folder;
``label``
    ``happy`` / ``sad`` (any case, surrounding spaces ignored) or ``1`` / ``0``
    (happy = 1, sad = 0, as in :data:`mer.metrics.LABELS`);

and optionally ``valence``, ``arousal`` (numbers), ``split``
(``train`` / ``val`` / ``test``; ``validation`` and ``dev`` mean ``val``),
``clip_id`` (default: the path relative to the CSV's folder, without suffix)
and ``source``. Other columns are kept as extras.

A row whose label is unknown, whose file is missing, or whose audio is not
usable (:func:`mer.audio.inspect`, the rule ``python -m mer predict`` and
``explain`` apply: unreadable, empty, undecodable, shorter than
:data:`mer.audio.MIN_DURATION_S`, all-silent, NaN...) goes to
``Dataset.rejected`` with the reason, and the same one-line message those
commands print is logged as a warning; the other rows go on. The rejected
table is published on the Data page, so it names each file relative to the
manifest's folder (a file outside it by ``.../`` and its name only), never by
an absolute path of the user's disk (:func:`shown_path`).

Without a ``split`` column, a stratified split (60 / 15 / 25 %, seeded) is
drawn and saved under ``data/derived/splits/``, named by a hash of the
manifest's bytes, the seed and the clips, so every chapter uses the same one;
nothing is written into the user's folder.

Notebook: notebooks/00_data.ipynb (the Data page).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from .. import ParameterError, audio, store
from . import COLUMNS, REJECTED_COLUMNS, SPLITS, Dataset, DatasetError

log = logging.getLogger(__name__)

#: File name looked for when ``data_dir`` is a folder.
MANIFEST_NAME = "manifest.csv"
#: Fractions of the generated split (train, val, test).
SPLIT_SIZES = {"train": 0.60, "val": 0.15, "test": 0.25}
#: Accepted spellings of the labels, after lower-casing and stripping.
LABEL_NAMES = {"happy": "happy", "sad": "sad", "1": "happy", "0": "sad", "1.0": "happy", "0.0": "sad"}
#: Accepted spellings of the splits.
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "dev": "val",
               "test": "test"}
#: Checking audio runs in threads above this many files.
PARALLEL_FROM = 64

_OPTIONS = {"seed", "check_audio", "n_jobs"}


def load(data_dir, *, seed: int = 0, check_audio: bool = True, n_jobs: int = 2,
         **options) -> Dataset:
    """Read a manifest CSV into a :class:`mer.data.Dataset`.

    Parameters
    ----------
    data_dir : str or Path
        The CSV file, or a folder holding ``manifest.csv``.
    seed : int
        Seed of the generated split (used only without a ``split`` column).
    check_audio : bool
        Judge the first 10 s of every file (:func:`mer.audio.inspect`) and
        reject the unusable ones (default). ``False`` checks only that the
        files exist.
    n_jobs : int
        Threads for checking audio when there are more than
        :data:`PARALLEL_FROM` files.
    **options
        None other is known; any raises :class:`mer.ParameterError`.

    Returns
    -------
    Dataset
        ``clips`` with the columns :data:`mer.data.COLUMNS` then the CSV's
        extras; ``rejected`` with ``path, reason``; ``info`` with the
        manifest's path, hash and how the split was made.

    Raises
    ------
    ParameterError
        For an unknown option or no ``data_dir``.
    DatasetError
        If the manifest is not there, cannot be read, or lacks ``path`` or
        ``label``. (An empty or single-class result is caught by
        :func:`mer.data.load_dataset`.)

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ParameterError(f"unknown option(s) {unknown} for the manifest dataset; "
                             f"expected some of {sorted(_OPTIONS)}")
    csv_path = _find_manifest(data_dir)
    folder = csv_path.parent
    raw = csv_path.read_bytes()
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read the manifest {csv_path}: {error}") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise DatasetError(f"manifest {csv_path} lacks column(s) {missing}; it has "
                           f"{list(table.columns)} and needs at least path,label")

    clips, rejected = _rows(table, folder=folder)
    if check_audio and len(clips):
        clips, bad = usable_audio(clips, n_jobs=n_jobs)
        rejected += bad
    for row in rejected:  # a decoder's message may quote the absolute path too
        shown = shown_path(row["path"], folder)
        row["reason"] = row["reason"].replace(row["path"], shown) if row["path"] else row["reason"]
        row["path"] = shown
    rejected_frame = pd.DataFrame(rejected, columns=list(REJECTED_COLUMNS))
    for row in rejected:
        log.info("manifest %s: rejected %s (%s)", csv_path.name, row["path"], row["reason"])

    manifest_hash = hashlib.sha256(raw).hexdigest()[:12]
    info = {"manifest": str(csv_path), "manifest_sha256": manifest_hash,
            "label_rule": "label column: happy/sad or 1/0 (happy = 1)"}
    if len(clips) and clips["split"].eq("").all():
        clips, info["split"] = generated_split(clips, seed=seed, manifest_hash=manifest_hash,
                                                name=csv_path.stem)
    else:
        info["split"] = "given by the manifest's split column"

    extras = [c for c in clips.columns if c not in COLUMNS]
    clips = clips[list(COLUMNS) + extras].reset_index(drop=True)
    return Dataset(name="manifest", clips=clips, rejected=rejected_frame, root=folder, info=info)


def _find_manifest(data_dir) -> Path:
    if data_dir in (None, ""):
        raise ParameterError("the manifest dataset needs data_dir: a CSV file with columns "
                             f"path,label or a folder holding {MANIFEST_NAME}")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DatasetError(f"manifest dataset: {path} does not exist; expected a CSV file with "
                           f"columns path,label or a folder holding {MANIFEST_NAME}")
    if path.is_dir():
        candidate = path / MANIFEST_NAME
        if not candidate.is_file():
            csvs = sorted(p.name for p in path.glob("*.csv"))[:5]
            raise DatasetError(f"manifest dataset: no {MANIFEST_NAME} in {path}"
                               + (f" (CSV files there: {csvs}; pass one as data_dir)" if csvs else "")
                               + "; expected a CSV with columns path,label")
        path = candidate
    return path.resolve()


def shown_path(path: str | os.PathLike, folder: Path) -> str:
    """How a rejected file is named on the published Data page.

    Parameters
    ----------
    path : str or Path
        The file as resolved from the manifest (``""`` for an empty cell).
    folder : Path
        The manifest's folder.

    Returns
    -------
    str
        ``path`` relative to ``folder`` (POSIX separators); a file outside
        ``folder`` as ``.../<name>``, so no absolute path of the user's disk
        reaches the book.

    Notebook: notebooks/00_data.ipynb (the Data page's rejected-files table).
    """
    if not str(path):
        return ""
    path = Path(path)
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return f".../{path.name}"


def _rows(table: pd.DataFrame, *, folder: Path) -> tuple[pd.DataFrame, list[dict]]:
    """Normalise the table; return the usable rows and the rejected ones."""
    given_split = "split" in table.columns and table["split"].str.strip().ne("").any()
    kept, rejected = [], []
    for _, row in table.iterrows():
        record = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        name = record["path"]
        if not name:
            rejected.append({"path": "", "reason": "empty path"})
            continue
        path = Path(os.path.normpath(folder / Path(name).expanduser()))
        record["path"] = str(path)
        label = LABEL_NAMES.get(record["label"].lower())
        if label is None:
            rejected.append({"path": str(path), "reason": f"unknown label {record['label']!r}; "
                                                           "expected happy/sad or 1/0"})
            continue
        record["label"] = label
        if given_split:
            split = SPLIT_NAMES.get(record.get("split", "").lower())
            if split is None:
                rejected.append({"path": str(path), "reason": f"unknown split {record.get('split')!r}; "
                                                               f"expected one of {SPLITS}"})
                continue
            record["split"] = split
        else:
            record["split"] = ""
        try:
            audio.check_file(path)
        except audio.AudioError as error:
            log.warning("skipped: %s", error)
            rejected.append({"path": str(path), "reason": error.reason})
            continue
        if not record.get("clip_id"):
            try:
                relative = path.relative_to(folder)
            except ValueError:  # an absolute path outside the manifest's folder
                relative = Path(path.name)
            record["clip_id"] = relative.with_suffix("").as_posix()
        record.setdefault("source", "manifest")
        record["source"] = record["source"] or "manifest"
        kept.append(record)

    clips = pd.DataFrame(kept, columns=list(dict.fromkeys(list(COLUMNS) + list(table.columns))))
    for column in ("valence", "arousal"):
        if column in table.columns:
            clips[column] = pd.to_numeric(clips[column].replace("", np.nan), errors="coerce")
        else:
            clips[column] = np.nan
        clips[column] = clips[column].astype(float)
    return clips, rejected


def usable_audio(clips: pd.DataFrame, *, n_jobs: int,
                 seconds: float | None = audio.DURATION) -> tuple[pd.DataFrame, list[dict]]:
    """Judge every file (:func:`mer.audio.inspect` of the ``seconds`` used, None: all);
    return the usable rows and the rejected ones, each logged as a warning."""

    def reason(path):
        try:
            audio.inspect(path, seconds=seconds)
        except audio.AudioError as error:
            log.warning("skipped: %s", error)
            return error.reason
        except Exception as error:  # a decoder's own failure must not stop the other files
            log.warning("skipped: cannot use audio file %r: %s: %s", path, type(error).__name__, error)
            return f"unreadable: {type(error).__name__}: {error}"
        return None

    paths = clips["path"].tolist()
    # Threads: libsndfile and ffmpeg work outside the GIL, and a thread costs
    # nothing to start, unlike a process that would import librosa again.
    jobs = n_jobs if len(paths) > PARALLEL_FROM else 1
    reasons = Parallel(n_jobs=jobs, prefer="threads")(delayed(reason)(p) for p in paths)
    bad = [{"path": p, "reason": r} for p, r in zip(paths, reasons) if r is not None]
    ok = np.array([r is None for r in reasons], dtype=bool)
    return clips[ok].reset_index(drop=True), bad


def generated_split(clips: pd.DataFrame, *, seed: int, manifest_hash: str,
                     name: str) -> tuple[pd.DataFrame, str]:
    """Draw (or read back) the stratified seeded split; return clips and a note."""
    ids = sorted(clips["clip_id"])
    key = store.hash_params({"manifest": manifest_hash, "seed": int(seed),
                             "sizes": SPLIT_SIZES, "clip_ids": ids})
    split_path = store.derived_dir() / "splits" / f"{name}-{key}.csv"
    if split_path.is_file():
        saved = pd.read_csv(split_path, dtype=str)
        mapping = dict(zip(saved["clip_id"], saved["split"]))
    else:
        mapping = draw_split(clips["clip_id"], clips["label"], seed=seed)
        frame = pd.DataFrame({"clip_id": ids, "split": [mapping[i] for i in ids]})
        store.write_csv(split_path, frame)
    clips = clips.assign(split=clips["clip_id"].map(mapping))
    return clips, f"stratified 60/15/25 with seed {seed}, saved in {split_path}"


def draw_split(clip_ids, labels, *, seed: int = 0) -> dict[str, str]:
    """A stratified, seeded train/val/test assignment (60 / 15 / 25 %).

    Parameters
    ----------
    clip_ids : sequence of str, shape (n_clips,)
    labels : sequence of str, shape (n_clips,)
    seed : int
        ``random_state`` of scikit-learn's ``train_test_split``.

    Returns
    -------
    dict
        ``clip_id -> "train" | "val" | "test"``. Too few clips of a class to
        stratify (fewer than about 4 each) falls back to an unstratified
        seeded split, with a warning in the log.

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    # scikit-learn takes ~1.5 s to import; only this function needs it
    from sklearn.model_selection import train_test_split

    # Sorted first, so the split depends on the set of clips and not on the
    # order of the manifest's rows.
    order = np.argsort(np.asarray(clip_ids, dtype=str), kind="stable")
    ids = np.asarray(clip_ids, dtype=str)[order]
    y = np.asarray(labels, dtype=str)[order]
    if ids.size < 4:
        raise DatasetError(f"{ids.size} clip(s) cannot be split into train/val/test; "
                           "a manifest needs at least 4 usable clips (or a split column)")
    val_of_rest = SPLIT_SIZES["val"] / (SPLIT_SIZES["train"] + SPLIT_SIZES["val"])
    try:
        rest, test = train_test_split(np.arange(ids.size), test_size=SPLIT_SIZES["test"],
                                      random_state=seed, stratify=y)
        train, val = train_test_split(rest, test_size=val_of_rest, random_state=seed, stratify=y[rest])
    except ValueError as error:
        log.warning("cannot stratify the split of %d clips (%s); splitting unstratified", ids.size, error)
        rest, test = train_test_split(np.arange(ids.size), test_size=SPLIT_SIZES["test"], random_state=seed)
        train, val = train_test_split(rest, test_size=val_of_rest, random_state=seed)
    mapping = {}
    for split, index in (("train", train), ("val", val), ("test", test)):
        mapping.update({ids[i]: split for i in index})
    return mapping
