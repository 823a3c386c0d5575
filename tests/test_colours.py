"""Token colouring, legend escaping and folding of calm spans (pure app helpers)."""

import pytest

from app.ui.colours import colour_tokens, folds, legend_html, urial_category

pytestmark = pytest.mark.unit


def test_threshold_and_scale():
    colours, strength = colour_tokens([0.0, 0.005, 0.05, 0.5, float("nan")], "js", threshold=0.01)
    assert colours[0] == colours[1] == colours[4] == "transparent"
    assert 0 < strength[2] < strength[3] <= 1
    assert colours[3].startswith("rgba(220, 38, 38")


def test_dlogp_is_diverging():
    colours, strength = colour_tokens([-2.0, 2.0, 0.1], "dlogp", threshold=0.5)
    assert colours[0].startswith("rgba(37, 99, 235") and colours[1].startswith("rgba(220, 38, 38")
    assert strength[0] == strength[1] > 0 and colours[2] == "transparent"


def test_urial_buckets():
    assert [urial_category(r) for r in (1, 2, 3, 4, 100)] == [
        "unshifted", "marginal", "marginal", "shifted", "shifted"]
    colours, strength = colour_tokens([1, 2, 5], "rank_base")
    assert colours[0] == "transparent" and strength == [0.0, 0.5, 1.0]


def test_folds_keep_context_and_only_long_runs():
    s = [1.0] + [0.0] * 30 + [1.0] + [0.0] * 5 + [1.0] + [0.0] * 20
    assert folds(s, min_run=16, context=2) == [(3, 29), (40, 58)]
    assert folds([0.0] * 10, min_run=16) == []


def test_legend_is_static_html():
    out = legend_html("js", 0.01)
    assert "<script" not in out and "uncoloured below 0.01" in out


def test_markdown_escape_shows_text_literally():
    from app.ui.text import md_escape

    assert md_escape("**bold** [x](javascript:alert(1)) `c`") == (
        r"\*\*bold\*\* \[x\]\(javascript\:alert\(1\)\) \`c\`")
