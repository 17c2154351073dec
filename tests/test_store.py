"""Artefact keys follow the code that computes the artefact, not the whole package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mer
from mer import store

PACKAGE = Path(mer.__file__).resolve().parent


def _hashes(root: Path, modules: list[str]) -> dict[str, str]:
    """code_hash of each module, computed by a fresh interpreter on the copy under ``root``."""
    code = ("import json, sys; from mer import store; "
            "print(json.dumps({m: store.code_hash(m.split('+')) for m in sys.argv[1:]}))")
    out = subprocess.run([sys.executable, "-c", code, *modules], cwd=root, env={"PYTHONPATH": str(root)},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture()
def copy(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "mer", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _touch(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


#: ``a+b``: one key over both (:data:`mer.vit.checkpoint.CHECKPOINT_CODE`, the ViT checkpoints' key).
VIT_CHECKPOINTS = "mer.vit+mer.data"
MODULES = [VIT_CHECKPOINTS, "mer.spectrogram", "mer.features", "mer.lrp"]


def test_vit_checkpoints_follow_the_vit_and_the_data_code():
    from mer.vit import checkpoint

    assert checkpoint.CHECKPOINT_CODE == tuple(VIT_CHECKPOINTS.split("+"))


def test_copy_hashes_like_the_package(copy):
    assert _hashes(copy, MODULES) == {m: store.code_hash(m.split("+")) for m in MODULES}


def test_editing_an_explainer_keeps_the_model_and_spectrogram_keys(copy):
    before = _hashes(copy, MODULES)
    _touch(copy / "mer" / "lrp" / "explainers.py")
    _touch(copy / "mer" / "plots.py")
    after = _hashes(copy, MODULES)
    assert after[VIT_CHECKPOINTS] == before[VIT_CHECKPOINTS]
    assert after["mer.spectrogram"] == before["mer.spectrogram"]
    assert after["mer.features"] == before["mer.features"]
    assert after["mer.lrp"] != before["mer.lrp"]


@pytest.mark.parametrize("edited, changed, kept", [
    # vit imports spectrogram; its checkpoints are keyed on the data package too
    # (CHECKPOINT_CODE); lrp imports neither (its benchmark, which builds a ViT, is mer.bench.lrp).
    ("spectrogram.py", {VIT_CHECKPOINTS, "mer.spectrogram"}, {"mer.features", "mer.lrp"}),
    ("data/synth.py", {VIT_CHECKPOINTS}, {"mer.spectrogram", "mer.features", "mer.lrp"}),
    # every module runs the package's __init__ first.
    ("__init__.py", set(MODULES), set()),
])
def test_editing_a_dependency_changes_the_keys_of_what_imports_it(copy, edited, changed, kept):
    before = _hashes(copy, MODULES)
    _touch(copy / "mer" / edited)
    after = _hashes(copy, MODULES)
    assert {m for m in MODULES if after[m] != before[m]} == changed
    assert all(after[m] == before[m] for m in kept)


def test_artefact_paths_use_the_producing_module(tmp_path, monkeypatch):
    monkeypatch.setenv("MER_ROOT", str(tmp_path))
    by_vit = store.artefact_path("vit", {"a": 1}, code="mer.vit")
    by_package = store.artefact_path("vit", {"a": 1})
    assert by_vit.parent == by_package.parent == store.derived_dir() / "vit"
    assert by_vit != by_package
    assert by_vit == store.artefact_path("vit", {"a": 1}, code="mer.vit")


def test_unknown_module_is_refused():
    with pytest.raises(ValueError, match="not a module"):
        store.code_hash("mer.no_such_module")


def test_a_dataset_folder_appears_whole_or_not_at_all(tmp_path):
    from mer import ParameterError

    target = tmp_path / "set"
    with store.atomic_dir(target) as tmp:
        (tmp / "clips.csv").write_text("clip_id\n1\n")
        assert not target.exists()  # a reader sees nothing until the block is done
    assert (target / "COMPLETE").exists() and (target / "clips.csv").read_text() == "clip_id\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no temporary folder left beside it

    with pytest.raises(RuntimeError):
        with store.atomic_dir(tmp_path / "broken") as tmp:
            (tmp / "half.csv").write_text("clip_id\n")
            raise RuntimeError("rendering failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("mine")
    with pytest.raises(ParameterError, match="not empty and holds no complete chorale set"):
        with store.atomic_dir(precious, what="chorale set") as tmp:
            (tmp / "clips.csv").write_text("clip_id\n")
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]

    # Another process completed the folder first: its copy stays, this one is dropped.
    with store.atomic_dir(target) as tmp:
        (tmp / "clips.csv").write_text("clip_id\n2\n")
    assert (target / "clips.csv").read_text() == "clip_id\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "set"]


def test_a_dataset_folder_completed_by_another_process_during_the_rename_stands(tmp_path, monkeypatch):
    """Two workers render the same set: the other one's rename lands between this one's check and its own."""
    import os

    target = tmp_path / "set"
    real_replace = os.replace

    def other_process_first(src, dst):
        if Path(dst) == target and not target.exists():
            target.mkdir()
            (target / "clips.csv").write_text("clip_id\ntheirs\n")
            (target / "COMPLETE").write_text("")
        return real_replace(src, dst)  # onto a non-empty folder: OSError, as between two processes

    monkeypatch.setattr(os, "replace", other_process_first)
    with store.atomic_dir(target) as tmp:
        (tmp / "clips.csv").write_text("clip_id\nmine\n")
    assert (target / "clips.csv").read_text() == "clip_id\ntheirs\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # this one's copy is gone
