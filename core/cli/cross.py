"""CLI for cross-sampling: `shiftlens cross-sample RUN ...` runs a sweep in the foreground
(the same function the app's job runs) and `shiftlens cross-sweeps RUN [--show KEY]` lists
the sweeps stored in a run (core.store.cross) or prints one's summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.config import add_arguments, from_args


def _cmd_cross_sample(args) -> int:
    from core.experiments.cross_sampling import (
        CrossSampleConfig,
        format_summary,
        run_cross_sample,
    )

    result, _ = run_cross_sample(from_args(CrossSampleConfig, args))
    print(format_summary(result.summary))
    return 0


def _cmd_cross_sweeps(args) -> int:
    from core.errors import CrossSampleError
    from core.experiments.cross_sampling import format_summary, list_sweeps, read_summary
    from core.experiments.cross_sampling.job import resolve_run

    run_dir, _ = resolve_run(args.run, Path(args.cache))
    sweeps = list_sweeps(run_dir)
    if args.show:
        if not any(s.key == args.show for s in sweeps):
            raise CrossSampleError(f"run {run_dir.name!r} has no sweep {args.show!r}; "
                                   f"`cross-sweeps {args.run}` lists them")
        print(format_summary(read_summary(run_dir, args.show)))
        return 0
    if not sweeps:
        print(f"run {run_dir.name!r} has no stored sweep")
    for s in sweeps:
        print(f"{s.created or '-'}  {s.label()}")
    return 0


def add_commands(sub, common) -> None:
    """Register `cross-sample` and `cross-sweeps` (`common`: the shared --cache parent)."""
    from core.experiments.cross_sampling.config import CrossSampleConfig, CrossSampleOptions

    cross = sub.add_parser(
        "cross-sample", parents=[common], help="cross-sampling sweep on a run's pair",
        description="Decode with one model of a run's pair and switch to the other wherever "
                    "their next-token js exceeds eps (forward: base -> tuned, reverse: tuned "
                    "-> base), plus controls (random or entropy-drawn positions, as many "
                    "changed tokens or switch decisions) and both models alone; stores the "
                    "sweep in the run folder as cross/<key>/ (key: its settings; sweeps with "
                    "other settings stay beside it) and prints accuracy against both budgets "
                    "(switch decisions, changed tokens) with 95% bootstrap intervals over "
                    "prompts, and each control's paired difference.")
    cross.add_argument("run", help=CrossSampleConfig.__dataclass_fields__["run"].metadata["help"])
    add_arguments(cross, CrossSampleOptions, skip=("cache",))
    cross.set_defaults(func=_cmd_cross_sample)

    sw = sub.add_parser(
        "cross-sweeps", parents=[common], help="list a run's stored cross-sampling sweeps",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="List the cross-sampling sweeps stored in a run, newest first, with their "
                    "key and settings (an older run's single sweep is listed as 'legacy'); "
                    "--show KEY prints that sweep's summary.")
    sw.add_argument("run", help="run name under --cache, or a run folder")
    sw.add_argument("--show", default=None, metavar="KEY", help="print this sweep's summary")
    sw.set_defaults(func=_cmd_cross_sweeps)
