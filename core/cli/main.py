"""The command line: `python -m core {precompute,summary,export,cross-sample,runs,add-pair,
jobs}`; a thin shell over `core`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.config import PrecomputeConfig, add_arguments, from_args

EPILOG = "Every command works on run folders under --cache (default: ./cache)."


def _cmd_precompute(args) -> int:
    from core.precompute.driver import precompute

    precompute(from_args(PrecomputeConfig, args))
    return 0


def _run_dirs(cache: Path, names: list[str]) -> list[Path]:
    from core.store.cache import list_runs

    if not names:
        return [r.path for r in list_runs(cache)]
    out = []
    for n in names:
        p = Path(n) if Path(n).is_dir() else cache / n
        if not (p / "manifest.json").is_file():
            raise SystemExit(f"error: {n}: no complete run (looked in {p})")
        out.append(p)
    return out


def _cmd_summary(args) -> int:
    import pandas as pd

    from core.queries import headline, open_runs

    dirs = _run_dirs(Path(args.cache), args.runs)
    if not dirs:
        print(f"no runs in {args.cache}")
        return 1
    df = headline(open_runs(dirs, names=[d.name for d in dirs]), near_zero=args.near_zero,
                  high=args.high)
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print(df.set_index("run").T.to_string() if args.transpose else df.to_string(index=False))
    return 0


def _cmd_runs(args) -> int:
    from core.store.cache import list_runs

    runs = list_runs(Path(args.cache))
    if not runs:
        print(f"no runs in {args.cache}")
        return 0
    for r in runs:
        print(f"{r.name:32s} {r.kind or '-':8s} {r.n_traces:6d} traces {r.n_tokens:9d} tokens  "
              f"{r.created}  {r.pair}  [{r.prompt_set}]")
    return 0


def _cmd_export(args) -> int:
    from core.figures.export import ExportError, export_run

    cache = Path(args.cache)
    (run,) = _run_dirs(cache, [args.run])
    try:
        zip_path = export_run(
            run, Path(args.out), cache=cache, formats=args.formats.split(","),
            series=_run_dirs(cache, args.series.split(",")) if args.series else None,
            contrast_with=_run_dirs(cache, [args.contrast_with])[0] if args.contrast_with
            else None)
    except (ExportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {zip_path} and the loose files in {args.out}")
    return 0


def _cmd_cross_sample(args) -> int:
    from core.experiments.cross_sampling import CrossSampleConfig, format_summary, run_cross_sample

    result, _ = run_cross_sample(from_args(CrossSampleConfig, args))
    print(format_summary(result.summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", epilog=EPILOG,
                                description="ShiftLens: token-level comparison of a base "
                                            "model and its fine-tuned version.")
    sub = p.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("precompute", help="sample traces, score every token, write a run",
                         description="Sample traces from a pair on a prompt set, score every "
                                     "token under both models and write a run folder.")
    add_arguments(pre, PrecomputeConfig)
    pre.set_defaults(func=_cmd_precompute)

    summ = sub.add_parser("summary", help="headline table of one or more runs",
                          description="Shares of near-zero and high-js tokens, mean/p95 js, "
                                      "top-1 agreement and accuracy, per run.")
    summ.add_argument("runs", nargs="*", help="run names or folders (default: every run)")
    summ.add_argument("--cache", default="cache", help="folder of runs (default: cache)")
    summ.add_argument("--near-zero", type=float, default=0.01,
                      help="js below this counts as near-zero (default: 0.01)")
    summ.add_argument("--high", type=float, default=0.1,
                      help="js above this counts as high divergence (default: 0.1)")
    summ.add_argument("--transpose", action="store_true", help="one column per run")
    summ.set_defaults(func=_cmd_summary)

    exp = sub.add_parser("export", help="write a run's figures as PNG/SVG/PDF/HTML + data",
                         description="Build every figure of a run (sparsity, entropy, position, "
                                     "token identity, reallocation, URIAL; split by the sampling "
                                     "model when the run has both) and write, per figure, the "
                                     "image files, <id>.csv/.parquet and <id>.json (caption, "
                                     "query, parameters, run manifest) into --out, plus one zip "
                                     "of it all. PNG/SVG/PDF need Chromium on PATH.")
    exp.add_argument("run", help="run name under --cache, or a run folder")
    exp.add_argument("--out", required=True, help="output folder (created if missing)")
    exp.add_argument("--cache", default="cache", help="folder of runs (default: cache)")
    exp.add_argument("--formats", default="png,svg,pdf,html",
                     help="comma-separated figure formats (default: png,svg,pdf,html)")
    exp.add_argument("--series", default=None,
                     help="comma-separated checkpoint runs, oldest first: adds the evolution "
                          "figure")
    exp.add_argument("--contrast-with", default=None,
                     help="another run (e.g. the SFT pair): adds the side-by-side contrast")
    exp.set_defaults(func=_cmd_export)

    from core.experiments.cross_sampling.config import CrossSampleConfig, CrossSampleOptions

    cross = sub.add_parser("cross-sample", help="cross-sampling sweep on a run's pair",
                           description="Decode with one model of a run's pair and switch to the "
                                       "other wherever their next-token js exceeds eps "
                                       "(forward: base -> tuned, reverse: tuned -> base), plus "
                                       "a random-position control and both models alone; "
                                       "writes cross_samples.parquet and cross_summary.parquet "
                                       "into the run folder and prints accuracy against "
                                       "budget (share of tokens switched) with 95% bootstrap "
                                       "intervals over prompts.")
    cross.add_argument("run", help=CrossSampleConfig.__dataclass_fields__["run"].metadata["help"])
    add_arguments(cross, CrossSampleOptions)
    cross.set_defaults(func=_cmd_cross_sample)

    runs = sub.add_parser("runs", help="list the runs in the cache",
                          description="List complete runs with their pair, prompt set and date.")
    runs.add_argument("--cache", default="cache", help="folder of runs (default: cache)")
    runs.set_defaults(func=_cmd_runs)

    from core.cli.jobs import add_commands  # add-pair, jobs: bring your own checkpoints

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from core.engine.pair import PairError
    from core.jobs.queue import JobError
    from core.jobs.upload import UploadError
    from core.precompute.driver import RunError
    from core.prompts import PromptSetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PairError, PromptSetError, RunError, JobError, UploadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
