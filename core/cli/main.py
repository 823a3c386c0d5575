"""The command line: one argparse tree, `shiftlens COMMAND` = `python -m core COMMAND`.

Every command takes `--cache` from one shared parent (default: $SHIFTLENS_CACHE, else
cache/ in the repository, the folder the app reads too). A thin shell: each command calls
the same core functions the app calls, and a refusal (a ShiftLensError) prints one line,
`error: ...`, and exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.config import PrecomputeConfig, add_arguments, from_args
from core.errors import ShiftLensError
from core.paths import default_cache

EPILOG = ("Every command works on run folders under --cache (default: $SHIFTLENS_CACHE, else "
          "cache/ in the repository).")


def _cache_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--cache", default=None,
                   help="folder that holds run folders (default: $SHIFTLENS_CACHE, else "
                        "cache/ in the repository)")
    return p


def _run_dirs(cache: Path, names: list[str]) -> list[Path]:
    from core.store.cache import list_runs, resolve_run

    if not names:  # every healthy run; a damaged one is named on stderr and left out
        runs = list_runs(cache)
        for r in runs:
            if r.damaged:
                print(f"note: {r.line()}", file=sys.stderr)
        return [r.path for r in runs if not r.damaged]
    out = []
    for n in names:
        try:
            out.append(resolve_run(cache, n))
        except ShiftLensError as e:
            raise SystemExit(f"error: {e}") from None
    return out


def _cmd_precompute(args) -> int:
    from core.precompute.driver import precompute

    precompute(from_args(PrecomputeConfig, args))
    return 0


def _cmd_summary(args) -> int:
    import pandas as pd

    from core.queries import headline, open_runs

    dirs = _run_dirs(Path(args.cache), args.runs)
    if not dirs:
        print(f"no runs in {args.cache}")
        return 1
    df = headline(open_runs(dirs, names=[d.name for d in dirs]), near_zero=args.near_zero,
                  high=args.high, sampled_from=args.sampled_from)
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print(df.set_index("run").T.to_string() if args.transpose else df.to_string(index=False))
    return 0


def _cmd_runs(args) -> int:
    from core.jobs.runs import delete_run, rename_run
    from core.store.cache import list_runs

    cache = Path(args.cache)
    if args.action == "rename":
        if len(args.names) != 2:
            raise SystemExit("error: runs rename needs OLD NEW")
        print(f"renamed to {rename_run(cache, *args.names)}")
        return 0
    if args.action == "delete":
        if len(args.names) != 1:
            raise SystemExit("error: runs delete needs NAME")
        if not args.yes:
            raise SystemExit(f"error: deleting run {args.names[0]!r} cannot be undone; "
                             "add --yes to confirm")
        delete_run(cache, args.names[0])
        print(f"deleted {args.names[0]}")
        return 0
    runs = list_runs(cache)
    if not runs:
        print(f"no runs in {cache}")
        return 0
    for r in runs:
        if r.damaged:  # one line, and the exit status says a run needs attention
            print(f"{r.name:32s} DAMAGED: {r.problem}")
            continue
        print(f"{r.name:32s} {r.kind or '-':8s} {r.n_traces:6d} traces {r.n_tokens:9d} tokens  "
              f"{r.created}  {r.pair}  [{r.prompt_set}]")
    return 1 if any(r.damaged for r in runs) else 0


def _cmd_export(args) -> int:
    from core.figures.export import export_run

    cache = Path(args.cache)
    (run,) = _run_dirs(cache, [args.run])
    zip_path = export_run(
        run, Path(args.out), cache=cache, formats=args.formats.split(","),
        series=_run_dirs(cache, args.series.split(",")) if args.series else None,
        contrast_with=_run_dirs(cache, [args.contrast_with])[0] if args.contrast_with
        else None, sampled_from=args.sampled_from)
    print(f"wrote {zip_path} and the loose files in {args.out}")
    return 0


def _cmd_demo_runs(args) -> int:
    from core.demo.runs import ensure

    ensure(args.cache, force=args.action == "build")
    return 0


def _cmd_settings(args) -> int:
    from core import settings

    print(settings.markdown_table() if args.markdown else settings.text_table(), end="")
    return 0


def _sampled_from_argument(p: argparse.ArgumentParser) -> None:
    from core.queries.sampler import SAMPLED_FROM

    p.add_argument("--sampled-from", choices=SAMPLED_FROM, default=None,
                   help="which traces: tuned (the tuned model's samples), base, pooled (all), "
                        "split (one result per sampler); default: tuned where a run has "
                        "tuned-sampled traces (the paper's setting), else what it has")


def build_parser() -> argparse.ArgumentParser:
    from core.cli.cross import add_commands as add_cross  # cross-sample, cross-sweeps
    from core.cli.jobs import add_commands  # add-pair, jobs: bring your own checkpoints
    from core.cli.layers import add_commands as add_layers  # layers, attribute, critical
    from core.cli.search import add_commands as add_search  # token search, its export

    common = _cache_parent()
    p = argparse.ArgumentParser(prog="shiftlens", epilog=EPILOG,
                                description="ShiftLens: token-level comparison of a base "
                                            "model and its fine-tuned version "
                                            "(same as python -m core).")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    pre = command("precompute", help="sample traces, score every token, write a run",
                  description="Sample traces from a pair on a prompt set, score every token "
                              "under both models and write a run folder.")
    add_arguments(pre, PrecomputeConfig, skip=("cache",))
    pre.set_defaults(func=_cmd_precompute)

    summ = command("summary", help="headline table of one or more runs",
                   description="Shares of near-zero and high-js tokens, mean/p95 js, top-1 "
                               "agreement and accuracy, per run, on the traces --sampled-from "
                               "chooses (column sampled_from; default: the tuned-sampled "
                               "traces where a run has them, as the paper measures).")
    summ.add_argument("runs", nargs="*", help="run names or folders (default: every run)")
    summ.add_argument("--near-zero", type=float, default=0.01,
                      help="js below this counts as near-zero (default: 0.01)")
    summ.add_argument("--high", type=float, default=0.1,
                      help="js above this counts as high divergence (default: 0.1)")
    summ.add_argument("--transpose", action="store_true", help="one column per run")
    _sampled_from_argument(summ)
    summ.set_defaults(func=_cmd_summary)

    exp = command("export", help="write a run's figures as PNG/SVG/PDF/HTML + data",
                  description="Build every figure of a run (sparsity, entropy, position, token "
                              "identity, reallocation, URIAL; on the traces --sampled-from "
                              "chooses, named in each caption) and write, per figure, the "
                              "image files, "
                              "<id>.csv/.parquet and <id>.json (caption, query, parameters, "
                              "run manifest) into --out, plus one zip of it all. PNG/SVG/PDF "
                              "need Chromium on PATH.")
    exp.add_argument("run", help="run name under --cache, or a run folder")
    exp.add_argument("--out", required=True, help="output folder (created if missing)")
    exp.add_argument("--formats", default="png,svg,pdf,html",
                     help="comma-separated figure formats (default: png,svg,pdf,html)")
    exp.add_argument("--series", default=None,
                     help="comma-separated checkpoint runs, oldest first: adds the evolution "
                          "figure")
    exp.add_argument("--contrast-with", default=None,
                     help="another run (e.g. the SFT pair): adds the side-by-side contrast")
    _sampled_from_argument(exp)
    exp.set_defaults(func=_cmd_export)

    add_cross(sub, common)

    runs = command("runs", help="list, rename or delete the runs in the cache",
                   description="list (default): complete runs with their pair, prompt set and "
                               "date. rename OLD NEW and delete NAME --yes: the same functions "
                               "as the app's Runs page (refused while a job writes the run).")
    runs.add_argument("action", nargs="?", default="list", choices=["list", "rename", "delete"],
                      help="what to do (default: list)")
    runs.add_argument("names", nargs="*", help="rename: OLD NEW; delete: NAME")
    runs.add_argument("--yes", action="store_true", help="delete: confirm (cannot be undone)")
    runs.set_defaults(func=_cmd_runs)

    demo = command("demo-runs", help="build the demo runs the app opens on",
                   description="ensure: build whichever demo runs (demo-rl, "
                               "demo-sft-matched, demo-sft, demo-rl-step-N) the cache lacks; "
                               "build: recompute them all.")
    demo.add_argument("action", nargs="?", default="ensure", choices=["ensure", "build"],
                      help="ensure (default) or build")
    demo.set_defaults(func=_cmd_demo_runs)

    sets = sub.add_parser("settings", help="the SHIFTLENS_* environment variables",
                          description="Every SHIFTLENS_* setting with its type, default and "
                                      "meaning, and the value set now (a secret only as "
                                      "set/unset).")
    sets.add_argument("--markdown", action="store_true",
                      help="print the README's settings table instead")
    sets.set_defaults(func=_cmd_settings)

    add_commands(sub, common)
    add_layers(sub, common)
    add_search(sub, common, _run_dirs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "cache"):  # every command but `settings`
        args.cache = str(args.cache or default_cache())
    try:
        return args.func(args)
    except ShiftLensError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
