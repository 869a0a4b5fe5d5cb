"""What every attnviz explorer page shares: its assets, the document around a widget, the data
and script elements, and the atomic write (``write_html`` and the scan's ``write_scan_html``).

A widget is ``<div class="avx" id="attnviz-<uid>">`` holding the shared stylesheet (and the
page's own), a note shown only when JavaScript is off, the page's elements, its data as JSON in
``<script type="application/json" id="attnviz-<uid>-data">`` and one script: the drawing kit
(``kit.js``, which sets ``window.attnvizKit``) followed by the page's script called with the uid.
"""
from __future__ import annotations

import html
import json
import os
import tempfile
import uuid
from importlib import resources
from pathlib import Path
from typing import Callable

__all__ = ["asset", "document", "json_for_script", "new_uid", "style", "widget_scripts", "write_page"]

FALLBACK = (
    '<div class="avx-fallback">This explorer is drawn by JavaScript, which is off here (in Jupyter: '
    "trust the notebook, or open the .html file in a browser).</div>"
)


def asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def new_uid() -> str:
    """A fresh widget id: two widgets in one notebook never share elements or script state."""
    return uuid.uuid4().hex[:12]


def json_for_script(payload: dict) -> str:
    """JSON safe inside a <script> element (no '<', '>' or '&' that could end or open a tag)."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def style(*names: str) -> str:
    """The shared stylesheet and the named page stylesheets, in one <style> element."""
    return "<style>\n" + "".join(asset(n) for n in ("explorer.css", *names)) + "</style>"


def widget_scripts(uid: str, payload: dict, script: str) -> str:
    """The data element and the script element of widget ``uid`` (``script``: the page's asset)."""
    main = asset(script).rstrip().rstrip(";")
    return (
        f'<script type="application/json" id="attnviz-{uid}-data">{json_for_script(payload)}</script>\n'
        f'<script>\n{asset("kit.js")}\n{main}("{uid}");\n</script>'
    )


def document(heading: str, body: str) -> str:
    """A full HTML document around a widget (which also works alone as a notebook fragment)."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(heading)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_page(path: object, render: Callable[[], str], what: str) -> Path:
    """Write ``render()`` to ``path`` (parents created) and return the path.

    The page is built first, then written through a temporary file in the same folder and moved
    into place, so a failure never leaves half a page.  A path that cannot be written is a
    one-line ValueError naming it (``cannot write <what> to <path>: ...``)."""
    if path is None or isinstance(path, bool):
        raise ValueError(f"path must be a file path, got {path!r}")
    try:
        target = Path(os.fspath(path)).expanduser()  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"path must be a file path, got {path!r}") from None
    if target.is_dir():
        raise ValueError(f"cannot write {what} to {target}: it is a directory")
    page = render()
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise ValueError(f"cannot write {what} to {target}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return target
