"""Token search: the tokens of opened runs that match a set of conditions, a page at a time
(`token_search`), how many match (`token_search_count`), and all of them written to a CSV or
Parquet file (`token_search_export`, streamed: memory does not grow with the result).

Conditions (all optional, all must hold): js >= js_min, rank_base >= rank_base_min,
dlogp <= dlogp_max, a case-insensitive substring of the token (`text_contains`), a regular
expression over the token text (`regex`), an n-gram (`ngram`: the token and the ones after
it in its trace are exactly these strings), lo <= rel_pos <= hi, correct traces only, and
the shared `runs` / `sampled_from` filters. Results are ordered by js descending (NULLs
last), then run, trace_id, pos: a page is offset .. offset + limit of that order.

Regular expressions are RE2 (DuckDB's regexp_matches): matching time is linear in the text,
so no pattern can make the server backtrack for ever; patterns RE2 does not take (look-
arounds, back-references, repetitions over 1,000) and patterns longer than REGEX_MAX are
refused with one line (core.errors.SearchError) before any query runs. `parse_ngram` reads
the n-gram notation the app and the CLI share. This module draws nothing and opens no runs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import SearchError, clip
from core.queries import aggregated, indexed, sampler
from core.queries.sql import _filtered, _q, _used

REGEX_MAX = 500  # characters of a regular expression
NGRAM_MAX = 8  # tokens of an n-gram
EXPORT_FORMATS = ("csv", "parquet")
EXPORT_COLUMNS = ("run", "trace_id", "pos", "token", "js", "rank_base", "dlogp", "rel_pos")
_ORDER = "js DESC NULLS LAST, run, trace_id, pos"


def parse_ngram(text: str) -> tuple[str, ...]:
    """An n-gram typed as tokens separated by '|', spaces kept (`the| answer` is the token
    'the' then the token ' answer'); escapes: '\\|' a literal bar, '\\n' a newline, '\\t' a
    tab, '\\\\' a backslash. Refused (SearchError): an empty text, more than NGRAM_MAX
    tokens, or another escape."""
    if not text:
        raise SearchError("n-gram: empty; type tokens separated by '|', e.g. 'the| answer'")
    parts, cur, i = [], [], 0
    escapes = {"|": "|", "n": "\n", "t": "\t", "\\": "\\"}
    while i < len(text):
        c = text[i]
        if c == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt not in escapes:
                bad = "\\" + nxt
                raise SearchError(f"n-gram {clip(text)}: unknown escape {clip(bad)} "
                                  "(use \\| \\n \\t or \\\\)")
            cur.append(escapes[nxt])
            i += 2
            continue
        if c == "|":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return check_ngram(parts)


def check_ngram(ngram) -> tuple[str, ...] | None:
    """`ngram` as a tuple of token strings (None stays None), or SearchError."""
    if ngram is None:
        return None
    if isinstance(ngram, str) or not all(isinstance(t, str) for t in ngram):
        raise SearchError(f"n-gram: expected a list of token strings, got {clip(ngram)}")
    ngram = tuple(ngram)
    if not 1 <= len(ngram) <= NGRAM_MAX:
        raise SearchError(f"n-gram: {len(ngram)} tokens; give 1 to {NGRAM_MAX}")
    return ngram


def check_regex(con, regex) -> str | None:
    """`regex` when RE2 (DuckDB) compiles it and it is at most REGEX_MAX characters; None
    stays None; else SearchError with RE2's reason."""
    if regex is None:
        return None
    if not isinstance(regex, str) or not regex:
        raise SearchError(f"regular expression: expected a non-empty text, got {clip(regex)}")
    if len(regex) > REGEX_MAX:
        raise SearchError(f"regular expression {clip(regex)}: longer than {REGEX_MAX} "
                          "characters")
    import duckdb

    try:
        con.execute("SELECT regexp_matches('', $re)", {"re": regex}).fetchall()
    except duckdb.InvalidInputException as e:
        why = str(e).split("Error: ", 1)[-1].strip()
        raise SearchError(f"invalid regular expression {clip(regex)}: {why} (RE2 syntax: no "
                          "look-arounds or back-references)") from None
    return regex


def _token_match(con, expr: str) -> str:
    """A condition on the token string `expr` (over column `token`): on a materialised
    connection, evaluated once per distinct token string (table vocab) and then matched by
    integer code."""
    if indexed.active(con) and aggregated.codes_ok(con):
        return f"tcode IN (SELECT tcode FROM vocab WHERE {expr})"
    return expr


def _conditions(con, *, js_min=None, rank_base_min=None, dlogp_max=None, text_contains=None,
                regex=None, ngram=None, rel_pos_range=None) -> tuple[str, dict]:
    """The WHERE clause over a hit source aliased `h`, and its parameters."""
    conds, p = ["TRUE"], {}
    for cond, name, val in [
            ("js >= $js_min", "js_min", js_min),
            ("rank_base >= $rb_min", "rb_min", rank_base_min),
            ("dlogp <= $dlogp_max", "dlogp_max", dlogp_max),
            (_token_match(con, "contains(lower(token), lower($text))"), "text", text_contains),
            (_token_match(con, "regexp_matches(token, $regex)"), "regex", regex)]:
        if val is not None:
            conds.append(cond)
            p[name] = val
    if rel_pos_range is not None:
        conds.append("rel_pos BETWEEN $rp_lo AND $rp_hi")
        p["rp_lo"], p["rp_hi"] = (float(v) for v in rel_pos_range)
    if ngram is not None:
        conds.append("h.token = $ng0")
        p["ng0"] = ngram[0]
        ctx = "tokx_ctx" if indexed.active(con) else "tokens"
        for k, tok in enumerate(ngram[1:], start=1):  # one semi join per following token
            conds.append(f"EXISTS (SELECT 1 FROM {ctx} g WHERE g.run = h.run AND "
                         f"g.trace_id = h.trace_id AND g.pos = h.pos + {k} AND "
                         f"g.token = $ng{k})")
            p[f"ng{k}"] = tok
    return " AND ".join(conds), p


def _prepare(con, kw: dict) -> tuple[str, str, dict, tuple]:
    """Validated filters: (WHERE clause, base source SQL, parameters, the cell filters)."""
    kw = dict(kw)
    kw["regex"] = check_regex(con, kw.get("regex"))
    kw["ngram"] = check_ngram(kw.get("ngram"))
    runs = kw.pop("runs", None)
    sampled_from = sampler.browse_filter(con, runs, kw.pop("sampled_from", None))
    correct = True if kw.pop("correct_only", False) else None
    base, p = _filtered(runs, sampled_from, correct,
                        src="tokx" if indexed.active(con) else "tok")
    cond, cp = _conditions(con, **kw)
    return cond, base, {**p, **cp}, (runs, sampled_from, correct)


_FILTER_DOC = """Filters: js_min, rank_base_min, dlogp_max, text_contains, regex, ngram,
    rel_pos_range (lo, hi), correct_only, runs, sampled_from (every trace by default, see
    sampler.browse_filter); the module doc says what each keeps."""


def token_search(con, js_min=None, rank_base_min=None, dlogp_max=None, text_contains=None,
                 rel_pos_range=None, correct_only=False, runs=None, sampled_from=None,
                 limit=200, window=5, offset=0, regex=None, ngram=None) -> pd.DataFrame:
    """Rows offset .. offset + limit of the matching tokens, highest js first: run, trace_id,
    pos, token, js, rank_base, dlogp, rel_pos, context (tokens pos-window..pos+window
    concatenated), before, after (the parts of the context on either side of the token).
    With an n-gram, the row is its first token. A negative limit or offset is refused."""
    if int(limit) < 0 or int(offset) < 0:
        raise SearchError(f"limit and offset must be 0 or more, got {limit} and {offset}")
    cond, base, p, filters = _prepare(con, dict(
        js_min=js_min, rank_base_min=rank_base_min, dlogp_max=dlogp_max,
        text_contains=text_contains, regex=regex, ngram=ngram, rel_pos_range=rel_pos_range,
        runs=runs, sampled_from=sampled_from, correct_only=correct_only))
    ctx = """SELECT m.*, string_agg(c.token, '' ORDER BY c.pos) AS context,
        coalesce(string_agg(c.token, '' ORDER BY c.pos) FILTER (WHERE c.pos < m.pos), '')
          AS before,
        coalesce(string_agg(c.token, '' ORDER BY c.pos) FILTER (WHERE c.pos > m.pos), '')
          AS after
      FROM m JOIN (SELECT run, trace_id, pos, token FROM <ctx> WHERE <tids>) c
        ON c.run = m.run AND c.trace_id = m.trace_id
        AND c.pos BETWEEN m.pos - $win AND m.pos + $win
      GROUP BY ALL ORDER BY m.js DESC NULLS LAST, m.run, m.trace_id, m.pos"""
    hits = f"""SELECT run, trace_id, pos, token, js, rank_base, dlogp, rel_pos
          FROM (<src>) h WHERE {cond}
          ORDER BY {_ORDER} LIMIT $lim OFFSET $off"""
    p = {**p, "lim": int(limit), "off": int(offset), "win": window}
    if indexed.active(con):
        only_js = all(v is None for v in (rank_base_min, dlogp_max, text_contains, regex,
                                          ngram, rel_pos_range))
        return _token_search_indexed(con, hits, ctx, p, js_min, base, filters, only_js)
    sql = f"WITH m AS ({hits.replace('<src>', base)}) " + ctx.replace("<ctx>", "tokens").replace(
        "<tids>", "trace_id IN (SELECT trace_id FROM m)")
    return _q(con, sql, p)


token_search.__doc__ += "\n\n    " + _FILTER_DOC


def token_search_count(con, **filters) -> int:
    """How many tokens token_search's filters keep (its pages: count / limit). """
    cond, base, p, cells = _prepare(con, filters)
    src = base
    if indexed.active(con) and filters.get("js_min") is not None:  # js-sorted rows only
        src = "SELECT * FROM tokx_js WHERE list_contains($m_cells::INTEGER[], cell)"
        p["m_cells"] = indexed.cells(con, *cells)["cell"].tolist()
    return int(_q(con, f"SELECT count(*) AS n FROM ({src}) h WHERE {cond}", p)["n"].iloc[0])


token_search_count.__doc__ += "\n\n    " + _FILTER_DOC


def token_search_export(con, out: str | Path, fmt: str | None = None,
                        batch_rows: int = 100_000, **filters) -> int:
    """Write every token token_search's filters keep, in its order, to `out` as CSV or
    Parquet (`fmt`, default: from the file's suffix): columns EXPORT_COLUMNS (no context:
    run, trace_id and pos locate each token). Streamed in batches of `batch_rows`; returns
    the number of rows. An unknown format is refused before any query."""
    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise SearchError(f"export format {clip(fmt)}: use one of {', '.join(EXPORT_FORMATS)}")
    cond, base, p, _ = _prepare(con, filters)
    cols = ", ".join(EXPORT_COLUMNS)
    sql = f"SELECT {cols} FROM ({base}) h WHERE {cond} ORDER BY {_ORDER}"
    reader = con.sql(sql, params=_used(sql, p)).to_arrow_reader(batch_rows)
    n = 0
    writer = (pq.ParquetWriter(out, reader.schema) if fmt == "parquet"
              else pacsv.CSVWriter(out, reader.schema))
    try:
        for batch in reader:
            writer.write_batch(batch)
            n += batch.num_rows
    finally:
        writer.close()
    return n


token_search_export.__doc__ += "\n\n    " + _FILTER_DOC


def token_search_bytes(con, fmt: str, **filters) -> bytes:
    """token_search_export's file as bytes (the app's download button)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"tokens.{fmt}"
        token_search_export(con, path, fmt, **filters)
        return path.read_bytes()


_HIT_TYPES = {"run": "VARCHAR", "trace_id": "INTEGER", "pos": "INTEGER", "token": "VARCHAR",
              "js": "FLOAT", "rank_base": "INTEGER", "dlogp": "FLOAT", "rel_pos": "FLOAT"}


def _token_search_indexed(con, hits: str, ctx: str, p: dict, js_min, base: str, filters,
                          only_js: bool) -> pd.DataFrame:
    """token_search on a materialised connection, in two short steps instead of one scan
    that carries every matching row: (1) the hits, from `tokx_js` (the rows with a js value,
    sorted by js descending, so a js bound skips whole row groups) restricted to the kept
    cells; with no condition but js, under the bound of the (offset + limit)-th largest js
    of those cells (order index: the top rows by js DESC are all at or above it, ties
    included); rows with a NULL js only come from the plain query, which answers when
    tokx_js fills less than the page and js is not bounded; (2) their context, read from
    the hits' traces only (table tokx_ctx). Same rows, order and columns as the one-query
    SQL."""
    cells = indexed.cells(con, *filters)["cell"].tolist()
    src = "SELECT * FROM tokx_js WHERE list_contains($m_cells::INTEGER[], cell)"
    hp = {**p, "m_cells": cells}
    limit, end = p["lim"], p["lim"] + p["off"]
    if only_js:
        ix = indexed.cell_index(con, "js")
        n = int(ix.count(cells).sum())
        if 0 < end <= n:
            t = float(ix.value_at(cells, n - end))
            if js_min is None or t > js_min:
                src += " AND js >= $m_kth"
                hp["m_kth"] = t
    m = _q(con, hits.replace("<src>", src), hp)
    if len(m) < limit and js_min is None:  # NULL js rows may follow: the plain query
        m = _q(con, hits.replace("<src>", base), p)
    mcte = ", ".join(f"unnest($m_{c}::{t}[]) AS {c}" for c, t in _HIT_TYPES.items())
    mp = {f"m_{c}": [None if pd.isna(v) else v for v in m[c].tolist()] for c in _HIT_TYPES}
    tids = ", ".join(str(int(t)) for t in sorted(set(m["trace_id"].tolist()))) or "NULL"
    sql = f"WITH m AS (SELECT {mcte}) " + ctx.replace("<ctx>", "tokx_ctx").replace(
        "<tids>", f"trace_id IN ({tids})")
    return _q(con, sql, {**p, **mp})

