"""A damaged run is quarantined, not fatal: damaged copies of a healthy run (a truncated
table, a manifest that is not JSON, a list, a number where a date belongs, a js column
stored as text, a missing table) sit beside it; every page of the healthy run still draws,
each damaged run is listed with its one line, the CLI says that line for it alone, nothing
on disk changes, delete works on it, and a file replaced under a running server is caught
at the next query."""

from __future__ import annotations

import json
import shutil

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.cli.main import main as cli_main
from core.config import PrecomputeConfig
from core.precompute.driver import precompute
from core.queries.connection import damaged_since, open_runs
from core.store.cache import list_runs, open_run
from core.store.rename import delete_run
from core.store.run import Run
from tests.conftest import DEMO, open_app
from tests.hostile_fs import snapshot
from tests.test_byo_rollouts import ROLLOUTS, rollout_bytes

pytestmark = pytest.mark.model


def _truncate(run):
    f = run / "tokens.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _manifest(text):
    return lambda run: (run / "manifest.json").write_text(text)


def _date_number(run):
    m = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps(m | {"created": 20260101}))


def _js_text(run):
    t = pq.read_table(run / "tokens.parquet")
    i = t.schema.get_field_index("js")
    pq.write_table(t.set_column(i, "js", t.column("js").cast(pa.string())),
                   run / "tokens.parquet")


DAMAGE = {  # name: (how, what its line says)
    "cut": (_truncate, "tokens.parquet is not a readable Parquet file"),
    "notjson": (_manifest("{not json"), "manifest.json is not valid JSON"),
    "alist": (_manifest("[1, 2]"), "manifest.json holds a JSON list, not an object"),
    "datenum": (_date_number, "created is a number (20260101), not text"),
    "jstext": (_js_text, "column 'js' is text, not float"),
    "notopk": (lambda run: (run / "topk.parquet").unlink(), "topk.parquet is missing"),
}


def scored_rollouts(tmp_path_factory, name: str = "good"):
    """A cache with one run scored from a rollout file on the demo pair (no sampling)."""
    cache = tmp_path_factory.mktemp("damaged_cache")
    src = cache.parent / f"{cache.name}-rollouts.jsonl"
    src.write_bytes(rollout_bytes(ROLLOUTS))
    precompute(PrecomputeConfig(base=str(DEMO / "base"), tuned=str(DEMO / "rl"),
                                traces=str(src), cache=str(cache), name=name),
               log=lambda s: None, show_progress=False)
    return cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    cache = scored_rollouts(tmp_path_factory)
    for name, (how, _) in DAMAGE.items():
        shutil.copytree(cache / "good", cache / name)
        how(cache / name)
    return cache


def test_each_damaged_run_is_listed_with_its_line(cache):
    runs = {r.name: r for r in list_runs(cache)}
    assert set(runs) == {"good", *DAMAGE}
    assert not runs["good"].damaged
    assert [r.name for r in list_runs(cache, damaged=False)] == ["good"]
    for name, (_, says) in DAMAGE.items():
        line = runs[name].line()
        assert runs[name].damaged and says in line and "\n" not in line, line
        assert line.startswith(f"run {name!r} is damaged: ")
        with pytest.raises(Exception, match="is damaged") as e:
            open_run(cache, name)
        assert str(e.value) == line
    # the collection leaves out what it cannot read, so the healthy run's queries work
    # beside them (a folder that only lacks a table opens with that table empty, as
    # open_runs always allowed; the listing counts it as damaged, so the app never opens it)
    con = open_runs([r.path for r in runs.values()], names=list(runs))
    assert sorted(con.execute("SELECT list(run) FROM runs").fetchone()[0]) == ["good", "notopk"]
    assert con.execute("SELECT avg(js) FROM tokens").fetchone()[0] > 0
    assert [r.readable for r in runs.values()].count(True) == 2


def test_cli_says_the_line_for_the_damaged_run_only(cache, capsys):
    before = snapshot(cache)
    assert cli_main(["runs", "--cache", str(cache)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + len(DAMAGE)
    for name, (_, says) in DAMAGE.items():
        (line,) = [o for o in out if o.startswith(name + " ")]
        assert "DAMAGED" in line and says in line
    assert cli_main(["summary", "good", "--cache", str(cache)]) == 0
    capsys.readouterr()
    assert cli_main(["summary", "--cache", str(cache)]) == 0  # every healthy run
    got = capsys.readouterr()
    assert "good" in got.out and got.err.count("is damaged") == len(DAMAGE)
    for name, (_, says) in DAMAGE.items():
        for argv in (["summary", name], ["export", name, "--out", str(cache.parent / "x")]):
            with pytest.raises(SystemExit) as e:
                cli_main([*argv, "--cache", str(cache)])
            msg = str(e.value.code)
            assert msg.startswith("error: ") and says in msg and "\n" not in msg, msg
    assert snapshot(cache) == before
    assert not (cache.parent / "x").exists()


PAGES = ("views/traces.py", "views/overview.py", "views/search.py", "views/cross.py",
         "views/live.py", "views/runs.py")


def test_every_page_of_the_healthy_run_draws(cache, monkeypatch):
    before = snapshot(cache)
    for page in PAGES:
        at = open_app(monkeypatch, cache, page, run="good")
        shown = " ".join(c.value for c in at.sidebar.caption).replace("\\", "")
        if page != "views/runs.py":
            for name, (_, says) in DAMAGE.items():
                assert f"run {name!r} is damaged" in shown and says in shown
    assert len(at.dataframe) >= 2  # the Runs page: the runs, then the damaged runs
    damaged_table = at.dataframe[1].value
    assert sorted(damaged_table["run"]) == sorted(DAMAGE)
    assert snapshot(cache) == before


def test_a_page_given_a_damaged_run_says_its_line(cache, monkeypatch):
    at = open_app(monkeypatch, cache, None, run="jstext")
    (err,) = at.error
    assert err.value.replace("\\", "") == Run.open(cache / "jstext").line()


def test_delete_works_on_a_damaged_run(cache, tmp_path):
    copy = tmp_path / "c"
    for name in ("good", "notjson", "cut"):
        shutil.copytree(cache / name, copy / name)
    delete_run(copy, "notjson")
    delete_run(copy, "cut")
    assert [r.name for r in list_runs(copy)] == ["good"]


def test_a_file_replaced_under_the_server_is_caught_at_the_next_query(cache, tmp_path,
                                                                       monkeypatch):
    copy = tmp_path / "c"
    for name in ("good", "notjson"):
        shutil.copytree(cache / name, copy / name)
    shutil.copytree(cache / "good", copy / "later")
    con = open_runs([copy / "good", copy / "later"], names=["good", "later"])
    assert con.execute("SELECT count(*) FROM tokens").fetchone()[0] > 0
    at = open_app(monkeypatch, copy, "views/overview.py", run="later")
    _truncate(copy / "later")  # replaced while both are open
    with pytest.raises(duckdb.Error) as e:
        con.execute("SELECT count(*) FROM tokens").fetchone()
    line = damaged_since(e.value, [copy / "good", copy / "later"])
    assert line == Run.open(copy / "later").line() and "truncated" in line
    at.run()  # the app's next draw: quarantined, its line instead of an exception
    assert not at.exception, [x.value for x in at.exception]
    assert [e.value.replace("\\", "") for e in at.error] == [line]
    at = open_app(monkeypatch, copy, "views/overview.py", run="good")  # the others work
    assert not at.error
