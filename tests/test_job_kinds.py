"""The job-kind registry (core.jobs.kinds): each kind's config class, runner, label and page,
looked up by the queue and the jobs panel; an unknown kind is one JobError line, refused
before anything is written."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from core.errors import JobError
from core.jobs import queue
from core.jobs.kinds import JOB_KINDS, job_kind

ROOT = Path(__file__).resolve().parent.parent


def _app_pages() -> set[str]:
    """The page keys of app/main.py's PAGES (read with ast: nothing of the app runs)."""
    tree = ast.parse((ROOT / "app" / "main.py").read_text(encoding="utf-8"))
    pages = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "PAGES" for t in n.targets))
    return {ast.literal_eval(e.elts[0]) for e in pages.elts}


@pytest.mark.unit
def test_unknown_kind_is_one_line_and_queues_nothing(tmp_path):
    for bad in ("bogus", "", None, ["precompute"]):
        with pytest.raises(JobError) as e:
            job_kind(bad)
        assert str(e.value).startswith("unknown job kind ") and "\n" not in str(e.value)
        assert str(e.value).endswith("known kinds are " + ", ".join(JOB_KINDS))
    cache = tmp_path / "cache"
    with pytest.raises(JobError, match=r"^unknown job kind 'bogus'"):
        queue._enqueue(cache, "bogus", "r", {})
    assert not cache.exists()  # refused before the queue folder was made


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(JOB_KINDS))
def test_each_kind_has_a_config_a_runner_a_label_and_a_page(name):
    kind = job_kind(name)
    assert kind.name == name and kind.label and callable(kind.runner)
    assert kind.opens in _app_pages()
    cls = kind.config_class()
    assert dataclasses.is_dataclass(cls) and "cache" in {f.name for f in
                                                         dataclasses.fields(cls)}
    cfg = kind.make_config({"cache": "/c", "no_such_field_from_an_older_version": 1})
    assert isinstance(cfg, cls) and cfg.cache == "/c"
    job = queue.Job(id="j", run="r", state="done", config={}, cwd=".", created=0.0, kind=name)
    assert (job.label, job.opens) == (kind.label, kind.opens)


@pytest.mark.unit
def test_a_job_of_an_unknown_kind_fails_with_the_line(tmp_path, capsys):
    """A job.json whose kind no registry entry names (written by hand, or by a newer
    version) fails in its process with the registry's one line; the panel names it."""
    folder = tmp_path / "cache" / ".jobs" / "j1"
    folder.mkdir(parents=True)
    job = queue.Job(id="j1", run="r", state="running", config={}, cwd=str(tmp_path),
                    created=time.time(), kind="bogus", pid=os.getpid(), path=folder)
    (folder / "job.json").write_text(json.dumps(job.to_json()))
    assert queue.work(folder) == 1
    done = queue.list_jobs(tmp_path / "cache")[0]
    assert done.state == "failed"
    assert done.error == ("JobError: unknown job kind 'bogus': known kinds are "
                          + ", ".join(JOB_KINDS))
    assert done.label == "unknown kind 'bogus'" and done.opens is None


@pytest.mark.model
def test_the_jobs_panel_shows_each_kind_by_its_label_and_opens_its_page(tmp_path,
                                                                        monkeypatch):
    """The "Add a pair" page's jobs panel, on a cache with one run, a finished job of every
    registered kind on it and a failed job of an unknown kind: each line carries its kind's
    label, and each finished job links to its kind's page (the unknown one to none)."""
    from core.demo.synthetic import write_synthetic_run
    from tests.conftest import open_app

    cache = tmp_path / "cache"
    write_synthetic_run(cache / "syn", n_tokens=2000, mean_length=30, seed=2)
    kinds = [*sorted(JOB_KINDS), "bogus"]
    for i, name in enumerate(kinds):
        folder = cache / ".jobs" / f"j{i}"
        folder.mkdir(parents=True)
        job = queue.Job(id=f"j{i}", run="syn", state="done" if name in JOB_KINDS else "failed",
                        config={}, cwd=str(tmp_path), created=time.time() - 60 * i, kind=name)
        (folder / "job.json").write_text(json.dumps(job.to_json()))
        (folder / "log.txt").write_text("")
    at = open_app(monkeypatch, cache, "views/add_pair.py")
    lines = [m.value.replace("\\", "") for m in at.markdown if "min ago" in m.value]
    for i, name in enumerate(kinds):
        label = JOB_KINDS[name].label if name in JOB_KINDS else "unknown kind 'bogus'"
        state = "done" if name in JOB_KINDS else "failed"
        assert any(f" · {label} · j{i} · {state}" in line for line in lines), (label, lines)
    # Newest job first; the traces page is the app's default, whose URL path is empty.
    links = [(link.proto.page, link.proto.query_string) for link in at.get("page_link")]
    assert links == [("" if JOB_KINDS[n].opens == "traces" else JOB_KINDS[n].opens, "run=syn")
                     for n in sorted(JOB_KINDS)]
