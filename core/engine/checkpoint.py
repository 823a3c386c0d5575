"""A local checkpoint folder's files, read defensively before any weights load.

`check_local_model(folder, allow_pickle)` is the one gate every path goes through (upload,
validation, precompute): it returns the weight files to load and fingerprint, or raises
PairError with one line naming the file and what to do. It refuses:
  - a folder or file this process may not read (PermissionError, e.g. /proc/1/root);
  - JSON files (config.json, generation_config.json, a shard index) that are not JSON, are
    over MAX_JSON_BYTES, nest too deeply to parse (RecursionError) or have the wrong shape;
  - config.json size fields that are not positive whole numbers ("num_hidden_layers": "12"),
    and a config whose layers x width need more parameters than the weights hold (a config of
    100,000 layers over the weights of one: transformers would allocate them all, random);
  - safetensors headers of the wrong shape ([] or {"a": 5}, tensors without dtype, shape or
    [begin, end] data_offsets, sizes that do not match dtype x shape) or truncated files;
  - a shard index (`*.safetensors.index.json`) whose weight_map names a file outside the
    folder (`../x`, an absolute path, a link that leads out) or a file that is not there;
    every shard it names is returned, so the manifest fingerprints all of them.
It does not load a tokenizer or a model (core.engine.pair does).
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path, PurePosixPath

from core.errors import PairError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
INDEX_GLOB = "*.safetensors.index.json"
MAX_JSON_BYTES = 64 * 1024**2       # a tokenizer.json of a 250k vocabulary is ~20 MB
MAX_HEADER_BYTES = 100 * 1024**2    # safetensors' own cap on a header
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
# config.json size fields: (aliases used by different architectures, what they mean)
CONFIG_SIZES = {"layers": ("num_hidden_layers", "n_layer", "num_layers"),
                "width": ("hidden_size", "n_embd", "d_model"),
                "heads": ("num_attention_heads", "n_head"),
                "kv_heads": ("num_key_value_heads",), "head_dim": ("head_dim",),
                "vocab": ("vocab_size",)}
TOKENIZER_JSON = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json",
                  "added_tokens.json", "config.json", "generation_config.json")


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def parse_json(raw: bytes, name: str, kind: type | None = dict):
    """`raw` parsed as JSON, of type `kind`; PairError naming `name` otherwise."""
    try:
        obj = json.loads(raw)
    except RecursionError:
        raise PairError(f"{name}: JSON nested too deeply to read; not a real checkpoint file, "
                        "replace it") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise PairError(f"{name}: not valid JSON ({_short(e)}); replace the file") from None
    if kind is not None and not isinstance(obj, kind):
        raise PairError(f"{name}: holds a JSON {type(obj).__name__} where an object ({{...}}) "
                        "belongs; replace the file")
    return obj


def read_json(path: Path, kind: type | None = dict):
    """A small JSON file of a checkpoint, parsed (see parse_json); unreadable, oversized or
    malformed files raise PairError naming the file."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise PairError(f"{path.name}: {size:,} bytes, more than a checkpoint's JSON file "
                            f"may be ({MAX_JSON_BYTES:,}); replace it")
        raw = path.read_bytes()
    except PermissionError:
        raise PairError(f"{path}: permission denied; make it readable by this process") from None
    except OSError as e:
        raise PairError(f"{path.name}: cannot be read ({e.strerror or e})") from None
    return parse_json(raw, path.name, kind)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file ({tensor name: {dtype, shape, data_offsets}},
    plus "__metadata__"), read without touching tensor data and checked for shape; raises
    PairError naming the file when it is too short, the header does not fit, is not JSON or
    not a safetensors header."""
    size = path.stat().st_size
    if size < 8:
        raise PairError(f"{path.name} is {size} bytes, too short to be a safetensors file")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8 or n > MAX_HEADER_BYTES:
            raise PairError(f"{path.name}: header length {n} does not fit in a {size}-byte "
                            "file (truncated?)")
        header = parse_json(f.read(n), f"{path.name} (safetensors header)")
    for k, v in header.items():
        if k == "__metadata__":
            if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
                raise PairError(f"{path.name}: '__metadata__' must map names to strings; the "
                                "file is corrupt")
            continue
        _check_tensor(path.name, k, v)
    return header


def _check_tensor(name: str, key: str, v) -> None:
    where = f"{name}: tensor {_short(repr(key), 80)}"
    if not isinstance(v, dict):
        raise PairError(f"{where} is described by a JSON {type(v).__name__}, not "
                        "{dtype, shape, data_offsets}; the file is corrupt")
    dtype, shape, offs = v.get("dtype"), v.get("shape"), v.get("data_offsets")
    if not isinstance(dtype, str):
        raise PairError(f"{where} has no dtype string; the file is corrupt")
    if not isinstance(shape, list) or not all(_whole(d) and d >= 0 for d in shape):
        raise PairError(f"{where} has no valid shape (a list of whole numbers); the file is "
                        "corrupt")
    if not (isinstance(offs, list) and len(offs) == 2 and all(_whole(o) and o >= 0 for o in offs)
            and offs[0] <= offs[1]):
        raise PairError(f"{where} has no valid data_offsets (a [begin, end] pair of byte "
                        "offsets); the file is corrupt")
    if dtype in DTYPE_BYTES:
        count = 1
        for d in shape:
            count *= d
        if offs[1] - offs[0] != count * DTYPE_BYTES[dtype]:
            raise PairError(f"{where}: data_offsets span {offs[1] - offs[0]} bytes but "
                            f"{dtype} x {shape} needs {count * DTYPE_BYTES[dtype]}; the file "
                            "is corrupt")


def safetensors_params(path: Path) -> tuple[dict, int]:
    """(header, parameter count) of a .safetensors file after checking that its header and
    size agree; PairError naming the file otherwise."""
    header = read_safetensors_header(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    params, end = 0, 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        params, end = params + math.prod(v["shape"]), max(end, v["data_offsets"][1])
    size = path.stat().st_size
    if 8 + n + end != size:
        raise PairError(f"{path.name}: header describes {8 + n + end} bytes but the file has "
                        f"{size} (truncated or corrupt)")
    return header, params


def _inside(folder: Path, path: Path, who: str | None = None) -> None:
    """PairError unless `path`, links followed, lies inside `folder` (or, for a Hugging Face
    cache snapshot, in that repository's blob store, where its links point)."""
    real, home = path.resolve(), folder.resolve()
    allowed = [home]
    if folder.parent.name == "snapshots":
        allowed.append(folder.parent.parent.resolve() / "blobs")
    if not any(real == a or a in real.parents for a in allowed):
        what = f"{who} names {path.name}, a link" if who else f"{path.name} is a link"
        raise PairError(f"{what} to {_short(str(real), 80)}, outside the model folder; copy the "
                        "file into the folder")


def index_shards(folder: Path) -> tuple[list[Path], list[Path]]:
    """(shard index files, the shard files their weight_maps name), after checking that each
    shard is a file inside `folder`; PairError naming the index otherwise."""
    indexes = sorted(folder.glob(INDEX_GLOB))
    shards: dict[str, Path] = {}
    for idx in indexes:
        _inside(folder, idx)
        wm = read_json(idx).get("weight_map")
        if not isinstance(wm, dict) or not all(isinstance(v, str) for v in wm.values()):
            raise PairError(f"{idx.name}: 'weight_map' must map tensor names to shard file "
                            "names; replace the index")
        for rel in sorted(set(wm.values())):
            parts = PurePosixPath(rel.replace("\\", "/")).parts
            if not parts or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel) \
                    or ".." in parts:
                raise PairError(f"{idx.name} names shard {_short(repr(rel), 80)}, outside the "
                                "model folder; shards must be files inside it")
            path = folder.joinpath(*parts)
            if not path.is_file():
                raise PairError(f"{idx.name} names shard {_short(repr(rel), 80)}, which is not "
                                "a file in the model folder")
            _inside(folder, path, idx.name)
            shards[str(path)] = path
    return indexes, list(shards.values())


def config_sizes(cfg: dict, name: str = "config.json") -> dict[str, int]:
    """The size fields of a config (its text_config for multimodal ones), by CONFIG_SIZES
    key; each present one must be a positive whole number, else PairError naming it."""
    text = cfg.get("text_config")
    if text is None:
        text = cfg
    elif not isinstance(text, dict):
        raise PairError(f"{name}: 'text_config' must be an object; fix config.json")
    out = {}
    for what, keys in CONFIG_SIZES.items():
        for key in keys:
            v = text.get(key)
            if v is None:
                continue
            if not _whole(v) or v < 1:
                raise PairError(f"{name}: {key!r} is {_short(json.dumps(v), 60)}, not a "
                                "positive whole number; fix config.json")
            out.setdefault(what, v)
    return out


def config_vs_weights(sizes: dict[str, int], params: int | None, source: str) -> None:
    """PairError when the config's layers x width x width (a floor on any transformer's
    parameters) exceeds twice what the weights hold: transformers would build every layer
    the config names, and the missing ones would be random."""
    layers, width = sizes.get("layers"), sizes.get("width")
    if not (layers and width and params):
        return
    least = layers * width * width
    if least > 2 * params + 1_000_000:
        raise PairError(f"config.json: {layers:,} layers of width {width:,} need at least "
                        f"{least:,} parameters but {source} hold {params:,}; fix config.json "
                        "or give the weights it describes")


def check_local_model(folder: Path, allow_pickle: bool) -> list[Path]:
    """Weight files of a local model folder after validation (see the module docstring):
    the top-level .safetensors files and every shard an index names, or, with
    `allow_pickle`, pickle weights when there is no safetensors file. Raises PairError."""
    try:
        return _check_local_model(folder, allow_pickle)
    except PermissionError as e:
        what = Path(e.filename).name if e.filename else folder.name
        raise PairError(f"{folder}: permission denied reading {what}; make the folder readable "
                        "by this process or give another") from None


def _check_local_model(folder: Path, allow_pickle: bool) -> list[Path]:
    if not (folder / "config.json").is_file():
        raise PairError(f"{folder}: not a model folder (no config.json)")
    sizes = config_sizes(read_json(folder / "config.json"))
    if (folder / "generation_config.json").is_file():
        read_json(folder / "generation_config.json")
    indexes, shards = index_shards(folder)
    safe = sorted({*folder.glob("*.safetensors"), *shards})
    pickled = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not safe:
        if not pickled:
            raise PairError(f"{folder}: no weight files (*.safetensors) found")
        if not allow_pickle:
            raise PairError(
                f"{folder}: only pickle weights ({', '.join(p.name for p in pickled)}); loading "
                "them can run arbitrary code. Convert to safetensors, or pass --allow-pickle "
                "if you trust the source.")
        return pickled
    params = 0
    for p in safe:
        _inside(folder, p)
        try:
            params += safetensors_params(p)[1]
        except PairError as e:
            raise PairError(f"{folder}: corrupt checkpoint: {e}") from None
    config_vs_weights(sizes, params, "its safetensors files")
    return safe


def tokenizer_problem(folder: Path) -> str | None:
    """Why a tokenizer failed to load, when one of its JSON files is to blame (unreadable,
    not JSON, nested too deeply): that file's one-line message, else None."""
    for name in TOKENIZER_JSON:
        p = folder / name
        try:
            if p.is_file():
                read_json(p, kind=None)
        except (PairError, OSError) as e:
            return str(e)
    return None


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx")


def context_of(cfg: dict) -> int | None:
    """The positions a model reads, from its config.json's dict (None when it says none):
    past them its scores mean nothing (core.inputs.lengths, core.precompute.shard)."""
    for key in CONTEXT_KEYS:
        v = cfg.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None
