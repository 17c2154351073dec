"""Sphinx glue of this book's build (not part of the ``mer`` package).

sphinx-thebe 0.3.1 under Jupyter Book 1.0.4 and Sphinx 7.4 writes its inline
configuration script (``const THEBE_JS_URL = ...``) twice into every page; the
second copy throws "Identifier 'THEBE_JS_URL' has already been declared" in the
browser console. Thebe (live code) is off in this book. This extension drops an
inline script whose text already appeared on the page, so a page loads with no
console error at all (``tests/test_book.py`` records every one).

It also writes the API page's module list (:func:`api_sections`): every module
of the ``mer`` package, found on disk when the book is built, gets a section
with its docstring's first line as the title and its autodoc, so the page
follows the package's layout without anyone listing modules by hand.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

#: The line of ``book/api.md`` replaced by the generated sections.
API_MARKER = "<!-- the modules of mer: written by book/_ext/merbook.py -->"
#: The package documented: the ``mer`` the build's Python imports (found, not imported).
PACKAGE = Path(importlib.util.find_spec("mer").origin).parent


def package_modules(package: Path = PACKAGE) -> list[tuple[str, str]]:
    """``(dotted name, first docstring line)`` of every module under ``package``, the package first,
    each subpackage before its modules; ``__main__`` left out. Read with ``ast``, nothing imported."""
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        found.append((name, (doc.strip().splitlines() or [""])[0].rstrip(".")))
    return sorted(found, key=lambda item: item[0].split("."))


def api_sections(package: Path = PACKAGE) -> str:
    """MyST text of the API page's module list: a summary table, then one autodoc section per module."""
    modules = package_modules(package)
    lines = ["```{eval-rst}", ".. autosummary::", ""] + [f"   {name}" for name, _ in modules] + ["```", ""]
    for name, title in modules:
        depth = "#" * (2 + max(0, name.count(".") - 1))  # mer and mer.x: h2; mer.x.y: h3
        lines += [f"{depth} `{name}`" + (f": {title}" if title else ""), "",
                  "```{eval-rst}", f".. automodule:: {name}", "   :members:", "```", ""]
    return "\n".join(lines)


def write_api_page(app, docname, source) -> None:
    """``source-read``: the API page's marker becomes :func:`api_sections`."""
    if API_MARKER in source[0]:
        source[0] = source[0].replace(API_MARKER, api_sections())


def _inline_body(script) -> str | None:
    if str(getattr(script, "filename", script) or ""):
        return None
    return (getattr(script, "attributes", None) or {}).get("body")


def drop_repeated_inline_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[str] = set()
    kept = []
    for script in scripts:
        body = _inline_body(script)
        if body is not None:
            if body in seen:
                continue
            seen.add(body)
        kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", drop_repeated_inline_scripts, priority=900)
    app.connect("source-read", write_api_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
