"""Figures that show their point: shares where the point is a share, value axes fitted to the
data, lines told apart without colour, export names that carry the run, PDF metadata that
names the figure, compact figures for narrow columns. On the synthetic runs of
tests/figure_env.py (those of tests/test_figures_export.py)."""

from __future__ import annotations

import re
import shutil
import zipfile

import pytest

from core.figures import js_cdf, token_identity
from core.figures.export import bundle_name, export_data, export_name, figure_bytes
from core.figures.pdfmeta import with_info
from core.figures.style import compact
from tests.figure_env import HI, NZ, SFT_NAME, build_env, build_specs, tuned

pytestmark = pytest.mark.unit
needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="static export needs chromium on PATH")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def specs(env):
    return build_specs(env)


@pytest.fixture(scope="module")
def kaleido_server():
    from core.figures import export

    yield export
    export.stop_server()


def _bars(fig):
    return [t for t in fig.data if t.type == "bar"]


# ----------------------------------------------------------------------------- shares


def test_token_identity_plots_each_token_share_not_counts(env, specs):
    spec = specs["token_identity"]
    t = tuned(env, "rl")  # the default: the tuned-sampled traces
    (bar,) = _bars(spec.figure)
    d = spec.data
    assert list(bar.x) == pytest.approx(list(d.share_high))  # shares, not n_high
    assert max(bar.x) <= 1 and list(bar.x) != list(d.n_high)
    # the reference: the share of all tokens above the threshold, drawn as a line
    (line,) = [s for s in spec.figure.data if s.type == "scatter"]
    assert list(line.x) == pytest.approx([(t.js > HI).mean()] * 2)
    # the value axis ends a little above the largest share, not at the largest count
    top = max([*d.share_high, (t.js > HI).mean()])
    assert spec.figure.layout.xaxis.range == pytest.approx((0, 1.15 * top))
    assert bar.text[0] == f"{100 * d.share_high.iloc[0]:.2f}%"  # value labels
    assert spec.summary["top_token"]["all"]["share_high_all"] == pytest.approx(
        (t.js > HI).mean())


def test_token_identity_split_facets_share_one_axis(env):
    spec = token_identity(env["con"], "rl", by="sampled_from")
    bars = _bars(spec.figure)
    assert len(bars) == 2
    top = max(max(b.x) for b in bars)
    ranges = [spec.figure.layout.xaxis.range, spec.figure.layout.xaxis2.range]
    assert ranges[0] == ranges[1] and ranges[0][1] >= 1.15 * top - 1e-12


def test_contrast_puts_small_shares_on_an_axis_that_fits(env, specs):
    fig = specs["contrast"].figure
    # like with like by default: each run on its own tuned model's samples
    a, b = tuned(env, "rl").js, tuned(env, SFT_NAME).js
    near, high = _bars(fig)
    assert list(high.y) == pytest.approx([(a > HI).mean(), (b > HI).mean()])
    assert list(near.y) == pytest.approx([(a < NZ).mean(), (b < NZ).mean()])
    axis = {bar.yaxis: fig.layout[bar.yaxis.replace("y", "yaxis")] for bar in (near, high)}
    for bar in (near, high):
        assert axis[bar.yaxis].range == pytest.approx((0, 1.15 * max(bar.y)))
        assert list(bar.text) == [f"{100 * v:.2f}%" for v in bar.y]
    assert near.yaxis != high.yaxis  # each share on its own axis
    assert axis[high.yaxis].range[1] < 0.5  # not a 0-100% axis


# ----------------------------------------------------------------------------- lines


def _line_traces(fig):
    return [t for t in fig.data if t.type == "scatter" and t.mode and "lines" in t.mode]


@pytest.mark.parametrize("which", ["js_cdf", "contrast"])
def test_the_two_cdf_lines_are_told_apart(env, specs, which):
    fig = (js_cdf(env["con"], "rl", by="sampled_from").figure if which == "js_cdf"
           else specs["contrast"].figure)
    lines = _line_traces(fig)
    assert len(lines) == 2
    one, two = lines
    assert one.line.dash != two.line.dash
    assert one.line.color != two.line.color
    assert one.marker.symbol != two.marker.symbol
    shown = [{i for i, s in enumerate(t.marker.size) if s > 0} for t in lines]
    n = len(one.x)
    for s in shown:  # markers at intervals: some points, not all
        assert 3 <= len(s) <= n // 4
    assert not shown[0] & shown[1]  # the two lines' markers do not sit on each other
    assert fig.layout.showlegend is not False


# ----------------------------------------------------------------------------- file names


def test_export_names_carry_the_run(env, specs, tmp_path):
    assert export_name(specs["js_hist"], "png") == "rl_js_hist.png"
    assert export_name(specs["evolution"], "pdf") == "rl_evolution.pdf"  # the overview's run
    # a contrast is named after both runs (its partner made file-safe)
    assert export_name(specs["contrast"], "png") == "rl_vs_i_sft_i_contrast.png"
    sft = token_identity(env["con"], SFT_NAME)
    assert sft.run == SFT_NAME and export_name(sft, "svg") == "i_sft_i_token_identity.svg"
    for bad in ("../../etc/passwd", "a/b\\c", "名前 run", "x" * 300, "..."):
        sft.run = bad
        name = export_name(sft, "png")
        assert re.fullmatch(r"[A-Za-z0-9._-]+_token_identity\.png", name), name
        assert not name.startswith(".") and len(name) < 120
    assert bundle_name("demo/rl <x>") == "demo_rl_x-figures.zip"
    files = export_data(specs["js_hist"], tmp_path)
    assert [p.name for p in files] == ["rl_js_hist.csv", "rl_js_hist.parquet"]
    assert "· rl</title>" in figure_bytes(specs["js_hist"], "html").decode()


# ----------------------------------------------------------------------------- PDF metadata


def read_info(pdf: bytes) -> dict:
    """The document information a reader sees: the last trailer's /Info object, found through
    its xref entry (written here independently of core.figures.pdfmeta)."""
    start = int(re.findall(rb"startxref\s+(\d+)", pdf)[-1])
    section = pdf[start:]
    trailer = section[section.index(b"trailer"):]
    num = int(re.search(rb"/Info\s+(\d+)\s+0\s+R", trailer).group(1))
    offsets = {}
    for first, _count, body in re.findall(rb"(\d+) (\d+)\n((?:\d{10} \d{5} [nf] \n)+)",
                                         section[:section.index(b"trailer")]):
        for i, entry in enumerate(re.findall(rb"\d{10} \d{5} [nf] \n", body)):
            offsets[int(first) + i] = int(entry[:10])
    obj = pdf[offsets[num]:]
    assert obj.startswith(b"%d 0 obj" % num)
    obj = obj[:obj.index(b"endobj")]
    out = {}
    for key, hexed in re.findall(rb"/(\w+)\s*<FEFF([0-9A-F]*)>", obj):
        out[key.decode()] = bytes.fromhex(hexed.decode()).decode("utf-16-be")
    return out


TINY_PDF = (b"%PDF-1.4\n1 0 obj\n<</Title (Kaleido-fier)>>\nendobj\n"
            b"2 0 obj\n<</Type /Catalog /Pages 3 0 R>>\nendobj\n"
            b"3 0 obj\n<</Type /Pages /Kids [] /Count 0>>\nendobj\n")


def _tiny_pdf() -> bytes:
    body = TINY_PDF
    offs = [m.start() for m in re.finditer(rb"\d 0 obj", body)]
    xref = len(body)
    table = b"xref\n0 4\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offs)
    return (body + table + b"trailer\n<</Size 4 /Root 2 0 R /Info 1 0 R>>\nstartxref\n%d\n"
            b"%%%%EOF\n" % xref)


def test_pdf_info_is_an_incremental_update():
    pdf = _tiny_pdf()
    text = "Contrast: demo-rl (x) vs <i>sft</i> \\ é 名前"
    out = with_info(pdf, Title=text, Subject="run demo-rl")
    assert out.startswith(pdf)  # the rendered document is untouched
    assert read_info(pdf) == {}  # the old title is a literal string, not ours
    assert read_info(out) == {"Title": text, "Subject": "run demo-rl"}
    assert re.search(rb"/Prev %d" % int(re.findall(rb"startxref\s+(\d+)", pdf)[-1]), out)


@needs_chromium
def test_exported_pdf_names_the_figure_and_run(specs, kaleido_server):
    spec = specs["contrast"]
    info = read_info(figure_bytes(spec, "pdf"))
    assert info["Title"] == spec.title != "Kaleido-fier"
    assert "rl" in info["Subject"] and "contrast" in info["Subject"]
    assert info["Keywords"] == "ShiftLens, contrast, rl"


@needs_chromium
def test_bundle_entries_carry_the_run(env, specs, tmp_path, kaleido_server):
    out = kaleido_server.bundle([specs["js_cdf"]], env["dirs"]["rl"], tmp_path / "b.zip",
                                formats=("pdf",))
    z = zipfile.ZipFile(out)
    assert sorted(z.namelist()) == ["rl_js_cdf.csv", "rl_js_cdf.json", "rl_js_cdf.parquet",
                                    "rl_js_cdf.pdf"]
    assert read_info(z.read("rl_js_cdf.pdf"))["Title"] == specs["js_cdf"].title


# ----------------------------------------------------------------------------- compact


def test_compact_figures_wrap_titles_for_a_narrow_column(specs):
    for spec in specs.values():
        fig = compact(spec.figure)
        assert not fig.layout.title.text  # the page shows the title above the chart
        assert spec.figure.layout.title.text  # the export keeps it
        for axis in [*fig.select_xaxes(), *fig.select_yaxes()]:
            for line in (axis.title.text or "").split("<br>"):
                assert len(line) <= 38, (spec.id, line)
        for trace in fig.data:
            for line in (trace.name or "").split("<br>"):
                assert len(line) <= 34, (spec.id, line)

def test_compact_facets_wrap_to_half_width_and_make_room_on_top(env):
    fig = compact(token_identity(env["con"], "rl", by="sampled_from").figure)
    assert all(len(x) <= 14 for x in fig.layout.xaxis2.title.text.split("<br>"))
    legend = sum(len(t.name.split("<br>")) for t in fig.data if t.showlegend is not False)
    heads = max(len(a.text.split("<br>")) for a in fig.layout.annotations)
    assert legend >= 3 and heads >= 2
    assert fig.layout.margin.t >= 17 * legend + 15 * heads
    assert fig.layout.legend.orientation == "v" and fig.layout.legend.yref == "container"


def test_fit_titles_wraps_long_axis_titles_and_keeps_the_rest(env, specs):
    from core.figures import tuned_top1_rank
    from core.figures.style import fit_titles

    spec = tuned_top1_rank(env["con"], "rl", by="sampled_from")  # two facets
    fig = fit_titles(spec.figure)
    assert fig.layout.title.text == spec.figure.layout.title.text
    long = spec.figure.layout.xaxis2.title.text
    assert len(long) > 30 and fig.layout.xaxis2.title.text.replace("<br>", " ") == long
    assert all(len(x) <= 26 for x in fig.layout.xaxis2.title.text.split("<br>"))
    js = specs["js_hist"]  # short enough: unchanged
    assert fit_titles(js.figure).layout.xaxis.title.text == js.figure.layout.xaxis.title.text


def test_fit_titles_wraps_every_row_of_a_grid_to_its_column():
    """A 2 x 2 grid: the bottom row's panel titles are wrapped like the top row's, to a
    column's share of the width (two columns, not four axes)."""
    from plotly.subplots import make_subplots

    from core.figures.style import fit_titles

    titles = ["a fairly long top-left title", "a fairly long top-right title",
              "a fairly long bottom-left one", "a fairly long bottom-right one"]
    fig = fit_titles(make_subplots(rows=2, cols=2, subplot_titles=titles), chars=40)
    wrapped = [a.text for a in fig.layout.annotations]
    assert all("<br>" in t for t in wrapped), wrapped  # 0.85 * 40 / 2 = 17 characters
    assert all(len(line) <= 17 for t in wrapped for line in t.split("<br>")), wrapped
