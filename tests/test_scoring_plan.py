"""How the scoring engine cuts a batch's rows into head blocks and metric chunks."""
from __future__ import annotations

import pytest
import torch

from core.engine import heads
from core.engine.scoring import ScoreSettings, batch_blocks, plan

pytestmark = pytest.mark.unit
VOCAB = 151_936


def test_a_head_block_is_not_rounded_to_the_chunk_rows():
    # 512 rows in chunks of 6 made blocks of 510 and 2 rows, and the head matrix was
    # reread whole for the 2-row block
    assert heads.head_block_rows(VOCAB, 2 << 30, 6, 8, 2) == heads.HEAD_BLOCK_ROWS
    assert heads.head_block_rows(VOCAB, 2 << 30, 7, 8, 2) == heads.HEAD_BLOCK_ROWS
    # the budget still bounds it, and a block is at least one chunk
    small = heads.head_block_rows(VOCAB, 64 << 20, 6, 8, 2)
    assert 6 <= small < heads.HEAD_BLOCK_ROWS
    assert heads.head_block_rows(VOCAB, 1, 6, 8, 2) == 6


def test_the_numba_path_scores_a_whole_head_block_per_call(monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.delenv("SHIFTLENS_METRIC_PATH", raising=False)
    model = torch.nn.Linear(4, 4)  # on CPU; no config: no KV bound
    budget, rows, block, _ = plan(ScoreSettings(memory_budget=2 << 30, math_dtype="float32"),
                                  model, VOCAB)
    assert rows == block == heads.HEAD_BLOCK_ROWS
    # the torch reference keeps cache-sized chunks inside the block
    _, rows, block, _ = plan(ScoreSettings(memory_budget=2 << 30, math_dtype="float64"),
                             model, VOCAB)
    assert rows == heads.chunk_rows(VOCAB, 2 << 30) < block == heads.HEAD_BLOCK_ROWS
    # an explicit chunk size is honoured on every path
    _, rows, _, _ = plan(ScoreSettings(memory_budget=2 << 30, math_dtype="float32",
                                       chunk_rows=3), model, VOCAB)
    assert rows == 3


def test_the_head_block_leaves_room_for_the_kept_rows_and_the_reserve():
    budget, row = 1 << 30, 2 * VOCAB * 4  # two models' float32 logits per row
    free = budget - int(budget * heads.RESERVE_SHARE) - VOCAB * heads.TENSORS_PER_ENTRY * 4
    assert heads.head_block_rows(VOCAB, budget, 1, 4, 2) == min(free // row,
                                                                heads.HEAD_BLOCK_ROWS)
    # 16,384 rows of hidden size 1,536 kept by each model: the block shrinks by their bytes
    kept = 2 * 16_384 * 1_536 * 4
    got = heads.head_block_rows(VOCAB, budget, 1, 4, 2, kept)
    assert got == (free - kept) // row < heads.HEAD_BLOCK_ROWS
    assert got * row + kept + VOCAB * heads.TENSORS_PER_ENTRY * 4 <= budget
    # and the plan passes them on
    model = torch.nn.Linear(4, 4)
    settings = ScoreSettings(memory_budget=budget, math_dtype="float32")
    assert plan(settings, model, VOCAB, kept=kept)[2] == got
    # and both engines size a batch's blocks from its own ResponseLogits (batch_blocks)

    class Kept:  # what batch_blocks reads of a batch's ResponseLogits
        kept_bytes = kept // 2

    model.get_output_embeddings = lambda: torch.nn.Linear(4, VOCAB, bias=False)
    assert batch_blocks(settings, model, [Kept(), Kept()], budget) == (got, got)
    # with the budget the call resolved once, not the settings' default re-resolved per
    # batch (free memory, and so the default, may have changed since)
    auto = ScoreSettings(memory_budget=0, math_dtype="float32")
    small = 400 << 20
    expect = heads.head_block_rows(VOCAB, small, 1, 4, 2, kept)
    assert expect < got
    assert batch_blocks(auto, model, [Kept(), Kept()], small) == (expect, expect)


@pytest.mark.parametrize("n,block,sizes", [(600, 512, [300, 300]), (1024, 512, [512, 512]),
                                           (1025, 512, [342, 342, 341]), (10, 512, [10]),
                                           (7, 3, [3, 2, 2]), (0, 512, [])])
def test_head_blocks_are_balanced(n, block, sizes):
    bounds = heads.block_bounds(n, block)
    assert [b1 - b0 for b0, b1 in bounds] == sizes
    assert [b0 for b0, _ in bounds] == [sum(sizes[:j]) for j in range(len(sizes))]


def test_chunks_cover_every_row_once_with_balanced_blocks():
    class Src:  # the rows' logits are their own indices: what `chunked` hands out is checked
        def __init__(self, n):
            self.n, self.device, self.parts = n, torch.device("cpu"), None

        def __len__(self):
            return self.n

        def chunk(self, sl, out=None):
            return torch.arange(self.n, dtype=torch.float32)[sl, None].expand(-1, 3)

    got = [(sl, blk[0][:, 0].tolist()) for sl, blk in heads.chunked([Src(601)], 7, 512)]
    rows = [r for _, part in got for r in part]
    assert rows == list(range(601))
    assert all(sl.stop - sl.start <= 7 for sl, _ in got)
    assert max(sl.stop for sl, _ in got if sl.start < 301) == 301  # the first block's end


def test_trim_heap_hands_freed_heap_memory_back():
    """heads.trim_heap returns freed heap pages below a live allocation to the OS (glibc
    keeps them otherwise; the body's activations were counted in the peak that way)."""
    import ctypes
    import resource

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        pytest.skip("not glibc")
    if not hasattr(libc, "malloc_trim"):
        pytest.skip("no malloc_trim")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    size = 96 * 1024  # below glibc's mmap threshold: these come from the heap
    blocks = [libc.malloc(size) for _ in range(2000)]
    for b in blocks:
        ctypes.memset(b, 1, size)
    top = libc.malloc(size)  # live above them: glibc cannot shrink the heap past it
    for b in blocks:
        libc.free(b)
    before = rss()
    heads.trim_heap()
    after = rss()
    libc.free(top)
    assert before - after > 100 * 1024**2, (before, after)


def test_warm_up_loads_the_cpu_kernel(monkeypatch):
    """core.metrics.fused.warm_up (scripts/test.sh runs it while the TRL venv installs)
    names the CPU path and, where it is the numba kernel, runs it (so it is compiled or
    loaded: another test in this worker may have done so already, hence the spy)."""
    from core.metrics import fused

    paths = []
    real = fused.fused_chunk

    def spy(lb, lt, tok, top_p, top_k, nuclei, kernel="fused-numba"):
        paths.append(kernel)
        return real(lb, lt, tok, top_p, top_k, nuclei, kernel)

    monkeypatch.setattr(fused, "fused_chunk", spy)
    path = fused.warm_up()
    assert path == fused.metric_path(torch.device("cpu"), torch.float32)
    if path == "fused-numba":
        from core.metrics import fused_numba

        assert paths == ["fused-numba"]
        assert fused_numba.fused_rows.signatures
    else:
        assert paths == []
