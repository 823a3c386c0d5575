"""Live scoring: any prompt + response scored under a run's pair, no run folder written.

Returns the same columns as `queries.trace_tokens` (tokens.parquet + topk.parquet columns),
so the app shows live text exactly like a stored trace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.engine.detok import detokenizer_for
from core.engine.pair import Pair
from core.engine.sampling import encode_prompts
from core.engine.scoring import ScoreSettings, score_traces
from core.errors import InputError
from core.inputs.text_limits import text_limits
from core.store.cache import open_run
from core.store.storage import tokens_table, topk_table


def pair_of_run(run_dir: str, device: str | None = None) -> Pair:
    """The base/tuned pair a run was computed from (paths and flags from its manifest).
    Loads the models each call; callers that reuse a pair keep it (the app caches it)."""
    return open_run(Path(run_dir).parent, run_dir).load_pair(device=device)


def score_text(pair: Pair, response: str, prompt: str = "", *, chat_template: bool = True,
               top_k: int = 10, js_top_p: float = 0.7, max_tokens: int = 4096) -> pd.DataFrame:
    """Score `response` as the continuation of `prompt` (chat template applied to a non-empty
    prompt when the tokenizer has one). One row per response token, ordered by pos, with the
    columns of `queries.trace_tokens` less `run` (trace_id is 0); empty when there are no
    response tokens. Raises InputError for a prompt or response longer than
    `TextLimits.live_max_chars` (before tokenising) and for a chat template that breaks the
    template limits (core.engine.chat_render)."""
    lim = text_limits()
    for name, text in (("prompt", prompt), ("response", response)):
        if len(text) > lim.live_max_chars:
            raise InputError(f"live scoring: the {name} is {len(text):,} characters, over the "
                             f"limit of {lim.live_max_chars:,} (SHIFTLENS_LIVE_MAX_CHARS); "
                             "score a shorter text")
    tok = pair.tokenizer
    if prompt:  # the chat template renders in a child process, under the template limits
        prompt_ids = encode_prompts(tok, [prompt], chat_template, limits=lim)[0]
    else:
        prompt_ids = [tok.bos_token_id] if tok.bos_token_id is not None else []
    resp_ids = list(tok(response, add_special_tokens=False)["input_ids"])[:max_tokens]
    if not prompt_ids:  # a model needs one token of context to predict the first one
        prompt_ids, resp_ids = resp_ids[:1], resp_ids[1:]
    if not resp_ids:
        return pd.DataFrame()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    scores = score_traces(pair.base.model, pair.tuned.model, [(prompt_ids, resp_ids)], pad,
                          ScoreSettings(batch_size=1, top_k=top_k, js_top_p=js_top_p))
    detok = detokenizer_for(tok)
    tid = np.zeros(1, dtype=np.int64)
    tokens = tokens_table(scores, tid, detok.response(resp_ids, prompt_ids)).to_pandas()
    topk = topk_table(scores, tid, detok.display).to_pandas()
    return tokens.merge(topk, on=["trace_id", "pos"]).sort_values("pos").reset_index(drop=True)
