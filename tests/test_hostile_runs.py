"""Hostile timing and names around run folders: a rename or delete racing a precompute, an
interrupted --force publish, names that collide with internal files, names ending in a
newline, a full disk, and CSV cells a spreadsheet would evaluate.

Each refusal is checked for its exception type and message, and for what it left: the
cache's bytes unchanged (or exactly the expected run), no temporary, lock or staging files.
"""

from __future__ import annotations

import csv
import errno
import io
import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pyarrow.parquet as pq
import pytest

import core.precompute.driver as driver
from core.cli.main import main as cli_main
from core.config import PrecomputeConfig
from core.engine.pair import Pair, resolve
from core.errors import CrossSampleError, PairError, RunError, RunsError
from core.experiments.cross_sampling import job as cross_job
from core.experiments.cross_sampling.config import CrossSampleConfig
from core.experiments.fork import save_fork
from core.figures import FigureSpec
from core.figures.export import export_data, figure_bytes
from core.jobs.runs import delete_run, rename_run
from core.store import cache as store
from core.store.manifest import read_manifest
from core.store.storage import write_json

HELD = "is in use by another process"


def run(tiny_pair, cache: Path, log=None, **kw) -> Path:
    cfg = dict(base=str(tiny_pair["base"]), tuned=str(tiny_pair["tuned"]),
               prompts=str(tiny_pair["prompts"]), cache=str(cache), n=1, max_new_tokens=8,
               name="t")
    cfg.update(kw)
    return driver.precompute(PrecomputeConfig(**cfg), log=log or (lambda s: None),
                             show_progress=False)


def files(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (equal dicts: nothing added, removed, changed)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def internal(cache: Path) -> list[str]:
    """Hidden or temporary things in the cache: staging, locks, trash, .tmp files."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if p.name.startswith(".") or ".tmp" in p.name)


def fake_run(cache: Path, name: str) -> Path:
    (cache / name).mkdir(parents=True)
    write_json({"name": name, "created": "2026-01-01T00:00:00+00:00",
                "config": {"prompts": "p.jsonl"}}, cache / name / "manifest.json")
    return cache / name


# ------------------------------------------------------------------- the rename race (model)


def _while_loading(monkeypatch, where: str, action) -> list:
    """Call action() when the precompute loads its models (the pair check, or the weights);
    returns the list its outcomes (an exception or a result) are appended to."""
    seen = []

    def hook(real):
        def loading(*a, **kw):
            try:
                seen.append(action())
            except Exception as e:  # noqa: BLE001 - recorded, asserted by the test
                seen.append(e)
            return real(*a, **kw)
        return loading

    if where == "pair check":
        monkeypatch.setattr(driver, "load_pair", hook(driver.load_pair))
    else:
        monkeypatch.setattr(Pair, "with_weights", hook(Pair.with_weights))
    return seen


@pytest.mark.model
@pytest.mark.parametrize("where", ["pair check", "weights"])
def test_rename_onto_a_name_whose_precompute_is_loading_models_is_refused(
        tiny_pair, tmp_path, monkeypatch, where):
    cache = tmp_path / "c"
    run(tiny_pair, cache, name="other")
    before = files(cache / "other")
    seen = _while_loading(monkeypatch, where, lambda: rename_run(cache, "other", "t"))
    final = run(tiny_pair, cache, name="t")
    assert len(seen) == 1 and isinstance(seen[0], RunsError)
    assert str(seen[0]).startswith(f"run 't' {HELD}")
    assert files(cache / "other") == before  # the complete run is intact, under its name
    assert final == cache / "t" and (final / "manifest.json").is_file()
    assert internal(cache) == []


@pytest.mark.model
def test_rename_and_delete_of_a_run_being_recomputed_are_refused(tiny_pair, tmp_path,
                                                                 monkeypatch):
    cache = tmp_path / "c"
    run(tiny_pair, cache)
    seen = [_while_loading(monkeypatch, "pair check", lambda: rename_run(cache, "t", "u")),
            _while_loading(monkeypatch, "pair check", lambda: delete_run(cache, "t")),
            _while_loading(monkeypatch, "weights", lambda: delete_run(cache, "t")),
            _while_loading(monkeypatch, "weights", lambda: rename_run(cache, "t", "u"))]
    final = run(tiny_pair, cache, force=True, seed=1)
    for (e,) in seen:
        assert isinstance(e, RunsError) and str(e).startswith(f"run 't' {HELD}")
    assert read_manifest(final)["config"]["seed"] == 1  # the recompute was published
    assert not (cache / "u").exists() and internal(cache) == []


@pytest.mark.model
def test_publish_never_replaces_a_run_it_did_not_reserve(tiny_pair, tmp_path, monkeypatch):
    cache = tmp_path / "c"
    run(tiny_pair, cache, name="other")
    before = files(cache / "other")
    # moved under the name outside ShiftLens (no lock can stop a plain mv)
    _while_loading(monkeypatch, "weights", lambda: os.rename(cache / "other", cache / "t"))
    with pytest.raises(RunError, match=r"^run 't': .*/t changed while this run was computed, "
                                       r"so it is not replaced; the computed run is kept in"):
        run(tiny_pair, cache)
    assert files(cache / "t") == before
    assert (cache / ".staging" / "t" / "manifest.json").is_file()
    monkeypatch.undo()
    os.rename(cache / "t", cache / "other")  # as the message says: move it away, re-run
    logs = []
    run(tiny_pair, cache, log=logs.append)
    assert any(s.startswith("resuming 't'") for s in logs)
    assert files(cache / "other") == before and internal(cache) == []


class Killed(BaseException):
    """Stands for SIGKILL: no except clause catches it, only finally/with clean up."""


@pytest.mark.model
@pytest.mark.parametrize("when", ["between the renames", "before the old run is removed"])
def test_interrupted_force_publish_is_repaired_at_the_next_start(tiny_pair, tmp_path,
                                                                 monkeypatch, when):
    cache = tmp_path / "c"
    run(tiny_pair, cache)
    old = files(cache / "t")
    real_replace, real_rmtree = os.replace, store.shutil.rmtree

    def replace(src, dst, **kw):
        if when == "between the renames" and Path(src) == cache / ".staging" / "t":
            raise Killed
        return real_replace(src, dst, **kw)

    def rmtree(path, *a, **kw):
        if when != "between the renames" and Path(path).name.startswith(".t.old-"):
            raise Killed
        return real_rmtree(path, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(store.shutil, "rmtree", rmtree)
    with pytest.raises(Killed):
        run(tiny_pair, cache, force=True, seed=1)
    monkeypatch.undo()
    trash = [p.name for p in cache.iterdir() if p.name.startswith(".t.old-")]
    assert trash == [f".t.old-{os.getpid()}"]
    assert (cache / "t").exists() == (when != "between the renames")
    logs = []
    # the next start, with the settings of the run that is now complete: nothing to compute
    final = run(tiny_pair, cache, log=logs.append, seed=1 if (cache / "t").exists() else 0)
    assert not [p for p in cache.iterdir() if p.name.startswith(".t.old-")]
    if when == "between the renames":
        assert f"restored run 't' from {trash[0]} (an interrupted --force publish)" in logs
        assert files(final) == old  # the original run, byte for byte: "already complete"
    else:
        assert f"removed {trash[0]} (left by an interrupted publish)" in logs
        assert read_manifest(final)["config"]["seed"] == 1  # the new run stays


# ------------------------------------------------------------------- names and internal files


@pytest.mark.model
def test_a_run_named_x_lock_beside_x(tiny_pair, tmp_path):
    cache = tmp_path / "c"
    (cache / ".staging" / "t.lock").mkdir(parents=True)  # run t.lock, interrupted
    run(tiny_pair, cache)  # its lock file must not be t.lock's staging folder
    (cache / ".staging" / "t.lock").rmdir()
    (cache / ".staging" / "t.lock").write_text("")  # an older version's lock file of run t
    run(tiny_pair, cache, name="t.lock")
    assert {r.name for r in store.list_runs(cache)} == {"t", "t.lock"}
    assert internal(cache) == []


@pytest.mark.model
def test_force_replaces_runs_only(tiny_pair, tmp_path):
    cache = tmp_path / "c"
    (cache / "uploads" / "models" / "m").mkdir(parents=True)
    (cache / "uploads" / "models" / "m" / "config.json").write_text("{}")
    before = files(cache)
    with pytest.raises(RunError, match=r"/c/uploads exists and is not a run folder \(--force "
                                       r"replaces runs only\); move it away or choose --name$"):
        run(tiny_pair, cache, name="uploads", force=True)
    assert files(cache) == before and internal(cache) == []


@pytest.mark.unit
@pytest.mark.parametrize("name", ["run\n", "run\r\n", ".staging", ".trash-a-12345678", ".a.old-1",
                                  ".query-index.duckdb", ".jobs", "a/b", "..", ""])
def test_names_must_match_in_full(tmp_path, name):
    cache = tmp_path / "c"
    fake_run(cache, "a")
    before = files(cache)
    with pytest.raises(RunError, match=r"^run name .*: use letters, digits, '\.', '_' and '-' "
                                       r"only$"):
        store.check_start(cache, name, PrecomputeConfig(name=name), RunError)
    with pytest.raises(RunsError, match=r"^new name .*: use letters, digits"):
        rename_run(cache, "a", name)
    with pytest.raises(RunsError, match=r"is not a run name$"):
        delete_run(cache, name)
    assert files(cache) == before and internal(cache) == []


@pytest.mark.unit
def test_upload_names_must_match_in_full(tmp_path):
    from core.errors import UploadError
    from core.jobs.upload import save_prompt_set, save_rollouts

    line = b'{"id": 1, "prompt": "Q: 1+1=? A:", "answer": "2", "response": "2"}\n'
    for save in (save_prompt_set, save_rollouts):
        with pytest.raises(UploadError, match=r"s are NAME\.jsonl or NAME\.parquet \(letters"):
            save(line, "p\n.jsonl", tmp_path / "up")
    from core.jobs.upload import unpack_model

    with pytest.raises(UploadError, match=r"model name 'm\\n': use letters"):
        unpack_model(tmp_path / "missing.zip", tmp_path / "models", name="m\n")
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.unit
def test_hub_ids_must_match_in_full():
    assert resolve("org/model").local is None
    with pytest.raises(PairError, match="no such folder"):
        resolve("org/model\n")


# ------------------------------------------------------------------- writers into a run (unit)


class Stop(Exception):
    pass


@pytest.mark.unit
def test_a_sweep_holds_its_run_against_rename_and_delete(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    fake_run(cache, "a")
    seen = []

    def load_prompts(*a, **kw):  # inside the sweep, before any model loads
        for action in (lambda: rename_run(cache, "a", "b"), lambda: delete_run(cache, "a")):
            with pytest.raises(RunsError) as e:
                action()
            seen.append(str(e.value))
        raise Stop

    monkeypatch.setattr(cross_job, "load_prompts", load_prompts)
    with pytest.raises(Stop):
        cross_job.run_cross_sample(CrossSampleConfig(run="a", cache=str(cache)),
                                   log=lambda s: None, show_progress=False)
    assert seen == [f"run 'a' {HELD} ({store.BUSY}); try again when it has finished"] * 2
    assert (cache / "a" / "manifest.json").is_file() and not (cache / "b").exists()
    assert internal(cache) == []


ROLLOUT = pd.DataFrame([{"branch": "base top-1", "branch_token_id": 5, "continued_by": "tuned",
                         "rollout": 0, "text": "7", "answer": "7", "correct": True,
                         "temperature": 1.0, "top_p": 1.0, "seed": 0, "created": "now"}])


@pytest.mark.unit
def test_writers_are_refused_while_the_run_is_renamed_deleted_or_recomputed(tmp_path):
    cache = tmp_path / "c"
    fake_run(cache, "a")
    before = files(cache)
    with store.RunLock(cache, "a"):  # what a rename, a delete or a precompute holds
        with pytest.raises(RunsError, match=f"^run 'a' {HELD}"):
            save_fork(cache / "a", 0, 1, ROLLOUT)
        with pytest.raises(CrossSampleError, match=f"^run 'a' {HELD}"):
            cross_job.run_cross_sample(CrossSampleConfig(run="a", cache=str(cache)),
                                       log=lambda s: None, show_progress=False)
    assert files(cache) == before and internal(cache) == []
    with store.writing_into(cache / "a"), store.writing_into(cache / "a"):  # writers share
        assert store.is_locked(cache, "a")
    assert save_fork(cache / "a", 0, 1, ROLLOUT) == "fork-00000"  # once the run is free
    assert internal(cache) == []


@pytest.mark.unit
def test_cli_runs_rename_and_delete(tmp_path, capsys):
    cache = tmp_path / "c"
    fake_run(cache, "a")
    before = files(cache)
    with pytest.raises(SystemExit, match=r"^error: deleting run 'a' cannot be undone; add "
                                         r"--yes to confirm$"):
        cli_main(["runs", "delete", "a", "--cache", str(cache)])
    with store.RunLock(cache, "b"):  # a precompute has reserved b
        assert cli_main(["runs", "rename", "a", "b", "--cache", str(cache)]) == 2
    assert capsys.readouterr().err == f"error: run 'b' {HELD} ({store.BUSY}); try again " \
                                      "when it has finished\n"
    assert files(cache) == before and internal(cache) == []
    assert cli_main(["runs", "rename", "a", "b", "--cache", str(cache)]) == 0
    assert cli_main(["runs", "delete", "b", "--yes", "--cache", str(cache)]) == 0
    assert list(cache.iterdir()) == []


# ------------------------------------------------------------------- a full disk (model)


@pytest.mark.model
@pytest.mark.parametrize("where", ["parts", "assembling"])
def test_a_full_disk_is_one_line_and_the_run_resumes(tiny_pair, tmp_path, monkeypatch, where):
    cache = tmp_path / "c"
    real = pq.write_table

    def full(table, path, *a, **kw):
        name = Path(str(path)).name
        if (where == "parts" and name.startswith("tokens-00001.parquet")) or \
                (where == "assembling" and name.startswith("topk.parquet")):
            Path(str(path)).write_bytes(b"PAR1 half a file")
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No "
                                        "space left on device")
        return real(table, path, *a, **kw)

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(RunError, match=r"^run 't': disk full \(.*\); the finished shards are "
                                       r"kept: free space and re-run the same command to "
                                       r"resume$"):
        run(tiny_pair, cache, shard_size=2)
    left = internal(cache)
    assert not (cache / "t").exists() and all(p.startswith(".staging/t") for p in left[1:])
    assert not [p for p in left if ".tmp" in p or p.endswith(".lock")]
    done = sorted(p.name for p in (cache / ".staging" / "t" / "parts").glob("*.done"))
    assert len(done) == (1 if where == "parts" else 3)
    monkeypatch.undo()
    logs = []
    run(tiny_pair, cache, shard_size=2, log=logs.append)
    assert any(s.startswith("resuming 't': 1/3 shards done" if where == "parts"
                            else "resuming 't': 3/3 shards done") for s in logs)
    assert internal(cache) == []


# ------------------------------------------------------------------- CSV export (unit)


TOKEN = '=HYPERLINK("http://x","y")'


@pytest.mark.unit
def test_csv_export_neutralises_formula_cells(tmp_path):
    data = pd.DataFrame({"token": [TOKEN, "+1", "-x", "@SUM(A1)", "\tx", "\rx", "plain", None],
                         "js": [-0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
                         "count": [-3, 1, 2, 3, 4, 5, 6, 7]})
    spec = FigureSpec(id="f", title="t", caption="c", figure=go.Figure(), data=data,
                      query="q", params={})
    (path,) = [p for p in export_data(spec, tmp_path) if p.suffix == ".csv"]
    for raw in (figure_bytes(spec, "csv"), path.read_bytes()):
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
        assert [r[0] for r in rows[1:]] == ["'" + TOKEN, "'+1", "'-x", "'@SUM(A1)", "'\tx",
                                             "'\rx", "plain", ""]
        assert [r[1] for r in rows[1:]][:2] == ["-0.5", "0.1"]  # numbers stay numbers
        assert [r[2] for r in rows[1:]][:2] == ["-3", "1"]
    assert spec.data["token"][0] == TOKEN  # the figure's own table is not changed
    assert pd.read_parquet(io.BytesIO(figure_bytes(spec, "parquet")))["token"][0] == TOKEN
