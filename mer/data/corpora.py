"""Public MER corpora read from the user's disk, exactly as their publishers lay them out.

No corpus is downloaded at run time: the user downloads it once (see
``book/corpora.md`` for where) and passes its folder as ``data_dir``. Each
adapter reads the published file tree, file names and annotation columns,
turns the annotations into Happy / Sad with the rule stated in its
docstring, and returns the common table of :mod:`mer.data`. The machinery
is shared with the generic :mod:`mer.data.manifest` adapter:

* a missing ``data_dir``, or one that does not look like the corpus, raises
  :class:`mer.data.DatasetError` naming the expected file and where the
  corpus is published;
* a row whose audio file is missing or not usable goes to
  ``Dataset.rejected`` with the reason (:func:`mer.audio.inspect`, the rule
  ``python -m mer predict`` and ``explain`` apply, logged as a warning with
  their one-line message), and so does a row whose rating is missing; the
  other rows go on;
* a clip that is neither Happy nor Sad under the rule (another quadrant,
  near the centre, another target emotion, both tags) is *excluded*, not
  rejected: it is counted in ``Dataset.info["excluded"]``;
* the official split is used where the corpus has one (MTG-Jamendo);
  otherwise a stratified, seeded 60/15/25 split is drawn per *track* and
  saved under ``data/derived/splits/`` (:func:`mer.data.manifest.draw_split`),
  so every chapter uses the same one.

Long files
----------
The models see 10 s (:data:`mer.audio.DURATION`). A corpus's clips are
longer (DEAM 45 s, 4Q and PMEmo about 30 s, Soundtracks about 15 s, Jamendo
whole tracks), so ``window`` picks which 10 s a row stands for:

``"first"`` (default)
    the first 10 s; ``offset_s = 0``.
``"centre"``
    the middle 10 s; ``offset_s = (duration - 10) / 2`` (0 for short files).
``"all"``
    every whole 10 s window, one row each, ``clip_id = <track_id>-wNN``;
    a tail shorter than 10 s is dropped (a file shorter than 10 s gives one
    zero-padded window), as in :func:`mer.audio.windows`.

Every table has ``track_id`` (the corpus's clip), ``window_index``,
``offset_s`` (read the row's audio with
``mer.audio.load(path, offset=offset_s)``) and ``duration_s`` (the file's
length; NaN with ``window="first"``, which does not need it). All windows of
a track share its label and split, so no track is in two splits.
:func:`aggregate_windows` turns window-level predictions into one per track.

Notebook: notebooks/00_data.ipynb (the Data page) and book/corpora.md.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from joblib import Parallel, delayed

from .. import ParameterError, audio
from ..metrics import HAPPY, SAD
from . import COLUMNS, REJECTED_COLUMNS, Dataset, DatasetError, manifest

log = logging.getLogger(__name__)

#: Which 10 s of a longer file a row stands for.
WINDOWS = ("first", "centre", "all")
#: Extra columns every corpus table has, after :data:`mer.data.COLUMNS`.
WINDOW_COLUMNS = ("track_id", "window_index", "offset_s", "duration_s")

#: What the book's corpus table shows, per adapter. Sizes and licences are
#: the publishers' (sources in book/corpora.md).
CORPORA = {
    "deam": {
        "title": "DEAM (MediaEval Database for Emotional Analysis in Music)",
        "url": "https://cvml.unige.ch/databases/DEAM/",
        "size": "1,802 excerpts (1,744 of 45 s + 58 full songs)",
        "clip_length": "45 s (2013-2014); full songs (2015)",
        "labels": "static valence / arousal means, 1-9 (SAM)",
        "licence": "annotations CC BY-NC-SA; audio from Free Music Archive / Jamendo / medleyDB "
                   "under Creative Commons licences",
    },
    "pmemo": {
        "title": "PMEmo 2019 (Popular Music with Emotional annotations)",
        "url": "https://github.com/HuiZhangDB/PMEmo",
        "size": "794 choruses (767 with static annotations)",
        "clip_length": "chorus, about 30 s",
        "labels": "static valence / arousal means, 0-1",
        "licence": "research use, on request to the authors (see the repository)",
    },
    "fourq": {
        "title": "4Q audio emotion dataset (Panda, Malheiro & Paiva 2018)",
        "url": "http://mir.dei.uc.pt/downloads.html",
        "size": "900 clips, 225 per quadrant",
        "clip_length": "about 30 s",
        "labels": "Russell quadrant Q1-Q4 (AllMusic tags)",
        "licence": "research use (see the download page)",
    },
    "soundtracks": {
        "title": "Soundtracks, Set 1 (Eerola & Vuoskoski 2011)",
        "url": "https://osf.io/p6vkg/",
        "size": "360 film-music excerpts",
        "clip_length": "about 15 s",
        "labels": "target emotion (happy, sad, tender, fear, anger, valence, energy, tension) "
                  "and mean ratings 1-9",
        "licence": "shared for academic research (see the OSF page)",
    },
    "jamendo_mood": {
        "title": "MTG-Jamendo, mood/theme subset",
        "url": "https://github.com/MTG/mtg-jamendo-dataset",
        "size": "18,486 tracks, 59 mood/theme tags",
        "clip_length": "whole tracks (at least 30 s)",
        "labels": "mood/theme tags from the uploaders",
        "licence": "metadata CC BY-NC-SA 4.0; audio under each track's Creative Commons licence",
    },
}

#: Default margins of the quadrant rules, in the corpus's own units: 1/16 of
#: the rating scale on either side of its centre (DEAM 1-9: 0.5; PMEmo 0-1: 0.0625).
DEAM_MARGIN = 0.5
PMEMO_MARGIN = 0.0625

_COMMON_OPTIONS = ("seed", "window", "check_audio", "n_jobs")


# ----------------------------------------------------------------------------
# The adapters
# ----------------------------------------------------------------------------


def _rated_row(clip_id: str, path: Path, valence, arousal, *, centre: float, margin: float,
               rejected: list, excluded: dict, missing: str) -> dict | None:
    """The common-table row of a clip rated on valence and arousal, or ``None``.

    An empty rating goes to ``rejected`` (with ``missing`` as the reason's
    detail); a clip the quadrant rule leaves out is counted in ``excluded``.
    """
    valence, arousal = _number(valence), _number(arousal)
    if math.isnan(valence) or math.isnan(arousal):
        rejected.append({"path": str(path), "reason": f"missing rating ({missing})"})
        return None
    label = _quadrant_label(valence, arousal, centre=centre, margin=margin)
    if label is None:
        _count(excluded, f"neither upper-right nor lower-left quadrant beyond margin {margin:g}")
        return None
    return {"clip_id": clip_id, "path": str(path), "label": label, "valence": valence,
            "arousal": arousal, "split": ""}


def load_deam(data_dir, *, seed: int = 0, window: str = "first", margin: float = DEAM_MARGIN,
              check_audio: bool = True, n_jobs: int = 2) -> Dataset:
    """Read MediaEval DEAM into the common table.

    Layout read (``data_dir`` = the folder where ``DEAM_Annotations.zip`` and
    ``DEAM_audio.zip`` were unpacked; the files are found below it, so the
    Kaggle mirror's extra ``DEAM_Annotations/`` level works too)::

        annotations/annotations averaged per song/song_level/
            static_annotations_averaged_songs_1_2000.csv
            static_annotations_averaged_songs_2000_2058.csv   (optional: the 58 full songs)
        MEMD_audio/<song_id>.mp3

    The CSVs are comma-separated with a space after each comma in the header
    (``song_id, valence_mean, valence_std, arousal_mean, arousal_std``), so
    the raw column names carry leading spaces; they are stripped here.

    Happy / Sad rule
        Happy: ``valence_mean > 5 + margin`` and ``arousal_mean > 5 + margin``
        (upper-right quadrant of the 1-9 scale). Sad: both ``< 5 - margin``
        (lower-left). Every other song (the two other quadrants, or within
        ``margin`` of the centre line) is excluded and counted in
        ``info["excluded"]``. A song with an empty ``valence_mean`` or
        ``arousal_mean`` is rejected ("missing rating").
    Split
        DEAM has no train/val/test split of the static annotations (the
        2015 development / evaluation sets are 1-2000 / 2000-2058, a
        different question): a stratified seeded split is drawn and saved.

    Parameters
    ----------
    data_dir : str or Path
    seed : int
        Seed of the generated split.
    window : {"first", "centre", "all"}
        Which 10 s of each excerpt a row stands for (module docstring).
    margin : float
        Half-width of the excluded band around the centre (5), in rating
        units; default :data:`DEAM_MARGIN` = 0.5.
    check_audio : bool
        Decode the first 10 s of every file and reject the unusable ones.
    n_jobs : int
        Threads for checking audio.

    Returns
    -------
    Dataset
        Extras: ``song_id``, ``valence_std``, ``arousal_std``,
        ``annotation_file`` and the window columns. ``valence`` and
        ``arousal`` are the 1-9 means.

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    _check_window(window)
    _check_margin(margin, high=4.0)
    root = _root(data_dir, "deam")
    # Layout: DEAM_Annotations.zip unpacks to "annotations/annotations averaged per song/
    # song_level/static_annotations_averaged_songs_1_2000.csv" (+ "_2000_2058.csv"), seen in
    # several public loaders (e.g. github.com/ty-martz/audiologic, Kaggle mirror
    # imsparsh/deam-mediaeval-dataset-emotional-analysis-in-music); searched for, not assumed.
    first = _find_file(root, "static_annotations_averaged_songs_1_2000.csv", corpus="deam",
                       expected="annotations/annotations averaged per song/song_level/"
                                "static_annotations_averaged_songs_1_2000.csv")
    second = next(iter(sorted(root.rglob("static_annotations_averaged_songs_2000_2058.csv"))), None)
    # Layout: DEAM_audio.zip unpacks to MEMD_audio/<song_id>.mp3.
    audio_dir = _find_dir(root, "MEMD_audio", corpus="deam", expected="MEMD_audio/<song_id>.mp3")

    rows, rejected, excluded = [], [], {}
    files = [first] + ([second] if second is not None else [])
    for csv_path in files:
        table = _read_csv(csv_path, corpus="deam", required=("song_id", "valence_mean", "arousal_mean"))
        for record in table.to_dict("records"):
            song_id = _id_text(record["song_id"])
            row = _rated_row(song_id, audio_dir / f"{song_id}.mp3", record["valence_mean"],
                             record["arousal_mean"], centre=5.0, margin=margin, rejected=rejected,
                             excluded=excluded, missing=f"valence_mean or arousal_mean empty in "
                                                     f"{csv_path.name}, song {song_id}")
            if row:
                rows.append({**row, "song_id": song_id, "valence_std": _number(record.get("valence_std")),
                             "arousal_std": _number(record.get("arousal_std")),
                             "annotation_file": csv_path.name})
    rule = (f"Happy: valence_mean > {5 + margin:g} and arousal_mean > {5 + margin:g}; "
            f"Sad: both < {5 - margin:g} (1-9 scale, margin {margin:g}); others excluded")
    return _finish("deam", root=root, rows=rows, rejected=rejected, excluded=excluded, rule=rule,
                   annotation_files=files, official=None, seed=seed, window=window,
                   check_audio=check_audio, n_jobs=n_jobs,
                   notes={"annotation_files": [str(f) for f in files],
                          "full_songs_file": "found" if second is not None else
                          "absent (static_annotations_averaged_songs_2000_2058.csv): the 58 2015 songs "
                          "are left out"})


def load_pmemo(data_dir, *, seed: int = 0, window: str = "first", margin: float = PMEMO_MARGIN,
               check_audio: bool = True, n_jobs: int = 2) -> Dataset:
    """Read PMEmo 2019 into the common table.

    Layout read (``data_dir`` = the ``PMEmo2019`` folder, or the folder
    holding it)::

        annotations/static_annotations.csv   musicId, Arousal(mean), Valence(mean)
        chorus/<musicId>.mp3

    Happy / Sad rule
        As DEAM's on the 0-1 scale: Happy: ``Valence(mean) > 0.5 + margin``
        and ``Arousal(mean) > 0.5 + margin``; Sad: both ``< 0.5 - margin``;
        the rest excluded (counted in ``info["excluded"]``). An empty rating
        is rejected.
    Split
        PMEmo has none: a stratified seeded split is drawn and saved.

    Parameters
    ----------
    data_dir : str or Path
    seed, window, check_audio, n_jobs
        As :func:`load_deam`.
    margin : float
        Default :data:`PMEMO_MARGIN` = 0.0625 (the same 1/16 of the scale as
        DEAM's 0.5 on 1-9).

    Returns
    -------
    Dataset
        Extras: ``music_id`` and the window columns; ``valence``/``arousal``
        on 0-1.

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    _check_window(window)
    _check_margin(margin, high=0.5)
    root = _root(data_dir, "pmemo")
    if not (root / "annotations").is_dir() and (root / "PMEmo2019").is_dir():
        root = root / "PMEmo2019"
    # Layout: github.com/HuiZhangDB/PMEmo README (dataset tree: annotations/, chorus/,
    # metadata.csv) and loaders reading annotations/static_annotations.csv with columns
    # musicId, Arousal(mean), Valence(mean) (e.g. github.com/nspotrepka/566 data/README.md:
    # "values are between 0 and 1").
    csv_path = root / "annotations" / "static_annotations.csv"
    if not csv_path.is_file():
        raise _absent("pmemo", root, "annotations/static_annotations.csv")
    audio_dir = root / "chorus"
    if not audio_dir.is_dir():
        raise _absent("pmemo", root, "chorus/<musicId>.mp3")
    table = _read_csv(csv_path, corpus="pmemo", required=("musicId", "Arousal(mean)", "Valence(mean)"))
    rows, rejected, excluded = [], [], {}
    for record in table.to_dict("records"):
        music_id = _id_text(record["musicId"])
        row = _rated_row(music_id, audio_dir / f"{music_id}.mp3", record["Valence(mean)"],
                         record["Arousal(mean)"], centre=0.5, margin=margin, rejected=rejected,
                         excluded=excluded, missing=f"Valence(mean) or Arousal(mean) empty, musicId {music_id}")
        if row:
            rows.append({**row, "music_id": music_id})
    rule = (f"Happy: Valence(mean) > {0.5 + margin:g} and Arousal(mean) > {0.5 + margin:g}; "
            f"Sad: both < {0.5 - margin:g} (0-1 scale, margin {margin:g}); others excluded")
    return _finish("pmemo", root=root, rows=rows, rejected=rejected, excluded=excluded, rule=rule,
                   annotation_files=[csv_path], official=None, seed=seed, window=window,
                   check_audio=check_audio, n_jobs=n_jobs)


def load_fourq(data_dir, *, seed: int = 0, window: str = "first", check_audio: bool = True,
               n_jobs: int = 2) -> Dataset:
    """Read the 4Q audio emotion dataset (Panda et al. 2018) into the common table.

    Layout read (``data_dir`` = the unpacked ``MER_audio_taffc_dataset``
    folder, or the folder holding it)::

        panda_dataset_taffc_annotations.csv   "Song","Quadrant" (Q1..Q4)
        panda_dataset_taffc_metadata.csv      (not needed)
        Q1/<Song>.mp3  Q2/...  Q3/...  Q4/...

    Without the annotations CSV the quadrant is taken from the folder.

    Happy / Sad rule
        Happy = Q1 (positive valence, high arousal), Sad = Q3 (negative
        valence, low arousal); Q2 and Q4 are excluded (counted in
        ``info["excluded"]``). ``valence`` and ``arousal`` are NaN: the
        corpus gives quadrants only.
    Split
        None published: a stratified seeded split is drawn and saved.

    Parameters
    ----------
    data_dir : str or Path
    seed, window, check_audio, n_jobs
        As :func:`load_deam`.

    Returns
    -------
    Dataset
        Extras: ``song``, ``quadrant`` and the window columns.

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    _check_window(window)
    root = _root(data_dir, "fourq")
    if not (root / "Q1").is_dir() and (root / "MER_audio_taffc_dataset").is_dir():
        root = root / "MER_audio_taffc_dataset"
    # Layout: the dataset's readme ("Panda et al. TAFFC Dataset - 2018": 900 clips "organized in
    # 4 folders (Q1 to Q4)", "Two metadata csv files"); file names panda_dataset_taffc_annotations.csv
    # / _metadata.csv and paths "<Quadrant>/<Song>.mp3" with Song ids like MT0000040632 as read by
    # public loaders (found with the `code` search; e.g. a 4Q loader building
    # '{}/{}.mp3'.format(df['Quadrant'][i], df['Song'][i])).
    missing = [q for q in ("Q1", "Q3") if not (root / q).is_dir()]
    if missing:
        raise _absent("fourq", root, f"{missing[0]}/ (the quadrant folders Q1..Q4 of MER_audio_taffc_dataset)")
    csv_path = root / "panda_dataset_taffc_annotations.csv"
    rows, rejected, excluded = [], [], {}
    if csv_path.is_file():
        table = _read_csv(csv_path, corpus="fourq", required=("Song", "Quadrant"))
        records = [(_id_text(r["Song"]), str(r["Quadrant"]).strip().upper()) for r in table.to_dict("records")]
        annotation_files = [csv_path]
    else:
        log.warning("fourq: no %s; taking quadrants from the folders", csv_path.name)
        records = [(p.stem, q) for q in ("Q1", "Q2", "Q3", "Q4") if (root / q).is_dir()
                   for p in sorted((root / q).glob("*.mp3"))]
        annotation_files = []
    for song, quadrant in records:
        path = root / quadrant / f"{song}.mp3"
        if quadrant not in ("Q1", "Q2", "Q3", "Q4"):
            rejected.append({"path": str(path), "reason": f"unknown quadrant {quadrant!r}; expected Q1..Q4"})
            continue
        if quadrant in ("Q2", "Q4"):
            _count(excluded, f"quadrant {quadrant}")
            continue
        rows.append({"clip_id": song, "path": str(path), "label": "happy" if quadrant == "Q1" else "sad",
                     "valence": np.nan, "arousal": np.nan, "split": "", "song": song, "quadrant": quadrant})
    return _finish("fourq", root=root, rows=rows, rejected=rejected, excluded=excluded,
                   rule="Happy = Q1, Sad = Q3; Q2 and Q4 excluded", annotation_files=annotation_files,
                   official=None, seed=seed, window=window, check_audio=check_audio, n_jobs=n_jobs)


def load_soundtracks(data_dir, *, seed: int = 0, window: str = "first", check_audio: bool = True,
                     n_jobs: int = 2) -> Dataset:
    """Read the Soundtracks Set 1 (Eerola & Vuoskoski 2011) into the common table.

    Layout read (``data_dir`` = the folder holding the OSF downloads)::

        mean_ratings_set1.csv   Number, valence, energy, tension, anger, fear,
                                happy, sad, tender, TARGET  (ratings 1-9)
        Set1/Set1/001.mp3 ... 360.mp3   (Set1.zip unpacked; Set1/ or the
                                         folder itself also accepted)

    Column names are matched without regard to case (the OSF readme writes
    ``number``, loaders read ``Number``) and empty trailing columns are
    dropped.

    Happy / Sad rule
        The intended (``TARGET``) emotion: Happy if it names *happy*, Sad if
        it names *sad* (any case, with or without a level such as "high" or
        "moderate"); the other targets (tender, fear, anger and the
        dimensional ones) are excluded (counted in ``info["excluded"]``).
        ``valence`` is the mean valence rating and ``arousal`` the mean
        energy rating, both 1-9.
    Split
        None published: a stratified seeded split is drawn and saved.

    Not verified: the exact spelling of the ``TARGET`` values in
    ``mean_ratings_set1.csv`` (the fixture uses upper case, e.g. ``HAPPY``),
    hence the tolerant match above.

    Parameters
    ----------
    data_dir : str or Path
    seed, window, check_audio, n_jobs
        As :func:`load_deam`.

    Returns
    -------
    Dataset
        Extras: ``number``, ``target``, ``rating_<scale>`` for every rating
        scale, and the window columns.

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    _check_window(window)
    root = _root(data_dir, "soundtracks")
    # Layout: the OSF readme (osf.io/p6vkg, mirrored in public repositories): Set1.zip holds
    # "001.mp3" to "360.mp3"; mean_ratings_set1.csv has number, valence, energy, tension, anger,
    # fear, happy, sad, tender, TARGET on a 1-9 scale. Loaders read it from Set1/Set1/ after
    # unzipping (github.com/LimJH272/Moodify-CDS-2025 data_config.json).
    csv_path = root / "mean_ratings_set1.csv"
    if not csv_path.is_file():
        found = sorted(root.rglob("mean_ratings_set1.csv"))
        if not found:
            raise _absent("soundtracks", root, "mean_ratings_set1.csv")
        csv_path = found[0]
    audio_dir = next((d for d in (root / "Set1" / "Set1", root / "Set1", root / "set1" / "set1",
                                  root / "set1", root) if d.is_dir() and any(d.glob("*.mp3"))), None)
    if audio_dir is None:
        raise _absent("soundtracks", root, "Set1/Set1/001.mp3 (Set1.zip unpacked)")
    table = _read_csv(csv_path, corpus="soundtracks", required=())
    table = table.loc[:, [c for c in table.columns if c and not c.lower().startswith("unnamed")]]
    lower = {c.lower(): c for c in table.columns}
    missing = [c for c in ("number", "target", "valence", "energy") if c not in lower]
    if missing:
        raise DatasetError(f"soundtracks: {csv_path} lacks column(s) {missing}; it has {list(table.columns)} "
                           f"and needs number, valence, energy, ..., TARGET (published at {CORPORA['soundtracks']['url']})")
    scales = [c for c in table.columns if c.lower() not in ("number", "target")]
    rows, rejected, excluded = [], [], {}
    for record in table.to_dict("records"):
        number_text = _id_text(record[lower["number"]])
        if not number_text.isdigit():
            rejected.append({"path": "", "reason": f"row without a stimulus number ({number_text!r})"})
            continue
        number = int(number_text)
        path = audio_dir / f"{number:03d}.mp3"
        target = str(record[lower["target"]]).strip()
        word = target.lower().replace("_", " ").replace("-", " ").split(" ")[0] if target else ""
        if word not in ("happy", "sad"):
            _count(excluded, f"target {word or 'missing'}")
            continue
        row = {"clip_id": f"{number:03d}", "path": str(path), "label": word,
               "valence": _number(record[lower["valence"]]), "arousal": _number(record[lower["energy"]]),
               "split": "", "number": number, "target": target}
        row.update({f"rating_{c.lower()}": _number(record[c]) for c in scales})
        rows.append(row)
    return _finish("soundtracks", root=root, rows=rows, rejected=rejected, excluded=excluded,
                   rule="Happy: TARGET happy; Sad: TARGET sad; other targets excluded",
                   annotation_files=[csv_path], official=None, seed=seed, window=window,
                   check_audio=check_audio, n_jobs=n_jobs)


def load_jamendo_mood(data_dir, *, seed: int = 0, window: str = "first", split_index: int = 0,
                      audio_dir=None, check_audio: bool = True, n_jobs: int = 2) -> Dataset:
    """Read the MTG-Jamendo mood/theme subset (happy vs sad) into the common table.

    Layout read (``data_dir`` = a clone of github.com/MTG/mtg-jamendo-dataset
    with the audio downloaded into ``audio/``)::

        data/autotagging_moodtheme.tsv
        data/splits/split-<k>/autotagging_moodtheme-{train,validation,test}.tsv
        audio/<NN>/<id>.mp3         (or <id>.low.mp3 from the audio-low set)

    The TSV files are tab-separated with the header ``TRACK_ID ARTIST_ID
    ALBUM_ID PATH DURATION TAGS``; a track's tags take the sixth and any
    further fields (one tag per field, ``mood/theme---happy``), so the rows
    have different lengths and are parsed by hand rather than by
    ``pandas.read_csv``.

    Happy / Sad rule
        Happy: tagged ``mood/theme---happy`` and not ``mood/theme---sad``;
        Sad: the reverse; tracks carrying both are excluded, like those
        carrying neither (counted in ``info["excluded"]``).
    Split
        The official one: ``split-<split_index>``'s train / validation /
        test files (validation becomes ``val``). A track in none of them is
        excluded.

    Parameters
    ----------
    data_dir : str or Path
    seed : int
        Unused (the split is official); accepted for a uniform call.
    window, check_audio, n_jobs
        As :func:`load_deam`. Jamendo tracks are whole songs, so
        ``window="all"`` gives many rows per track; the TSV's ``DURATION``
        is used for the windows, no file is opened for it.
    split_index : int
        Which of the published splits (0-4).
    audio_dir : str or Path, optional
        Where the ``<NN>/`` audio folders are; default ``<data_dir>/audio``,
        else ``data_dir`` itself.

    Returns
    -------
    Dataset
        Extras: ``artist_id``, ``album_id``, ``tags`` (comma-separated
        mood/theme tags) and the window columns. ``valence``/``arousal`` NaN.

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    _check_window(window)
    if int(split_index) != split_index or split_index < 0:
        raise ParameterError(f"split_index must be a non-negative integer, got {split_index!r}")
    root = _root(data_dir, "jamendo_mood")
    # Layout: github.com/MTG/mtg-jamendo-dataset README ("Metadata files in data",
    # autotagging_moodtheme.tsv, "splits folder") and the split files themselves
    # (data/splits/split-0/autotagging_moodtheme-validation.tsv: header
    # TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS, PATH like "42/917542.mp3",
    # tags one per trailing field).
    tsv = root / "data" / "autotagging_moodtheme.tsv"
    if not tsv.is_file():
        raise _absent("jamendo_mood", root, "data/autotagging_moodtheme.tsv")
    split_dir = root / "data" / "splits" / f"split-{int(split_index)}"
    split_files = {"train": split_dir / "autotagging_moodtheme-train.tsv",
                   "val": split_dir / "autotagging_moodtheme-validation.tsv",
                   "test": split_dir / "autotagging_moodtheme-test.tsv"}
    for path in split_files.values():
        if not path.is_file():
            raise _absent("jamendo_mood", root, str(path.relative_to(root)))
    audio_root = _jamendo_audio_dir(root, audio_dir)
    split_of = {}
    for split, path in split_files.items():
        for record in _read_tags_tsv(path):
            split_of[record["TRACK_ID"]] = split

    rows, rejected, excluded = [], [], {}
    for record in _read_tags_tsv(tsv):
        tags = [t for t in record["TAGS"] if t.startswith("mood/theme---")]
        happy, sad = "mood/theme---happy" in tags, "mood/theme---sad" in tags
        if happy and sad:
            _count(excluded, "tagged both happy and sad")
            continue
        if not (happy or sad):
            _count(excluded, "tagged neither happy nor sad")
            continue
        track = record["TRACK_ID"]
        if track not in split_of:
            _count(excluded, f"not in the official split-{int(split_index)}")
            continue
        path = audio_root / record["PATH"]
        low = path.with_name(path.stem + ".low.mp3")
        if not os.path.isfile(path) and os.path.isfile(low):  # never raises, even in a folder one may not enter
            path = low
        rows.append({"clip_id": track, "path": str(path), "label": "happy" if happy else "sad",
                     "valence": np.nan, "arousal": np.nan, "split": split_of[track],
                     "artist_id": record["ARTIST_ID"], "album_id": record["ALBUM_ID"],
                     "duration_s": _number(record["DURATION"]),
                     "tags": ",".join(t.removeprefix("mood/theme---") for t in tags)})
    return _finish("jamendo_mood", root=root, rows=rows, rejected=rejected, excluded=excluded,
                   rule="Happy: tag mood/theme---happy; Sad: tag mood/theme---sad; tracks with both "
                        "or neither excluded",
                   annotation_files=[tsv, *split_files.values()],
                   official=f"official MTG-Jamendo split-{int(split_index)} (validation = val)",
                   seed=seed, window=window, check_audio=check_audio, n_jobs=n_jobs,
                   notes={"audio_dir": str(audio_root)})


# ----------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------


def window_offsets(duration_s: float, *, window: str = "first",
                   length_s: float = audio.DURATION) -> list[float]:
    """Start times (s) of the windows a file of ``duration_s`` seconds gives.

    Parameters
    ----------
    duration_s : float
        Length of the file; NaN is allowed with ``window="first"``.
    window : {"first", "centre", "all"}
    length_s : float
        Window length (default :data:`mer.audio.DURATION`, 10 s).

    Returns
    -------
    list of float
        ``[0.0]`` for "first"; ``[(duration - length) / 2]`` (at least 0) for
        "centre"; ``[0, length, 2 length, ...]`` for "all", whole windows only
        (at least one).

    Notebook: notebooks/00_data.ipynb (the Data page).
    """
    _check_window(window)
    if window == "first":
        return [0.0]
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise ParameterError(f"window={window!r} needs the file's duration, got {duration_s!r}")
    if window == "centre":
        return [round(max(0.0, (duration_s - length_s) / 2.0), 3)]
    # 1 ms of slack: a 30 s file whose decoder reports 29.9995 s still gives 3 windows.
    count = max(1, int(math.floor((duration_s + 1e-3) / length_s)))
    return [round(k * length_s, 3) for k in range(count)]


def audio_duration(path) -> float:
    """Length of an audio file in seconds, from its header when it has one.

    libsndfile's header (WAV, FLAC, OGG, MP3 from libsndfile 1.1) first;
    librosa (audioread) otherwise. NaN if neither can tell.

    Notebook: notebooks/00_data.ipynb (the Data page).
    """

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # noqa: BLE001 - any decoder's refusal means: ask the next one
        pass

    try:
        import librosa  # slow to import (numba); only the analysing functions need it

        with warnings.catch_warnings():  # librosa warns that it falls back to audioread
            warnings.simplefilter("ignore")
            return float(librosa.get_duration(path=str(path)))
    except Exception:  # noqa: BLE001
        return float("nan")


def _expand_windows(clips: pd.DataFrame, *, window: str, n_jobs: int) -> pd.DataFrame:
    """One row per window; adds the :data:`WINDOW_COLUMNS`."""
    clips = clips.copy()
    clips["track_id"] = clips["clip_id"]
    if "duration_s" not in clips.columns:
        clips["duration_s"] = np.nan
    clips["duration_s"] = clips["duration_s"].astype(float)
    if window != "first":
        todo = clips.index[~np.isfinite(clips["duration_s"].to_numpy())]
        if len(todo):
            jobs = n_jobs if len(todo) > manifest.PARALLEL_FROM else 1
            durations = Parallel(n_jobs=jobs, prefer="threads")(
                delayed(audio_duration)(p) for p in clips.loc[todo, "path"])
            clips.loc[todo, "duration_s"] = durations
    expanded = []
    for record in clips.to_dict("records"):
        duration = record["duration_s"]
        if window != "first" and not np.isfinite(duration):
            duration = audio.DURATION  # unknown length: the first window, as "first" would
        offsets = window_offsets(duration, window=window)
        for index, offset in enumerate(offsets):
            row = dict(record)
            row["window_index"] = index
            row["offset_s"] = offset
            if window == "all":
                row["clip_id"] = f"{record['track_id']}-w{index:02d}"
            expanded.append(row)
    return pd.DataFrame(expanded, columns=list(clips.columns) + ["window_index", "offset_s"])


def aggregate_windows(predictions: pd.DataFrame, *, clips: pd.DataFrame | None = None,
                      score: str = "p_happy", threshold: float = 0.5) -> pd.DataFrame:
    """Clip-level (per track) predictions from window-level ones.

    Soft voting: every numeric column is averaged over a track's windows
    (for a probability this is the mean probability), and the track's
    predicted label is Happy when the mean ``score`` reaches ``threshold``.

    Parameters
    ----------
    predictions : pandas.DataFrame, shape (n_windows, n_columns)
        One row per window with ``clip_id`` (or ``track_id``) and numeric
        columns such as ``p_happy``; a ``label`` column (the truth) is kept.
    clips : pandas.DataFrame, optional
        The dataset's ``clips`` (``clip_id, track_id``), needed when
        ``predictions`` has no ``track_id``.
    score : str
        Column whose mean decides the predicted label; skipped if absent.
    threshold : float
        Happy when the mean ``score`` >= ``threshold``.

    Returns
    -------
    pandas.DataFrame, shape (n_tracks, ...)
        ``track_id``, ``n_windows``, the mean of every numeric column,
        ``label`` (first window's, if given) and ``predicted``
        (``"happy"``/``"sad"``, if ``score`` is present). Sorted by
        ``track_id``.

    Notebook: notebooks/02_vit.ipynb (clip-level accuracy on a corpus).
    """
    frame = pd.DataFrame(predictions).copy()
    if "track_id" not in frame.columns:
        if clips is None or "clip_id" not in frame.columns:
            raise ParameterError("aggregate_windows needs a track_id column in predictions, or clip_id "
                                 "in predictions and the dataset's clips (clip_id, track_id)")
        mapping = dict(zip(clips["clip_id"], clips["track_id"]))
        unknown = sorted(set(frame["clip_id"]) - set(mapping))
        if unknown:
            raise ParameterError(f"clip ids {unknown[:5]} are not in the dataset's clips")
        frame["track_id"] = frame["clip_id"].map(mapping)
    numeric = [c for c in frame.select_dtypes("number").columns
               if c not in ("window_index", "offset_s")]
    grouped = frame.groupby("track_id", sort=True)
    out = grouped[numeric].mean() if numeric else pd.DataFrame(index=grouped.size().index)
    out.insert(0, "n_windows", grouped.size())
    if "label" in frame.columns:
        out["label"] = grouped["label"].first()
    if score in out.columns:
        out["predicted"] = np.where(out[score] >= threshold, HAPPY, SAD)
    return out.reset_index()


# ----------------------------------------------------------------------------
# Shared machinery
# ----------------------------------------------------------------------------


def _finish(name, *, root, rows, rejected, excluded, rule, annotation_files, official, seed, window,
            check_audio, n_jobs, notes=None) -> Dataset:
    """Reject missing/unreadable audio, split by track, cut windows, order columns."""
    extras_order = list(dict.fromkeys(k for r in rows for k in r if k not in COLUMNS))
    clips = pd.DataFrame(rows, columns=list(COLUMNS) + extras_order)
    clips["source"] = name
    for column in ("valence", "arousal"):
        clips[column] = clips[column].astype(float)
    if len(clips):
        problems = [_file_problem(p) for p in clips["path"]]
        rejected = rejected + [{"path": p, "reason": r} for p, r in zip(clips["path"], problems) if r]
        clips = clips[np.array([r is None for r in problems], dtype=bool)].reset_index(drop=True)
    if check_audio and len(clips):
        # "first" uses the first 10 s only; "centre" and "all" may use any part.
        clips, bad = manifest.usable_audio(clips, n_jobs=n_jobs,
                                           seconds=audio.DURATION if window == "first" else None)
        rejected = rejected + bad
    for row in rejected:
        log.info("%s: rejected %s (%s)", name, row["path"], row["reason"])

    info = {"corpus": CORPORA[name]["title"], "published_at": CORPORA[name]["url"],
            "licence": CORPORA[name]["licence"], "label_rule": rule, "window": window,
            "excluded": dict(sorted(excluded.items())), "n_excluded": int(sum(excluded.values())),
            "n_tracks": int(len(clips))}
    if official is not None:
        info["split"] = official
    elif len(clips):
        digest = hashlib.sha256()
        for path in annotation_files:
            digest.update(Path(path).read_bytes())
        clips, info["split"] = manifest.generated_split(
            clips, seed=seed, manifest_hash=digest.hexdigest()[:12], name=name)
    else:
        info["split"] = "none (no usable clip)"
    info.update(notes or {})

    clips = _expand_windows(clips, window=window, n_jobs=n_jobs)
    extras = [c for c in clips.columns if c not in COLUMNS and c not in WINDOW_COLUMNS]
    clips = clips[list(COLUMNS) + list(WINDOW_COLUMNS) + extras].reset_index(drop=True)
    clips["window_index"] = clips["window_index"].astype(int)
    clips["offset_s"] = clips["offset_s"].astype(float)
    info["n_windows"] = int(len(clips))
    return Dataset(name=name, clips=clips, rejected=pd.DataFrame(rejected, columns=list(REJECTED_COLUMNS)),
                   root=root, info=info)


def _file_problem(path) -> str | None:
    """Why ``path`` cannot be used before decoding it (:func:`mer.audio.check_file`), else None."""
    try:
        audio.check_file(path)
    except audio.AudioError as error:
        log.warning("skipped: %s", error)
        return error.reason
    return None


def _root(data_dir, name) -> Path:
    where = CORPORA[name]["url"]
    if data_dir in (None, ""):
        raise ParameterError(f"the {name} dataset needs data_dir: the folder of your download of "
                             f"{CORPORA[name]['title']} (published at {where}); nothing is downloaded "
                             "at run time")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{name}: {path} is not a folder; expected your download of "
                           f"{CORPORA[name]['title']} (published at {where})")
    return path.resolve()


def _absent(name, root, expected) -> DatasetError:
    return DatasetError(f"{name}: {root} does not look like {CORPORA[name]['title']}: expected "
                        f"{expected} under it (published at {CORPORA[name]['url']}; see book/corpora.md "
                        "for the layout)")


def _find_file(root: Path, filename: str, *, corpus: str, expected: str) -> Path:
    found = sorted(root.rglob(filename))
    if not found:
        raise _absent(corpus, root, expected)
    return found[0]


def _find_dir(root: Path, dirname: str, *, corpus: str, expected: str) -> Path:
    if (root / dirname).is_dir():
        return root / dirname
    found = sorted(p for p in root.rglob(dirname) if p.is_dir())
    if not found:
        raise _absent(corpus, root, expected)
    return found[0]


def _read_csv(path: Path, *, corpus: str, required) -> pd.DataFrame:
    try:
        # skipinitialspace: DEAM writes "song_id, valence_mean, ..." (a space after each comma).
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"{corpus}: cannot read {path}: {error}") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DatasetError(f"{corpus}: {path} lacks column(s) {missing}; it has {list(table.columns)} "
                           f"(published layout: {CORPORA[corpus]['url']})")
    return table


def _read_tags_tsv(path: Path) -> list[dict]:
    """Rows of an MTG-Jamendo TSV: the five fixed fields and the list of tags."""
    with open(path, encoding="utf-8", newline="") as handle:
        lines = [line.rstrip("\r\n") for line in handle if line.strip()]
    header = lines[0].split("\t") if lines else []
    if header[:6] != ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"]:
        raise DatasetError(f"jamendo_mood: {path} has header {header[:6]}; expected TRACK_ID, ARTIST_ID, "
                           f"ALBUM_ID, PATH, DURATION, TAGS (published at {CORPORA['jamendo_mood']['url']})")
    records = []
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) < 5:
            continue
        records.append({"TRACK_ID": fields[0], "ARTIST_ID": fields[1], "ALBUM_ID": fields[2],
                        "PATH": fields[3], "DURATION": fields[4],
                        "TAGS": [t.strip() for t in fields[5:] if t.strip()]})
    return records


def _jamendo_audio_dir(root: Path, audio_dir) -> Path:
    if audio_dir not in (None, ""):
        path = Path(audio_dir).expanduser().resolve()
        if not path.is_dir():
            raise DatasetError(f"jamendo_mood: audio_dir {path} is not a folder; expected the <NN>/ "
                               "folders of the downloaded audio")
        return path
    for candidate in (root / "audio", root):
        if candidate.is_dir() and any(p.is_dir() and len(p.name) == 2 and p.name.isdigit()
                                      for p in candidate.iterdir()):
            return candidate
    raise _absent("jamendo_mood", root, "audio/<NN>/<id>.mp3 (the downloaded audio; or pass audio_dir)")


def _check_window(window):
    if window not in WINDOWS:
        raise ParameterError(f"window must be one of {WINDOWS}, got {window!r}")


def _check_margin(margin, *, high):
    try:
        ok = 0 <= float(margin) < high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(f"margin must be a number in [0, {high:g}), got {margin!r}")


def _quadrant_label(valence: float, arousal: float, *, centre: float, margin: float) -> str | None:
    if valence > centre + margin and arousal > centre + margin:
        return "happy"
    if valence < centre - margin and arousal < centre - margin:
        return "sad"
    return None


def _number(value) -> float:
    if value is None:
        return float("nan")
    try:
        return float(str(value).strip()) if str(value).strip() else float("nan")
    except ValueError:
        return float("nan")


def _id_text(value) -> str:
    """An id as text: ``"2"`` for 2, "2" or "2.0"; other text stripped."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _count(counter: dict, reason: str) -> None:
    counter[reason] = counter.get(reason, 0) + 1


def table() -> pd.DataFrame:
    """The supported corpora as a table (name, title, size, clip length, labels, licence, url).

    Notebook: notebooks/00_data.ipynb (the Data page) and book/corpora.md.
    """
    return pd.DataFrame([{"name": name, **meta} for name, meta in CORPORA.items()])
