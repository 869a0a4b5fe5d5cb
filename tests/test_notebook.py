"""The quick-start notebook runs top to bottom (so it cannot rot) and shows its figures."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "attnviz_quickstart.ipynb"


def test_quickstart_notebook_executes(monkeypatch):
    monkeypatch.delenv("ATTNVIZ_WEIGHTS", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "the Plotter figures should render inline"
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "fundamental (samples)" in text and "one token column = 16 samples" in text
    # the report cell writes through the one report writer, with the reference period it was given
    assert "head_scores" in text and "reference periods: [62.83" in text
