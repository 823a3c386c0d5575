"""CLI of the layer views: `shiftlens layers RUN --trace T --pos P` (a token's logit lens,
or `--profile`: per layer over high- vs low-js tokens), `shiftlens attribute RUN --trace T`
(component attribution, one token with --pos, else the mean over the trace's high-js
tokens) and `shiftlens critical RUN --traces ... --top N --rollouts K` (the critical-token
scan; --queue makes it a job of the queue). Each stores its rows in the run (except the
profile), prints a table, or JSON with --json. A thin shell over
core.experiments.{layers,attribution,critical}."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from core.errors import RunsError


def _run(args) -> Path:
    from core.store.cache import resolve_run

    return resolve_run(Path(args.cache), args.run)


def _traces(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise RunsError(f"--traces takes trace ids separated by commas, not {text!r}") from None


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records"))


def _show(args, payload: dict) -> int:
    if args.json:
        print(json.dumps({k: _records(v) if isinstance(v, pd.DataFrame) else v
                          for k, v in payload.items()}, indent=1))
        return 0
    with pd.option_context("display.max_columns", None, "display.width", 200):
        for k, v in payload.items():
            print(f"# {k}")
            print(v.to_string(index=False) if isinstance(v, pd.DataFrame) else v)
    return 0


def _cmd_layers(args) -> int:
    from core.experiments.layers import METRICS, layer_profile, layer_view

    run = _run(args)
    if args.profile:
        df = layer_profile(run, _traces(args.traces), high=args.high, low=args.low,
                           device=args.device)
        return _show(args, {"profile": df})
    if args.trace is None or args.pos is None:
        raise RunsError("layers needs --trace T --pos P (or --profile)")
    df = layer_view(run, args.trace, args.pos, device=args.device)
    cols = ["layer", *METRICS[:5], "base_top1_token", "tuned_top1_token"]
    return _show(args, {"lens": df if args.json else df[cols]})


def _cmd_attribute(args) -> int:
    from core.experiments.attribution import attribute, attribution_table

    run = _run(args)
    rows = attribute(run, args.trace, device=args.device)
    table = attribution_table(rows, pos=args.pos, high=args.high, direction=args.direction)
    what = (f"token {args.pos}" if args.pos is not None
            else f"mean over tokens with js >= {args.high:g}")
    return _show(args, {"what": f"trace {args.trace}, {what}, {args.direction}",
                        "attribution": table})


def _cmd_critical(args) -> int:
    from core.experiments.critical import CriticalConfig, criticality, estimate, positions, scan

    run = _run(args)
    traces = _traces(args.traces)
    cost = estimate(run, traces, top=args.top, rollouts=args.rollouts,
                    max_traces=args.max_traces)
    line = (f"at most {cost['positions']} positions of {cost['traces']} traces, "
            f"{cost['rollouts']} rollouts, {cost['tokens']:,} generated tokens")
    if args.queue:
        from core.jobs.queue import submit_critical

        job = submit_critical(args.cache, CriticalConfig(
            run.name, traces=traces, top=args.top, rollouts=args.rollouts, seed=args.seed,
            max_traces=args.max_traces, device=args.device))
        return _show(args, {"estimate": line, "job": job.id})
    if not args.json:
        print(f"# estimate\n{line}", flush=True)
    rows = scan(run, traces, top=args.top, rollouts=args.rollouts, seed=args.seed,
                max_traces=args.max_traces, device=args.device, resume=args.resume)
    pos = positions(rows)
    sampler = ", ".join(sorted(set(rows.continued_by))) if len(rows) else "-"
    return _show(args, {"continued_by": f"rollouts sampled by the trace's sampler: {sampler}",
                        "positions": pos, "criticality": criticality(pos, seed=args.seed)})


def add_commands(sub, common) -> None:
    """Register `layers`, `attribute` and `critical` (`common`: the shared --cache parent)."""
    def command(name, **kw):
        p = sub.add_parser(name, parents=[common], **kw)
        p.add_argument("run", help="run name under --cache, or a run folder")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.add_argument("--device", default=None, help="cpu, cuda, ... (default: GPU if any)")
        return p

    lay = command("layers", help="logit lens of both models at a token, layer by layer",
                  description="Each model's logit lens (residual stream after every decoder "
                              "layer through its final norm and head) at response token --pos "
                              "of trace --trace: js between the models per layer and each "
                              "model's KL/js from its own final distribution (stored in the "
                              "run under layers/). --profile: the per-layer means over "
                              "high-js against low-js tokens. Llama/Qwen2-style decoders only.")
    lay.add_argument("--trace", type=int, default=None, help="trace id")
    lay.add_argument("--pos", type=int, default=None, help="response position (0-based)")
    lay.add_argument("--profile", action="store_true",
                     help="per-layer means over high- vs low-js tokens of --traces")
    lay.add_argument("--traces", default=None,
                     help="--profile: comma-separated trace ids (default: the first 16)")
    lay.add_argument("--high", type=float, default=0.1, help="high-js cut (default 0.1)")
    lay.add_argument("--low", type=float, default=0.01, help="low-js cut (default 0.01)")
    lay.set_defaults(func=_cmd_layers)

    att = command("attribute", help="which attention/MLP blocks carry the shift at a trace",
                  description="Activation patching on trace --trace, teacher-forced: the base "
                              "model with one component (embedding, each layer's attention or "
                              "MLP, the readout) taken from the tuned model, and the reverse; "
                              "prints the layer x component share of js closed at --pos, or "
                              "the mean over the trace's tokens with js >= --high, beside "
                              "|dW|/|W|. Every position's rows are stored in the run.")
    att.add_argument("--trace", type=int, required=True, help="trace id")
    att.add_argument("--pos", type=int, default=None, help="one response position")
    att.add_argument("--high", type=float, default=0.1, help="high-js cut (default 0.1)")
    att.add_argument("--direction", default="base<-tuned", choices=["base<-tuned",
                                                                     "tuned<-base"],
                     help="base<-tuned (default): base with one tuned component; "
                          "tuned<-base: the reverse")
    att.set_defaults(func=_cmd_attribute)

    cri = command("critical", help="critical-token scan: which divergent tokens decide the "
                                   "answer",
                  description="For each trace, its --top highest-js positions plus as many at "
                              "random and of highest entropy: continue from the prefix with "
                              "the base model's and the tuned model's top-1, --rollouts each, "
                              "sampled by the model that sampled the trace at the run's "
                              "temperature; effect on accuracy with a 95% interval, and the "
                              "Spearman correlation of |effect| with js and with entropy.")
    cri.add_argument("--traces", default=None,
                     help="comma-separated trace ids (default: the first --max-traces)")
    cri.add_argument("--max-traces", type=int, default=8,
                     help="traces scanned when --traces is not given (default 8)")
    cri.add_argument("--top", type=int, default=4, help="positions per group (default 4)")
    cri.add_argument("--rollouts", type=int, default=8, help="rollouts per branch (default 8)")
    cri.add_argument("--queue", action="store_true",
                     help="queue the scan as a job (see `jobs`) instead of running it here")
    cri.add_argument("--resume", action="store_true",
                     help="reuse traces already scanned with the same settings")
    cri.add_argument("--seed", type=int, default=0,
                     help="base seed: position pos of trace t uses seed + 7919 t + pos")
    cri.set_defaults(func=_cmd_critical)
