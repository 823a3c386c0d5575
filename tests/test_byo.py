"""Bring your own checkpoints: upload, validation, background jobs, runs management, CLI.

Hostile inputs each get a clear error and leave cache/ exactly as it was (a full listing
before and after). The model tier runs real job processes on the demo pair: upload ->
validate -> queue -> run -> listed; a series and an SFT contrast through the CLI; a job
killed with SIGKILL (or cancelled) leaves no run and resumes to the uninterrupted result.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import signal
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from core.cli.main import main as cli_main
from core.config import PrecomputeConfig
from core.errors import RunsError
from core.inputs.prompts import PromptSetError
from core.jobs import queue as jobs
from core.jobs.add_pair import add_pair, parse_series, plan_runs
from core.jobs.runs import delete_run, rename_run
from core.jobs.upload import UploadError, UploadLimits, save_prompt_set, unpack_model
from core.jobs.validate import validate_pair
from core.precompute.driver import precompute
from core.store.cache import list_runs, series_of
from core.store.storage import write_json
from tests.conftest import DEMO, HELDOUT
from tests.hostile_fs import listing

SMALL = dict(max_prompts=3, n=1, max_new_tokens=32)


def zip_folder(folder: Path, out: Path) -> Path:
    """A zip of `folder` with one top-level folder, as a user would make it."""
    return Path(shutil.make_archive(str(out.with_suffix("")), "zip", root_dir=folder.parent,
                                    base_dir=folder.name))


def zip_with(names: dict[str, bytes], out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for n, data in names.items():
            zf.writestr(zipfile.ZipInfo(n), data)
    return out


def tar_with(members: list[tarfile.TarInfo], out: Path, data: dict[str, bytes] = None) -> Path:
    with tarfile.open(out, "w:gz") as tf:
        for m in members:
            payload = (data or {}).get(m.name)
            if payload is not None:
                m.size = len(payload)
            tf.addfile(m, io.BytesIO(payload) if payload is not None else None)
    return out


# ---------------------------------------------------------------- hostile uploads (unit)

def zip_symlink(out: Path) -> Path:
    link = zipfile.ZipInfo("m/model.safetensors")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16  # how `zip --symlinks` marks a link
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("m/config.json", b"{}")
        zf.writestr(link, b"/etc/passwd")
    return out


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _info(name, kind=tarfile.REGTYPE, link=""):
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, link
    return m


HOSTILE_ARCHIVES = {
    "zip-dotdot": (lambda d: zip_with({"m/config.json": b"{}", "m/../../evil.txt": b"x"},
                                      d / "dotdot.zip"), r"outside the folder \('\.\.'\)"),
    "zip-symlink": (lambda d: zip_symlink(d / "sym.zip"), "is a symlink"),
    "zip-absolute": (lambda d: zip_with({"/tmp/evil/config.json": b"{}"}, d / "abs.zip"),
                     "absolute path"),
    "tar-symlink": (lambda d: tar_with([_info("m/config.json"), _info("m/model.safetensors",
                                        tarfile.SYMTYPE, "/etc/passwd")], d / "sym.tar.gz",
                                       {"m/config.json": b"{}"}), "is a symlink"),
    "tar-hardlink": (lambda d: tar_with([_info("m/config.json"), _info("m/w.safetensors",
                                         tarfile.LNKTYPE, "m/config.json")], d / "hard.tgz",
                                        {"m/config.json": b"{}"}), "is a hardlink"),
    "tar-device": (lambda d: tar_with([_info("m/null", tarfile.CHRTYPE)], d / "dev.tar.gz"),
                   "device"),
    "not-an-archive": (lambda d: write(d / "x.zip", b"hello"), "neither a zip nor a tar"),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", sorted(HOSTILE_ARCHIVES))
def test_hostile_archive_is_refused_and_nothing_is_left(case, tmp_path, cache):
    make, needle = HOSTILE_ARCHIVES[case]
    archive = make(tmp_path)
    models = tmp_path / "models"
    before = listing(cache)
    with pytest.raises(UploadError, match=needle):
        unpack_model(archive, models)
    assert listing(cache) == before
    assert list(models.iterdir()) == []  # no model, no temporary folder
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil").exists()


@pytest.mark.unit
def test_upload_over_the_size_limit(tmp_path, cache):
    archive = zip_folder(DEMO / "base", tmp_path / "base.zip")
    before = listing(cache)
    with pytest.raises(UploadError, match="over the upload limit of"):
        unpack_model(archive, tmp_path / "models", limits=UploadLimits(max_total_bytes=100_000))
    with pytest.raises(UploadError, match="over the per-file limit"):
        unpack_model(archive, tmp_path / "models", limits=UploadLimits(max_file_bytes=100_000))
    with pytest.raises(UploadError, match="more than the limit of 3"):
        unpack_model(archive, tmp_path / "models", limits=UploadLimits(max_files=3))
    with pytest.raises(UploadError, match="not enough free disk"):
        unpack_model(archive, tmp_path / "models",
                     limits=UploadLimits(free_margin_bytes=1 << 60))
    assert listing(cache) == before
    assert list((tmp_path / "models").iterdir()) == []


@pytest.mark.unit
def test_upload_of_a_folder_that_is_not_a_model(tmp_path, cache):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.md").write_text("not weights")
    before = listing(cache)
    with pytest.raises(UploadError, match=r"notes\.zip: the archive does not hold a usable "
                                          r"model: not a model folder \(no config"):
        unpack_model(zip_folder(notes, tmp_path / "notes.zip"), tmp_path / "models")
    assert listing(cache) == before and list((tmp_path / "models").iterdir()) == []


@pytest.mark.unit
def test_upload_unpacks_single_top_folder_and_refuses_a_taken_name(tmp_path):
    archive = zip_folder(DEMO / "rl", tmp_path / "my-rl.zip")
    with open(archive, "rb") as f:  # a file object, as the app's uploader gives
        folder = unpack_model(f, tmp_path / "models", filename="my-rl.zip")
    assert folder == tmp_path / "models" / "my-rl"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in
                                                              (DEMO / "rl").iterdir())
    assert (folder / "model.safetensors").read_bytes() == \
        (DEMO / "rl" / "model.safetensors").read_bytes()
    with pytest.raises(UploadError, match="already exists"):
        unpack_model(archive, tmp_path / "models")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["my-rl"]


# ------------------------------------------------- hostile pairs and prompt sets (unit)

def refused(cache: Path, base, tuned, prompts=HELDOUT, needle="", check=""):
    """add_pair must refuse with a failed `check` whose message matches `needle`, queue
    nothing and leave the cache untouched."""
    before = listing(cache)
    res = add_pair(str(base), str(tuned), str(prompts), name="x", cache=cache,
                   settings=PrecomputeConfig(**SMALL))
    assert not res.ok and res.jobs == []
    bad = [c for c in res.report.failures() if c.name.endswith(check)]
    assert bad, res.report.text()
    assert any(re.search(needle, c.message) for c in bad), res.report.text()
    assert listing(cache) == before
    return res


@pytest.mark.unit
def test_pickle_only_checkpoint_uploaded_then_refused(tmp_path, cache):
    pk = tmp_path / "pickled"
    shutil.copytree(DEMO / "rl", pk)
    from safetensors.torch import load_file
    torch.save(load_file(pk / "model.safetensors"), pk / "pytorch_model.bin")
    (pk / "model.safetensors").unlink()
    folder = unpack_model(zip_folder(pk, tmp_path / "pickled.zip"), tmp_path / "models")
    refused(cache, DEMO / "base", folder, needle=r"only pickle weights.*--allow-pickle",
            check="tuned: weights")


@pytest.mark.unit
def test_mismatched_tokenizers_are_refused_with_the_difference(tmp_path, cache):
    other = tmp_path / "other"
    shutil.copytree(DEMO / "rl", other)
    tj = json.loads((other / "tokenizer.json").read_text())
    tj["model"]["vocab"]["Zed"] = tj["model"]["vocab"].pop(" Compute")
    (other / "tokenizer.json").write_text(json.dumps(tj))
    refused(cache, DEMO / "base", other,
            needle=r"differ.*only in base.*' Compute'.*only in tuned.*'Zed'",
            check="vocabulary: base vs tuned")


@pytest.mark.unit
def test_malformed_jsonl_is_refused_naming_the_line(tmp_path, cache):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "prompt": "Q: 1+1=? A:", "answer": "2"}\n{"id": 2, "prompt"\n'
                   '{"id": 3, "prompt": "Q: 2+2=? A:"}\n')
    res = refused(cache, DEMO / "base", DEMO / "rl", prompts=bad, needle="line 2: not valid "
                  "JSON", check="prompt set")
    assert "line 3: field 'answer' is missing" in res.report.text()


@pytest.mark.unit
def test_uploaded_prompt_set_is_validated_before_it_is_kept(tmp_path, cache):
    before = listing(cache)
    bad = b'{"id": 1, "prompt": "Q: 1+1=? A:", "answer": "2"}\n{"id": 2, "prompt": \n'
    with pytest.raises(PromptSetError, match=r"bad\.jsonl line 2: not valid JSON"):
        save_prompt_set(bad, "bad.jsonl", tmp_path / "prompts")
    assert list((tmp_path / "prompts").iterdir()) == []
    with pytest.raises(UploadError, match="NAME.jsonl or NAME.parquet"):
        save_prompt_set(b"", "../evil.sh", tmp_path / "prompts")
    kept = save_prompt_set(HELDOUT.read_bytes(), "held.jsonl", tmp_path / "prompts")
    assert kept.read_bytes() == HELDOUT.read_bytes()
    assert listing(cache) == before


@pytest.mark.unit
def test_folder_that_is_not_a_model_is_refused(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    refused(cache, tmp_path / "empty", DEMO / "rl", needle="not a model folder",
            check="base: weights")


@pytest.mark.unit
def test_hub_id_without_network_gives_a_clear_message_quickly(monkeypatch, tmp_path, cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    refused(cache, "no-such-org/no-such-model", DEMO / "rl",
            needle="HF_HUB_OFFLINE is set.*not in the local Hugging Face cache",
            check="base: weights")
    assert time.monotonic() - t0 < 30


@pytest.mark.unit
def test_validate_reads_sizes_from_headers_and_estimates():
    rep = validate_pair(str(DEMO / "base"), str(DEMO / "rl"), prompts=str(HELDOUT),
                        settings=PrecomputeConfig(device="cpu", **SMALL))
    assert rep.ok, rep.text()
    card = json.loads((DEMO / "base" / "model_card.json").read_text())
    base = rep.models["base"]
    assert base.parameters == card["architecture"]["parameters"]
    assert (base.architecture, base.stored_dtype, base.config_dtype) == \
        ("LlamaForCausalLM", "F16", "float32")
    est = rep.estimates["tuned"]
    assert est.traces == 3 and est.weights_bytes == 4 * 2 * base.parameters
    assert est.fits and est.seconds > 0
    names = [r["check"] for r in rep.rows()]
    assert {"vocabulary: base vs tuned", "prompt set", "memory", "time"} <= set(names)
    assert "ready to compute" in rep.text()


# ------------------------------------------------------- plans, queue, runs (unit)

@pytest.mark.unit
def test_plan_expands_sft_and_series_in_order():
    assert parse_series("60=b, 30=a") == [(30, "a"), (60, "b")]
    with pytest.raises(ValueError, match="expected STEP=PATH"):
        parse_series("thirty=a")
    plan = plan_runs("B", str(DEMO / "rl"), "p.jsonl", sft="S",
                     series={30: "c30", 60: "c60", 600: str(DEMO / "rl")}, name="mine",
                     settings=PrecomputeConfig(n=2, seed=7), cache="c")
    assert [(p.role, p.config.name, p.after) for p in plan] == [
        ("tuned", "mine", None), ("sft", "mine-sft", None),
        ("step-30", "mine-step-30", "tuned"), ("step-60", "mine-step-60", "tuned")]
    main, sft, s30 = plan[0].config, plan[1].config, plan[2].config
    card = json.loads((DEMO / "rl" / "model_card.json").read_text())
    assert main.series_step == card["steps"] and main.kind == "rl"  # from the model card
    assert (sft.kind, sft.series_step, sft.traces_from) == ("sft", -1, "")
    assert (s30.kind, s30.series_step, s30.traces_from, s30.tuned) == ("series", 30, "mine",
                                                                       "c30")
    assert all(p.config.n == 2 and p.config.seed == 7 and p.config.cache == "c" for p in plan)


@pytest.mark.unit
def test_queue_refuses_a_busy_run_and_cascades_failures(cache):
    cfg = PrecomputeConfig(base="b", tuned="t", prompts="p.jsonl", name="r1")
    a = jobs.submit(cache, cfg)
    with pytest.raises(jobs.JobError, match="already queued as job"):
        jobs.submit(cache, cfg)
    with pytest.raises(jobs.JobError, match="run name"):
        jobs.submit(cache, dataclasses.replace(cfg, name="../x"))
    b = jobs.submit(cache, dataclasses.replace(cfg, name="r1-step-1"), depends_on=[a.id])
    assert jobs.get_job(cache, "r1-step-1").id == b.id == jobs.get_job(cache, b.id[:-1]).id
    a.state = "failed"  # as if its process had crashed
    jobs.write_job(a)
    assert jobs.tick(cache) == []
    b = jobs.get_job(cache, b.id)
    assert (b.state, b.blocked_by) == ("failed", a.id)
    jobs.resume(cache, a.id)
    assert [j.state for j in jobs.list_jobs(cache)] == ["queued", "queued"]
    with pytest.raises(jobs.JobError, match="only failed or cancelled jobs resume"):
        jobs.resume(cache, a.id)
    jobs.cancel(cache, b.id)
    jobs.cancel(cache, a.id)
    assert {j.state for j in jobs.list_jobs(cache)} == {"cancelled"}


@pytest.mark.unit
def test_finished_job_processes_are_reaped_not_left_as_zombies(cache):
    """A job that ends by itself (here: it fails at once on a missing prompt file) is reaped
    by the next tick of the process that started it: no zombie stays behind."""
    from pathlib import Path as P

    job = jobs.submit(cache, PrecomputeConfig(base="b", tuned="t", prompts="missing.jsonl",
                                              name="z1"))
    done = jobs.wait(cache, [job.id], timeout=60)
    assert done[0].state == "failed" and "missing.jsonl" in (done[0].error or "")
    import time

    stat, state = P(f"/proc/{done[0].pid}/stat"), None
    deadline = time.monotonic() + 20  # the process exits just after recording its result
    while time.monotonic() < deadline:
        jobs.tick(cache)
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = None
            break
        time.sleep(0.05)
    assert state is None, f"job process {done[0].pid} is still there in state {state}"


@pytest.mark.unit
def test_rename_and_delete_runs(cache):
    (cache / "s1").mkdir()
    write_json({"name": "s1", "traces_from": "old-run", "series_step": 1,
                "config": {"traces_from": "old-run"}}, cache / "s1" / "manifest.json")
    new = rename_run(cache, "old-run", "renamed")
    m = json.loads((new / "manifest.json").read_text())
    assert (m["name"], m["renamed_from"]) == ("renamed", ["old-run"])
    assert not (cache / "old-run").exists()
    infos = {r.name: r for r in list_runs(cache)}
    assert series_of(list(infos.values()), infos["renamed"]) == ["s1", "renamed"]
    for bad_args, needle in ((("nope", "x"), "no complete run"), (("renamed", "s1"), "taken"),
                             (("renamed", "a/b"), "new name")):
        with pytest.raises(RunsError, match=needle):
            rename_run(cache, *bad_args)
    jobs.submit(cache, PrecomputeConfig(base="b", tuned="t", prompts="p", name="renamed",
                                        force=True))
    with pytest.raises(RunsError, match="being written by job"):
        delete_run(cache, "renamed")
    with pytest.raises(RunsError, match="being written by job"):
        rename_run(cache, "renamed", "again")
    jobs.cancel(cache, "renamed")
    delete_run(cache, "renamed")
    assert not (cache / "renamed").exists()
    assert not [p for p in cache.iterdir() if p.name.startswith(".trash")]
    with pytest.raises(RunsError, match="not a run name"):
        delete_run(cache, "..")


@pytest.mark.unit
def test_cli_refuses_bad_input_and_lists_jobs(tmp_path, cache, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    before = listing(cache)
    rc = cli_main(["add-pair", "--base", str(DEMO / "base"), "--tuned", str(DEMO / "rl"),
                   "--prompts", str(bad), "--cache", str(cache)])
    out = capsys.readouterr().out
    assert rc == 2 and "FAIL ] prompt set" in out and "line 1: field 'prompt' is missing" in out
    assert listing(cache) == before
    assert cli_main(["jobs", "--cache", str(cache)]) == 0
    assert "no jobs" in capsys.readouterr().out
    assert cli_main(["jobs", "cancel", "nope", "--cache", str(cache)]) == 2


@pytest.mark.unit
def test_cli_check_only_unpacks_archives_beside_the_cache(tmp_path, cache, capsys):
    before = listing(cache)
    rc = cli_main(["add-pair", "--base", str(zip_folder(DEMO / "base", tmp_path / "b.zip")),
                   "--tuned", str(zip_folder(DEMO / "rl", tmp_path / "r.zip")), "--prompts",
                   str(HELDOUT), "--cache", str(cache), "--max-prompts", "3", "--check-only"])
    out = capsys.readouterr().out
    assert rc == 0 and "ready to compute" in out, out
    assert sorted(p.name for p in (tmp_path / "uploads" / "models").iterdir()) == ["b", "r"]
    assert listing(cache) == before


# ----------------------------------------------------- real job processes (model)

def small_cfg(cache: Path, **kw) -> PrecomputeConfig:
    d = dict(base=str(DEMO / "base"), tuned=str(DEMO / "rl"), prompts=str(HELDOUT),
             cache=str(cache), **SMALL)
    d.update(kw)
    return PrecomputeConfig(**d)


def wait_for(cond, what: str, timeout: float = 120.0, poll: float = 0.01):
    """Poll `cond` until truthy (returned), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)
    return value


def assert_same_tables(a: Path, b: Path) -> None:
    for f in ("tokens.parquet", "topk.parquet", "traces.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(a / f), pd.read_parquet(b / f))


@pytest.mark.model
def test_upload_validate_queue_and_run_in_a_job_process(tmp_path):
    cache, models = tmp_path / "cache", tmp_path / "models"
    base = unpack_model(zip_folder(DEMO / "base", tmp_path / "demo-base.zip"), models)
    rl = unpack_model(zip_folder(DEMO / "rl", tmp_path / "demo-rl.zip"), models)
    settings = PrecomputeConfig(**SMALL)
    assert validate_pair(str(base), str(rl), prompts=str(HELDOUT), settings=settings).ok
    res = add_pair(str(base), str(rl), str(HELDOUT), name="byo", settings=settings,
                   cache=cache)
    assert res.ok and [j.run for j in res.jobs] == ["byo"], res.report.text()
    (job,) = jobs.wait(cache, [res.jobs[0].id], timeout=300)
    assert job.state == "done", jobs.read_log(cache, job.id)
    assert job.progress()["stage"] == "done" and job.fraction() == 1.0
    assert "wrote" in jobs.read_log(cache, job.id)
    (run,) = list_runs(cache)
    assert run.name == "byo" and run.n_traces == 3 and run.kind == "rl"


@pytest.mark.model
def test_cli_add_pair_with_sft_and_series_waits_for_every_run(tmp_path, capsys):
    cache = tmp_path / "cache"
    rc = cli_main(["add-pair", "--base", str(DEMO / "base"), "--tuned", str(DEMO / "rl"),
                   "--sft", str(DEMO / "sft"), "--series",
                   f"24={DEMO / 'rl-steps' / 'step-24'}", "--prompts", str(HELDOUT),
                   "--name", "cli", "--cache", str(cache), "--max-prompts", "3", "--n", "1",
                   "--max-new-tokens", "32", "--wait"])
    out = capsys.readouterr().out
    assert rc == 0, out
    infos = {r.name: r for r in list_runs(cache)}
    assert set(infos) == {"cli", "cli-sft", "cli-step-24"}
    assert series_of(list(infos.values()), infos["cli"]) == ["cli-step-24", "cli"]
    card = json.loads((DEMO / "rl" / "model_card.json").read_text())
    assert infos["cli-sft"].kind == "sft"
    assert infos["cli"].manifest["series_step"] == card["steps"]
    cols = ["trace_id", "response"]
    step = pd.read_parquet(infos["cli-step-24"].path / "traces.parquet", columns=cols)
    main = pd.read_parquet(infos["cli"].path / "traces.parquet", columns=cols)
    pd.testing.assert_frame_equal(step.sort_values("trace_id").reset_index(drop=True),
                                  main.sort_values("trace_id").reset_index(drop=True))


def n_done(parts: Path) -> int:
    return len(list(parts.glob("shard-*.done")))


@pytest.mark.model
def test_cancelled_or_killed_job_leaves_no_run_and_resume_equals_uninterrupted(tmp_path):
    """One job is cancelled after a shard, resumed, killed with SIGKILL after a further
    shard, resumed again: no run ever appears before it completes, and the result equals
    an uninterrupted run of the same config."""
    cache = tmp_path / "cache"
    cfg = small_cfg(cache, name="kr", max_prompts=16, shard_size=2)  # 8 shards
    parts = cache / ".staging" / "kr" / "parts"
    job = jobs.submit(cache, cfg)
    assert [j.id for j in jobs.tick(cache)] == [job.id]
    wait_for(lambda: n_done(parts) >= 1, "the first finished shard")

    job = jobs.cancel(cache, job.id)  # SIGTERM to the job's process group
    assert job.state == "cancelled" and not jobs.process.alive(job)[0]
    n_cancel = n_done(parts)
    assert 1 <= n_cancel < 8, "the job finished before it could be cancelled"
    assert jobs.tick(cache) == [] and jobs.get_job(cache, job.id).state == "cancelled"
    assert not (cache / "kr").exists() and not list(cache.rglob("manifest.json"))

    jobs.resume(cache, job.id)
    job = jobs.tick(cache)[0]
    wait_for(lambda: n_done(parts) > n_cancel, "a shard after resuming")
    os.kill(job.pid, signal.SIGKILL)

    def failed():
        jobs.tick(cache)  # reaps the process and records the failure
        j = jobs.get_job(cache, job.id)
        return j if j.state == "failed" else None

    job = wait_for(failed, "the kill to be noticed", poll=0.05)
    assert "killed by signal 9" in job.error
    n_kill = n_done(parts)  # counted once the process is gone
    assert n_cancel < n_kill < 8, "the job finished before it could be killed"
    assert not (cache / "kr").exists() and not list(cache.rglob("manifest.json"))

    jobs.resume(cache, job.id)
    (job,) = jobs.wait(cache, [job.id], timeout=300)
    log = jobs.read_log(cache, job.id)
    assert job.state == "done" and job.attempts == 3, log
    assert f"{n_cancel}/8 shards done" in log and f"{n_kill}/8 shards done" in log
    assert [r.name for r in list_runs(cache)] == ["kr"]
    assert not (cache / ".staging" / "kr").exists()
    fresh = precompute(dataclasses.replace(cfg, cache=str(tmp_path / "fresh")),
                       log=lambda s: None, show_progress=False)
    assert_same_tables(cache / "kr", fresh)
