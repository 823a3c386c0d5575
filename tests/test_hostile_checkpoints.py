"""Hostile and broken checkpoint folders: each refused with one PairError line naming the file,
by validation (a failed check, the report as add_pair sees it) and by precompute (before any
weights load), leaving cache/ byte-for-byte untouched and no staging or temporary files.

One case per attack class (core.engine.checkpoint): safetensors headers that are valid JSON
of the wrong shape or nested too deeply, config/tokenizer/generation JSON nested too deeply
or of the wrong shape, strings where numbers belong, unreadable paths, shard indexes and
links that reach outside the folder, and a tuned/SFT/series config of 100,000 layers.
Every folder is a copy of the session's tiny pair with one file made hostile.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from core.config import PrecomputeConfig
from core.engine.pair import PairError, check_local_model, load_model
from core.errors import UploadError
from core.jobs.upload import unpack_model
from core.jobs.validate import validate_pair
from core.precompute.driver import precompute
from tests.hostile_fs import snapshot

pytestmark = pytest.mark.unit

DEEP = b"[" * 100_000 + b"]" * 100_000


def raw_safetensors(header: bytes, data: bytes = b"\0" * 8) -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def set_json(folder: Path, name: str, edit) -> None:
    p = folder / name
    p.write_text(json.dumps(edit(json.loads(p.read_text()))))


def deep(name: str):
    return lambda m, out: (m / name).write_bytes(b'{"a": ' + DEEP + b"}")


def st(header: bytes):
    return lambda m, out: (m / "model.safetensors").write_bytes(raw_safetensors(header))


def index_to(target: str, make_outside: bool = True):
    """A sharded-looking folder: the real weights as a decoy shard beside an index that names
    `target` (outside the folder) for one tensor."""
    def make(m: Path, out: Path) -> None:
        if make_outside:
            (out / "x").mkdir(exist_ok=True)
            shutil.copy(m / "model.safetensors", out / "x" / "model.safetensors")
        (m / "model.safetensors").rename(m / "model-00001-of-00002.safetensors")
        names = list(json.loads(raw_header(m / "model-00001-of-00002.safetensors")))
        wm = {n: "model-00001-of-00002.safetensors" for n in names if n != "__metadata__"}
        wm[names[-1]] = target.format(out=out)
        (m / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    return make


def raw_header(p: Path) -> bytes:
    data = p.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return data[8:8 + n]


def weights_link_out(m: Path, out: Path) -> None:
    (m / "model.safetensors").rename(out / "elsewhere.safetensors")
    (m / "model.safetensors").symlink_to(out / "elsewhere.safetensors")


def shard_link_out(m: Path, out: Path) -> None:
    """An index naming a shard inside the folder that is a link to a file outside it."""
    index_to("model-00002.safetensors", make_outside=False)(m, out)
    shutil.copy(m / "model-00001-of-00002.safetensors", out / "elsewhere.safetensors")
    (m / "model-00002.safetensors").symlink_to(out / "elsewhere.safetensors")


def layers(n):
    return lambda m, out: set_json(m, "config.json", lambda c: {**c, "num_hidden_layers": n})


# case: (how the tuned copy is made hostile, regex the refusal must match)
CASES = {
    "st-header-list": (st(b"[]"), r"model\.safetensors \(safetensors header\): holds a JSON "
                                  r"list where an object"),
    "st-header-scalar-tensor": (st(b'{"a": 5}'), r"model\.safetensors: tensor 'a' is described "
                                                 r"by a JSON int"),
    "st-header-no-offsets": (st(b'{"w": {"dtype": "F32", "shape": [2]}}'),
                             r"model\.safetensors: tensor 'w' has no valid data_offsets"),
    "st-header-wrong-types": (st(b'{"w": {"dtype": "F32", "shape": "2", '
                                 b'"data_offsets": [0, 8]}}'),
                              r"model\.safetensors: tensor 'w' has no valid shape"),
    "st-header-deep": (st(DEEP), r"model\.safetensors \(safetensors header\): JSON nested too "
                                 r"deeply"),
    "config-deep": (deep("config.json"), r"config\.json: JSON nested too deeply"),
    "config-list": (lambda m, out: (m / "config.json").write_text("[]"),
                    r"config\.json: holds a JSON list where an object"),
    "config-string-number": (layers("12"), r"config\.json: 'num_hidden_layers' is \"12\", not a "
                                           r"positive whole number"),
    "tokenizer-config-deep": (deep("tokenizer_config.json"),
                              r"tokenizer_config\.json: JSON nested too deeply"),
    "tokenizer-json-deep": (deep("tokenizer.json"), r"tokenizer\.json: JSON nested too deeply"),
    "generation-config-deep": (deep("generation_config.json"),
                               r"generation_config\.json: JSON nested too deeply"),
    "index-dotdot": (index_to("../x/model.safetensors"),
                     r"model\.safetensors\.index\.json names shard '\.\./x/model\.safetensors', "
                     r"outside the model folder"),
    "index-absolute": (index_to("{out}/x/model.safetensors"),
                       r"model\.safetensors\.index\.json names shard '/.*, outside the model "
                       r"folder"),
    "index-not-a-map": (lambda m, out: (m / "model.safetensors.index.json").write_text(
                            '{"weight_map": ["model.safetensors"]}'),
                        r"model\.safetensors\.index\.json: 'weight_map' must map"),
    "index-shard-link-out": (shard_link_out,
                             r"model\.safetensors\.index\.json names model-00002\.safetensors, "
                             r"a link to .*, outside the model folder"),
    "weights-link-out": (weights_link_out,
                         r"model\.safetensors is a link to .*, outside the model folder"),
    "config-100k-layers": (layers(100_000), r"config\.json: 100,000 layers of width 32 need at "
                                            r"least 102,400,000 parameters but"),
}


@pytest.fixture
def temp(tmp_path, monkeypatch) -> Path:
    """A temp dir of the test's own, so that 'nothing left in temp' is a real comparison."""
    t = tmp_path / "tmpdir"
    t.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(t))
    return t


def hostile_copy(tiny_pair, tmp_path: Path, make, name: str = "tuned") -> Path:
    m = tmp_path / name
    shutil.copytree(tiny_pair["tuned"], m)
    (tmp_path / "out").mkdir(exist_ok=True)
    make(m, tmp_path / "out")
    return m


def assert_refused(report, needle: str, role: str) -> None:
    bad = [c for c in report.failures() if c.name.startswith(f"{role}:")]
    assert bad, report.text()
    assert any(re.search(needle, c.message) for c in bad), report.text()
    assert all("\n" not in c.message for c in bad)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_checkpoint_is_refused_by_validation_and_precompute(case, tiny_pair, tmp_path,
                                                                    cache, temp):
    make, needle = CASES[case]
    tuned = hostile_copy(tiny_pair, tmp_path, make)
    before = snapshot(cache)
    rep = validate_pair(str(tiny_pair["base"]), str(tuned), prompts=str(tiny_pair["prompts"]))
    assert_refused(rep, needle, "tuned")
    cfg = PrecomputeConfig(base=str(tiny_pair["base"]), tuned=str(tuned),
                           prompts=str(tiny_pair["prompts"]), cache=str(cache), name="x",
                           n=1, max_new_tokens=8)
    with pytest.raises(PairError, match=needle) as err:
        precompute(cfg, log=lambda s: None, show_progress=False)
    assert "\n" not in str(err.value)
    assert snapshot(cache) == before
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("role", ["tuned", "sft", "step-30"])
def test_a_100k_layer_config_in_any_role_is_refused_quickly(role, tiny_pair, tmp_path, cache):
    big = hostile_copy(tiny_pair, tmp_path, layers(100_000), name="big")
    tuned, extra = (big, None) if role == "tuned" else (tiny_pair["tuned"], {role: str(big)})
    before = snapshot(cache)
    t = time.perf_counter()
    rep = validate_pair(str(tiny_pair["base"]), str(tuned), extra=extra,
                        prompts=str(tiny_pair["prompts"]))
    seconds = time.perf_counter() - t
    assert_refused(rep, r"config\.json: 100,000 layers of width 32 need at least", role)
    assert seconds < 30, seconds  # refused from the files; loading took minutes before
    assert snapshot(cache) == before


def test_an_unreadable_path_is_one_line(tiny_pair, tmp_path, cache):
    spec = "/proc/1/root"
    try:
        Path(spec, "config.json").is_file()
        pytest.skip("this machine lets the test process read /proc/1/root")
    except PermissionError:
        pass
    rep = validate_pair(str(tiny_pair["base"]), spec, prompts=str(tiny_pair["prompts"]))
    assert_refused(rep, r"/proc/1/root: permission denied", "tuned")
    before = snapshot(cache)
    with pytest.raises(PairError, match=r"/proc/1/root: permission denied"):
        precompute(PrecomputeConfig(base=str(tiny_pair["base"]), tuned=spec,
                                    prompts=str(tiny_pair["prompts"]), cache=str(cache),
                                    name="x", n=1, max_new_tokens=8),
                   log=lambda s: None, show_progress=False)
    assert snapshot(cache) == before


def test_an_index_naming_outside_files_is_refused_at_upload(tiny_pair, tmp_path, cache):
    m = hostile_copy(tiny_pair, tmp_path, index_to("../x/model.safetensors"), name="m")
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(m.iterdir()):
            zf.write(p, f"m/{p.name}")
    before = snapshot(cache)
    with pytest.raises(UploadError, match=r"m\.zip: the archive does not hold a usable model: "
                                          r"model\.safetensors\.index\.json names shard "
                                          r"'\.\./x/model\.safetensors', outside"):
        unpack_model(archive, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []
    assert snapshot(cache) == before


def test_every_shard_and_the_index_are_fingerprinted(tiny_pair, tmp_path):
    """A sharded checkpoint (as save_pretrained writes it): check_local_model returns every
    shard the index names, and the fingerprint the manifest records changes when any shard
    or the index itself changes."""
    from transformers import AutoModelForCausalLM

    m = tmp_path / "sharded"
    shutil.copytree(tiny_pair["tuned"], m)
    (m / "model.safetensors").unlink()
    AutoModelForCausalLM.from_pretrained(tiny_pair["tuned"]).save_pretrained(
        m, max_shard_size="20KB")
    index = json.loads((m / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2
    assert [p.name for p in check_local_model(m, allow_pickle=False)] == shards

    def fp() -> str:
        return load_model(str(m), with_model=False).fingerprint["digest"]

    first = fp()
    last = m / shards[-1]
    data = bytearray(last.read_bytes())
    data[-1] ^= 0xFF
    last.write_bytes(bytes(data))
    second = fp()
    assert second != first
    index["metadata"] = {"note": "the index decides which tensor comes from which file"}
    (m / "model.safetensors.index.json").write_text(json.dumps(index))
    assert fp() != second
