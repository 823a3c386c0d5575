"""One run, typed: `Run` is what every layer gets for a run folder (core.store.cache's
list_runs / open_run make them; nothing else builds one).

A Run carries the folder, its name (the folder's), the manifest behind typed accessors (the
pair and tokenizer, generation settings with their defaults, samplers, rollout summary,
series links, the memory budget scoring used), the paths of every member file, and the
writers for the tables later stages add (forks, cross-sampling sweeps). `problem` is None
for a healthy run and, for a damaged one, the one line core.store.validate found; `line()`
is what every reader says about it. A damaged run keeps its name and path (so it can be
listed and deleted) and its manifest when that is sound (a damaged table): its accessors give
the defaults otherwise. Only healthy runs are opened for reading (open_run, require()).

Callers outside core/store never read the manifest dict or spell a member file's name: when
they need a field or a file that is not here, it is added here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import RunsError
from core.store import validate
from core.store.schema import (
    FORKS_FILE,
    MANIFEST_FILE,
    SWEEPS_DIR,
    TOKENS_FILE,
    TOPK_FILE,
    TRACES_FILE,
)

# The response cap generation uses when the run stores none: a run scored from a rollout
# file (or re-scoring another run's traces) stores max_new_tokens = 0, and the fork
# explorer and cross-sampling then decode at most this many tokens.
DEFAULT_MAX_NEW_TOKENS = 128
INDEX_FILE = ".query-index.duckdb"  # the run's query index (core/queries/run_index.py)


@dataclass
class Run:
    """A run folder. `manifest` is the raw dict for core/store's own writers only (rename,
    links); everyone else uses the accessors."""

    name: str
    path: Path
    manifest: dict = field(repr=False)
    problem: str | None = None
    manifest_sound: bool = True  # False when the problem is in manifest.json itself

    @classmethod
    def open(cls, folder: str | Path, fresh: bool = False) -> Run:
        """The run in `folder`, validated (core.store.validate); damaged runs are returned
        with `problem` set, never raised."""
        folder = Path(folder)
        m, bad = validate.problem(folder, fresh=fresh)
        return cls(folder.name, folder, m, bad, validate.read(folder)[1] is None)

    # ------------------------------------------------------------------ health
    @property
    def damaged(self) -> bool:
        return self.problem is not None

    @property
    def readable(self) -> bool:
        """Whether every file present can be read (healthy, or only a table missing: a
        folder of tables opened on purpose, which the query collection gives no rows)."""
        return self.problem is None or validate.only_missing(self.problem)

    def line(self) -> str:
        """What every reader says about a damaged run, in one line."""
        return (f"run {self.name!r} is damaged: {self.problem}; it is left out until its "
                "files are restored (or delete it)")

    def require(self, error: type[Exception] = RunsError, tables: bool = True) -> Run:
        """This run when healthy; else raises `error` with line(). `tables=False`: a sound
        manifest is enough (writers of extra tables, which never read the run's own)."""
        if self.problem is not None and (tables or not self.manifest_sound):
            raise error(self.line())
        return self

    # ------------------------------------------------------------------ manifest fields
    def _get(self, *keys, default=None):
        v = self.manifest
        for k in keys:
            if not isinstance(v, dict):
                return default
            v = v.get(k)
        return default if v is None else v

    @property
    def recorded_name(self) -> str:
        """The name the manifest records (a copied folder may repeat another run's), else
        the folder's."""
        return self._get("name", default=self.name)

    @property
    def kind(self) -> str | None:
        return self._get("kind")

    @property
    def created(self) -> str:
        return self._get("created", default="")

    @property
    def config(self) -> dict:
        """The settings the run was computed with (a copy)."""
        return copy.deepcopy(self._get("config", default={}))

    def spec(self, role: str) -> str:
        """The model spec ('base' or 'tuned') as recorded, '?' when unknown."""
        return self._get("models", role, "spec", default="?")

    def fingerprint(self, role: str) -> str | None:
        return self._get("models", role, "fingerprint", "digest")

    @property
    def pair(self) -> str:
        """'tuned vs base', for listings."""
        return f"{self.spec('tuned')} vs {self.spec('base')}"

    @property
    def prompt_set(self) -> str:
        """The prompt set's (or rollout file's) file name."""
        return Path(self._get("prompt_set", "path", default="?")).name

    @property
    def prompts_path(self) -> str | None:
        return self._get("config", "prompts")

    @property
    def prompt_fingerprint(self) -> str | None:
        return self._get("prompt_set", "fingerprint")

    @property
    def n_traces(self) -> int:
        return self._get("stats", "n_traces", default=0)

    @property
    def n_tokens(self) -> int:
        return self._get("stats", "n_tokens", default=0)

    @property
    def special_ids(self) -> frozenset[int]:
        """The tokenizer's special token ids (shown as markers, not text)."""
        return frozenset(self._get("tokenizer", "special_ids", default=[]))

    @property
    def chat_template(self) -> bool:
        return bool(self._get("config", "chat_template", default=True))

    @property
    def max_new_tokens(self) -> int:
        """The response cap for generating from this run's pair: the run's own, else (a run
        scored from a rollout file stores 0) DEFAULT_MAX_NEW_TOKENS."""
        return int(self._get("config", "max_new_tokens", default=0)) or DEFAULT_MAX_NEW_TOKENS

    @property
    def js_top_p(self) -> float | None:
        """The nucleus of the run's js_top_p column (None when the manifest does not say)."""
        return self._get("config", "js_top_p")

    @property
    def sampling_top_p(self) -> float:
        """The top-p the run's traces were sampled with (PrecomputeConfig's default, 1, when
        the manifest does not say)."""
        return float(self._get("config", "top_p", default=1.0))

    @property
    def sampling_temperature(self) -> float:
        """The temperature the run's traces were sampled with (default 1)."""
        return float(self._get("config", "temperature", default=1.0))

    @property
    def vocab_size(self) -> int | None:
        """The tokenizer's vocabulary size as recorded (None when the manifest does not say)."""
        v = self._get("tokenizer", "vocab_size")
        return int(v) if isinstance(v, int) else None

    @property
    def max_prompts(self) -> int | None:
        return self._get("config", "max_prompts") or None

    @property
    def rollouts(self) -> dict | None:
        """For a run scored from a rollout file: {text_responses, retokenization_mismatches,
        note}; None for a sampled run."""
        return copy.deepcopy(self._get("rollouts")) or None

    @property
    def retokenized(self) -> int | None:
        """Rollout runs: text responses whose decode(encode(text)) differs from the text."""
        return (self.rollouts or {}).get("retokenization_mismatches")

    @property
    def series_of(self) -> str | None:
        """The series' final run this run belongs to (older runs: their traces_from)."""
        return self._get("series_of") or self._get("traces_from")

    @property
    def traces_from(self) -> str | None:
        return self._get("traces_from")

    @property
    def series_step(self) -> int | None:
        return self._get("series_step")

    @property
    def series_sampling(self) -> str | None:
        return self._get("config", "series_sampling")

    @property
    def samplers(self) -> dict:
        """{label: {run, role, model, fingerprint}} (core.store.samplers.samplers_of)."""
        from core.store.samplers import samplers_of

        return samplers_of(self.manifest)

    def checkpoint_accuracy(self) -> tuple[float | None, str | None]:
        """The tuned checkpoint's own accuracy and its source (core.store.samplers)."""
        from core.store.samplers import checkpoint_accuracy

        return checkpoint_accuracy(self.manifest)

    def reused_note(self) -> str | None:
        """One line for a run whose traces another run's model sampled (None otherwise)."""
        from core.store.samplers import reused_note

        return reused_note(self.manifest)

    def reuse_plan(self, base_spec: str | None, base_digest: str | None) -> tuple[dict, dict]:
        """For a run re-scoring this run's traces with that base model: ({label here: label
        there}, {label there: sampler record}) (core.store.samplers.reuse_plan)."""
        from core.store.samplers import reuse_plan

        return reuse_plan(self.manifest, base_spec, base_digest)

    def label_sql(self, column: str = "sampled_from") -> str:
        """SQL reading `column` (traces.sampled_from) as today's labels (core.store.samplers:
        an old series run's "tuned" traces were sampled by its source run's model)."""
        from core.store.samplers import label_sql

        return label_sql(self.manifest, column)

    @property
    def memory_budget_bytes(self) -> int | None:
        """The memory budget scoring ran under (manifest scoring.memory_budget_bytes)."""
        return self._get("scoring", "memory_budget_bytes")

    def provenance(self) -> dict:
        """The whole manifest, a copy, for showing as provenance (as JSON text) or embedding
        in a written file's metadata."""
        return copy.deepcopy(self.manifest)

    # ------------------------------------------------------------------ member files
    @property
    def manifest_file(self) -> Path:
        return self.path / MANIFEST_FILE

    def table_files(self, table: str) -> list[Path]:
        """Parquet files of 'tokens', 'topk' or 'traces' (one file, or a part folder's)."""
        return validate.table_files(self.path, _TABLES[table])

    @property
    def forks_file(self) -> Path:
        return self.path / FORKS_FILE

    @property
    def index_file(self) -> Path:
        return self.path / INDEX_FILE

    @property
    def sweeps_dir(self) -> Path:
        return self.path / SWEEPS_DIR

    def signature(self) -> tuple:
        """What changes when the manifest or a table the query collection reads (tokens,
        topk, traces) is written or replaced; a saved fork does not change it."""
        return validate.signature(self.path, forks=False)

    # ------------------------------------------------------------------ loading, writing
    def load_pair(self, device: str | None = None, load_weights: bool = True):
        """The base/tuned pair (core.engine.pair.Pair) with the run's own allow_pickle /
        trust_remote_code flags."""
        from core.engine.pair import load_pair

        c = self.require().config
        return load_pair(c["base"], c["tuned"], allow_pickle=c.get("allow_pickle", False),
                         trust_remote_code=c.get("trust_remote_code", False), device=device,
                         load_weights=load_weights)

    def load_tokenizer(self):
        """The pair's tokenizer only (both models share it), without any weights."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.require().config["tuned"])

    def write_forks(self, table) -> None:
        """Replace forks.parquet with `table` (FORKS_SCHEMA), atomically, the manifest in
        its metadata. Hold the run's lock (core.store.cache.writing_into)."""
        from core.store.storage import write_parquet

        write_parquet(table, self.forks_file, metadata=self.provenance())

    def write_sweep(self, result, metadata: dict, key: str | None = None):
        """Write a cross-sampling SweepResult into this run (core.store.cross.write_results);
        returns the samples and summary paths. Hold the run's lock."""
        from core.store.cross import write_results

        return write_results(self.path, result, metadata, key)


_TABLES = {"tokens": TOKENS_FILE, "topk": TOPK_FILE, "traces": TRACES_FILE}
