"""core.figures captions against independent pandas computations; the files core.figures.export
writes; the CLI."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import queries as Q
from core.cli.main import main
from core.figures import FIGURE_IDS, has_both_sources, overview
from core.figures.style import MODEL_COLOURS
from tests.figure_env import (
    BOLD,
    DOLLAR,
    HI,
    NZ,
    SCRIPT,
    SERIES,
    SFT_NAME,
    build_env,
    build_specs,
    tuned,
)
from tests.test_queries import make_tables, write_run

pytestmark = pytest.mark.unit
needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="static export needs chromium on PATH")

LN2 = math.log(2)


def pct(x):
    return f"{100 * x:.1f}%"


def pct2(x):
    return f"{100 * x:.2f}%"


def num(x):
    return f"{x:.3g}"


def point(caption: str) -> str:
    """A caption without its bracketed intervals (tests/test_intervals.py checks those): the
    point estimates as the caption words them."""
    return re.sub(r" \[[^\]]*\]", "", caption)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def specs(env):
    return build_specs(env)


@pytest.fixture(scope="module")
def kaleido_server():
    """One browser for every static export of this module, closed at the end."""
    from core.figures import export

    yield export
    export.stop_server()


# ----------------------------------------------------------------------------- figures


def test_overview_ids_and_split(env, specs):
    assert list(specs) == list(FIGURE_IDS)
    con = env["con"]
    assert has_both_sources(con, "rl") and not has_both_sources(con, SFT_NAME)
    default = overview(con, "rl")  # rl has base- and tuned-sampled traces: the tuned ones
    assert [s.id for s in default] == list(FIGURE_IDS[:-2])
    assert all(s.params.get("by") is None and s.params["sampled_from"] == "tuned"
               and s.caption.endswith("; on 10 tuned-sampled traces") for s in default)
    split = overview(con, "rl", sampled_from="split")
    assert all(s.params.get("by") == "sampled_from" for s in split)
    assert all(s.caption.endswith("on 10 tuned-sampled traces and 4 base-sampled traces, "
                                  "side by side") for s in split)
    pooled = overview(con, "rl", sampled_from="pooled")
    assert all(s.caption.endswith("pooled over 10 tuned- and 4 base-sampled traces")
               for s in pooled)
    for s in specs.values():
        assert s.caption and "\n" not in s.caption and s.title
        assert s.query in Q.__all__ and not s.data.empty
        json.dumps(s.params)


def test_split_colours_and_captions(env):
    spec = {s.id: s for s in overview(env["con"], "rl", sampled_from="split")}
    t = env["ref"]["rl"]
    hist = spec["js_hist"]
    hist_cap = point(hist.caption)
    bars = {tr.name: tr.marker.color for tr in hist.figure.data}
    assert bars == {"sampled from tuned": MODEL_COLOURS["tuned"],
                    "sampled from base": MODEL_COLOURS["base"]}
    for src in ("tuned", "base"):
        d = t[t.sampled_from == src]
        assert f"{pct2((d.js < NZ).mean())} ({src}-sampled)" in hist_cap
        assert f"{pct2((d.js > HI).mean())} ({src}-sampled)" in hist_cap
        r = d.rank_base
        assert f"{pct((r == 1).mean())} ({src}-sampled)" in point(
            spec["urial_categories"].caption)
    ent = spec["entropy_by_js"].figure
    assert {tr.name: tr.marker.color for tr in ent.data} == {
        "base model": MODEL_COLOURS["base"], "tuned model": MODEL_COLOURS["tuned"]}


def test_sparsity_captions(env, specs):
    js = tuned(env, "rl").js
    cap = point(specs["js_hist"].caption)
    assert cap.startswith(f"{pct2((js < NZ).mean())} of tokens have js < 0.01")
    assert f"{pct2((js > HI).mean())} have js > 0.1 ({len(js)} tokens" in cap
    p50, p95, p99 = np.quantile(js, [0.5, 0.95, 0.99])
    cap = specs["js_cdf"].caption
    assert f"median js {num(p50)};" in cap and f"below {num(p95)}, 99% below {num(p99)}" in cap
    assert specs["js_hist"].figure.layout.yaxis.type == "log"


def test_entropy_captions(env, specs):
    t = tuned(env, "rl")
    cap = specs["entropy_by_js"].caption
    assert (f"{num(t[t.js < NZ].entropy_base.mean())} nats at js < 0.01 vs "
            f"{num(t[t.js >= HI].entropy_base.mean())} nats at js >= 0.1") in cap
    emax = t.entropy_base.max()
    h, je, ee = np.histogram2d(t.js, t.entropy_base, bins=30, range=[[0, LN2], [0, emax]])
    i, j = np.unravel_index(np.argmax(h), h.shape)
    cell = (f"{pct(h[i, j] / h.sum())} of tokens in js [{je[i]:.3g}, {je[i + 1]:.3g}) x "
            f"entropy [{ee[j]:.3g}, {ee[j + 1]:.3g})")
    assert specs["js_entropy_2d"].caption.endswith(cell + "; on 10 tuned-sampled traces")


def test_position_caption(env, specs):
    t = tuned(env, "rl")
    b = np.minimum(np.floor(t.rel_pos * 20), 19)
    mean = t.js.groupby(b).mean()
    cap = point(specs["position_profile"].caption)
    assert (f"{num(mean.iloc[0])} in the first bin, lowest {num(mean.min())} at "
            f"{mean.idxmin() / 20:.2f}, highest {num(mean.max())} at "
            f"{mean.idxmax() / 20:.2f}, {num(mean.iloc[-1])} in the last bin") in cap


def test_token_identity_caption_and_escaping(env, specs):
    t = tuned(env, "rl")
    g = t.groupby("token").js.agg(n_total="size", n_high=lambda s: (s > HI).sum())
    g["share"] = g.n_high / g.n_total
    g = g[(g.n_total >= 5) & (g.n_high > 0)].reset_index().sort_values(
        ["n_high", "share", "token"], ascending=[False, False, True])
    top = g.iloc[0]
    assert top.token in (BOLD, SCRIPT, DOLLAR)
    cap = specs["token_identity"].caption
    assert (f"{top.token!r} has {top.n_high} of {top.n_total} occurrences "
            f"({pct(top.share)}) with js > 0.1") in cap
    fig = specs["token_identity"].figure
    ticks = list(fig.layout.yaxis.ticktext)
    assert "&lt;b&gt;x&lt;/b&gt;" in ticks and "&#36;x&#36;" in ticks
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in ticks
    text = json.dumps(fig.to_plotly_json(), default=str)
    for raw in (SCRIPT, BOLD, DOLLAR, "<i>"):
        assert raw not in text
    assert "&lt;i&gt;sft&lt;/i&gt;" in specs["contrast"].figure.layout.title.text


def test_reallocation_captions(env, specs):
    t = tuned(env, "rl")
    h = t[t.js > HI]

    def overlap(d, k):
        return np.mean([len(set(b[:k]) & set(u[:k])) / k
                        for b, u in zip(d.base_ids, d.tuned_ids)])
    cap = point(specs["topk_overlap"].caption)
    assert (f"top-1 {pct(overlap(h, 1))} at js > 0.1 vs {pct(overlap(t, 1))} overall; "
            f"top-10 {pct(overlap(h, 10))}") in cap
    r = h.tuned_top1_rank_base
    cap = point(specs["tuned_top1_base_rank"].caption)
    assert (f"base top-1 for {pct((r == 1).mean())} and within the base top-3 for "
            f"{pct((r <= 3).mean())}; base probability < 0.01 for "
            f"{pct((h.tuned_top1_prob_base < 0.01).mean())}") in cap
    r = t.rank_base
    cap = point(specs["urial_categories"].caption)
    assert (f"{pct((r == 1).mean())} unshifted, {pct(r.between(2, 3).mean())} marginal, "
            f"{pct((r > 3).mean())} shifted") in cap


def test_evolution_and_contrast_captions(env, specs):
    # like with like: every checkpoint on its tuned-sampled traces, each run of the contrast
    # on its own tuned model's samples
    ref = {s: tuned(env, s) for s in [*SERIES, "rl", SFT_NAME]}
    sets = {s: set(map(tuple, ref[s][ref[s].js > HI][["trace_id", "pos"]].values))
            for s in SERIES}
    jac = len(sets["s-1"] & sets["s-3"]) / len(sets["s-1"] | sets["s-3"])
    p95 = [np.quantile(ref[s].js, 0.95) for s in SERIES]
    cap = point(specs["evolution"].caption)
    assert cap.startswith(
        f"Across 3 checkpoints p95 js goes from {num(p95[0])} (step 0) to {num(p95[-1])} "
        f"(step 20); Jaccard of step 0's high-js positions with the final's: {num(jac)}")
    assert cap.endswith("; s-1 .. s-2 on 10 tuned-sampled traces; s-3 on 10 tuned-sampled "
                        "traces")
    a, b = ref["rl"].js, ref[SFT_NAME].js
    cap = point(specs["contrast"].caption)
    assert cap.startswith(
        f"Share of tokens with js < 0.01: {pct((a < NZ).mean())} (rl) vs "
        f"{pct((b < NZ).mean())} ({SFT_NAME}); js > 0.1: {pct2((a > HI).mean())} vs "
        f"{pct2((b > HI).mean())}; ratio rl / {SFT_NAME} of the share above 0.1: "
        f"{num((a > HI).mean() / (b > HI).mean())} ")
    assert cap.endswith(f"rl on 10 tuned-sampled traces; {SFT_NAME} on 14 tuned-sampled "
                        "traces")


def test_missing_tables(tmp_path):
    """A run with tokens only: the top-k figures are left out, nothing is split."""
    folder = write_run(tmp_path / "only-tokens", make_tables(8), {"name": "t"})
    (folder / "topk.parquet").unlink()
    (folder / "traces.parquet").unlink()
    ids = [s.id for s in overview(Q.open_runs([folder]), "t")]
    assert ids == [i for i in FIGURE_IDS[:-2] if i not in ("topk_overlap",
                                                             "tuned_top1_base_rank")]


def test_no_ui_imports():
    code = ("import sys, core.figures, core.figures.export; "
            "assert 'streamlit' not in sys.modules and 'kaleido' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# ----------------------------------------------------------------------------- export


def test_html_and_data_without_browser(specs, tmp_path):
    from core.figures.export import export_data, figure_bytes

    page = figure_bytes(specs["token_identity"], "html").decode()
    assert "plotly.js v" in page and page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*src=[\"'][^\"']*cdn\.plot\.ly", page)
    assert SCRIPT not in page and BOLD not in page  # nor in the caption paragraph
    spec = specs["js_hist"]
    csv, parquet = export_data(spec, tmp_path)
    assert [csv.name, parquet.name] == ["rl_js_hist.csv", "rl_js_hist.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), spec.data)
    assert pd.read_csv(csv)["count"].tolist() == spec.data["count"].tolist()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files
    with pytest.raises(ValueError):
        figure_bytes(spec, "eps")


@needs_chromium
def test_export_figure(specs, tmp_path, kaleido_server):
    paths = kaleido_server.export_figure(specs["token_identity"], tmp_path)
    files = {p.suffix: p.read_bytes() for p in paths}
    assert sorted(files) == [".html", ".pdf", ".png", ".svg"]
    assert files[".png"].startswith(b"\x89PNG") and len(files[".png"]) > 5000
    assert files[".pdf"].startswith(b"%PDF")
    root = ET.fromstring(files[".svg"])
    assert root.tag.endswith("svg")
    texts = {"".join(e.itertext()) for e in root.iter() if e.tag.endswith("text")}
    assert SCRIPT in texts and BOLD in texts and DOLLAR in texts  # shown literally
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert b"plotly.js v" in files[".html"]


@needs_chromium
def test_bundle(env, specs, tmp_path, kaleido_server):
    chosen = [specs["urial_categories"], specs["contrast"]]
    out = kaleido_server.bundle(chosen, env["dirs"]["rl"], tmp_path / "b.zip")
    names = zipfile.ZipFile(out).namelist()
    assert sorted(names) == sorted(
        f"rl_{'vs_i_sft_i_' if s.id == 'contrast' else ''}{s.id}.{ext}" for s in chosen
        for ext in ("png", "svg", "pdf", "html", "csv", "parquet", "json"))
    rec = json.loads(zipfile.ZipFile(out).read("rl_vs_i_sft_i_contrast.json"))
    assert rec["manifest"] == json.loads((env["dirs"]["rl"] / "manifest.json").read_text())
    assert rec["query"] == "contrast" and rec["params"]["run_b"] == SFT_NAME
    assert rec["caption"] == specs["contrast"].caption and rec["id"] == "contrast"
    assert rec["run"] == "rl"


@needs_chromium
def test_cli_export(env, tmp_path, kaleido_server):
    out = tmp_path / "out"
    rc = main(["export", "rl", "--cache", str(env["cache"]), "--out", str(out),
               "--formats", "png,html", "--series", ",".join(SERIES), "--contrast-with", "sft",
               "--sampled-from", "split"])
    assert rc == 0
    z = zipfile.ZipFile(out / "rl-figures.zip")
    names = set(z.namelist())
    ids = list(FIGURE_IDS)
    assert names == {f"rl_{'vs_sft_' if i == 'contrast' else ''}{i}.{e}" for i in ids
                     for e in ("png", "html", "csv", "parquet", "json")}
    assert {p.name for p in out.iterdir()} == names | {"rl-figures.zip"}
    rec = json.loads(z.read("rl_js_hist.json"))
    assert rec["manifest"]["name"] == "rl" and rec["params"]["by"] == "sampled_from"
    assert rec["params"]["sampled_from"] == "split" and rec["caption"].endswith("side by side")
    assert z.read("rl_evolution.png").startswith(b"\x89PNG")
    assert main(["export", "rl", "--cache", str(env["cache"]), "--out", str(out),
                 "--formats", "gif"]) == 2


def test_split_figures_survive_empty_results(env):
    """A split figure whose query returns no rows (nothing reaches min_count) still builds."""
    from core.figures import token_identity

    spec = token_identity(env["con"], "rl", by="sampled_from", min_count=10**9)
    assert spec.data.empty and len(spec.figure.layout.annotations) <= 1
