"""CLI for bringing your own checkpoints: `python -m core add-pair ...` and `python -m core
jobs ...`, the command-line twins of the app's "Add a pair" and jobs views (same core calls:
core.jobs.upload, core.jobs.add_pair, core.jobs.queue)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from core.config import RUN_SETTINGS as SETTINGS
from core.config import PrecomputeConfig, add_arguments

# add-pair offers every run setting precompute has (core.config.RUN_SETTINGS), same flags.
Settings = dataclasses.make_dataclass(
    "Settings", [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata))
                 for f in dataclasses.fields(PrecomputeConfig) if f.name in SETTINGS])


def _model_arg(spec: str | None, cache: Path, limit_gib: float) -> str | None:
    """A folder or hub id as given; an archive is unpacked into uploads/models/ first."""
    from core.jobs.upload import default_limits, is_archive, models_dir, unpack_model

    if spec and is_archive(spec):  # the entry limit from the environment, sizes from the flag
        limits = dataclasses.replace(default_limits(), max_total_bytes=int(limit_gib * 1024**3),
                                     max_file_bytes=int(limit_gib * 1024**3))
        folder = unpack_model(spec, models_dir(cache), limits=limits)
        print(f"unpacked {spec} -> {folder}")
        return str(folder)
    return spec


def _cmd_add_pair(args) -> int:
    from core.jobs.add_pair import add_pair, parse_series, plan_runs
    from core.jobs.presets import get_preset
    from core.jobs.queue import wait

    cache = Path(args.cache)
    if args.training_run:
        return _training_run(args, cache)
    if args.preset:
        p = get_preset(args.preset)
        args.base, args.tuned = args.base or p.base, args.tuned or p.tuned
        print(f"preset {p.key}: {p.base} vs {p.tuned} ({p.parameters:g}B parameters each)")
    if not (args.base and args.tuned):
        raise SystemExit("error: give --base and --tuned (or --preset)")
    if bool(args.prompts) == bool(args.traces):
        raise SystemExit("error: give --prompts (a prompt set to sample from) or --traces (a "
                         "rollout file to score), " + ("not both" if args.prompts else "one"))
    base = _model_arg(args.base, cache, args.upload_limit_gib)
    tuned = _model_arg(args.tuned, cache, args.upload_limit_gib)
    sft = _model_arg(args.sft, cache, args.upload_limit_gib)
    try:
        series = parse_series(args.series) if args.series else None
    except ValueError as e:
        raise SystemExit(f"error: --series: {e}") from None
    settings = PrecomputeConfig(**{k: getattr(args, k) for k in SETTINGS})
    kw = dict(traces=args.traces or "", sft=sft, series=series, name=args.name,
              final_step=args.final_step, settings=settings, cache=cache)
    plan = plan_runs(base, tuned, args.prompts or "", **kw)
    for p in plan:
        own = p.config.series_sampling == "own"
        extra = (f" (samples its own traces; series of {p.config.traces_from})"
                 if p.config.traces_from and own else
                 f" (re-scores {p.config.traces_from}'s traces)" if p.config.traces_from else
                 f" (scores the rollouts of {p.config.traces})" if p.config.traces else "")
        print(f"run {p.config.name}: {p.config.tuned} vs {p.config.base}{extra}")
    if args.check_only:
        from core.jobs.validate import validate_pair

        rep = validate_pair(base, tuned, prompts=args.prompts or "",
                            traces=args.traces or "", settings=settings,
                            extra={p.role: p.config.tuned for p in plan if p.role != "tuned"},
                            allow_pickle=settings.allow_pickle,
                            trust_remote_code=settings.trust_remote_code,
                            hub_timeout=args.hub_timeout)
        print(rep.text())
        return 0 if rep.ok else 2
    result = add_pair(base, tuned, args.prompts or "", hub_timeout=args.hub_timeout, **kw)
    print(result.report.text())
    if not result.ok:
        return 2
    for j in result.jobs:
        print(f"queued job {j.id}: run {j.run}")
    if not args.wait:
        print(f"start them with: python -m core jobs run --cache {cache}")
        return 0
    done = wait(cache, [j.id for j in result.jobs], on_update=_printer())
    return 0 if all(j.state == "done" for j in done) else 1


def _training_run(args, cache: Path) -> int:
    """add-pair --training-run FOLDER --base B: one run per step (core.jobs.training_run)."""
    from core.errors import PairError
    from core.jobs.queue import wait
    from core.jobs.training_run import ALIGNMENT, add_training_run, plan_training_run

    if not args.base or args.tuned or args.prompts or args.traces or args.series:
        raise SystemExit("error: --training-run FOLDER takes --base only (the checkpoints "
                         "and rollouts come from the folder)")
    settings = PrecomputeConfig(**{k: getattr(args, k) for k in SETTINGS})
    try:
        run, plan = plan_training_run(args.training_run, args.base, name=args.name,
                                      settings=settings, cache=cache)
    except PairError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"alignment: {ALIGNMENT}")
    for note in run.notes:
        print(note)
    for p in plan:
        print(f"run {p.config.name}: {Path(p.config.traces).name} scored under "
              f"{p.config.tuned} vs {p.config.base} (series step {p.config.series_step})")
    if args.check_only:
        return 0
    result = add_training_run(args.training_run, args.base, name=args.name,
                              settings=settings, cache=cache, hub_timeout=args.hub_timeout)
    print(result.report.text())
    if not result.ok:
        return 2
    if not args.wait:
        print(f"start them with: python -m core jobs run --cache {cache}")
        return 0
    done = wait(cache, [j.id for j in result.jobs], on_update=_printer())
    return 0 if all(j.state == "done" for j in done) else 1


def _printer():
    """on_update callback for jobs.wait: one line whenever a job's state or shard changes."""
    last: dict[str, tuple] = {}

    def show(jobs) -> None:
        for j in jobs:
            p = j.progress() or {}
            key = (j.state, p.get("shards_done"))
            if last.get(j.id) != key:
                last[j.id] = key
                pct = f" {100 * j.fraction():.0f}%" if j.state == "running" else ""
                err = f" ({j.error})" if j.error else ""
                print(f"[{time.strftime('%H:%M:%S')}] {j.id} {j.run}: {j.state}{pct}{err}",
                      flush=True)
    return show


def _cmd_jobs(args) -> int:
    from core.jobs import queue as jobs

    cache = Path(args.cache)
    if args.action in ("show", "log", "cancel", "resume", "forget") and not args.id:
        raise SystemExit(f"error: jobs {args.action} needs a job id (or run name)")
    if args.action == "list":
        jobs.tick(cache, start=False)  # record dead processes; starting is `jobs run`'s job
        rows = jobs.list_jobs(cache)
        if not rows:
            print(f"no jobs in {jobs.jobs_dir(cache)}")
        for j in rows:
            pct = f"{100 * j.fraction():3.0f}%" if j.state in ("running", "done") else "    "
            print(f"{j.id:24s} {j.state:9s} {pct} {j.run:32s} {j.error or ''}")
    elif args.action == "show":
        j = jobs.get_job(cache, args.id)
        print(json.dumps({**j.to_json(), "progress": j.progress()}, indent=2))
    elif args.action == "log":
        print(jobs.read_log(cache, args.id, tail=args.tail))
    elif args.action == "cancel":
        print(f"cancelled {jobs.cancel(cache, args.id).id}")
    elif args.action == "resume":
        j = jobs.resume(cache, args.id)
        print(f"re-queued {j.id} (run {j.run}); start it with: python -m core jobs run")
    elif args.action == "forget":
        jobs.forget(cache, args.id)
    else:  # run
        done = jobs.wait(cache, None, max_running=args.max_running, on_update=_printer())
        return 0 if all(j.state == "done" for j in done) else 1
    return 0


def add_commands(sub, common) -> None:
    """Register `add-pair` and `jobs` on the main parser's subparsers (`common`: the
    shared --cache parent)."""
    from core.jobs.presets import PRESETS

    ap = sub.add_parser(
        "add-pair", parents=[common],
        help="validate a pair (+ SFT, series), queue its precompute jobs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check a base/tuned pair before any compute (vocabulary, safetensors, no "
                    "remote code, config, prompt set, memory and time estimate), print the "
                    "report and, if it passes, queue one background job per run: the pair, "
                    "its SFT contrast (--sft) and each series checkpoint (--series, "
                    "re-scoring the pair's traces). Models may be folders, hub ids or "
                    ".zip/.tar(.gz) archives (unpacked into uploads/models/ beside the "
                    "cache). --traces FILE scores rollouts you already have instead of "
                    "sampling (every run scores the same file).",
        epilog="presets (--preset KEY):\n" + "\n".join(
            f"  {p.key:18s} {p.base} vs {p.tuned} ({p.parameters:g}B)" for p in PRESETS))
    ap.add_argument("--base", help="base model: folder, hub id or model archive")
    ap.add_argument("--tuned", help="tuned (RL) model: folder, hub id or model archive")
    ap.add_argument("--prompts", default="",
                    help="prompt set to sample from: .jsonl or .parquet with id, prompt, "
                         "answer (or give --traces)")
    ap.add_argument("--traces", default="",
                    help=PrecomputeConfig.__dataclass_fields__["traces"].metadata["help"])
    ap.add_argument("--preset", choices=[p.key for p in PRESETS], metavar="KEY",
                    help="a public base/RL pair (fills --base/--tuned; needs a network)")
    ap.add_argument("--sft", help="optional SFT model of the same base: a contrast run NAME-sft")
    ap.add_argument("--series", help="optional checkpoint series of the tuned model's training "
                    "run, STEP=MODEL pairs separated by commas (e.g. 30=ckpt/step-30,60=..."
                    "): runs NAME-step-STEP re-scoring the pair's traces (or sampling their "
                    "own: --series-sampling own)")
    ap.add_argument("--training-run", default="", metavar="FOLDER",
                    help="a training run's folder (TRL: completions/completions_K.parquet "
                         "and checkpoint-K/; verl: K.jsonl beside checkpoint-K/) as a "
                         "checkpoint series: each step's rollouts scored under --base and the "
                         "checkpoint that sampled them (checkpoint-(K-1); the base for K = 1)")
    ap.add_argument("--final-step", type=int, default=None,
                    help="training step of --tuned in the series (default: its "
                         "model_card.json 'steps', else after the last series step)")
    ap.add_argument("--name", default="", help="run name (default: derived from the inputs)")
    ap.add_argument("--wait", action="store_true",
                    help="run the queued jobs now, in the foreground, until they finish")
    ap.add_argument("--check-only", action="store_true",
                    help="validate and print the report and the planned runs; queue nothing")
    ap.add_argument("--hub-timeout", type=float, default=5.0,
                    help="seconds to wait for the Hugging Face hub (default: 5)")
    ap.add_argument("--upload-limit-gib", type=float, default=2.0,
                    help="largest uncompressed archive accepted, GiB (default: 2)")
    add_arguments(ap.add_argument_group("settings (as for precompute)"), Settings)
    ap.set_defaults(func=_cmd_add_pair)

    jb = sub.add_parser(
        "jobs", parents=[common],
        help="list, inspect, cancel, resume or run background jobs (precompute, sweeps)",
        description="Background precompute jobs live in CACHE/.jobs/<id>/ (job.json, log.txt, "
                    "progress.json). Actions: list (default), show ID, log ID, cancel ID, "
                    "resume ID (re-queue a failed or cancelled job; finished shards are "
                    "kept), forget ID (drop a finished job's record), run (start queued jobs "
                    "and wait until none is left). ID may be a unique prefix or a run name.")
    jb.add_argument("action", nargs="?", default="list",
                    choices=["list", "show", "log", "cancel", "resume", "forget", "run"],
                    help="what to do (default: list)")
    jb.add_argument("id", nargs="?", help="job id, unique id prefix or run name")
    jb.add_argument("--tail", type=int, default=0, help="log: only the last N lines (0 = all)")
    jb.add_argument("--max-running", type=int, default=1,
                    help="jobs allowed to run at once (default: 1)")
    jb.set_defaults(func=_cmd_jobs)
