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
follows the package's layout without anyone listing modules by hand. A name a
package re-exports (``mer.vit.train``, defined in ``mer.vit.training``) is
documented once, under the package, where the chapters call it; its module's
section links to it. (Documented in both places, every such entry showed twice
and Sphinx could not tell which one a cross-reference meant.)
"""

from __future__ import annotations

import ast
import importlib
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


def reexported(name: str) -> dict[str, str]:
    """``{member: package}`` for the members of module ``name`` that a package above it re-exports
    (lists in its ``__all__``, the same object). Imports the modules, as autodoc does."""
    module = importlib.import_module(name)
    defined = _defined_names(Path(module.__file__))  # not what the module itself imports
    found = {}
    parts = name.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        package = importlib.import_module(".".join(parts[:depth]))
        for member in getattr(package, "__all__", ()):
            if member in defined and member not in found and getattr(package, member, None) is vars(module).get(member):
                found[member] = package.__name__
    return found


def _defined_names(path: Path) -> set[str]:
    """Names a module's own top-level statements define (functions, classes, assignments)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def api_sections(package: Path = PACKAGE) -> str:
    """MyST text of the API page's module list: a summary table, then one autodoc section per module,
    each re-exported member documented under its package only (:func:`reexported`)."""
    modules = package_modules(package)
    lines = ["```{eval-rst}", ".. autosummary::", ""] + [f"   {name}" for name, _ in modules] + ["```", ""]
    for name, title in modules:
        depth = "#" * (2 + max(0, name.count(".") - 1))  # mer and mer.x: h2; mer.x.y: h3
        lines += [f"{depth} `{name}`" + (f": {title}" if title else ""), "", "```{eval-rst}",
                  f".. automodule:: {name}", "   :members:"]
        elsewhere = reexported(name)
        if elsewhere:
            lines += [f"   :exclude-members: {', '.join(elsewhere)}", ""]
            by_package: dict[str, list[str]] = {}
            for member, owner in elsewhere.items():
                by_package.setdefault(owner, []).append(member)
            for owner, members in by_package.items():
                links = ", ".join(f":py:obj:`~{owner}.{member}`" for member in members)
                lines += [f"Defined here and documented under :py:mod:`{owner}`: {links}."]
        lines += ["```", ""]
    return "\n".join(lines)


def skip_namedtuple_fields(app, what, name, obj, skip, options):
    """``autodoc-skip-member``: a NamedTuple's fields are documented by its docstring's Attributes
    section; autodoc's own entries for them ("Alias for field number 2") would document them twice."""
    if what == "class" and (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


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
    app.connect("autodoc-skip-member", skip_namedtuple_fields)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
