"""The chapter runner: parameters, cache, failures (``python -m mer run``).

Runs the two fixture chapters of ``tests/fixtures/notebooks`` in a scratch
root (``MER_ROOT``), with real Papermill kernels and no book build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mer import ParameterError, profiles, runner

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "notebooks"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A scratch root holding the fixture chapters; ``MER_ROOT`` points to it."""
    root = tmp_path_factory.mktemp("runner-root")
    shutil.copytree(FIXTURES, root / "notebooks")
    (root / "book").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MER_ROOT", str(root))
        patch.delenv("MER_BUILD", raising=False)
        yield root


def run(**options):
    options.setdefault("profile", "quick")
    return runner.run(build=False, progress=False, **options)


def executed_parameters(root: Path, chapter: str) -> dict:
    notebook = nbformat.read(root / "book" / "chapters" / f"{chapter}.ipynb", as_version=4)
    return dict(notebook.metadata["papermill"]["parameters"])


def test_selectors_name_a_chapter_by_stem_number_or_name(scratch):
    assert runner.resolve_chapters(None) == ["00_alpha", "01_beta"]
    for selector in ("01_beta", "01", "1", "beta"):
        assert runner.resolve_chapters([selector]) == ["01_beta"]
    assert runner.resolve_chapters(["beta", "alpha"]) == ["00_alpha", "01_beta"]  # book order
    with pytest.raises(ParameterError, match="00_alpha"):
        runner.resolve_chapters(["gamma"])


def test_values_parse_as_yaml_scalars():
    assert runner.parse_value("3") == 3
    assert runner.parse_value("0.5") == 0.5
    assert runner.parse_value("true") is True
    assert runner.parse_value("TimGM6mb") == "TimGM6mb"
    assert runner.parse_value("") == ""
    assert runner.parse_value("[1, 2]") == "[1, 2]"


def test_first_run_executes_second_run_hits_cache(scratch):
    first = run(force=True)
    assert first.executed == ["00_alpha", "01_beta"]
    outputs = {c: (scratch / "book" / "chapters" / f"{c}.ipynb").read_bytes() for c in first.executed}
    second = run()
    assert second.executed == []
    assert second.skipped == ["00_alpha", "01_beta"]
    for chapter, content in outputs.items():
        assert (scratch / "book" / "chapters" / f"{chapter}.ipynb").read_bytes() == content


def test_kernel_is_the_runner_interpreter_in_book_chapters(scratch):
    run()
    chapters = scratch / "book" / "chapters"
    # The chapter's relative output landed beside the executed notebook.
    assert (chapters / "alpha.txt").read_text().split() == ["quick", "48", "0"]
    notebook = nbformat.read(chapters / "00_alpha.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert f"interpreter: {sys.executable}" in printed
    assert f"mer: {REPO / 'mer' / '__init__.py'}" in printed


def test_the_kernel_talks_over_local_sockets_and_prints_no_warning(scratch, capfd):
    """``make book`` shows the reader chapter progress, not a kernel warning per chapter ("running over
    TCP without encryption", ipykernel 7): the kernel is reached over Unix sockets."""
    run(chapters=["alpha"], force=True)
    printed = capfd.readouterr()
    assert "without encryption" not in printed.err + printed.out
    assert "WARNING" not in printed.err
    # The sockets sat in a private folder of their own, not among the chapters, and are gone with the run.
    notebook = nbformat.read(scratch / "book" / "chapters" / "00_alpha.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))
    transport, path = next(line for line in printed.splitlines() if line.startswith("kernel:")).split()[1:]
    folder = Path(path).parent
    assert transport == "ipc" and folder.name.startswith("mer-kernel-")
    assert not folder.exists() and not list((scratch / "book" / "chapters").glob("kernel*"))


def test_force_executes_again(scratch):
    run()
    report = run(force=True)
    assert report.executed == ["00_alpha", "01_beta"]
    assert report.skipped == []


def test_chapter_gets_only_the_profile_values_it_declares(scratch):
    run()
    quick = profiles.get("quick")
    assert executed_parameters(scratch, "00_alpha") == {
        "profile": "quick", "n_clips": quick["n_clips"], "seed": quick["seed"]}
    assert executed_parameters(scratch, "01_beta") == {"seed": quick["seed"]}


def test_changed_parameter_executes_only_the_chapters_that_declare_it(scratch):
    run()
    report = run(overrides={"factor": "2.5"})
    assert report.executed == ["01_beta"]
    assert report.reasons == {"01_beta": "parameters changed"}
    assert report.skipped == ["00_alpha"]
    assert executed_parameters(scratch, "01_beta") == {"seed": 0, "factor": 2.5}
    # Back to the profile's values: executed again, since the output is the 2.5 one.
    assert run().executed == ["01_beta"]


def test_unknown_parameter_lists_the_valid_names(scratch):
    with pytest.raises(ParameterError) as error:
        run(overrides={"bogus": "1"})
    message = str(error.value)
    assert "bogus" in message
    for name in ("profile", "n_clips", "seed", "factor", "fail"):
        assert name in message
    # Only the selected chapters' names are valid.
    with pytest.raises(ParameterError, match="factor"):
        run(chapters=["alpha"], overrides={"factor": "2"})


def test_unknown_parameter_from_the_command_line(scratch):
    environment = dict(os.environ, MER_ROOT=str(scratch),
                       PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "mer", "run", "--profile", "quick", "-p", "bogus", "1"],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "bogus" in done.stderr
    assert "valid parameters" in done.stderr and "n_clips" in done.stderr and "fail" in done.stderr


def test_failing_chapter_stops_and_keeps_previous_output(scratch):
    run()
    output = scratch / "book" / "chapters" / "01_beta.ipynb"
    good = output.read_bytes()
    with pytest.raises(runner.ChapterError) as error:
        run(overrides={"fail": "true"})
    failure = error.value
    assert failure.chapter == "01_beta"
    assert failure.ename == "RuntimeError"
    assert "fixture failure requested" in failure.evalue
    assert isinstance(failure.cell, int)
    message = str(failure)
    assert "01_beta" in message and f"cell [{failure.cell}]" in message
    assert "RuntimeError: fixture failure requested" in message
    assert output.read_bytes() == good
    assert failure.failed_notebook.is_file()
    # The good output is still the cached one.
    assert run().executed == []


def test_failure_from_the_command_line_exits_non_zero(scratch):
    environment = dict(os.environ, MER_ROOT=str(scratch),
                       PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "mer", "run", "beta", "--profile", "quick", "--no-build",
                           "-q", "-p", "fail", "true"],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "chapter 01_beta failed in cell" in done.stderr
    assert "RuntimeError" in done.stderr


def test_toc_chapters_without_output_get_a_placeholder_that_is_not_cached(scratch):
    (scratch / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: Chapters\n    chapters:\n"
        "      - file: book/chapters/00_alpha\n      - file: book/chapters/09_later\n")
    try:
        assert runner.toc_chapters() == ["00_alpha", "09_later"]
        run()
        written = runner.write_placeholders()
        assert written == []  # run() already wrote it
        placeholder = scratch / "book" / "chapters" / "09_later.ipynb"
        assert runner.is_placeholder(placeholder)
        assert not runner.is_placeholder(scratch / "book" / "chapters" / "00_alpha.ipynb")
        assert "not written yet" in placeholder.read_text()
        assert not (scratch / "book" / "chapters" / ".cache" / "09_later.json").exists()
    finally:
        (scratch / "_toc.yml").unlink()
        (scratch / "book" / "chapters" / "09_later.ipynb").unlink(missing_ok=True)


def test_help_and_missing_delegated_module():
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "mer", "--help"], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "run" in done.stdout and "predict" in done.stdout
    done = subprocess.run([sys.executable, "-m", "mer", "run", "--help"], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--profile" in done.stdout and "--force" in done.stdout


def test_source_notebooks_are_stripped():
    """Every chapter source is committed without outputs (the runner adds them)."""
    for path in sorted((REPO / "notebooks").glob("*.ipynb")) + sorted(FIXTURES.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        tagged = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters'"
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{path.name} cell {index} has outputs"
                assert cell.execution_count is None, f"{path.name} cell {index} has an execution count"


def test_every_parameter_line_is_seen_by_papermill():
    """A parameters-cell line papermill cannot parse (quotes in a comment, say)
    silently becomes a name `-p` cannot set: every assignment must be seen."""
    import re

    import nbformat
    import papermill

    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assigned = [m.group(1) for m in re.finditer(r"^(\w+)\s*=", cell.source, flags=re.M)]
        seen = list(papermill.inspect_notebook(str(path)))
        assert seen == assigned, f"{path.name}: papermill sees {seen}, the cell assigns {assigned}"


def test_relative_paths_are_the_users_not_the_kernels(tmp_path, monkeypatch):
    """`-p data_dir tests/fixtures/fourq` means that folder from where the command ran,
    though the chapter's kernel runs in book/chapters."""
    monkeypatch.setenv("MER_ROOT", str(REPO))  # the book's chapters, not the module's scratch ones
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()
    chapters = [c for c in runner.resolve_chapters() if "data_dir" in runner.declared_parameters(c)]
    assert chapters
    resolved = runner.resolve_parameters(chapters, "quick", {"data_dir": "corpus", "pretrained": "google/vit-base"})
    for chapter in chapters:
        assert resolved[chapter]["data_dir"] == str(tmp_path / "corpus")
        if "pretrained" in resolved[chapter]:
            assert resolved[chapter]["pretrained"] == "google/vit-base"  # no such folder: a model id
    absolute = runner.resolve_parameters(chapters, "quick", {"data_dir": str(tmp_path / "x")})
    assert absolute[chapters[0]]["data_dir"] == str(tmp_path / "x")


def _glue_chapter(path: Path, *, cite: list[str]) -> None:
    """A chapter that records ``share`` and whose prose cites the keys in ``cite``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Glue\n\nA fixture chapter whose prose cites numbers."),
        nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import mer.report\nmer.report.record('share', 0.25 + seed)"),
        nbformat.v4.new_markdown_cell(" ".join(f"The value is {{glue:text}}`{key}:.2f`." for key in cite)),
    ]
    nbformat.write(nb, path)


def test_a_chapter_citing_a_number_the_run_did_not_record_is_refused(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book").mkdir()
    monkeypatch.setenv("MER_ROOT", str(tmp_path))
    monkeypatch.delenv("MER_BUILD", raising=False)
    source = tmp_path / "notebooks" / "00_glue.ipynb"
    _glue_chapter(source, cite=["share"])
    assert run(force=True).executed == ["00_glue"]
    output = tmp_path / "book" / "chapters" / "00_glue.ipynb"
    good = output.read_bytes()
    assert runner.missing_glue_keys(output) == []

    _glue_chapter(source, cite=["share", "mode_share", "tempo_share"])
    with pytest.raises(runner.ChapterError) as error:
        run(force=True)
    message = str(error.value)
    assert error.value.chapter == "00_glue"
    assert "00_glue" in message and "'mode_share'" in message and "'tempo_share'" in message
    assert "'share'" not in message.replace("'mode_share'", "").replace("'tempo_share'", "")
    assert output.read_bytes() == good, "the page with the empty slots replaced the good one"
    assert runner.missing_glue_keys(error.value.failed_notebook) == ["mode_share", "tempo_share"]

    done = subprocess.run([sys.executable, "-m", "mer", "run", "--no-build", "--force", "-q"],
                          env=dict(os.environ, MER_ROOT=str(tmp_path)), capture_output=True, text=True)
    assert done.returncode == 1
    assert "mode_share" in done.stderr and "Traceback" not in done.stderr


def test_presented_chapter_hides_its_parameter_cells_and_carries_no_widget_state(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A chapter"),
        nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("seed = 1", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("run()", outputs=[
            nbformat.v4.new_output("display_data", data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2,
                                                             "version_minor": 0},
                "text/plain": "features: 100%"}),
            nbformat.v4.new_output("stream", name="stdout", text="48 clips\n")]),
    ])
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}
    path = tmp_path / "chapter.ipynb"
    nbformat.write(notebook, str(path))
    assert runner.present(path) == {"parameter_cells": 2, "widget_outputs": 1}
    shown = nbformat.read(str(path), as_version=4)
    assert "widgets" not in shown.metadata
    assert shown.cells[1].metadata.tags == ["parameters", "remove-cell"]
    assert shown.cells[2].metadata.tags == ["injected-parameters", "remove-cell"]
    assert [o.output_type for o in shown.cells[3].outputs] == ["stream"]
    assert runner.present(path) == {"parameter_cells": 2, "widget_outputs": 0}  # idempotent
    assert nbformat.read(str(path), as_version=4).cells[1].metadata.tags == ["parameters", "remove-cell"]
