"""Sphinx glue of this book's build (not part of the ``mer`` package).

sphinx-thebe 0.3.1 under Jupyter Book 1.0.4 and Sphinx 7.4 writes its inline
configuration script (``const THEBE_JS_URL = ...``) twice into every page; the
second copy throws "Identifier 'THEBE_JS_URL' has already been declared" in the
browser console. Thebe (live code) is off in this book. This extension drops an
inline script whose text already appeared on the page, so a page loads with no
console error at all (``tests/test_book.py`` records every one).
"""

from __future__ import annotations


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
    return {"parallel_read_safe": True, "parallel_write_safe": True}
