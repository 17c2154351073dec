"""Interpretable musical features: chroma, key, chords, mid-level descriptors.

One module per feature family. Each family is a function that takes the
clip's signal, or a shared :class:`Analysis` of it (the STFT, the CQT, the
chroma, the onset envelope and the beats, computed once per clip and shared
by every family), and returns a ``dict`` of named values, one row of the
feature table. A value that is undefined for a clip (a silent clip has no
key, a clip without onsets has no rhythm) is ``NaN``, and the reason is
appended to ``reasons``; no family raises on such a clip.

Families (:data:`FAMILIES`, registered in :data:`REGISTRY`):

- ``chroma`` (:mod:`~mer.features.chroma`): CQT chroma: mean per pitch
  class, entropy, key-relative profile
- ``key`` (:mod:`~mer.features.key`): Krumhansl-Kessler key and mode: tonic,
  mode, clarity, minorness
- ``chords`` (:mod:`~mer.features.chords`): 24 triads + no-chord over
  beat-synchronous chroma, HMM-smoothed
- ``midlevel`` (:mod:`~mer.features.midlevel`): the seven perceptual
  descriptors of Aljanaki & Soleymani (2018) as signal proxies
- ``lowlevel`` (:mod:`~mer.features.lowlevel`): tempo, onset rate, loudness,
  spectral centroid and rolloff, salient pitch (register)
- ``symbolic`` (:mod:`~mer.features.symbolic`): from the MIDI score where a
  clip has one (the synthetic set)

Beside them: :mod:`~mer.features.analysis` (the shared :class:`Analysis`,
the settings every family uses), :mod:`~mer.features.extraction` (the
registry; :func:`clip_features` for one clip; :func:`extract` runs the
families over a dataset in parallel with joblib and caches the table as CSV
under ``data/derived/features/``, named by a content hash of the audio files
and the parameters), :mod:`~mer.features.validation` (:func:`validate` checks
the extractors against the synthetic set's truth) and
:mod:`~mer.features.testclip` (the rendered clips of the tests and of
:func:`mer.bench.features.benchmark`, which measures the extractors' speed).

Adding a family: a module with its ``<name>_features`` function, one import
and one :class:`Family` line in :data:`REGISTRY` (``extraction.py``), and
its test.

Notebook: notebooks/01_features.ipynb
"""

from .analysis import (CQT_BINS, CQT_FMIN_MIDI, HOP, N_FFT, ONSET_HOP, SILENCE_RMS, SR,
                       TEMPO_PRIOR_BPM, TEMPO_PRIOR_OCTAVES, Analysis, analyse, global_tempo)
from .chords import (CHORD_BETA, CHORD_LABELS, CHORD_N_SIMILARITY, CHORD_SELF_LOOP, chord_degrees, chord_features,
                     chord_sequence, chord_templates, decode_chords, encode_chords)
from .chroma import DEGREES, chroma_features
from .extraction import (ABSOLUTE_PITCH_COLUMNS, AUDIO_FAMILIES, FAMILIES, REGISTRY, Family, clip_features, extract,
                         extractable_families, feature_columns, model_columns)
from .key import key_correlations, key_features
from .lowlevel import MELODY_RANGE_MIDI, PITCHED_BAND_HZ, lowlevel_features, melody_pitch
from .midlevel import (ARTICULATION_BAND_HZ, ROUGHNESS_FMAX, ROUGHNESS_FMIN, ROUGHNESS_PEAKS, midlevel_features,
                       roughness, spectral_peaks)
from .symbolic import symbolic_features
from .testclip import TEST_SOUNDFONT, render_midi, render_test_clip
from .validation import TEMPO_TOLERANCE, VALIDATION_TARGETS, chord_frame_accuracy, validate, validation_summary

__all__ = [
    # analysis
    "SR", "N_FFT", "HOP", "ONSET_HOP", "CQT_FMIN_MIDI", "CQT_BINS", "SILENCE_RMS",
    "TEMPO_PRIOR_BPM", "TEMPO_PRIOR_OCTAVES", "Analysis", "analyse", "global_tempo",
    # families
    "DEGREES", "chroma_features",
    "key_correlations", "key_features",
    "CHORD_LABELS", "CHORD_BETA", "CHORD_SELF_LOOP", "CHORD_N_SIMILARITY", "chord_templates", "chord_sequence",
    "encode_chords", "decode_chords", "chord_features", "chord_degrees",
    "ARTICULATION_BAND_HZ", "ROUGHNESS_PEAKS", "ROUGHNESS_FMIN", "ROUGHNESS_FMAX", "roughness", "spectral_peaks",
    "midlevel_features",
    "PITCHED_BAND_HZ", "MELODY_RANGE_MIDI", "lowlevel_features", "melody_pitch",
    "symbolic_features",
    # extraction
    "Family", "REGISTRY", "FAMILIES", "AUDIO_FAMILIES", "clip_features", "extract", "extractable_families",
    "feature_columns", "ABSOLUTE_PITCH_COLUMNS", "model_columns",
    # validation
    "TEMPO_TOLERANCE", "VALIDATION_TARGETS", "chord_frame_accuracy", "validate", "validation_summary",
    # test clips
    "TEST_SOUNDFONT", "render_midi", "render_test_clip",
]
