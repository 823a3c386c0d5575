"""Token colouring, legend escaping and folding of calm spans (pure app helpers)."""

import pytest

from core.figures.colours import colour_tokens, folds, legend_html, urial_category

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


# ----------------------------------------------------------------------------- themes

def _sweep(metric):
    top = {"js": 0.69, "dlogp": 8.0}[metric]
    values = [top * i / 200 for i in range(1, 201)]
    return values + [-v for v in values] if metric == "dlogp" else values


def test_contrast_helpers():
    from core.figures.colours import composite, contrast, parse_rgba

    assert contrast((255, 255, 255), (0, 0, 0)) == pytest.approx(21.0)
    assert contrast((10, 20, 30), (10, 20, 30)) == pytest.approx(1.0)
    assert parse_rgba("rgba(220, 38, 38, 0.500)") == (220, 38, 38, 0.5)
    assert parse_rgba("#171614") == (23, 22, 20, 1.0) and parse_rgba("transparent") is None
    assert composite("transparent", (1, 2, 3)) == (1, 2, 3)
    assert composite("rgba(255, 255, 255, 0.5)", (0, 0, 0)) == (127.5, 127.5, 127.5)


@pytest.mark.parametrize("metric", ["js", "dlogp"])
def test_faint_highlights_stay_visible_on_the_dark_page(metric):
    """The faintest highlight differs from the page at least as much in dark mode as in light
    mode (where a red at alpha 0.08 is 1.13:1 on white), and at least 1.3:1."""
    from core.figures.colours import THEMES, composite, contrast

    seen = {}
    for theme in ("light", "dark"):
        page = THEMES[theme]["page"]
        colours, strength = colour_tokens(_sweep(metric), metric, theme=theme)
        seen[theme] = min(contrast(composite(c, page), page)
                          for c, s in zip(colours, strength) if s > 0)
    assert seen["dark"] >= 1.3 and seen["dark"] >= seen["light"]


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("metric", ["js", "dlogp", "rank_base"])
def test_token_text_reads_on_every_highlight(theme, metric):
    """The text colour is chosen per highlight: never worse than the theme's own text, and
    at least 3.5:1 everywhere (dark text on a strong red was 2.9:1)."""
    from core.figures.colours import THEMES, composite, contrast, parse_rgba, text_colours

    t = THEMES[theme]
    values = [1, 2, 3, 4, 50] if metric == "rank_base" else _sweep(metric)
    colours, _ = colour_tokens(values, metric, theme=theme)
    for css, text in zip(colours, text_colours(colours, theme)):
        bg = composite(css, t["page"])
        chosen = parse_rgba(text)[:3] if text else t["text"]
        assert contrast(chosen, bg) >= max(3.5, contrast(t["text"], bg) - 1e-9), (css, text)
    assert text_colours(["transparent"], theme) == [""]
