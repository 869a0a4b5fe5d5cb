"""A PNG of an explorer page, taken in the system's headless Chromium (``docs/explorer.png``).

``python -m attnviz.explorer.screenshot [OUT.png]`` remakes the README's screenshot: the bundled
model on the seed signal ``sin(n/10)+sin(n/5+50)+cos(n+50)`` (history 512, horizon 720, the
rest of the signal as truth, its 2*pi*10-sample period as the reference).
``python -m attnviz.explorer.screenshot --scan FOLDER [OUT.png]`` makes ``docs/scan_explorer.png``
from a finished scan of the bundled model (``attnviz scan --synthetic 40 --seed 0 --no-null
--out FOLDER``).  Needs the
``playwright`` package (the ``test`` extra) and Chromium at ``/usr/bin/chromium`` (or
``ATTNVIZ_CHROMIUM``); playwright's own browser downloads are never used.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_ARGS", "chromium_path", "screenshot"]

#: Flags for a headless, offline, quiet Chromium (no background fetches, no first-run pages).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SEED_EXPRESSION = "sin(n/10)+sin(n/5+50)+cos(n+50)"
# the scan picture's view: one series marked in the head's distributions, the table by its score
SCAN_VIEW = "api.sortBy('score', -1); api.selectSeries(api.state.tableOrder[3]);"


def chromium_path() -> str | None:
    """``ATTNVIZ_CHROMIUM``, else ``chromium`` on the PATH, else ``/usr/bin/chromium``; None if absent."""
    path = os.environ.get("ATTNVIZ_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


def screenshot(
    html: Any, png: Any, *, width: int = 1340, scale: float = 2.0, palette: bool = True,
    api: str = "attnvizExplorer", prepare: str | None = None,
) -> Path:
    """Open the page ``html`` in headless Chromium ``width`` CSS pixels wide and save the whole
    page to ``png`` at ``scale`` device pixels per CSS pixel (``palette``: as a 256-colour PNG).
    ``api``: the window property the page's widgets register in (``attnvizScanExplorer`` for a
    scan's page); ``prepare``: JavaScript run on that widget's API (``api``) before the picture.
    Raises RuntimeError if the page logs an error."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium found: apt-get install chromium, or set ATTNVIZ_CHROMIUM")
    out = Path(png)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": int(width), "height": 900}, device_scale_factor=scale)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
            page.goto(Path(html).resolve().as_uri())
            page.wait_for_function(f"window.{api} && Object.keys(window.{api}).length > 0")
            if prepare:
                page.evaluate(f"(api => {{ {prepare} }})(Object.values(window.{api})[0])")
            if errors:
                raise RuntimeError(f"the page logged errors: {errors}")
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    if palette:  # 256 colours: a third of the bytes, no visible change for flat plots and text
        from PIL import Image

        with Image.open(out) as image:
            image.load()
        image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
            out, optimize=True
        )
    return out


def scan_screenshot(folder: Any, png: Any, prepare: str | None = SCAN_VIEW) -> Path:
    """A PNG of the scan explorer page of the finished scan in ``folder`` (a scan of the bundled
    model: its layer names and grid come from loading it, as ``attnviz scan`` does)."""
    import json

    import attnviz
    from attnviz.scan.merge import merge_shards
    from attnviz.scan.shards import ScanSettings

    from . import write_scan_html

    folder = Path(folder)
    settings = ScanSettings(**json.loads((folder / "scan_settings.json").read_text()))
    if not settings.model.startswith("bundled:"):
        raise ValueError(f"{folder} is a scan of {settings.model}; this makes pictures of scans of the bundled model")
    fc = attnviz.load_forecaster()
    explainer = attnviz.MultiHeadAttentionRollout(fc)
    names = explainer.layer_names
    merged = merge_shards(folder, settings, names, [explainer.num_heads[n] for n in names],
                          fc.grid(settings.length, settings.horizon).samples_per_col)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = write_scan_html(merged, merged.summary(settings.seed), Path(tmp) / "scan.html",
                               title=f"bundled ViTime over {settings.series} {settings.source.split(':')[0]} series: "
                                     f"history {settings.length}, horizon {settings.horizon}")
        return screenshot(page, png, api="attnvizScanExplorer", prepare=prepare)


USAGE = "usage: python -m attnviz.explorer.screenshot [OUT.png]  |  --scan SCAN_FOLDER [OUT.png]"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv and argv[0] == "--scan":
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        out = scan_screenshot(argv[1], argv[2] if len(argv) > 2 else "docs/scan_explorer.png")
        print(f"wrote {out}")
        return 0
    out = Path(argv[0] if argv else "docs/explorer.png")
    import attnviz
    from attnviz.signals import evaluate_expression

    from . import write_html

    x = evaluate_expression(SEED_EXPRESSION, 512 + 720)
    res = attnviz.MultiHeadAttentionRollout(attnviz.load_forecaster()).analyze(x[:512], 720)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = write_html(
            res,
            Path(tmp) / "explorer.html",
            title=f"bundled ViTime on {SEED_EXPRESSION}: history 512, horizon 720",
            truth=x[512:],
            reference_periods=[20 * math.pi],
        )
        screenshot(page, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
