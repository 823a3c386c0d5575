"""One stored trace of a run as the layer experiments need it: the exact token ids the
run scored (prompt encoded as the run encoded it, the response ids from tokens.parquet),
its stored per-token js and entropies, how it is verified and which model sampled it.

Validation (`load_trace`, `check_pos`) refuses a missing run, trace or position with one
line (RunsError) before any model is loaded. Does not: compute anything (`pair_for`
loads the run's pair when none is given).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from core.engine.lens import decoder_parts
from core.engine.sampling import encode_prompts
from core.errors import RunsError
from core.inputs.text_limits import text_limits
from core.store.run import Run


@dataclass
class RunTrace:
    trace_id: int
    prompt: str
    response_ids: list[int]
    tokens: list[str]          # decoded text of each response token
    js: np.ndarray             # stored js per response position
    entropy_base: np.ndarray
    entropy_tuned: np.ndarray
    reference: str
    verifier: str
    sampled_from: str
    correct: bool
    prompt_ids: list[int] | None = None  # filled by `encode`

    def encode(self, tokenizer, chat_template: bool) -> RunTrace:
        """Encode the prompt as the run did (chat template when the run used it)."""
        if self.prompt_ids is None:
            self.prompt_ids = encode_prompts(tokenizer, [self.prompt], chat_template,
                                             limits=text_limits())[0]
        return self

    @property
    def ids(self) -> list[int]:
        return list(self.prompt_ids) + list(self.response_ids)

    def row(self, pos: int) -> int:
        """The sequence row whose next-token distribution predicts response token `pos`."""
        return len(self.prompt_ids) + pos - 1


def open_run(run_dir: str | Path) -> Run:
    """The healthy run in `run_dir` (RunsError: its one line, for a missing or damaged run)."""
    return Run.open(run_dir).require()


def _table(run_dir, table: str, **kw):
    return pq.read_table([str(p) for p in open_run(run_dir).table_files(table)], **kw)


def pair_for(run_dir, pair=None, device: str | None = None):
    """`pair`, else the run's own pair loaded now; refused (PairError) unless both models are
    Llama/Qwen2-style decoders (core.engine.lens.decoder_parts)."""
    pair = pair if pair is not None else open_run(run_dir).load_pair(device=device)
    decoder_parts(pair.base.model, "base")
    decoder_parts(pair.tuned.model, "tuned")
    return pair


def chat_template(run_dir) -> bool:
    """Whether the run encoded its prompts through the chat template."""
    return open_run(run_dir).chat_template


def trace_ids(run_dir: str | Path) -> list[int]:
    """Every trace id of the run, ascending."""
    t = _table(run_dir, "traces", columns=["trace_id"])
    return sorted(int(x) for x in t.column("trace_id").to_pylist())


def check_traces(run_dir: str | Path, wanted: list[int]) -> list[int]:
    """`wanted` as ints, refused (RunsError) when one is not a trace of the run."""
    have = set(trace_ids(run_dir))
    bad = [t for t in wanted if int(t) not in have]
    if bad:
        raise RunsError(f"run {Path(run_dir).name!r} has no trace {bad[0]} "
                        f"(trace ids {min(have, default=0)}..{max(have, default=0)})")
    return [int(t) for t in wanted]


def load_trace(run_dir: str | Path, trace_id: int) -> RunTrace:
    run_dir = Path(run_dir)
    (tid,) = check_traces(run_dir, [trace_id])
    tr = _table(run_dir, "traces", filters=[("trace_id", "=", tid)]).to_pylist()[0]
    tok = _table(run_dir, "tokens", filters=[("trace_id", "=", tid)],
                 columns=["pos", "token_id", "token", "js", "entropy_base",
                          "entropy_tuned"]).to_pandas().sort_values("pos")
    return RunTrace(tid, tr["prompt"], tok.token_id.astype(int).tolist(), tok.token.tolist(),
                    tok.js.to_numpy(np.float64), tok.entropy_base.to_numpy(np.float64),
                    tok.entropy_tuned.to_numpy(np.float64), str(tr["reference"]),
                    tr["verifier"], tr["sampled_from"], bool(tr["correct"]))


def check_pos(trace: RunTrace, pos: int) -> int:
    n = len(trace.response_ids)
    if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)) or not 0 <= pos < n:
        raise RunsError(f"trace {trace.trace_id}: position {pos!r} is outside its response "
                        f"(0..{n - 1})")
    return int(pos)
