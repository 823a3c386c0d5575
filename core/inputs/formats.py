"""Rollout files as RL frameworks write them: which format a file is (from its fields), and
each record turned into the canonical record core.inputs.rollouts checks (prompt or
messages, response or response_ids, id, answer, correct, verifier), with what the mapping
did recorded for the run manifest.

Formats (the fields each writes, what is lossy about it: README "Bring your own rollouts"):
  trl      TRL GRPOTrainer `completions/completions_{step:05d}.parquet`: step, prompt,
           completion, one column per reward function (named after it), advantage;
  verl     verl `{rollout_data_dir}/{step}.jsonl`: input, output, gts, score, step + reward
           extra keys (acc); text decoded with skip_special_tokens=True;
  openrlhf OpenRLHF `eval_samples_step_{N}.jsonl`: prompt, label, reward, response_length,
           truncated, score, datasource (upstream keeps no response text: refused unless a
           response/output/completion column was added);
  ids      prime-rl / open-instruct: prompt_tokens, response_tokens (ids), reward, advantage;
  shiftlens the canonical fields themselves (read unchanged);
  mapped   any other JSONL/Parquet through `--field TARGET=SOURCE` (correct=SOURCE>0 style).
Rewards become verdicts only where a column is binary (every value true/false or 0/1): the
column is recorded; a non-binary reward gives no verdict and says so. slime's torch.save
pickles are refused by their bytes, never unpickled.

It does not validate the canonical fields (core.inputs.rollouts does), tokenise anything
(the scoring shard does, asking core.inputs.rendered whether a prompt is templated already
and counting re-tokenisation mismatches), or read files beyond
core.inputs.prompts.read_records.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import PromptSetError, clip
from core.inputs.prompts import read_records

TARGETS = ("prompt", "messages", "prompt_ids", "response", "response_ids", "id", "answer",
           "correct", "verifier", "sampled_from")
OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt,
       "<": operator.lt}
RESPONSE_KEYS = ("response", "output", "completion")  # where an OpenRLHF fork keeps text


@dataclass(frozen=True)
class Format:
    key: str
    name: str
    lossy: str
    template: str = "auto"  # auto: text prompts templated unless rendered already; never


FORMATS = {f.key: f for f in (
    Format("shiftlens", "ShiftLens rollouts (prompt/messages, response/response_ids)",
           "text responses are re-tokenised (mismatches counted); id responses are exact"),
    Format("trl", "TRL completions Parquet (GRPOTrainer log_completions)",
           "completion decoded with skip_special_tokens=True: EOS and any special token in "
           "the response are gone; it is re-tokenised (mismatches counted); a prompt logged "
           "with its chat template rendered is scored as given, not templated twice"),
    Format("verl", "verl generation/validation dump ({step}.jsonl)",
           "input and output decoded with skip_special_tokens=True: BOS, EOS and chat-"
           "template markers that are special tokens are gone; the input is scored as given "
           "(already templated: not templated again) and the output re-tokenised "
           "(mismatches counted)", template="never"),
    Format("openrlhf", "OpenRLHF eval samples (eval_samples_step_{N}.jsonl)",
           "the response text is re-tokenised and its length compared with response_length "
           "(mismatches counted); special tokens dropped in decoding are gone"),
    Format("ids", "token-id rollouts (prime-rl / open-instruct: prompt_tokens, "
           "response_tokens)", "nothing: prompt and response are scored as the sampled ids"),
    Format("mapped", "rollouts read through --field mappings",
           "as the mapped fields are: text responses are re-tokenised (mismatches counted)"),
)}


@dataclass
class Mapping:
    """How a file was read: its format, canonical field <- source, the verdict's column and
    rule, notes, and per record the extras the scoring shard needs (prompt_ids,
    response_length, template): a list while converting, then keyed by the record's
    `where` (RolloutRow.where), so rows dropped or cut later never shift them."""
    format: Format
    fields: dict[str, str]
    verdict: str | None = None
    notes: list[str] = field(default_factory=list)
    extras: list | dict = field(default_factory=list)

    def record(self) -> dict:
        """JSON for the run manifest's `rollouts`."""
        return {"format": self.format.key, "format_name": self.format.name,
                "fields": self.fields, "verdict": self.verdict, "lossy": self.format.lossy,
                "notes": self.notes}

    def summary(self) -> str:
        """One line: which format was read and where the verdicts come from."""
        verdict = f"verdicts from {self.verdict}" if self.verdict else "no verdict column"
        return f"read as {self.format.name}; {verdict}"


def parse_fields(spec: str | list | tuple) -> list[tuple[str, str, str | None, float | None]]:
    """`--field` mappings ("TARGET=SOURCE" or "correct=SOURCE>0.5"; several separated by new
    lines or given as a list) as (target, source, op, threshold); PromptSetError for a bad
    one, before any file is read."""
    items = spec.splitlines() if isinstance(spec, str) else list(spec)
    out, seen = [], set()
    for item in (s.strip() for s in items):
        if not item:
            continue
        target, eq, source = item.partition("=")
        target, source = target.strip(), source.strip()
        if not eq or not source or target not in TARGETS:
            raise PromptSetError(f"--field {clip(item)}: give TARGET=SOURCE with TARGET one of "
                                 f"{', '.join(TARGETS)}")
        if target in seen:
            raise PromptSetError(f"--field {clip(item)}: '{target}' is mapped twice")
        seen.add(target)
        op = threshold = None
        m = re.fullmatch(r"(.+?)\s*(>=|<=|==|>|<)\s*(-?[0-9.]+(?:e-?[0-9]+)?)", source)
        if m:
            if target != "correct":
                raise PromptSetError(f"--field {clip(item)}: only 'correct' takes a comparison")
            source, op, threshold = m.group(1), m.group(2), float(m.group(3))
        out.append((target, source, op, threshold))
    return out


def refuse_pickle(path: str | Path) -> None:
    """PromptSetError for a pickle (slime's torch.save rollouts, any .pt/.pkl): recognised by
    its first bytes or suffix and never unpickled, since unpickling runs code."""
    p = Path(path).expanduser()
    if not p.is_file():
        return
    with open(p, "rb") as f:
        head = f.read(64)
    zipped_pickle = head.startswith(b"PK\x03\x04") and b".pkl" in _zip_names(p)
    if (p.suffix.lower() in (".pt", ".pth", ".pkl", ".pickle") or head[:1] == b"\x80"
            or zipped_pickle):
        raise PromptSetError(
            f"{p.name}: a pickle (torch.save, as slime writes rollouts), refused unread: "
            "unpickling runs code from the file; export the rollouts as JSONL or Parquet")


def _zip_names(p: Path) -> bytes:
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            return " ".join(z.namelist()[:50]).encode()
    except (zipfile.BadZipFile, OSError):
        return b""


def read_rollout_records(path: str | Path, fields=""):
    """(path, sha256, [(where, canonical record)], [errors], Mapping) of a rollout file in any
    known format; the per-line errors of read_records are kept."""
    specs = parse_fields(fields)
    refuse_pickle(path)
    p, fingerprint, located, errs = read_records(path, "rollout", check=_not_empty)
    recs = [r for _, r in located]
    fmt = "mapped" if specs else detect(recs)
    if fmt is None:
        keys = sorted({k for r in recs[:50] if isinstance(r, dict) for k in r})[:12]
        raise PromptSetError(
            f"{p.name}: not a rollout format ShiftLens knows (fields: "
            f"{', '.join(clip(k, 30)[1:-1] for k in keys) or 'none'}); map its fields, e.g. "
            "--field prompt=input --field response=output --field correct=score>0")
    raw = [rec if isinstance(rec, dict) else {} for rec in recs]
    present = {k for r in raw for k in r}
    for target, source, _, _ in specs:
        if raw and source not in present:
            raise PromptSetError(f"--field {target}={clip(source)[1:-1]}: {p.name} has no field "
                                 f"{clip(source)}")
    mapping = Mapping(FORMATS[fmt], {})
    try:
        located = [(where, CONVERT[fmt](rec, mapping, specs) if isinstance(rec, dict)
                    else _skip(rec, mapping)) for where, rec in located]
    except PromptSetError as e:
        raise PromptSetError(f"{p.name}: {e}") from None
    _group_ids(located, mapping)
    mapping.extras = {where: e for (where, _), e in zip(located, mapping.extras)}
    step = re.fullmatch(r"(?:completions_)?(\d+)\.(?:parquet|jsonl)", p.name)
    if fmt in ("trl", "verl") and step:
        k = int(step.group(1))
        mapping.notes.append(f"step {k}: sampled by the policy before update {k}, "
                             + ("the base model" if k <= 1 else f"checkpoint-{k - 1}")
                             + " (validation dumps: after it)" * (fmt == "verl"))
    if fmt != "shiftlens":
        _verdicts(located, raw, mapping, specs)
    return p, fingerprint, located, errs, mapping


def _not_empty(rec, where: str, index: int):
    """read_records' check while the file streams: an empty object can be no format's record,
    so it counts as a problem at once (a file of `{}` lines stops after the first problems
    instead of being held whole for format detection)."""
    if isinstance(rec, dict) and not rec:
        return None, [f"{where}: an empty record (no fields)"]
    return rec, []


def _skip(rec, mapping: Mapping):
    """A record that is not an object: kept for the canonical check to name."""
    mapping.extras.append({})
    return rec


def detect(recs: list) -> str | None:
    """The format of a file's records, from the fields its first records carry."""
    keys: set = set()
    for r in recs[:20]:
        if isinstance(r, dict):
            keys |= set(r)
    if not keys:
        return "shiftlens"  # nothing to tell: the canonical checks name the problems
    if {"prompt_tokens", "response_tokens"} <= keys:
        return "ids"
    if {"input", "output"} <= keys and ("score" in keys or "gts" in keys):
        return "verl"
    if {"prompt", "completion"} <= keys and not keys & {"response", "response_ids"}:
        return "trl"
    if {"prompt", "label", "response_length"} <= keys:
        return "openrlhf"
    if keys & {"prompt", "messages", "response", "response_ids"}:
        return "shiftlens"
    return None


def _chat(value):
    """A chat list as [{role, content}] when `value` is one, else None."""
    if isinstance(value, list) and value and all(
            isinstance(m, dict) and "content" in m for m in value):
        return value
    return None


def _put_prompt(out: dict, value, mapping: Mapping, source: str) -> None:
    if _chat(value) is not None:
        out["messages"] = value
        mapping.fields.setdefault("messages", f"{source} (chat list)")
    elif isinstance(value, list) and value and all(isinstance(t, int) for t in value):
        out["prompt"] = f"[{len(value)} prompt token ids]"  # replaced by their decoding
        mapping.extras[-1]["prompt_ids"] = value
        mapping.fields.setdefault("prompt_ids", source)
    else:
        out["prompt"] = value
        mapping.fields.setdefault("prompt", source)


def _put_response(out: dict, value, mapping: Mapping, source: str) -> None:
    if (chat := _chat(value)) is not None:
        out["response"] = "".join(str(m.get("content", "")) for m in chat
                                  if m.get("role", "assistant") == "assistant") or None
        mapping.fields.setdefault("response", f"{source} (assistant turns' content)")
    elif isinstance(value, list):
        out["response_ids"] = value
        mapping.fields.setdefault("response_ids", source)
    else:
        out["response"] = value
        mapping.fields.setdefault("response", source)


def _answer(out: dict, rec: dict, key: str, mapping: Mapping) -> None:
    gold = rec.get(key)
    if isinstance(gold, (str, int, float)) and not isinstance(gold, bool) and str(gold).strip():
        out["answer"] = gold
        mapping.fields.setdefault("answer", key)
    elif gold is not None:
        note = f"'{key}' that is not text or a number (a list or object) is not used as the gold"
        if note not in mapping.notes:
            mapping.notes.append(note)


def _shiftlens(rec, mapping, specs):
    mapping.extras.append({})
    return rec


def _trl(rec, mapping, specs):
    mapping.extras.append({"step": rec.get("step")})
    out: dict = {}
    _put_prompt(out, rec.get("prompt"), mapping, "prompt")
    _put_response(out, rec.get("completion"), mapping, "completion")
    return out


def _verl(rec, mapping, specs):
    mapping.extras.append({"step": rec.get("step"), "template": False})
    out: dict = {"prompt": rec.get("input")}
    mapping.fields.setdefault("prompt", "input (rendered already)")
    _put_response(out, rec.get("output"), mapping, "output")
    _answer(out, rec, "gts", mapping)
    return out


def _openrlhf(rec, mapping, specs):
    mapping.extras.append({"response_length": rec.get("response_length")})
    key = next((k for k in RESPONSE_KEYS if k in rec), None)
    if key is None:
        raise PromptSetError(
            "OpenRLHF eval samples (eval_samples_step_N.jsonl) keep no response text, only "
            "its length (prompt, label, reward, response_length, truncated, score, "
            "datasource): nothing to score; add the response as a 'response' field")
    out: dict = {}
    _put_prompt(out, rec.get("prompt"), mapping, "prompt")
    _put_response(out, rec.get(key), mapping, key)
    _answer(out, rec, "label", mapping)
    return out


def _ids(rec, mapping, specs):
    mapping.extras.append({"step": rec.get("step")})
    out: dict = {}
    _put_prompt(out, rec.get("prompt_tokens"), mapping, "prompt_tokens")
    out["response_ids"] = rec.get("response_tokens")
    mapping.fields.setdefault("response_ids", "response_tokens")
    return out


def _mapped(rec, mapping, specs):
    mapping.extras.append({})
    out = {k: v for k, v in rec.items() if k in TARGETS and k != "prompt_ids"}  # as named
    for target, source, _op, _ in specs:
        value = rec.get(source)
        if target == "correct":
            continue  # _verdicts
        if target in ("prompt", "messages", "prompt_ids"):
            for t in ("prompt", "messages"):
                out.pop(t, None)
            _put_prompt(out, value, mapping, source)
        elif target in ("response", "response_ids"):
            for t in ("response", "response_ids"):
                out.pop(t, None)
            _put_response(out, value, mapping, source)
        else:
            out[target] = value
            mapping.fields[target] = source
    return out


CONVERT = {"shiftlens": _shiftlens, "trl": _trl, "verl": _verl, "openrlhf": _openrlhf,
           "ids": _ids, "mapped": _mapped}
STANDARD = {"step", "prompt", "completion", "advantage", "images", "image", "input", "output",
            "gts", "prompt_tokens", "response_tokens", "label", "response_length",
            "total_length", "truncated", "datasource", "eval_index", "response", "uid"}
CANDIDATES = {"verl": ("acc", "score"), "openrlhf": ("score", "reward"), "ids": ("reward",)}


def _group_ids(located: list, mapping: Mapping) -> None:
    """Framework rows carry no prompt id: rows with the same prompt share one (p0, p1, ...
    in order of first appearance), so samples of a prompt group as they were drawn."""
    if mapping.format.key == "shiftlens":
        return
    ids: dict[str, str] = {}
    for (_, rec), extra in zip(located, mapping.extras):
        if isinstance(rec, dict) and "id" not in rec and "prompt_id" not in rec:
            key = json.dumps([extra.get("prompt_ids"), rec.get("prompt"), rec.get("messages")],
                             sort_keys=True, default=str)
            rec["prompt_id"] = ids.setdefault(key, f"p{len(ids)}")
    mapping.fields.setdefault("id", "rows with the same prompt share one (p0, p1, ...)")


def _binary(values: list) -> bool:
    return bool(values) and all(
        v in (0, 1) and (isinstance(v, bool) or isinstance(v, (int, float))) for v in values)


def _verdicts(located: list, raw: list[dict], mapping: Mapping, specs) -> None:
    """`correct` from the format's binary reward column (or the --field rule), recorded."""
    rule = next(((s, op, t) for tgt, s, op, t in specs if tgt == "correct"), None)
    if rule is not None:
        source, op, threshold = rule
        values = [r.get(source) for r in raw]
        if op is None and not _binary([v for v in values if _number(v)]):
            raise PromptSetError(f"--field correct={clip(source)[1:-1]}: its values are not "
                                 "true/false or 0/1; give a rule such as "
                                 f"correct={clip(source)[1:-1]}>0")
        judge = ((lambda v: bool(v)) if op is None
                 else (lambda v: bool(OPS[op](float(v), threshold))))
        mapping.verdict = f"{source}{op or ''}{'' if threshold is None else f'{threshold:g}'}"
    elif mapping.format.key == "mapped":
        return  # no rule given: no guessing
    else:
        keys = [k for k in (raw[0] if raw else {}) if k not in STANDARD]
        cands = CANDIDATES.get(mapping.format.key) or sorted(  # TRL: its reward columns
            keys, key=lambda k: (not re.search("acc|correct", k, re.I), keys.index(k)))
        nonbinary = []
        source = None
        for c in cands:
            values = [v for r in raw if _number(v := r.get(c))]
            if not values or any(not isinstance(r.get(c), (int, float, type(None)))
                                 for r in raw):
                continue  # absent, or not a column of numbers
            if _binary(values):
                source = c
                break
            nonbinary.append(f"{c} ({min(values):g}..{max(values):g})")
        if source is None:
            if nonbinary:
                mapping.notes.append(
                    f"no verdict from rewards: {', '.join(nonbinary)} not binary; map one "
                    "with --field correct=COLUMN>THRESHOLD")
            return
        judge = bool
        mapping.verdict = f"{source} (binary reward: 1 = correct)"
    for (_, rec), r in zip(located, raw):
        v = r.get(rule[0] if rule else source)
        if isinstance(rec, dict) and _number(v):
            rec["correct"] = judge(v)


def _number(v) -> bool:
    """A value a verdict can come from: a number or bool, not NaN (TRL writes NaN for a reward
    function that returned None)."""
    return isinstance(v, (int, float)) and v == v
