"""Loading and validating a checkpoint pair (base + tuned) before any compute.

A model is named by a local folder or a Hugging Face hub id; both go through the same
`from_pretrained` path. Validation refuses, with a message that says what is wrong:
a path that does not exist, a folder that is not a model, pickle-only weights (unless
`allow_pickle`), truncated or corrupt safetensors files, and tokenizers whose
token->id maps differ (the folder's files are read by core.engine.checkpoint).
`trust_remote_code` is never set unless the caller asks.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.engine.checkpoint import (  # noqa: F401 - importers name pair for these
    INDEX_GLOB,
    PICKLE_SUFFIXES,
    check_local_model,
    read_safetensors_header,
    tokenizer_problem,
)
from core.errors import PairError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # fullmatch: no trailing newline
FULL_HASH_LIMIT = 2 * 1024**3  # hash whole files up to this total size, sample above it


@dataclass
class ModelRef:
    """Where a model comes from: a local folder or a hub id."""

    spec: str
    local: Path | None  # resolved folder, None for a hub id

    @property
    def name(self) -> str:
        return self.local.name if self.local else self.spec.replace("/", "--")


def resolve(spec: str) -> ModelRef:
    """A local folder if `spec` names one, a hub id if it looks like `org/name`, else an error."""
    p = Path(spec).expanduser()
    try:
        exists = p.exists()
    except PermissionError:
        raise PairError(f"{spec}: permission denied; give a folder this process can "
                        "read") from None
    if exists:
        if not p.is_dir():
            raise PairError(f"{spec}: is a file; a model is a folder holding config.json "
                            "and weights")
        return ModelRef(spec, p.resolve())
    if HUB_ID.fullmatch(spec) and not spec.startswith((".", "/", "~")):
        return ModelRef(spec, None)
    raise PairError(f"{spec}: no such folder (and not a Hugging Face hub id of the form org/name)")


def fingerprint_files(files: list[Path]) -> dict:
    """sha256 over the weight files (whole when small, 1 MiB strided samples when huge)."""
    total = sum(p.stat().st_size for p in files)
    h = hashlib.sha256()
    method = "sha256" if total <= FULL_HASH_LIMIT else "sha256-sampled-1MiB-x64"
    for p in sorted(files, key=lambda q: q.name):
        size = p.stat().st_size
        h.update(f"{p.name}:{size}\n".encode())
        with open(p, "rb") as f:
            if method == "sha256":
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            else:
                for i in range(64):
                    f.seek(size * i // 64)
                    h.update(f.read(1 << 20))
    return {"method": method, "digest": h.hexdigest(), "bytes": total}


def vocab_fingerprint(tokenizer) -> str:
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def vocab_difference(tok_a, tok_b, show: int = 5) -> str | None:
    """None when both token->id maps are identical, else a short description of how they differ."""
    va, vb = tok_a.get_vocab(), tok_b.get_vocab()
    if va == vb:
        return None
    only_a = sorted(set(va) - set(vb))
    only_b = sorted(set(vb) - set(va))
    moved = sorted(t for t in set(va) & set(vb) if va[t] != vb[t])
    parts = [f"vocabulary sizes {len(va)} vs {len(vb)}"]
    if only_a:
        parts.append(f"{len(only_a)} tokens only in base (e.g. {only_a[:show]!r})")
    if only_b:
        parts.append(f"{len(only_b)} tokens only in tuned (e.g. {only_b[:show]!r})")
    if moved:
        ex = ", ".join(f"{t!r}: {va[t]}->{vb[t]}" for t in moved[:show])
        parts.append(f"{len(moved)} tokens with different ids (e.g. {ex})")
    return "; ".join(parts)


def pick_device(device: str | None = None) -> tuple[torch.device, torch.dtype]:
    """CUDA in bf16 when present, CPU in fp32 otherwise (or the device asked for)."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)


@dataclass
class LoadedModel:
    ref: ModelRef
    model: torch.nn.Module
    tokenizer: object
    fingerprint: dict = field(default_factory=dict)


def load_model(spec: str, *, allow_pickle: bool = False, trust_remote_code: bool = False,
               device: str | None = None, with_model: bool = True,
               place: bool = True) -> LoadedModel:
    """Load a tokenizer and (optionally) a causal LM from a folder or hub id, after checks.
    The weights get the dtype of `device` (bf16 on CUDA); `place=False` leaves them on the
    CPU for the caller to place (two-GPU pairs)."""
    from transformers import AutoTokenizer

    ref = resolve(spec)
    fp: dict = {}
    if ref.local:
        files = check_local_model(ref.local, allow_pickle)
        # the shard index decides which tensor comes from which file: it is part of the weights
        fp = fingerprint_files(files + sorted(ref.local.glob(INDEX_GLOB)))
    src = str(ref.local) if ref.local else ref.spec
    try:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - missing, malformed or hostile tokenizer files
        why = (tokenizer_problem(ref.local) if ref.local else None) or _short(e)
        raise PairError(f"{spec}: cannot load a tokenizer ({why})") from e
    loaded = LoadedModel(ref, None, tok, fp)
    if not with_model:
        return loaded
    return with_weights(loaded, allow_pickle=allow_pickle,
                        trust_remote_code=trust_remote_code, device=device, place=place)


def with_weights(loaded: LoadedModel, *, allow_pickle: bool = False,
                 trust_remote_code: bool = False, device: str | None = None,
                 place: bool = True) -> LoadedModel:
    """`loaded` (checked, fingerprinted, with its tokenizer) with its weights loaded too: the
    checks and the fingerprint are not done again."""
    from transformers import AutoModelForCausalLM

    if loaded.model is not None:
        return loaded
    ref, spec = loaded.ref, loaded.ref.spec
    src = str(ref.local) if ref.local else ref.spec
    dev, dtype = pick_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            src, dtype=dtype, use_safetensors=None if allow_pickle else True,
            trust_remote_code=trust_remote_code)
    except OSError as e:
        raise PairError(f"{spec}: cannot load the model ({_short(e)})") from e
    except Exception as e:  # corrupt tensors, unknown architectures, ...
        raise PairError(f"{spec}: the checkpoint failed to load: {_short(e)}") from e
    (model.to(dev) if place else model).eval()
    fp = loaded.fingerprint or {"method": "hub-revision",
                                "digest": getattr(model.config, "_commit_hash", None)
                                or "unknown"}
    return LoadedModel(ref, model, loaded.tokenizer, fp)


def _short(e: Exception, limit: int = 300) -> str:
    msg = " ".join(str(e).split())
    return msg if len(msg) <= limit else msg[:limit] + "..."


@dataclass
class Pair:
    base: LoadedModel
    tuned: LoadedModel
    options: dict = field(default_factory=dict)  # load_model keyword arguments

    @property
    def tokenizer(self):
        return self.tuned.tokenizer

    def model(self, role: str) -> torch.nn.Module:
        """The resident model of `role` ("base" or "tuned"), or, for a pair loaded without
        weights (sequential scoring), a freshly loaded one the caller releases after use."""
        loaded = self.base if role == "base" else self.tuned
        if loaded.model is not None:
            return loaded.model
        return with_weights(loaded, **self.options).model

    def with_weights(self) -> Pair:
        """This pair with both models resident (checks, tokenizers and fingerprints reused).
        Two GPUs: loaded on the CPU, then one device if both fit, else one model per GPU
        (place_pair; untested here: no GPU on the development machine)."""
        if self.base.model is not None and self.tuned.model is not None:
            return self
        two = pick_device(self.options.get("device"))[0].type == "cuda" \
            and torch.cuda.device_count() > 1
        b, t = (with_weights(m, place=not two, **self.options) for m in (self.base, self.tuned))
        if two:
            place_pair(b.model, t.model)
        return Pair(b, t, self.options)

    def device(self) -> str:
        if self.base.model is not None:
            return str(next(self.base.model.parameters()).device)
        return str(pick_device(self.options.get("device"))[0])


DEFAULT_MAX_NEW_TOKENS = 4096  # a reasoning trace, when the checkpoint says nothing


def default_max_new_tokens(spec: str) -> tuple[int, str]:
    """(cap on new tokens, where it came from) for sampling from checkpoint `spec`: its
    generation config's max_new_tokens, else its max_length (when set above transformers'
    default of 20), else DEFAULT_MAX_NEW_TOKENS. Reads one small file (a hub id needs the
    network or the local HF cache)."""
    from transformers import GenerationConfig

    try:
        gc = GenerationConfig.from_pretrained(spec)
    except Exception:  # noqa: BLE001 - missing or malformed: check_local_model refuses the latter
        return DEFAULT_MAX_NEW_TOKENS, "default (no readable generation_config.json)"
    new, length = getattr(gc, "max_new_tokens", None), getattr(gc, "max_length", None)
    if isinstance(new, int) and not isinstance(new, bool) and new > 0:
        return new, "generation_config.json max_new_tokens"
    if isinstance(length, int) and not isinstance(length, bool) and length > 20:
        return length, "generation_config.json max_length"
    return DEFAULT_MAX_NEW_TOKENS, "default (generation_config.json sets no length)"


def place_pair(base, tuned, headroom: float = 0.8) -> tuple[torch.device, torch.device]:
    """Move a pair onto CUDA: one device when both fit in `headroom` of cuda:0's free memory,
    else cuda:0 and cuda:1 when two GPUs exist (else one device, and let it fail loudly).
    Returns (base device, tuned device). No-op on CPU-only machines. UNTESTED here."""
    if not torch.cuda.is_available():
        cpu = torch.device("cpu")
        return cpu, cpu
    need = sum(p.numel() * p.element_size() for m in (base, tuned) for p in m.parameters())
    free, _ = torch.cuda.mem_get_info(0)
    d0 = torch.device("cuda:0")
    d1 = torch.device("cuda:1") if torch.cuda.device_count() > 1 and need > headroom * free \
        else d0
    base.to(d0)
    tuned.to(d1)
    return d0, d1


def load_pair(base: str, tuned: str, *, allow_pickle: bool = False,
              trust_remote_code: bool = False, device: str | None = None,
              load_weights: bool = True) -> Pair:
    """Tokenizers first (cheap): refuse mismatched vocabularies before loading any weights.
    With `load_weights=False` the pair holds tokenizers and fingerprints only, and
    `Pair.model(role)` loads one model at a time (for pairs that do not fit together)."""
    kw = dict(allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, device=device)
    b = load_model(base, with_model=False, **kw)
    t = load_model(tuned, with_model=False, **kw)
    diff = vocab_difference(b.tokenizer, t.tokenizer)
    if diff:
        raise PairError(f"base {base!r} and tuned {tuned!r} do not share a vocabulary: {diff}")
    pair = Pair(b, t, kw)
    return pair.with_weights() if load_weights else pair
