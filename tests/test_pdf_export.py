"""PDF exports opened and looked at: every overview figure's x-axis title is on the page.

kaleido printed PDFs with 0.1 in page margins at exactly the figure's size, which cut the
bottom of every figure (its x-axis title). Each PDF is rendered with pdftoppm (poppler-utils)
and the lower part of the title's glyphs, located with pdftotext -bbox, must carry ink.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.figure_env import build_env, build_specs

pytestmark = [pytest.mark.unit,
              pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("pdftoppm")),
                                 reason="needs chromium and poppler-utils (pdftoppm)")]

DPI = 72  # one pixel a PDF point
FIGURES = ("token_identity", "urial_categories", "js_cdf", "js_entropy_2d", "position_profile",
           "evolution", "tuned_top1_base_rank")


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    from core.figures import export

    yield build_specs(build_env(tmp_path_factory.mktemp("cache")))
    export.stop_server()


def _pgm(path) -> np.ndarray:
    """A binary PGM (P5, 8 bit) as a 2-D array."""
    data = path.read_bytes()
    magic, w, h, _, pixels = re.match(rb"(P5)\s+(\d+)\s+(\d+)\s+(\d+)\s(.*)", data, re.S).groups()
    return np.frombuffer(pixels, np.uint8)[: int(w) * int(h)].reshape(int(h), int(w))


def _words(pdf) -> list[tuple[str, float, float, float, float]]:
    out = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True,
                         text=True, check=True).stdout
    return [(html.unescape(m[4]), *map(float, m[:4])) for m in re.findall(
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>',
        out)]


@pytest.mark.parametrize("fid", FIGURES)
def test_pdf_keeps_the_x_axis_title(specs, fid, tmp_path):
    from core.figures.export import figure_bytes

    spec = specs[fid]
    layout = spec.figure.layout
    texts = [layout[k].title.text for k in sorted(layout) if k.startswith("xaxis")]
    title = html.unescape(re.sub(r"<br>", " ", next(filter(None, texts), "")))
    assert title, f"{fid} has no x-axis title"
    pdf = tmp_path / f"{fid}.pdf"
    pdf.write_bytes(figure_bytes(spec, "pdf"))
    subprocess.run(["pdftoppm", "-gray", "-r", str(DPI), "-singlefile", str(pdf),
                    str(tmp_path / fid)], check=True)
    img = _pgm(tmp_path / f"{fid}.pgm")
    words = _words(pdf)
    last = title.split()[-1]
    # the title's last word: the lowest occurrence on the page (the title sits at the bottom)
    found = [w for w in words if w[0] == last]
    assert found, f"{fid}: {last!r} of the x-axis title is not in the PDF text"
    _, x0, y0, x1, y1 = max(found, key=lambda w: w[2])
    lower = img[int(np.ceil(y0 + 0.6 * (y1 - y0))): int(np.ceil(y0 + 0.78 * (y1 - y0))),
                int(x0): int(np.ceil(x1))]
    assert lower.size and lower.min() < 128, \
        f"{fid}: the lower half of the x-axis title {title!r} is not drawn (cut off the page)"
