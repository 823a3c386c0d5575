"""Smaller rough edges of issue 27 checked in AppTest (the browser adds nothing there): the
add-pair refusal for a folder that is no model names each role."""

from __future__ import annotations

import pytest

from tests.test_byo_rollouts import add_page, unescape


@pytest.mark.unit
def test_the_add_pair_refusal_names_each_role(tmp_path, monkeypatch):
    at = add_page(tmp_path / "cache", monkeypatch)
    at.radio(key="ap_source").set_value("sample from a prompt set").run()
    at.text_input(key="ap_base_spec").set_value("/etc")
    at.text_input(key="ap_tuned_spec").set_value("/etc").run()
    at.button(key="ap_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (err,) = [unescape(e.value) for e in at.error if "Refused" in e.value]
    assert "base: weights: /etc: not a model folder" in err, err
    assert "tuned: weights: /etc: not a model folder" in err, err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.mark.unit
def test_a_figure_heading_is_not_repeated_inside_the_plot(tmp_path):
    from app.ui.figure import drawn
    from tests.figure_env import build_env, build_specs

    specs = build_specs(build_env(tmp_path / "cache"))
    for spec in specs.values():
        for narrow in (False, True):
            assert not drawn(spec, narrow).layout.title.text, spec.id
        assert spec.figure.layout.title.text  # the export keeps its title


def _ranges(fig) -> dict:
    return {k: fig.layout[k].range for k in fig.layout if k.startswith(("xaxis", "yaxis"))}


@pytest.mark.unit
def test_runs_compare_shares_value_axes(tmp_path):
    from core.figures import overview
    from core.figures.style import share_axes
    from tests.figure_env import SFT_NAME, build_env

    con = build_env(tmp_path / "cache")["con"]
    left = {s.id: s for s in overview(con, "rl")}
    right = {s.id: s for s in overview(con, SFT_NAME)}
    shared = 0
    for fid in left.keys() & right.keys():
        before = _ranges(left[fid].figure)
        fa, fb = share_axes(left[fid].figure, right[fid].figure)
        for name in [k for k in fa.layout if k.startswith(("xaxis", "yaxis"))]:
            if fa.layout[name].range is not None:
                assert list(fa.layout[name].range) == list(fb.layout[name].range), fid
                shared += 1
        assert _ranges(left[fid].figure) == before  # the original's axes are untouched
    assert shared >= 3
    # the token-identity bars: one share axis for both runs, wide enough for either
    fa, fb = share_axes(left["token_identity"].figure, right["token_identity"].figure)
    top = max(max(t.x) for f in (left["token_identity"].figure, right["token_identity"].figure)
              for t in f.data if t.type == "bar")
    assert fa.layout.xaxis.range[1] >= top


@pytest.mark.unit
def test_threshold_labels_do_not_share_a_line(tmp_path):
    from tests.figure_env import build_env, build_specs

    specs = build_specs(build_env(tmp_path / "cache"))
    for fid in ("js_hist", "js_cdf"):
        marks = {a.text: a.y for a in specs[fid].figure.layout.annotations
                 if a.text.startswith(("near-zero", "high"))}
        assert len(marks) == 2 and len(set(marks.values())) == 2, (fid, marks)
