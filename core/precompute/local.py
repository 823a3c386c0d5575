"""The local executor: shards run one after another in this process, the pair loaded once
(both models resident, or neither in `--scoring sequential`, which loads one at a time)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from core.config import PrecomputeConfig
from core.engine.pair import Pair
from core.inputs.prompts import PromptSet
from core.precompute import shard


class LocalExecutor:
    def __init__(self, cfg: PrecomputeConfig, ps: PromptSet, shards: list[list[int]],
                 reused: dict | None, parts: Path, checked: Pair):
        """`checked`: the pair the driver validated (tokenizers and fingerprints, no
        weights); its weights are loaded here, unless scoring is sequential."""
        self.cfg, self.ps, self.shards, self.reused, self.parts = cfg, ps, shards, reused, parts
        self.pair = checked if cfg.scoring == "sequential" else checked.with_weights()

    def is_done(self, k: int) -> bool:
        return (self.parts / shard.done_name(k)).exists()

    def run(self, todo: list[int], on_step=None) -> Iterator[tuple[int, dict]]:
        for k in todo:
            step = None if on_step is None else (lambda f, what, k=k: on_step(k, f, what))
            tables = shard.run_shard(self.cfg, self.pair, self.ps, self.shards[k], k,
                                     self.reused, step=step)
            shard.write_part(k, tables, self.parts)
            yield k, shard.pair_info(self.pair)

    def finish(self) -> None:
        pass

    def describe_pair(self) -> dict:
        return shard.pair_info(self.pair)

    def cleanup(self) -> None:
        pass
