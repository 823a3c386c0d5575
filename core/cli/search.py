"""CLI for token search: `shiftlens search [RUN ...] --js-min 0.1 --regex '^ \\d+$' ...`
prints one page of hits (the app's Token search page, same function) or, with --out, writes
every hit to a CSV or Parquet file (core.queries.search.token_search_export, streamed).
Conditions and refusals are the app's: an invalid regular expression or n-gram is one line,
`error: ...`, and nothing is written."""

from __future__ import annotations

import argparse
from pathlib import Path


def _filters(args) -> dict:
    from core.queries.search import parse_ngram

    rel = None
    if args.rel_pos is not None:
        lo, _, hi = args.rel_pos.partition(",")
        try:
            rel = (float(lo), float(hi))
        except ValueError:
            raise SystemExit(f"error: --rel-pos takes LO,HI (e.g. 0.2,0.8), got "
                             f"{args.rel_pos!r}") from None
    return dict(js_min=args.js_min, rank_base_min=args.rank_base_min, dlogp_max=args.dlogp_max,
                text_contains=args.contains, regex=args.regex,
                ngram=parse_ngram(args.ngram) if args.ngram is not None else None,
                rel_pos_range=rel, correct_only=args.correct_only,
                sampled_from=args.sampled_from)


def _cmd_search(args, run_dirs) -> int:
    import pandas as pd

    from core.queries import open_runs
    from core.queries.search import token_search, token_search_count, token_search_export

    filters = _filters(args)  # refused before any run is opened
    out = Path(args.out) if args.out else None
    if out is not None:
        fmt = out.suffix.lstrip(".").lower()
        if fmt not in ("csv", "parquet"):
            raise SystemExit(f"error: --out {str(out)!r}: name a .csv or .parquet file")
    dirs = run_dirs(Path(args.cache), args.runs)
    if not dirs:
        print(f"no runs in {args.cache}")
        return 1
    con = open_runs(dirs, names=[d.name for d in dirs])
    if out is not None:
        n = token_search_export(con, out, **filters)
        print(f"wrote {n} tokens to {out}")
        return 0
    total = token_search_count(con, **filters)
    df = token_search(con, limit=args.limit, offset=args.offset, **filters)
    df["token"] = df["token"].map(repr)
    with pd.option_context("display.max_columns", None, "display.width", 200,
                           "display.max_colwidth", 40):
        print(df.drop(columns=["context"]).to_string(index=False))
    print(f"rows {args.offset + 1 if len(df) else 0}-{args.offset + len(df)} of {total}")
    return 0


def add_commands(sub, common, run_dirs) -> None:
    """Register `search` (`common`: the shared --cache parent; `run_dirs(cache, names)`: the
    run folders named, as every command resolves them)."""
    s = sub.add_parser(
        "search", parents=[common], help="find tokens by js, rank, text, regex or n-gram",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Tokens of the runs (default: every run) matching every condition given, "
                    "highest js first. Prints one page (--limit, --offset) and the total, or "
                    "with --out writes every hit (run, trace_id, pos, token, js, rank_base, "
                    "dlogp, rel_pos) to a .csv or .parquet file.\n\n"
                    "--regex is RE2 syntax (linear time; no look-arounds or back-references), "
                    "matched anywhere in the token text: anchor with ^ and $.\n"
                    "--ngram is consecutive tokens separated by '|', spaces kept: 'the| "
                    "answer' (escapes \\| \\n \\t \\\\); each row is the n-gram's first token.")
    s.add_argument("runs", nargs="*", help="run names or folders (default: every run)")
    s.add_argument("--js-min", type=float, default=None, help="js at least")
    s.add_argument("--rank-base-min", type=int, default=None, help="rank_base at least")
    s.add_argument("--dlogp-max", type=float, default=None, help="dlogp at most")
    s.add_argument("--contains", default=None, help="token text contains (case-insensitive)")
    s.add_argument("--regex", default=None, help="regular expression over the token text")
    s.add_argument("--ngram", default=None, help="consecutive tokens, '|'-separated")
    s.add_argument("--rel-pos", default=None, metavar="LO,HI",
                   help="relative position in the response between LO and HI")
    s.add_argument("--correct-only", action="store_true", help="correct traces only")
    s.add_argument("--limit", type=int, default=50, help="rows to print (default: 50)")
    s.add_argument("--offset", type=int, default=0, help="rows to skip (default: 0)")
    s.add_argument("--out", default=None, help="write every hit to this .csv or .parquet file")
    s.add_argument("--sampled-from", default=None, metavar="LABEL",
                   help="only traces sampled by this model: tuned, base (or a stored label); "
                        "default: every trace")
    s.set_defaults(func=lambda args: _cmd_search(args, run_dirs))
