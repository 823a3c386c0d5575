"""Shared fixtures: throwaway tiny pairs built by the production code, demo asset paths."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo"
HELDOUT = ROOT / "assets" / "prompts" / "arith-heldout.jsonl"


def pytest_configure(config):
    """Under pytest-xdist (scripts/test.sh runs one worker per core), each worker and the
    processes it starts (app servers, job processes) use one thread: torch's default of one
    thread per core would have the workers spin against each other."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ.setdefault("NUMBA_NUM_THREADS", "1")
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)


def save_tiny_model(folder: Path, tokenizer, seed: int) -> Path:
    from core.demo.model import build_model

    model = build_model(tokenizer, hidden=32, layers=1, heads=2, seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> dict:
    """Two random tiny Llama models sharing the demo tokenizer, and a 6-prompt set."""
    from core.demo.task import prompt_records, sample_problems, write_jsonl
    from core.demo.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("tiny_pair")
    tok = build_tokenizer()
    base = save_tiny_model(root / "base", tok, seed=1)
    tuned = save_tiny_model(root / "tuned", tok, seed=2)
    prompts = root / "prompts.jsonl"
    recs = [dict(r, verifier="exact") for r in
            prompt_records(sample_problems(6, "heldout", seed=0), "p")]
    write_jsonl(recs, prompts)
    return {"root": root, "base": base, "tuned": tuned, "prompts": prompts}


@pytest.fixture
def copy_model(tmp_path):
    def _copy(src: Path, name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst
    return _copy


@pytest.fixture(scope="session")
def app_cache(tmp_path_factory):
    """A cache for app tests, built by the production path: a small demo-pair run (traces
    from both models), its SFT contrast, a two-step series, and the hostile-text run."""
    from core.config import PrecomputeConfig
    from core.precompute.driver import precompute
    from tests.hostile import build_hostile_run

    cache = tmp_path_factory.mktemp("app_cache")
    common = dict(base=str(DEMO / "base"), prompts=str(HELDOUT), cache=str(cache),
                  max_prompts=8, n=2, max_new_tokens=64)
    quiet = dict(log=lambda s: None, show_progress=False)
    precompute(PrecomputeConfig(tuned=str(DEMO / "rl"), name="demo-rl", kind="rl",
                                sample_from="both", **common), **quiet)
    precompute(PrecomputeConfig(tuned=str(DEMO / "sft"), name="demo-sft", kind="sft",
                                **common), **quiet)
    steps = sorted((DEMO / "rl-steps").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    for s in steps[-2:]:
        n = int(s.name.split("-")[1])
        precompute(PrecomputeConfig(tuned=str(s), name=f"demo-rl-step-{n}", kind="series",
                                    series_step=n, traces_from="demo-rl", **common), **quiet)
    build_hostile_run(tmp_path_factory.mktemp("hostile_pair"), cache)
    before = _fingerprint(cache)
    yield cache
    changed = sorted(set(before) ^ set(_fingerprint(cache)))
    assert not changed, ("a test wrote into the shared app cache (copy the runs it changes "
                         f"with _cache_with): {sorted({p for p, *_ in changed})[:10]}")


@pytest.fixture(autouse=True)
def _app_cache_untouched(request):
    """A test that uses the app cache leaves it as it found it (the session check above
    says that something did; this one names the test)."""
    if "app_cache" not in request.fixturenames:
        yield
        return
    cache = request.getfixturevalue("app_cache")
    before = _fingerprint(cache)
    yield
    changed = sorted({p for p, *_ in set(before) ^ set(_fingerprint(cache))})
    assert not changed, f"this test wrote into the shared app cache: {changed[:10]}"


def _fingerprint(cache: Path) -> set[tuple[str, int, int]]:
    """Every file under `cache` with its size and modification time: the app cache is shared
    by every module on a worker, so a test that writes into it changes what the others see.
    The query index (a cache the readers build, under a lock) is left out."""
    out = set()
    for f in cache.rglob("*"):
        if f.is_file() and not f.name.startswith(".query-index"):
            st = f.stat()
            out.add((str(f.relative_to(cache)), st.st_size, st.st_mtime_ns))
    return out


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's /usr/bin/chromium through Playwright) for browser tests."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, FLAGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


MAIN = str(ROOT / "app" / "main.py")


def open_app(monkeypatch, cache: Path, page: str | None = None, **params):
    """AppTest of app/main.py on `cache` with the URL's query `params`, run (and switched to
    `page` when given, then run again), checked to have raised nothing."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SHIFTLENS_CACHE", str(cache))
    at = AppTest.from_file(MAIN, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def app(app_cache, monkeypatch):
    """open_app on the app cache: app(page, **query params) -> a run AppTest."""
    return lambda page=None, **params: open_app(monkeypatch, app_cache, page, **params)


@pytest.fixture(scope="module")
def server(app_cache):
    """The app as scripts/app.sh serves it, on the app cache: one server per test module."""
    from tests.browser import streamlit_server

    with streamlit_server(app_cache) as url:
        yield url


@pytest.fixture(scope="module")
def own_server(app_cache, tmp_path_factory):
    """The app served on a module's own copy of the app cache: for browser tests whose
    clicks write into a run (saved forks, started jobs), which `server` would leave in the
    cache other modules read."""
    from tests.browser import streamlit_server

    cache = tmp_path_factory.mktemp("own_cache") / "cache"
    shutil.copytree(app_cache, cache, ignore=shutil.ignore_patterns(".query-index*"))
    with streamlit_server(cache) as url:
        yield url


@pytest.fixture
def page(browser):
    """A 1400 x 1000 page that accepts downloads and records (and dismisses) dialogs."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    yield pg
    ctx.close()


@pytest.fixture
def cache(tmp_path) -> Path:
    """A cache that already holds something, so 'untouched' is a real comparison."""
    c = tmp_path / "cache"
    (c / "old-run").mkdir(parents=True)
    (c / "README.md").write_text("runs live here\n")
    (c / "old-run" / "manifest.json").write_text(
        '{"name": "old-run", "created": "2026-01-01T00:00:00+00:00"}')
    return c


@pytest.fixture(scope="session")
def layer_run(tmp_path_factory) -> Path:
    """A small demo-pair run for the layer views (tests/layerrun.py), shared by
    test_layers.py and test_critical.py (each writes only its own tables into it)."""
    from tests.layerrun import build_layer_run

    return build_layer_run(tmp_path_factory.mktemp("layers_cache"))


@pytest.fixture(scope="session")
def layer_pair(layer_run):
    """The layer-view run's own pair, loaded once for test_layers.py and test_critical.py."""
    from core.store.run import Run

    return Run.open(layer_run).load_pair(device="cpu")


@pytest.fixture
def behind_guard(monkeypatch):
    """AppTest sessions as if served behind app/serve.py's guard, from a browser with a
    sign-in cookie at 10.0.0.1: `behind_guard(signed_in=True)` also signs the AppTest session
    in (AppTest cannot send the cookie and headers a real connection carries). Sign-ins and
    wrong-password counts start afresh at each call and are forgotten after the test."""
    from core import signin

    token = signin.tokens().issue()

    def setup(signed_in: bool = False, address: str = "10.0.0.1") -> str:
        signin.reset()  # reads the SHIFTLENS_SIGNIN_* settings as the test set them
        monkeypatch.setattr("app.ui.access.connection", lambda: (token, address))
        if signed_in:
            signin.sessions().bind("test session id", token)  # AppTest's one session id
            signin.sessions().sign_in("test session id", token)
        return token

    yield setup
    signin.reset()
