"""Every check on a pair before compute, without loading weights: a Report for app and CLI.

`validate_pair(base, tuned, extra=..., prompts=..., settings=...)` inspects each checkpoint
(local folder or hub id) and returns a `Report`: a list of `Check(name, ok, message, fatal)`
and an overall `ok`. Nothing here raises on bad input; every problem becomes a failed check.

Per checkpoint: it resolves (folder, or hub id: reachable within a short timeout, not when
HF_HUB_OFFLINE is set unless in the local HF cache); its weights are safetensors (pickle
only with allow_pickle) and not truncated; config.json names an architecture transformers
knows as a causal LM (code shipped with the checkpoint needs trust_remote_code); parameter
count and stored dtype come from the safetensors headers (first bytes of each file) or the
hub's metadata; its tokenizer loads. Across checkpoints: every tokenizer's token->id map
equals the base's (else what differs); the tokenizer fits the embedding. Then the prompt set
(or the rollout file to score instead: every row, and its token ids against the vocabulary)
is validated and memory and time are estimated (core.jobs.estimate) for the settings.

Hub ids download only config and tokenizer files (small), never weights.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from core.access import confine_model
from core.config import PrecomputeConfig
from core.engine.checkpoint import (
    config_sizes,
    config_vs_weights,
    context_of,
    read_json,
    tokenizer_problem,
)
from core.engine.pair import (
    DEFAULT_MAX_NEW_TOKENS,
    PICKLE_SUFFIXES,
    PairError,
    check_local_model,
    default_max_new_tokens,
    read_safetensors_header,
    resolve,
    vocab_difference,
)
from core.errors import InputError
from core.inputs.lengths import Longest, length_checks
from core.inputs.prompts import PromptSetError, load_prompts
from core.inputs.rollouts import RolloutSet, load_rollouts
from core.inputs.text_limits import text_limits
from core.jobs.estimate import Estimate, estimate, fmt_bytes, fmt_seconds
from core.jobs.text_checks import user_text_checks

SMALL_FILES = ["config.json", "generation_config.json", "tokenizer*", "vocab*", "merges.txt",
               "special_tokens_map.json", "added_tokens.json", "*.tiktoken", "chat_template*"]
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass
class Check:
    name: str        # e.g. "base: weights", "vocabulary: base vs tuned"
    ok: bool
    message: str
    fatal: bool = True  # a failed non-fatal check is a warning: it does not block compute


@dataclass
class ModelFacts:
    """What validation learned about one checkpoint (None where unknown)."""

    role: str
    spec: str
    folder: str | None = None        # local folder, or the hub snapshot of its small files
    architecture: str | None = None
    parameters: int | None = None
    params_source: str | None = None  # "safetensors headers", "hub metadata", "file size"
    stored_dtype: str | None = None   # the weights' dtype on disk, e.g. "F16"
    config_dtype: str | None = None   # config.json's dtype
    layers: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    vocab_size: int = 0               # config.json's embedding rows
    context: int | None = None        # config.json's max_position_embeddings


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    models: dict[str, ModelFacts] = field(default_factory=dict)
    estimates: dict[str, Estimate] = field(default_factory=dict)  # per planned run role

    @property
    def ok(self) -> bool:
        """True when no fatal check failed."""
        return all(c.ok or not c.fatal for c in self.checks)

    def failures(self) -> list[Check]:
        """The failed fatal checks."""
        return [c for c in self.checks if not c.ok and c.fatal]

    def rows(self) -> list[dict]:
        """One dict per check (status, check, message), for a table in the app."""
        return [{"status": "ok" if c.ok else ("error" if c.fatal else "warning"),
                 "check": c.name, "message": c.message} for c in self.checks]

    def text(self) -> str:
        """The report as plain text lines, for the CLI."""
        mark = {"ok": "  ok  ", "error": " FAIL ", "warning": " warn "}
        lines = [f"[{mark[r['status']]}] {r['check']}: {r['message']}" for r in self.rows()]
        lines.append("ready to compute" if self.ok else
                     f"refused: {len(self.failures())} check(s) failed")
        return "\n".join(lines)


def _offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read now (the hub library reads it at import)."""
    return any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_snapshot(spec: str, timeout: float) -> tuple[Path, list[str], int | None]:
    """(folder with the hub model's small files, its file names, safetensors parameter count
    from the hub's metadata or None). Raises PairError with a message a user can act on."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    offline = _offline()
    files: list[str] = []
    params = None
    if not offline:
        try:
            info = HfApi().model_info(spec, timeout=timeout)
        except GatedRepoError as e:
            raise PairError(f"{spec}: gated on the Hugging Face hub; accept its licence and "
                            "log in (HF_TOKEN) first") from e
        except RepositoryNotFoundError as e:
            raise PairError(f"{spec}: no such model on the Hugging Face hub") from e
        except Exception as e:  # no network, DNS, proxy, timeout: all say the same to a user
            raise PairError(
                f"{spec}: cannot reach the Hugging Face hub within {timeout:.0f} s "
                f"({type(e).__name__}). Without a network, download the model on another "
                "machine and give its folder, or upload it as a zip/tar archive") from e
        files = [s.rfilename for s in (info.siblings or [])]
        if info.safetensors is not None:
            params = int(info.safetensors.total)
    try:
        folder = Path(snapshot_download(spec, allow_patterns=SMALL_FILES, etag_timeout=timeout,
                                        local_files_only=offline))
    except Exception as e:
        if offline:
            raise PairError(f"{spec}: HF_HUB_OFFLINE is set and this hub id is not in the local "
                            "Hugging Face cache; give a local folder or upload an archive") from e
        raise PairError(f"{spec}: downloading its config and tokenizer failed "
                        f"({type(e).__name__}: {e})") from e
    if offline:
        files = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
    return folder, files, params


def _header_params(files: list[Path]) -> tuple[int, str | None]:
    """(parameter count, most common dtype) from safetensors headers only (no tensor data)."""
    total, by_dtype = 0, {}
    for p in files:
        header = read_safetensors_header(p)
        for k, v in header.items():
            if k == "__metadata__":
                continue
            count = math.prod(v["shape"])
            total += count
            by_dtype[v["dtype"]] = by_dtype.get(v["dtype"], 0) + count
    return total, (max(by_dtype, key=by_dtype.get) if by_dtype else None)


def _config_checks(facts: ModelFacts, folder: Path, trust_remote_code: bool) -> list[Check]:
    """Architecture and dtype from config.json; fills `facts`."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as LM

    role = facts.role
    try:
        cfg = read_json(folder / "config.json")
        sizes = config_sizes(cfg)
        arch, model_type = _config_names(cfg)
        if facts.params_source in ("safetensors headers", "hub metadata"):
            config_vs_weights(sizes, facts.parameters, f"the weights' {facts.params_source}")
    except PairError as e:
        return [Check(f"{role}: config", False, str(e))]
    facts.architecture = arch
    facts.config_dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "")[:40] or None
    facts.layers = sizes.get("layers", 0)
    heads = sizes.get("heads", 1)
    facts.kv_heads = sizes.get("kv_heads", heads)
    facts.head_dim = sizes.get("head_dim") or sizes.get("width", 0) // heads
    facts.vocab_size = sizes.get("vocab", 0)
    facts.context = context_of(cfg)
    known = arch in LM.values() or model_type in LM
    if cfg.get("auto_map") and not known:
        if not trust_remote_code:
            return [Check(f"{role}: config", False,
                          f"architecture {arch!r} needs code shipped with the checkpoint; it "
                          "runs only with --trust-remote-code (read that code first)")]
        return [Check(f"{role}: config", True,
                      f"{arch} with its own code (trust_remote_code is on)")]
    if not known:
        return [Check(f"{role}: config", False,
                      f"architecture {arch!r} (model_type {model_type!r}) is not a "
                      "causal language model this transformers version knows")]
    return [Check(f"{role}: config", True,
                  f"{arch}, {facts.layers} layers, vocabulary {facts.vocab_size}, dtype "
                  f"{facts.config_dtype or '?'}")]


def _config_names(cfg: dict) -> tuple[str | None, str | None]:
    """(architecture, model_type) of a config; PairError when either has the wrong type."""
    archs, model_type = cfg.get("architectures") or [None], cfg.get("model_type")
    arch = archs[0] if isinstance(archs, list) else archs
    if arch is not None and not isinstance(arch, str):
        raise PairError("config.json: 'architectures' must be a list of class names; fix "
                        "config.json")
    if model_type is not None and not isinstance(model_type, str):
        raise PairError("config.json: 'model_type' must be a string; fix config.json")
    return (arch[:100] if arch else arch), model_type


def _inspect(role: str, spec: str, allow_pickle: bool, trust_remote_code: bool,
             timeout: float, model_roots=None) -> tuple[ModelFacts, object | None, list[Check]]:
    """(facts, tokenizer or None, checks) for one checkpoint; with `model_roots`, a local
    folder must lie under one of them (core.access.confine_model)."""
    facts, checks = ModelFacts(role, spec), []
    try:
        ref = resolve(spec) if model_roots is None else confine_model(spec, model_roots)
        if ref.local is not None:
            folder = ref.local
            weights = check_local_model(folder, allow_pickle)
            safe = [p for p in weights if p.suffix == ".safetensors"]
            if safe:
                facts.parameters, facts.stored_dtype = _header_params(safe)
                facts.params_source = "safetensors headers"
            else:  # allowed pickle weights: a size-based guess at 2 bytes per parameter
                facts.parameters = sum(p.stat().st_size for p in weights) // 2
                facts.params_source = "file size"
            kind = "safetensors" if safe else "pickle (allowed by --allow-pickle)"
            checks.append(Check(f"{role}: weights", True,
                                f"{len(weights)} {kind} file(s) in {folder}"))
        else:
            folder, files, facts.parameters = _hub_snapshot(spec, timeout)
            facts.params_source = "hub metadata" if facts.parameters else None
            safe = [f for f in files if f.endswith(".safetensors")]
            pickled = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
            if not safe and not (pickled and allow_pickle):
                why = ("only pickle weights; pass --allow-pickle if you trust the source"
                       if pickled else "no weight files listed")
                raise PairError(f"{spec}: {why}")
            checks.append(Check(f"{role}: weights", True, f"hub id; {len(safe)} safetensors "
                                "file(s) listed (downloaded when the job runs)"))
    except PairError as e:
        checks.append(Check(f"{role}: weights", False, str(e)))
        return facts, None, checks
    facts.folder = str(folder)
    checks += _config_checks(facts, folder, trust_remote_code)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception as e:
        why = tokenizer_problem(Path(folder)) or \
            f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        checks.append(Check(f"{role}: tokenizer", False,
                            f"cannot load a tokenizer from {spec} ({why})"))
        return facts, None, checks
    fits = not facts.vocab_size or len(tok) <= facts.vocab_size
    checks.append(Check(f"{role}: tokenizer", fits,
                        f"{len(tok)} tokens" + ("" if fits else
                        f", more than the model's {facts.vocab_size} embedding rows")))
    return facts, tok, checks


def _extra_roles(extra) -> dict[str, str]:
    if not extra:
        return {}
    if isinstance(extra, dict):
        return {str(k): str(v) for k, v in extra.items()}
    return {f"extra-{i}": str(s) for i, s in enumerate(extra, 1)}


def validate_pair(base: str, tuned: str, *, extra: dict[str, str] | list[str] | None = None,
                  prompts: str | None = None, traces: str | None = None,
                  allow_pickle: bool = False, trust_remote_code: bool = False,
                  settings: PrecomputeConfig | None = None,
                  hub_timeout: float = 5.0, model_roots: list[Path] | None = None) -> Report:
    """Check a pair (and extra checkpoints: SFT, series steps) before any compute.

    extra: {role: spec} (e.g. {"sft": ..., "step-30": ...}) or a list of specs; each must
      share the base's vocabulary. Roles named "step-*" or "series*" are scored on reused
      traces (no sampling) in the time estimate.
    prompts: prompt set to validate; default `settings.prompts` when settings are given.
    traces: rollout file to score instead of sampling (core.inputs.rollouts), validated row by row
      and against the base tokenizer; default `settings.traces`. Give one of the two.
    settings: the PrecomputeConfig whose n, max_prompts, sample_from, max_new_tokens,
      batch_size and device the estimate uses (defaults when None).
    model_roots: when given (a server reachable beyond this machine), local model folders
      are accepted only under these folders; any other path fails its "weights" check with
      one message whether or not it exists (core.access.confine_model). Hub ids still pass.
    Returns a Report; its `ok` is False when any fatal check failed.
    """
    s = settings or PrecomputeConfig()
    if s.max_new_tokens <= 0:  # estimate at the cap precompute will use
        s = dataclasses.replace(s, max_new_tokens=_default_cap(tuned, model_roots))
    prompts = prompts if prompts is not None else (s.prompts or None)
    traces = traces if traces is not None else (s.traces or None)
    report = Report()
    toks = {}
    for role, spec in {"base": base, "tuned": tuned, **_extra_roles(extra)}.items():
        facts, tok, checks = _inspect(role, spec, allow_pickle, trust_remote_code, hub_timeout,
                                      model_roots)
        report.models[role] = facts
        report.checks += checks
        if tok is not None:
            toks[role] = tok
    if trust_remote_code:
        report.checks.append(Check("trust_remote_code", False, "on: code shipped with the "
                                   "checkpoints will run when they load", fatal=False))
    for role in toks:
        if role != "base" and "base" in toks:
            diff = vocab_difference(toks["base"], toks[role])
            report.checks.append(Check(f"vocabulary: base vs {role}", diff is None,
                                       "identical token->id maps" if diff is None else
                                       f"the tokenizers differ: {diff}"))
    _pair_warnings(report)
    try:
        lim = text_limits()
    except InputError as e:
        report.checks.append(Check("limits", False, str(e)))
        return report
    ps = rs = None
    if prompts and traces:
        report.checks.append(Check("traces", False, "give a prompt set to sample from or a "
                                   "rollout file to score, not both"))
    elif traces:
        rs = _rollout_check(report, traces, s, toks.get("base"))
    elif prompts:
        try:
            ps = load_prompts(prompts, limit=s.max_prompts or None)
            report.checks.append(Check("prompt set", True, f"{len(ps.rows)} prompts from "
                                       f"{Path(prompts).name}"))
        except PromptSetError as e:
            report.checks.append(Check("prompt set", False, str(e)))
    plen = None
    for name, ok, message, tokens in user_text_checks(ps or rs, toks, s.chat_template, lim):
        report.checks.append(Check(name, ok, message))
        plen = tokens or plen
    longest = None
    if not any(c.name == "prompt tokens" and not c.ok for c in report.checks):  # one line
        longest, checks = length_checks(report.models, ps or rs, toks.get("base"),
                                        s.truncate_to_context)
        report.checks += [Check(*c) for c in checks]
    _estimate_checks(report, s, ps or rs, longest, plen)
    return report


def _default_cap(tuned: str, model_roots) -> int:
    """The tuned checkpoint's length cap; with model roots, read only from inside them."""
    if model_roots is not None:
        try:
            ref = confine_model(tuned, model_roots)
        except PairError:
            return DEFAULT_MAX_NEW_TOKENS
        tuned = str(ref.local or ref.spec)
    return default_max_new_tokens(tuned)[0]


def _rollout_check(report: Report, traces: str, s: PrecomputeConfig, base_tok):
    """The "rollouts" check: every row valid, every response id inside the vocabulary."""
    try:
        rs = load_rollouts(traces, limit=s.max_prompts or None, fields=s.field)
    except PromptSetError as e:
        report.checks.append(Check("rollouts", False, str(e)))
        return None
    vocab = len(base_tok) if base_tok is not None else None
    for r in rs.rows:
        bad = [t for t in r.response_ids or () if vocab is not None and t >= vocab]
        if bad:
            report.checks.append(Check("rollouts", False, f"{r.where}: field 'response_ids' "
                                       f"has id {bad[0]}, outside the tokenizer's {vocab} ids"))
            return None
    prompts = len({r.prompt_id for r in rs.rows})
    report.checks.append(Check("rollouts", True, f"{len(rs.rows)} rollouts of {prompts} "
                               f"prompt(s) from {Path(traces).name}, scored as given (no "
                               "sampling)" + (f"; {rs.mapping.summary()}" if rs.mapping else "")))
    return rs


def _pair_warnings(report: Report) -> None:
    """Non-fatal oddities: the same checkpoint twice, different sizes or architectures."""
    b = report.models.get("base")
    for role, m in report.models.items():
        if role == "base" or b is None:
            continue
        if m.folder and m.folder == b.folder:
            report.checks.append(Check(f"{role}: differs from base", False, "the same "
                                       "checkpoint as the base: every divergence will be 0",
                                       fatal=False))
        elif b.parameters and m.parameters and b.parameters != m.parameters:
            report.checks.append(Check(
                f"{role}: same size as base", False,
                f"{m.parameters:,} parameters vs the base's {b.parameters:,}: is it really "
                "a fine-tune of this base?", fatal=False))
        if b.architecture and m.architecture and b.architecture != m.architecture:
            report.checks.append(Check(f"{role}: same architecture as base", False,
                                       f"{m.architecture} vs {b.architecture}", fatal=False))


def _estimate_checks(report: Report, s: PrecomputeConfig, ps, longest: Longest | None,
                     plen: int | None = None) -> None:
    """Per-run estimates (main pair, SFT, series steps); a memory check and a time line.
    `ps`: the prompt set, or a RolloutSet (one trace per row, nothing sampled) scored at its
    `longest` row's response, every row counted; `plen`: the longest prompt's tokens plus
    template slack, when known."""
    m = report.models
    if not all(k in m and m[k].parameters for k in ("base", "tuned")):
        report.checks.append(Check("estimate", False, "no parameter count for the pair, so no "
                                   "memory or time estimate", fatal=False))
        return
    n_prompts = len(ps.rows) if ps else (s.max_prompts or 100)
    n, sample_from, max_new, given = s.n, s.sample_from, s.max_new_tokens, False
    plen = plen or 64
    if isinstance(ps, RolloutSet):
        n, sample_from, given = 1, "tuned", True
        if longest is not None:  # every row counted (core.inputs.lengths)
            max_new = longest.response
    b = m["base"]
    for role, f in m.items():
        if role == "base" or not f.parameters:
            continue
        reuse = given or role.startswith(("step", "series"))
        report.estimates[role] = estimate(
            params_base=b.parameters, params_tuned=f.parameters,  # this run's own sizes
            layers=max(b.layers, f.layers, 1), kv_heads=max(b.kv_heads, f.kv_heads, 1),
            head_dim=max(b.head_dim, f.head_dim, 1),
            vocab=max(b.vocab_size, f.vocab_size, 1), prompts=n_prompts, prompt_tokens=plen, n=n,
            sample_from=sample_from, max_new_tokens=max_new,
            batch_size=s.batch_size, reuse_traces=reuse, device=s.device)
    if not report.estimates:
        return
    worst = max(report.estimates.values(), key=lambda e: e.total_bytes)
    seconds = sum(e.seconds for e in report.estimates.values())
    report.checks.append(Check(
        "memory", worst.fits, worst.memory_line() if worst.fits else
        f"needs about {fmt_bytes(worst.total_bytes)} but {worst.device} has "
        f"{fmt_bytes(worst.available_bytes)} available: use a machine with more memory (or "
        "a GPU), or smaller models"))
    report.checks.append(Check("time", True, (
        f"about {fmt_seconds(seconds)} for {len(report.estimates)} run(s) on {worst.device} "
        f"(estimate from {worst.throughput_source} {worst.throughput_flops / 1e9:.0f} "
        "GFLOP/s; every trace counted at the " + (
            f"longest response's length, {longest.where})" if given and longest else
            "longest response's length)" if given else "length cap)")), fatal=False))
