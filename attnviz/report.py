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
  trip over a shared probe file). Each file is written once per run (a name twice is an error).
  :meth:`ReportWriter.finish` checks everything staged first, then, under a lock, moves aside the
  files an earlier run listed in its ``summary.json``, moves the new files in and writes
  ``summary.json`` listing exactly them; only when all of that worked are the earlier files
  deleted (on any failure they are put back). An interrupted or failed run leaves the folder as
  it was.
* **Only attnviz's own files are deleted.** ``summary.json`` carries ``"generator": "attnviz"``;
  only the plain file names listed by a summary with that marker, in the same folder, are ever
  removed. A ``summary.json`` without it (another program's, or an older attnviz's) is replaced,
  the files it lists are left alone, and :attr:`ReportWriter.notes` says so.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .grid import check_reference_periods  # the one check of reference periods, re-exported
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
#: ``summary.json["generator"]``: the marker that lets a later run delete the files it lists.
GENERATOR = "attnviz"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_name(name: Any) -> str:
    """``name`` if it is a plain file-name part: letters, digits, '_', '.', '-' (no separators, no '..')."""
    if not _is_plain(name):
        raise ValueError(
            f"name must be a plain name of at most 100 letters, digits, '_', '.' or '-' "
            f"(no path separators, no '..'), got {name!r}"
        )
    return name


def _is_plain(name: Any) -> bool:
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and ".." not in name


def resolve_heads(res: Any, heads: str | Sequence[tuple[str | int, int]], top_k: int = 3) -> list[tuple[str, int]]:
    """``"auto"`` -> the ``top_k`` best-ranked heads; else (layer name or index, head) pairs checked
    against the result (errors name the layer's range), each head once in the order first named.
    ``top_k`` is clipped to the heads there are."""
    if heads == "auto":
        return [(h.layer, int(h.head)) for h in res.ranked_heads[: max(int(top_k), 1)]]
    chosen: list[tuple[str, int]] = []
    for layer, head in heads:
        li, h = res.head_index(layer, head)
        pair = (res.layer_names[li], int(h))
        if pair not in chosen:  # one head named twice (or by index and by name) is drawn once
            chosen.append(pair)
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
        self.replaced = 0  # files of an earlier run removed by finish()
        self.notes: list[str] = []  # one-line notes on what finish() left or replaced
        self._keep_stage = False  # set when the earlier run's files could not be put back

    # ----- context manager: an interrupted run leaves the folder as it was -------------------------
    def __enter__(self) -> "ReportWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.finished:
            self.abort()

    def abort(self) -> None:
        """Drop everything staged so far (but never the earlier run's files moved aside)."""
        if not self._keep_stage:
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
        self._check_new(filename)
        self.plotter.save(fig, self._staged(filename))
        return self._record(filename, kind, reference_periods, layer, head)

    def _record(self, filename: str, kind: str, reference_periods: Sequence[float], layer: str | None, head: int | None) -> str:
        self._check_new(filename)
        self.records.append(FigureRecord(filename, kind, layer, head, check_reference_periods(reference_periods)))
        return filename

    def _check_new(self, filename: str) -> None:
        """A file name is written once per run: a second figure of that name is an error."""
        if filename == SUMMARY or any(r.file == filename for r in self.records):
            raise ValueError(
                f"{filename!r} is already part of this run ({self.name!r}): every file is written once "
                f"(a head or figure named twice?)"
            )

    def add_table(self, filename: str, text: str) -> str:
        """A table (CSV text) written under its own plain ``filename``, listed in ``files``."""
        check_name(filename)
        self._check_new(filename)
        self._staged(filename).write_text(text)
        return self._record(filename, "table", (), None, None)

    def head_figure(self, res: Any, layer: str, head: int, reference_periods: Sequence[float] = ()) -> str:
        """Heat map + lag curve of one head (reference periods only when given)."""
        periods = check_reference_periods(reference_periods)
        if any(r.kind == "head" and r.layer == layer and r.head == int(head) for r in self.records):
            raise ValueError(f"{layer} head {head} is already drawn in this run ({self.name!r}): name each head once")
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
        self._check_new(filename)
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

        The summary gets ``generator`` (``"attnviz"``), ``figures`` (one record per figure, with
        its ``reference_periods``) and ``files`` (their paths); returns what was written.  All
        checks come before anything in the folder changes; a failure while moving puts the
        earlier run's files back and leaves the folder as it was."""
        if self.finished:
            raise RuntimeError("this report was already finished or aborted")
        self._check_staged()
        summary = {"generator": GENERATOR, **summary}
        summary["generator"] = GENERATOR
        summary["figures"] = [r.to_dict() for r in self.records if r.kind != "table"]
        summary["files"] = [str(self.out_dir / r.file) for r in self.records]
        text = json.dumps(to_jsonable(summary), indent=1) + "\n"
        (self.stage / SUMMARY).write_text(text)
        with _folder_lock(self.out_dir):
            self.replaced = self._swap_in(self._earlier_run())
        shutil.rmtree(self.stage, ignore_errors=True)
        self.finished = True
        return summary

    def _check_staged(self) -> None:
        """Every recorded file once, staged as a plain file (before the folder is touched)."""
        names = [r.file for r in self.records]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"this run ({self.name!r}) lists {twice[0]!r} twice: every file is written once")
        missing = [n for n in names if not (self.stage / n).is_file()]
        if missing:
            raise ValueError(f"this run ({self.name!r}) recorded {missing[0]!r} but never wrote it")

    def _earlier_run(self) -> set[str]:
        """Plain names of the files the earlier run's ``summary.json`` lists, if attnviz wrote it."""
        previous = self.out_dir / SUMMARY
        if not previous.is_file():
            return set()
        try:
            data = json.loads(previous.read_text())
        except (OSError, ValueError):
            data = None
        listed = data.get("files") if isinstance(data, dict) else None
        listed = listed if isinstance(listed, list) else []
        if not isinstance(data, dict) or data.get("generator") != GENERATOR:
            left = f"; left the {len(listed)} file(s) it lists" if listed else ""
            self.notes.append(
                f"{previous} had no \"generator\": \"{GENERATOR}\" marker (another program's, or an older "
                f"attnviz's): replaced it{left}"
            )
            return set()
        stale = set()
        for item in listed:
            name = Path(str(item)).name  # the summary and its files share a folder
            path = self.out_dir / name
            if _is_plain(name) and name != SUMMARY and (path.is_symlink() or path.is_file()):
                stale.add(name)
        return stale

    def _swap_in(self, stale: set[str]) -> int:
        """Move ``stale`` and whatever the new files would overwrite aside, the new files in, then
        drop what was moved aside; on failure undo every move.  Returns how many stale files went."""
        aside = self.stage / ".earlier"  # a name no plain run file can have
        aside.mkdir()
        new = [r.file for r in self.records] + [SUMMARY]
        moved_out: list[str] = []
        moved_in: list[str] = []
        try:
            for name in sorted(stale) + [n for n in new if n not in stale]:
                path = self.out_dir / name
                if path.is_symlink() or path.is_file():
                    os.replace(path, aside / name)
                    moved_out.append(name)
            for name in new:
                os.replace(self.stage / name, self.out_dir / name)
                moved_in.append(name)
        except OSError as exc:
            self._undo(moved_in, moved_out, aside)
            raise ValueError(
                f"could not move this run's files into {self.out_dir} ({exc.strerror or exc}); "
                f"the folder was left as it was"
            ) from None
        except BaseException:
            self._undo(moved_in, moved_out, aside)
            raise
        return len(stale.intersection(moved_out))

    def _undo(self, moved_in: list[str], moved_out: list[str], aside: Path) -> None:
        """Put the folder back: the new files out again, the earlier files in again."""
        failed = []
        for name in reversed(moved_in):
            try:
                os.replace(self.out_dir / name, self.stage / name)
            except OSError:
                failed.append(name)
        for name in reversed(moved_out):
            try:
                os.replace(aside / name, self.out_dir / name)
            except OSError:
                failed.append(name)
        if failed:  # keep the stage: it may hold the only copy of an earlier file
            self._keep_stage = True
            raise ValueError(
                f"could not restore {self.out_dir}: {len(failed)} file(s) (e.g. {failed[0]!r}) are in {aside}"
            )


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
