"""The one report writer: an analysis result + heads + folder + name -> figures and summary.json.

``attnviz explain``, every experiment of ``python main.py`` and the notebook write through
:class:`ReportWriter`, so all of them follow the same rules:

* **Reference periods are drawn only when the caller gives them** (``--known-period``, an
  experiment's definition). Without them a head figure marks the head's *detected* fundamental,
  labelled as such. ``summary.json`` records, per figure, the ``reference_periods`` drawn.
* **Files stay where they belong.** The run's name is a plain name (no separators, no ``..``);
  every path written is resolved and checked to lie inside the output folder.
* **One folder, one run.** Figures are drawn into a private staging folder inside the output
  folder (its creation is also the write check, with a unique name, so concurrent runs never
  trip over a shared probe file). :meth:`ReportWriter.finish` then, under a lock, removes the
  files an earlier run listed in its ``summary.json`` (and earlier figures of the same name),
  moves the new files in and writes ``summary.json`` listing exactly them. An interrupted run
  leaves the folder as it was.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .jsonutil import to_jsonable

__all__ = [
    "FigureRecord",
    "ReportWriter",
    "check_name",
    "check_reference_periods",
    "model_label",
    "ranked_heads_json",
    "resolve_heads",
    "selected_heads_json",
    "write_report",
]

SUMMARY = "summary.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_name(name: Any) -> str:
    """``name`` if it is a plain file-name part: letters, digits, '_', '.', '-' (no separators, no '..')."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"name must be a plain name of at most 100 letters, digits, '_', '.' or '-' "
            f"(no path separators, no '..'), got {name!r}"
        )
    return name


def check_reference_periods(periods: Any) -> tuple[float, ...]:
    """Reference periods as positive finite floats (samples); () when none are given."""
    values = tuple(float(p) for p in (periods or ()))
    bad = [p for p in values if not (math.isfinite(p) and p > 0)]
    if bad:
        raise ValueError(f"reference periods must be positive finite numbers of samples, got {bad[0]!r}")
    return values


def resolve_heads(res: Any, heads: str | Sequence[tuple[str | int, int]], top_k: int = 3) -> list[tuple[str, int]]:
    """``"auto"`` -> the ``top_k`` best-ranked heads; else (layer name or index, head) pairs checked
    against the result (errors name the layer's range). ``top_k`` is clipped to the heads there are."""
    if heads == "auto":
        return [(h.layer, int(h.head)) for h in res.ranked_heads[: max(int(top_k), 1)]]
    chosen: list[tuple[str, int]] = []
    for layer, head in heads:
        li, h = res.head_index(layer, head)
        chosen.append((res.layer_names[li], h))
    return chosen


def total_heads(res: Any) -> int:
    """How many real heads the result holds (layers may differ in head count)."""
    return int(sum(res.heads_of(name) for name in res.layer_names))


def ranked_heads_json(res: Any, limit: int | None = None) -> list[dict[str, Any]]:
    heads = res.ranked_heads if limit is None else res.ranked_heads[:limit]
    return [{"layer": h.layer, "head": int(h.head), "score": h.score, "period_samples": h.period_samples} for h in heads]


def selected_heads_json(res: Any, heads: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    rows = []
    for layer, head in heads:
        est = res.periods(layer, head)
        rows.append(
            {
                "layer": layer,
                "head": int(head),
                "peaks_samples": np.round(est.peaks_samples, 2).tolist(),
                "fundamental_samples": est.fundamental_samples,
            }
        )
    return rows


def model_label(forecaster: Any) -> str | None:
    """Where the weights came from, without machine-specific paths for the bundled model."""
    from .weights import is_bundled

    source = getattr(forecaster, "source", None)
    return f"bundled:{Path(source).name}" if is_bundled(forecaster) else source


@dataclass(frozen=True)
class FigureRecord:
    """One written figure: its file name (inside the output folder) and what it shows."""

    file: str
    kind: str
    layer: str | None = None
    head: int | None = None
    reference_periods: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "kind": self.kind}
        if self.layer is not None:
            out.update(layer=self.layer, head=self.head)
        out["reference_periods"] = list(self.reference_periods)
        return out


@dataclass
class ReportWriter:
    """Writes one run's figures and ``summary.json`` into ``out_dir`` (see the module doc).

    Use as a context manager, or call :meth:`finish` / :meth:`abort` yourself::

        with ReportWriter(out, "explain") as report:
            report.analysis_figures(res, heads, reference_periods=(48,))
            report.finish({"signal": ...})
    """

    out_dir: Path
    name: str
    plotter: Any = None
    records: list[FigureRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        self.out_dir = ensure_writable_dir(self.out_dir)
        if self.plotter is None:
            from .plotting import Plotter

            self.plotter = Plotter()
        try:
            self.stage = Path(tempfile.mkdtemp(prefix=f".{self.name}-", dir=self.out_dir))
        except OSError as exc:
            raise ValueError(f"output directory {self.out_dir} is not writable: {exc.strerror or exc}") from None
        self.finished = False

    # ----- context manager: an interrupted run leaves the folder as it was -------------------------
    def __enter__(self) -> "ReportWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.finished:
            self.abort()

    def abort(self) -> None:
        """Drop everything staged so far."""
        shutil.rmtree(self.stage, ignore_errors=True)
        self.finished = True

    # ----- figures ---------------------------------------------------------------------------------
    def filename(self, suffix: str) -> str:
        return f"experiment_{self.name}_{suffix}.png"

    def _staged(self, filename: str) -> Path:
        path = (self.stage / filename).resolve()
        if Path(filename).name != filename or ".." in filename or path.parent != self.stage.resolve():
            raise ValueError(f"refusing to write {filename!r}: file names are plain names inside {self.out_dir}, never outside")
        return path

    def add_figure(
        self,
        fig: Any,
        suffix: str,
        *,
        kind: str,
        reference_periods: Sequence[float] = (),
        layer: str | None = None,
        head: int | None = None,
    ) -> str:
        """Save ``fig`` as ``experiment_<name>_<suffix>.png`` (closing it); returns the file name."""
        filename = self.filename(suffix)
        self.plotter.save(fig, self._staged(filename))
        return self._record(filename, kind, reference_periods, layer, head)

    def _record(self, filename: str, kind: str, reference_periods: Sequence[float], layer: str | None, head: int | None) -> str:
        self.records.append(FigureRecord(filename, kind, layer, head, check_reference_periods(reference_periods)))
        return filename

    def add_table(self, filename: str, text: str) -> str:
        """A table (CSV text) written under its own plain ``filename``, listed in ``files``."""
        check_name(filename)
        self._staged(filename).write_text(text)
        return self._record(filename, "table", (), None, None)

    def head_figure(self, res: Any, layer: str, head: int, reference_periods: Sequence[float] = ()) -> str:
        """Heat map + lag curve of one head (reference periods only when given)."""
        periods = check_reference_periods(reference_periods)
        path = self.plotter.save_head(res, layer, head, self.stage, experiment=self.name, reference_periods=periods)
        self._staged(Path(path).name)  # the plotter named it inside the stage folder
        return self._record(Path(path).name, "head", periods, layer, int(head))

    def analysis_figures(self, res: Any, heads: Sequence[tuple[str, int]], *, reference_periods: Sequence[float] = (),
                         truth: Any = None, overview: bool = True) -> list[str]:
        """The standard set: one figure per head, the first head's layer overview, the layer x
        head score grid, and the series with the first head's attention of one forecast column."""
        periods = check_reference_periods(reference_periods)
        files = [self.head_figure(res, layer, head, periods) for layer, head in heads]
        if not heads:
            return files
        first_layer, first_head = heads[0]
        if overview:
            fig = self.plotter.layer_overview(res, first_layer, reference_periods=periods)
            files.append(self.add_figure(fig, "layer_overview", kind="layer_overview", reference_periods=periods, layer=first_layer))
        files.append(self.add_figure(self.plotter.score_grid(res), "head_scores", kind="head_scores"))
        forecast_mae = None
        if truth is not None:
            from .evaluation import mae

            forecast_mae = mae(res.forecast.forecast, truth)
        fig = self.plotter.series_panel(
            res, layer=first_layer, head=first_head, truth=truth, forecast_mae=forecast_mae, reference_periods=periods
        )
        files.append(self.add_figure(fig, "series", kind="series", reference_periods=periods, layer=first_layer, head=first_head))
        return files

    def explorer_page(self, res: Any, *, reference_periods: Sequence[float] = (), truth: Any = None,
                      selected: tuple[str, int] | None = None, title: str | None = None) -> str:
        """The offline interactive explorer (:mod:`attnviz.explorer`) as ``experiment_<name>_explorer.html``,
        opened on ``selected`` (default the top-ranked head)."""
        from .explorer import write_html

        periods = check_reference_periods(reference_periods)
        return self.add_page(lambda path: write_html(res, path, reference_periods=periods, truth=truth,
                                                     selected=selected, title=title or self.name), periods)

    def add_page(self, write: Callable[[Path], Any], reference_periods: Sequence[float] = ()) -> str:
        """An explorer page as ``experiment_<name>_explorer.html``: ``write(path)`` writes it
        into the staging folder (any page of :mod:`attnviz.explorer`)."""
        filename = f"experiment_{self.name}_explorer.html"
        write(self._staged(filename))
        return self._record(filename, "explorer", reference_periods, None, None)

    def write_analysis(self, res: Any, heads: Sequence[tuple[str, int]], *, reference_periods: Sequence[float] = (),
                       truth: Any = None, html: bool = False, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The standard figures (+ the explorer page with ``html``) and a summary with the
        grid, reference periods, ranking and the chosen heads' peaks; ``extra`` goes first."""
        periods = check_reference_periods(reference_periods)
        self.analysis_figures(res, heads, reference_periods=periods, truth=truth)
        if html:
            self.explorer_page(res, reference_periods=periods, truth=truth, selected=heads[0] if heads else None,
                               title=str((extra or {}).get("signal", self.name)))
        return self.finish({
            **(extra or {}),
            "grid": res.grid.to_dict(),
            "reference_periods": list(periods),
            "ranked_heads": ranked_heads_json(res),
            "selected_heads": selected_heads_json(res, heads),
        })

    # ----- finishing -------------------------------------------------------------------------------
    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Move the staged files in, replacing the earlier run's, and write ``summary.json``.

        The summary gets ``figures`` (one record per figure, with its ``reference_periods``) and
        ``files`` (their paths); returns what was written."""
        if self.finished:
            raise RuntimeError("this report was already finished or aborted")
        summary = dict(summary)
        summary["figures"] = [r.to_dict() for r in self.records if r.kind != "table"]
        summary["files"] = [str(self.out_dir / r.file) for r in self.records]
        text = json.dumps(to_jsonable(summary), indent=1) + "\n"
        (self.stage / SUMMARY).write_text(text)
        with _folder_lock(self.out_dir):
            self.replaced = self._remove_earlier_run()
            for record in self.records:
                os.replace(self.stage / record.file, self.out_dir / record.file)
            os.replace(self.stage / SUMMARY, self.out_dir / SUMMARY)
        shutil.rmtree(self.stage, ignore_errors=True)
        self.finished = True
        return summary

    def _remove_earlier_run(self) -> int:
        """Delete what an earlier run left: the files its summary listed, and this name's figures."""
        stale: set[Path] = set(self.out_dir.glob(f"experiment_{self.name}_*"))
        previous = self.out_dir / SUMMARY
        if previous.is_file():
            try:
                listed = json.loads(previous.read_text()).get("files", [])
            except (OSError, ValueError, AttributeError):
                listed = []
            for item in listed if isinstance(listed, list) else []:
                path = self.out_dir / Path(str(item)).name  # a bare name: never outside the folder
                if path.name not in (SUMMARY, "", ".", ".."):
                    stale.add(path)
        removed = 0
        for path in stale:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed


def write_report(
    res: Any,
    out_dir: str | Path,
    name: str,
    heads: str | Sequence[tuple[str | int, int]] = "auto",
    *,
    top_k: int = 3,
    reference_periods: Sequence[float] = (),
    truth: Any = None,
    html: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One call from a notebook or script: the standard figures of ``heads`` (default the
    ``top_k`` best-ranked) and ``summary.json`` in ``out_dir``; returns the summary written.

    ``extra`` entries are added to the summary (the signal, the model, your notes)."""
    with ReportWriter(Path(out_dir), name) as report:
        chosen = resolve_heads(res, heads, min(int(top_k), total_heads(res)))
        return report.write_analysis(res, chosen, reference_periods=reference_periods, truth=truth, html=html, extra=extra)


def ensure_writable_dir(out: Any) -> Path:
    """Create ``out`` (and parents) and return it as given; a one-line error when that fails."""
    path = Path(out).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"output directory {path} is not writable (cannot create it: {exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"output directory {path} is not writable")
    return path


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` itself across processes (POSIX flock on the directory, so
    no lock file is left behind; a no-op where flock is absent)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
