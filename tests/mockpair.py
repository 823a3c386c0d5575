"""A mock pair whose logits we control: a bigram table, logits[b, t] = W[ids[b, t]]."""

from types import SimpleNamespace

import torch


class Bigram(torch.nn.Module):
    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.W = torch.nn.Parameter(table.clone(), requires_grad=False)
        self.config = SimpleNamespace(vocab_size=table.shape[-1])  # what scoring reads

    def forward(self, input_ids, attention_mask=None, **_):
        return SimpleNamespace(logits=self.W[input_ids])


def mock_pair(v: int = 12, seed: int = 0, same: bool = False, shift_rows=(3,)):
    """Base and tuned bigram models; tuned differs only in `shift_rows` (after those tokens)."""
    g = torch.Generator().manual_seed(seed)
    wb = torch.randn(v, v, generator=g) * 2
    wt = wb.clone()
    if not same:
        for r in shift_rows:
            wt[r] = torch.randn(v, generator=g) * 4
    return Bigram(wb), Bigram(wt)
