"""The per-run query index (core/queries/run_index.py): built once and reused, rebuilt when a
table changes, moved with a renamed run folder, kept out of read-only folders, built by
`prepare` only for runs large enough to be materialised, and never half-written."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from core import queries as Q
from core.demo.synthetic import write_synthetic_run
from core.queries import connection, run_index
from core.store.schema import TOKENS_FILE
from core.store.storage import write_parquet

pytestmark = pytest.mark.unit


@pytest.fixture
def run(tmp_path):
    return write_synthetic_run(tmp_path / "r", n_tokens=3_000, mean_length=50, chunk_rows=1_500,
                               name="r")


def test_built_once_reused_and_rebuilt_when_a_table_changes(run):
    p = run_index.ensure_index(run)
    assert p == run / run_index.INDEX_FILE and p.is_file()
    mtime = p.stat().st_mtime_ns
    con = Q.open_runs([run], materialize=True)
    assert con.execute("SELECT count(*) FROM tokens").fetchall()[0][0] == 3_000
    assert p.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert not list(run.glob("*.building*")) and not list(run.glob("*.spill"))
    f = Q.table_files(run, TOKENS_FILE)[0]
    t = pq.read_table(f)
    write_parquet(t.slice(0, t.num_rows - 10), f)  # a table changes: the index is stale
    con = Q.open_runs([run], materialize=True)
    assert con.execute("SELECT count(*) FROM tokens").fetchall()[0][0] == 2_990
    assert p.stat().st_mtime_ns != mtime


def test_a_renamed_run_keeps_its_index(run, tmp_path):
    p = run_index.ensure_index(run)
    mtime = p.stat().st_mtime_ns
    moved = tmp_path / "renamed"
    os.rename(run, moved)
    assert run_index.ensure_index(moved).stat().st_mtime_ns == mtime
    con = Q.open_runs([moved], materialize=True)
    assert Q.opened_runs(con)["run"].tolist() == ["r"]
    assert Q.headline(con, sampled_from="pooled")["n_tokens"].iloc[0] == 3_000


def test_a_read_only_run_folder_gets_its_index_elsewhere(run, monkeypatch, tmp_path):
    monkeypatch.setattr(run_index.os, "access", lambda path, mode: False)
    monkeypatch.setattr(run_index.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    p = run_index.ensure_index(run)
    assert p.parent == tmp_path / "tmp" / "shiftlens-index"
    assert not (run / run_index.INDEX_FILE).exists()


def test_prepare_builds_only_for_runs_that_are_materialised(run, monkeypatch):
    assert connection.token_rows(run) == 3_000
    assert Q.connection.prepare(run) is None  # below MATERIALIZE_ROWS: stays lazy
    assert not (run / run_index.INDEX_FILE).exists()
    monkeypatch.setattr(connection, "MATERIALIZE_ROWS", 1_000)
    assert connection.prepare(run) == run / run_index.INDEX_FILE


def test_a_failed_build_leaves_no_index(run, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(run_index, "_facts", boom)
    with pytest.raises(RuntimeError):
        run_index.ensure_index(run)
    assert not (run / run_index.INDEX_FILE).exists()
    assert not [p for p in run.iterdir() if ".building" in p.name]
    monkeypatch.undo()
    assert run_index.ensure_index(run).is_file()
