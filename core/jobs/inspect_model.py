"""One checkpoint inspected without loading its weights, for core.jobs.validate: where it is
(local folder, or a hub id's small files: config and tokenizer, within a short timeout, not
when HF_HUB_OFFLINE is set unless in the local HF cache), whether its weights are
safetensors (pickle only with allow_pickle) and whole, whether config.json names a causal
LM transformers knows (shipped code needs trust_remote_code), its parameter count and
stored dtype (safetensors headers or hub metadata), its sizes for the estimate, and whether
its tokenizer loads. Every problem is a failed `Check`, never an exception."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from core.access import confine_model
from core.engine.checkpoint import (
    config_sizes,
    config_vs_weights,
    context_of,
    read_json,
    tokenizer_problem,
)
from core.engine.pair import (
    PICKLE_SUFFIXES,
    PairError,
    check_local_model,
    read_safetensors_header,
    resolve,
)

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


def inspect_checkpoint(role: str, spec: str, allow_pickle: bool, trust_remote_code: bool,
                       timeout: float, model_roots=None
                       ) -> tuple[ModelFacts, object | None, list[Check]]:
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
