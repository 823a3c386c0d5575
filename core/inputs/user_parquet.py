"""A Parquet file that a user brings (prompts, rollouts), read within a size limit that is
checked before its values are materialised.

A Parquet file can be far smaller than what it holds: a compressed page of 10 GB of one
repeated byte takes a few megabytes, and a dictionary-encoded column can repeat one 1 MB
string a million times for the cost of a million small indices. Reading such a file as
Python records takes all memory long before any per-field check runs; and a file of a few
kilobytes can describe millions of null rows, each of which would become a Python dict.
So, in order:
1. the footer's row count (no data read) must fit `TextLimits.max_rows`, and its
   uncompressed sizes `TextLimits.max_file_text_bytes`;
2. the file is read with every string column kept dictionary-encoded (at most those
   uncompressed sizes in memory), and the bytes its values take once decoded are summed
   from the dictionaries' lengths (nothing decoded) and must fit the same limit;
3. only then are the rows turned into Python records, a batch at a time (`iter_records`), so
   a reader that stops at its first problems never makes the rest.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.errors import PromptSetError, clip
from core.inputs.text_limits import TextLimits, fmt_size

BATCH = 4096  # rows turned into Python records at a time


def read_records(p: Path, lim: TextLimits) -> list[dict]:
    """The rows of the Parquet file `p` as dicts (see iter_records)."""
    return [rec for batch in iter_records(p, lim) for rec in batch]


def iter_records(p: Path, lim: TextLimits):
    """The rows of the Parquet file `p` as lists of dicts, BATCH rows at a time; raises
    PromptSetError (before the first batch) for a file that is not readable Parquet, holds
    more than `lim.max_rows` rows or more than `lim.max_file_text_bytes` of values."""
    table = _checked_table(p, lim)
    for batch in table.to_batches(max_chunksize=BATCH):
        yield _rows(batch)


def _checked_table(p: Path, lim: TextLimits) -> pa.Table:
    meta = _readable(p, lambda: pq.ParquetFile(p).metadata)  # the footer only
    _check_rows(p, meta.num_rows, lim)
    columns = [meta.schema.column(c) for c in range(meta.num_columns)]
    _check(p, sum(meta.row_group(g).column(c).total_uncompressed_size
                  for g in range(meta.num_row_groups) for c in range(meta.num_columns)), lim)
    strings = [c.path for c in columns if c.physical_type == "BYTE_ARRAY"]
    table = _readable(p, lambda: pq.ParquetFile(p, read_dictionary=strings).read())
    _check_rows(p, table.num_rows, lim)  # what was read, should the footer understate it
    _check(p, sum(decoded_bytes(col) for col in table.columns), lim)
    return table


def _readable(p: Path, read):
    """read(), or PromptSetError naming the file when it is not readable Parquet."""
    try:
        return read()
    except Exception as e:
        raise PromptSetError(f"{p.name}: not a readable Parquet file "
                             f"({clip(str(e), 200)[1:-1]})") from e


def _rows(table) -> list[dict]:
    """The rows as Python records (strings decoded): the step the checks above bound."""
    return table.to_pylist()


def _check_rows(p: Path, rows: int, lim: TextLimits) -> None:
    if rows > lim.max_rows:
        raise PromptSetError(f"{p.name}: {rows:,} rows, more than {lim.max_rows:,}, the limit "
                             "for one file (SHIFTLENS_MAX_ROWS); split it")


def _check(p: Path, size: int, lim: TextLimits) -> None:
    if size > lim.max_file_text_bytes:
        raise PromptSetError(
            f"{p.name}: its values take {fmt_size(size)} once decompressed, more than "
            f"{fmt_size(lim.max_file_text_bytes)}, the limit for one file "
            "(SHIFTLENS_MAX_FILE_TEXT_BYTES); split it")


def decoded_bytes(arr) -> int:
    """Bytes the values of `arr` (an Arrow array or chunked array, nested or not) take once
    decoded: string and binary lengths counted through their dictionaries without decoding
    them, plus the fixed-width values' buffers."""
    if isinstance(arr, pa.ChunkedArray):
        return sum(decoded_bytes(c) for c in arr.chunks)
    t = arr.type
    if pa.types.is_dictionary(t):
        lengths = _value_lengths(arr.dictionary)
        if lengths is None:
            return len(arr) * 8
        return int(pc.sum(pc.take(lengths, arr.indices)).as_py() or 0)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return decoded_bytes(arr.flatten()) + 8 * len(arr)
    if pa.types.is_map(t):
        return decoded_bytes(arr.keys) + decoded_bytes(arr.items) + 8 * len(arr)
    if pa.types.is_struct(t):
        return sum(decoded_bytes(arr.field(i)) for i in range(t.num_fields))
    lengths = _value_lengths(arr)
    if lengths is not None:
        return int(pc.sum(lengths).as_py() or 0)
    return arr.nbytes


def _value_lengths(arr):
    """Byte lengths of a string or binary array's values (None for other types)."""
    t = arr.type
    if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            or pa.types.is_string_view(t) or pa.types.is_binary_view(t)):
        return pc.binary_length(arr)
    return None
