"""Figures to files: PNG/SVG/PDF through kaleido, self-contained HTML, CSV/Parquet, a zip.

Static images need a Chromium-based browser on PATH (the Debian `chromium` package). One
kaleido server (one browser) is started on first use and shared by every export of the
process (~0.2 s an image once warm, ~3 s for the first); MathJax is off (it would be fetched
from the network). Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import math
import re
import threading
import zipfile
from pathlib import Path

import pandas as pd

from core import __version__
from core.errors import ExportError
from core.figures import FigureSpec, overview
from core.figures.pdfmeta import with_info
from core.figures.style import HEIGHT, WIDTH
from core.store.cache import resolve_run
from core.store.run import Run
from core.store.storage import write_bytes

IMAGE_FORMATS = ("png", "svg", "pdf")
FIGURE_FORMATS = (*IMAGE_FORMATS, "html")
DATA_FORMATS = ("csv", "parquet")
PNG_SCALE = 2  # PNGs at twice the layout size, crisp on slides and high-DPI screens

_lock = threading.Lock()  # the kaleido server answers one request at a time


def browser_path() -> str | None:
    """The Chromium-based browser kaleido would use, or None."""
    try:
        from choreographer.browsers.chromium import Chromium

        return Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 - an older/newer choreographer: fall back to PATH
        import shutil

        return next(filter(None, (shutil.which(n) for n in
                                  ("chromium", "chromium-browser", "google-chrome"))), None)


def _server_running(kaleido) -> bool:
    srv = kaleido._global_server  # noqa: SLF001 - the only way to see a dead server thread
    thread = getattr(srv, "_thread", None)
    if srv.is_running() and thread is not None and not thread.is_alive():
        srv.close(silence_warnings=True)  # its browser died: start a new one
    return srv.is_running()


def _ensure_server():
    import kaleido

    if not _server_running(kaleido):
        if browser_path() is None:
            raise ExportError("static image export needs Chromium: install it (Debian: "
                              "apt-get install chromium) or set BROWSER_PATH")
        kaleido.start_sync_server(page_generator=_page(kaleido), silence_warnings=True)
    return kaleido


def _page(kaleido):
    """kaleido's page with `@page { margin: 0 }`: kaleido prints a PDF at exactly the figure's
    size but with 0.1 in margins, which pushed the bottom 0.2 in (the x-axis title) off the
    page; a CSS page margin overrides them. MathJax off (it would be fetched)."""
    class Page(kaleido.PageGenerator):
        header = kaleido.PageGenerator.header.replace(
            '<style id="head-style">', '<style>@page { margin: 0; }</style>'
            '<style id="head-style">')

    return Page(mathjax=False)


def stop_server() -> None:
    """Close the shared browser (it is also closed at exit)."""
    import kaleido

    with _lock:
        if kaleido._global_server.is_running():  # noqa: SLF001
            kaleido.stop_sync_server(silence_warnings=True)


def _image(spec: FigureSpec, fmt: str) -> bytes:
    fig = spec.figure
    opts = dict(format=fmt, width=fig.layout.width or WIDTH, height=fig.layout.height or HEIGHT,
                scale=PNG_SCALE if fmt == "png" else 1)
    with _lock:
        kaleido = _ensure_server()
        data = kaleido.calc_fig_sync(fig.to_dict(), opts=opts)
    return with_info(data, **pdf_info(spec)) if fmt == "pdf" else data


def pdf_info(spec: FigureSpec) -> dict[str, str]:
    """The PDF document information of a figure (Chromium would title every one after
    kaleido's page, "Kaleido-fier")."""
    run = f" of run {spec.run}" if spec.run else ""
    return {"Title": spec.title, "Subject": f"ShiftLens figure {spec.id}{run}: {spec.caption}",
            "Keywords": ", ".join(filter(None, ["ShiftLens", spec.id, spec.run])),
            "Creator": f"ShiftLens {__version__} (Plotly, kaleido)"}


def export_name(spec: FigureSpec, fmt: str) -> str:
    """The file name of one export: <run>_<figure id>.<format> (e.g. demo-rl_js_hist.png),
    the run name made safe for file systems, so files of several runs do not collide. A
    contrast names its partner run too: <run>_vs_<other>_contrast.<format>."""
    partner = spec.params.get("run_b") if spec.id == "contrast" else None
    run = f"{_slug(spec.run)}_vs_{_slug(partner)}" if spec.run and partner else _slug(spec.run)
    return f"{run}_{spec.id}.{fmt}" if spec.run else f"{spec.id}.{fmt}"


def bundle_name(run: str) -> str:
    """The file name of a run's figure bundle: <run>-figures.zip, made safe."""
    return f"{_slug(run)}-figures.zip"


def _html(spec: FigureSpec) -> bytes:
    div = spec.figure.to_html(full_html=False, include_plotlyjs=True, include_mathjax=False,
                              config={"displaylogo": False, "responsive": True})
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(spec.title + (f' · {spec.run}' if spec.run else ''))}"
            f"</title></head>\n"
            f"<body style=\"font-family: sans-serif; margin: 1.5em;\">\n{div}\n"
            f"<p>{html.escape(spec.caption)}</p>\n"
            f"<p style=\"color: #666; font-size: small;\">query: "
            f"{html.escape(spec.query)}({html.escape(_params_text(spec.params))})</p>\n"
            f"</body></html>\n")
    return page.encode("utf-8")


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may evaluate


def _defused(v):
    return "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` in which every text cell (and column name) that a spreadsheet would
    evaluate as a formula, one that starts with =, +, -, @, a tab or a carriage return (a
    token such as '=HYPERLINK(...)'), starts with a single quote instead. Numeric, boolean
    and date columns are untouched, so -0.5 stays a number."""
    out = df.rename(columns=_defused)
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
                or pd.api.types.is_datetime64_any_dtype(col)):
            out.isetitem(i, col.astype(object).map(_defused))
    return out


def csv_bytes(df: pd.DataFrame) -> bytes:
    """`df` as UTF-8 CSV without its index, formula cells neutralised (csv_safe). Rows end
    in CRLF (RFC 4180), which also quotes every cell holding a CR or LF: a carriage-return
    token stays inside its cell."""
    return csv_safe(df).to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _json(spec: FigureSpec, manifest: dict | None, files: list[str]) -> bytes:
    rec = {"id": spec.id, "run": spec.run, "title": spec.title, "caption": spec.caption,
           "query": spec.query, "params": spec.params, "summary": spec.summary, "files": files,
           "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "shiftlens_version": __version__, "manifest": manifest}
    return json.dumps(_finite(rec), indent=2, default=_default, allow_nan=False).encode("utf-8")


def _finite(o):
    """NaN/inf (e.g. a share of an empty group) as null: strict JSON."""
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    return str(o)


def figure_bytes(spec: FigureSpec, fmt: str) -> bytes:
    """One export of a figure as bytes: png, svg, pdf, html, or its data as csv/parquet."""
    fmt = fmt.lower()
    if fmt in IMAGE_FORMATS:
        return _image(spec, fmt)
    if fmt == "html":
        return _html(spec)
    if fmt == "csv":
        return csv_bytes(spec.data)
    if fmt == "parquet":
        return _parquet(spec.data)
    raise ExportError(f"unknown format {fmt!r}; expected one of "
                      f"{FIGURE_FORMATS + DATA_FORMATS}")


def _write(path: Path, data: bytes) -> Path:
    return write_bytes(data, path)


def _check_formats(formats) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in formats if f.strip())
    bad = [f for f in formats if f not in FIGURE_FORMATS]
    if bad:
        raise ExportError(f"unknown format(s) {bad}; expected some of {FIGURE_FORMATS}")
    return formats


def _rendered(spec: FigureSpec, formats) -> dict[str, bytes]:
    out = {export_name(spec, f): figure_bytes(spec, f) for f in _check_formats(formats)}
    out.update({export_name(spec, f): figure_bytes(spec, f) for f in DATA_FORMATS})
    return out


def export_figure(spec: FigureSpec, out_dir, formats=FIGURE_FORMATS) -> list[Path]:
    """Write <run>_<id>.png/.svg/.pdf (kaleido) and .html (self-contained) into out_dir."""
    return [_write(Path(out_dir) / export_name(spec, f), figure_bytes(spec, f))
            for f in _check_formats(formats)]


def export_data(spec: FigureSpec, out_dir) -> list[Path]:
    """Write <run>_<id>.csv and .parquet (the figure's table) into out_dir."""
    return [_write(Path(out_dir) / export_name(spec, f), figure_bytes(spec, f))
            for f in DATA_FORMATS]


def _manifest(run_or_manifest) -> dict | None:
    """The provenance to embed: a Run's (or a run folder's) manifest, or the dict given."""
    if run_or_manifest is None or isinstance(run_or_manifest, dict):
        return run_or_manifest
    if not isinstance(run_or_manifest, Run):
        run_or_manifest = Run.open(run_or_manifest)
    return run_or_manifest.provenance()


def _zip(entries: dict[str, bytes], out_zip: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return _write(Path(out_zip), buf.getvalue())


def _entries(specs, manifest, formats) -> dict[str, bytes]:
    entries = {}
    for spec in specs:
        files = _rendered(spec, formats)
        entries.update(files)
        entries[export_name(spec, "json")] = _json(spec, manifest, sorted(files))
    return entries


def bundle(specs: list[FigureSpec], run_dir_or_manifest, out_zip,
           formats=FIGURE_FORMATS) -> Path:
    """One zip with, per figure, <run>_<id>.png/.svg/.pdf/.html, .csv, .parquet and .json
    (id, title, caption, query, params, summary and the run's manifest)."""
    return _zip(_entries(specs, _manifest(run_dir_or_manifest), formats), Path(out_zip))


def bundle_bytes(specs: list[FigureSpec], run_dir_or_manifest,
                 formats=FIGURE_FORMATS) -> bytes:
    """The bundle zip as bytes (for a download button)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in _entries(specs, _manifest(run_dir_or_manifest), formats).items():
            z.writestr(name, data)
    return buf.getvalue()


def _auto_companions(main: Path, cache) -> tuple[list[str] | None, str | None]:
    """The series and contrast run the app would show for `main` (same rules as the app)."""
    from core.store.cache import contrast_candidates, list_runs, series_of

    runs = list_runs(cache if cache is not None else main.parent, damaged=False)
    me = next((r for r in runs if r.path.resolve() == main.resolve()), None)
    if me is None:
        return None, None
    series = series_of(runs, me)
    others = contrast_candidates(runs, me)
    return (series or None), (others[0] if others else None)


def _resolve(run, cache) -> Path:
    return resolve_run(cache if cache is not None else Path(run).parent, run)


def _slug(name: str) -> str:
    """A run name as a file name part: letters, digits, '.', '_', '-' only, 80 at most."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-")[:80] or "run"


def export_run(run_dir, out_dir, *, cache=None, formats=FIGURE_FORMATS, series=None,
               contrast_with=None, split_by_source=None, near_zero=0.01,
               high=0.1, sampled_from=None) -> Path:
    """Build the overview figures of a run and write them into out_dir: the loose files
    (<run>_<id>.<format>, .csv, .parquet, .json) and <run>-figures.zip with the same content.
    run_dir: a run folder (or a run name under `cache`); series / contrast_with: run names
    or folders (see core.figures.overview); when both are None they are found as the app
    finds them (core.store.cache.series_of / contrast_candidates). sampled_from: which traces
    (core.figures.overview; default: tuned-sampled where a run has them). Returns the zip's
    path."""
    from core.queries import open_runs, opened_runs

    main = _resolve(run_dir, cache)
    if series is None and contrast_with is None:
        series, contrast_with = _auto_companions(main, cache)
        cache = cache if cache is not None else main.parent
    extra = [_resolve(r, cache) for r in (series or [])]
    other = _resolve(contrast_with, cache) if contrast_with is not None else None
    dirs = list(dict.fromkeys(p.resolve() for p in [main, *extra] + ([other] if other else [])))
    # named by folder, as the app names them (manifests of copied folders repeat a name)
    labels = [p.name for p in dirs]
    if len(set(labels)) < len(labels):
        labels = [f"{p.parent.name}/{p.name}" for p in dirs]
    con = open_runs(dirs, names=labels)
    try:
        names = dict(zip(opened_runs(con)["path"], opened_runs(con)["run"]))
        name = names[str(main.resolve())]
        specs = overview(con, name, series=[names[str(p.resolve())] for p in extra] or None,
                         contrast_with=names[str(other.resolve())] if other else None,
                         split_by_source=split_by_source, sampled_from=sampled_from,
                         near_zero=near_zero, high=high)
        entries = _entries(specs, _manifest(main), formats)
    finally:
        con.close()
    out = Path(out_dir)
    for fname, data in entries.items():
        _write(out / fname, data)
    return _zip(entries, out / bundle_name(name))
