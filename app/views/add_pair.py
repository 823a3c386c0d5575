"""Add a pair: base and tuned by folder, hub id or uploaded archive (plus optional SFT model
and checkpoint series), a prompt set to sample from or an uploaded rollout file to score,
settings; validate, then queue background jobs."""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from app.ui import access, state
from app.ui.jobs import jobs_panel
from app.ui.settings import settings_widgets
from app.ui.text import md_escape, show_error
from core import api
from core.api import PRESETS, RUN_SETTINGS, PrecomputeConfig, add_pair, parse_series
from core.errors import JobError, PromptSetError, UploadError

SHIPPED = api.ASSETS / "prompts"


MODES = ("folder or hub id", "upload a zip / tar")


def _apply_preset() -> None:
    """Fill the base and tuned fields with the chosen preset's hub ids (a widget's `value`
    is ignored once its key has state, so the fields are set through their keys)."""
    chosen = next((p for p in PRESETS if p.key == st.session_state.get("ap_preset")), None)
    if chosen is None:
        return
    for key, spec in (("ap_base", chosen.base), ("ap_tuned", chosen.tuned)):
        st.session_state[f"{key}_mode"] = MODES[0]
        st.session_state[f"{key}_spec"] = spec


def _model_source(label: str, key: str) -> str | None:
    """A model by path / hub id, or by upload (unpacked safely); returns the spec or None."""
    mode = st.radio(label, MODES, horizontal=True, key=f"{key}_mode")
    if mode == MODES[0]:
        return st.text_input(f"{label}: local folder or Hugging Face hub id", key=f"{key}_spec",
                             placeholder="assets/demo/base or Qwen/Qwen2.5-Math-7B") or None
    limit = api.default_upload_limits()
    file = st.file_uploader(f"{label}: archive of a model folder (limit "
                            f"{limit.max_total_bytes / 1024**3:.1f} GiB unpacked)",
                            type=["zip", "tar", "gz", "tgz"], key=f"{key}_file")
    if file is None:
        return None
    done = st.session_state.setdefault("_unpacked", {})
    tag = (file.name, file.size, key)
    if tag not in done:
        try:
            done[tag] = str(api.unpack_model(file, api.models_dir(state.cache_dir()),
                                                limits=limit, filename=file.name))
        except UploadError as e:
            show_error(f"{file.name}: {e}")
            return None
    st.caption(md_escape(f"unpacked to {done[tag]}"))
    return done[tag]


def _prompt_set() -> str | None:
    shipped = sorted(p.name for p in SHIPPED.glob("*.jsonl"))
    choice = st.selectbox("Prompt set", shipped + ["upload a JSONL / Parquet file"],
                          key="ap_prompts")
    if choice in shipped:
        return str(SHIPPED / choice)
    file = st.file_uploader("Prompt set (id, prompt, answer[, difficulty, verifier])",
                            type=["jsonl", "parquet"], key="ap_prompt_file")
    if file is None:
        return None
    try:
        return str(api.save_prompt_set(file.getvalue(), file.name,
                                       api.prompts_dir(state.cache_dir())))
    except (PromptSetError, UploadError) as e:
        show_error(e)
        return None


def _rollouts() -> str | None:
    """An uploaded rollout file (scored instead of sampling), validated line by line and
    kept in uploads/rollouts/; its path, or None."""
    limit = api.default_upload_limits().max_file_bytes
    file = st.file_uploader(
        "Rollouts: TRL completions_N.parquet, verl N.jsonl, OpenRLHF eval samples with a "
        "response, prompt_tokens/response_tokens dumps (recognised by their fields), or one "
        "row per trace with prompt (text) or messages (chat list), response (text) or "
        "response_ids; optional id / prompt_id, answer, verifier, correct, sampled_from "
        f"(limit {limit / 1024**3:.1f} GiB)",
        type=["jsonl", "parquet"], key="ap_rollout_file")
    if file is None:
        return None
    try:
        path = api.save_rollouts(file.getvalue(), file.name, api.rollouts_dir(state.cache_dir()),
                                 max_bytes=limit)
    except (PromptSetError, UploadError) as e:
        show_error(e)
        return None
    st.caption(md_escape(f"validated; kept as {path}; {api.rollout_format(path)}"))
    return str(path)


SOURCES = ("sample from a prompt set", "score my rollouts")
FIRST = ("max_prompts", "n", "temperature", "top_p", "max_new_tokens", "seed")


def _settings(sampling: bool) -> PrecomputeConfig:
    """The settings; without sampling (a rollout file) only those that apply to scoring."""
    if sampling:
        c = st.columns(6)
        first = dict(
            max_prompts=int(c[0].number_input("prompts (0 = all)", 0, 1_000_000, 50)),
            n=int(c[1].number_input("samples per prompt", 1, 64, 2)),
            temperature=float(c[2].number_input("temperature", 0.0, 2.0, 1.0, 0.1)),
            top_p=float(c[3].number_input("top-p", 0.05, 1.0, 1.0, 0.05)),
            max_new_tokens=int(c[4].number_input(
                "max new tokens", 0, 131072, 0,
                help="0 = the tuned checkpoint's generation config, else 4096")),
            seed=int(c[5].number_input("seed", 0, 2**31 - 1, 0)))
        first["sample_from"] = st.radio("sample traces from", ["tuned", "base", "both"],
                                        horizontal=True)
    else:
        first = dict(max_prompts=int(st.columns(6)[0].number_input(
            "rollouts (0 = all)", 0, 100_000_000, 0, key="ap_rollout_rows",
            help="score only the file's first N rows")))
    with st.expander("All settings (as `shiftlens precompute --help`): scoring mode, memory "
                     "budget, engine, ..."):
        rest = settings_widgets(PrecomputeConfig, tuple(  # series_sampling: series section
            n for n in RUN_SETTINGS if n not in FIRST and n not in ("sample_from",
                                                                     "series_sampling")),
            key="ap_set")
    return PrecomputeConfig(**first, **rest, cache=str(state.cache_dir()))


def render() -> None:
    st.header("Add a pair")
    st.caption("Register a base model and its fine-tuned version; ShiftLens validates them "
               "(same vocabulary, safetensors, no remote code, memory and time estimate) and "
               "precomputes the run in a background job. Nothing is written on a refusal.")
    keys = ["(none)"] + [p.key for p in PRESETS]
    st.selectbox("Preset (public base / RL pairs; need a network and memory)", keys,
                 key="ap_preset", on_change=_apply_preset,
                 format_func=lambda k: k if k == "(none)" else next(
                     f"{p.title} · {p.parameters:g}B · ~{p.memory_gib_bf16:.0f} GiB "
                     "bf16 for the pair" for p in PRESETS if p.key == k))
    chosen = next((p for p in PRESETS if p.key == st.session_state.get("ap_preset")), None)
    if chosen is not None and chosen.note:
        st.caption(md_escape(chosen.note))
    left, right = st.columns(2)
    with left:
        base = _model_source("Base model", "ap_base")
    with right:
        tuned = _model_source("Tuned model", "ap_tuned")
    with st.expander("Optional: an SFT model and a checkpoint series"):
        sft = st.text_input("SFT model (folder or hub id)", key="ap_sft") or None
        series_text = st.text_input("Series: step=path pairs, comma-separated",
                                    placeholder="30=runs/ckpt-30,60=runs/ckpt-60",
                                    key="ap_series")
        series_sampling = st.radio(
            "Series traces", ["reuse", "own"], horizontal=True, key="ap_series_sampling",
            format_func={"reuse": "re-score the tuned model's traces",
                         "own": "each checkpoint samples its own"}.get,
            help=api.PrecomputeConfig.__dataclass_fields__["series_sampling"].metadata["help"])
    source = st.radio("Traces", SOURCES, horizontal=True, key="ap_source",
                      help="score my rollouts: traces you already have (verl, OpenRLHF, TRL, "
                           "an eval harness) are scored as given, nothing is sampled")
    sampling = source == SOURCES[0]
    prompts, traces = (_prompt_set(), None) if sampling else (None, _rollouts())
    settings = dataclasses.replace(_settings(sampling), series_sampling=series_sampling)
    name = st.text_input("Run name (optional)", key="ap_name")
    if st.button("Validate and queue", type="primary", key="ap_go",
                 disabled=not (base and tuned and (prompts or traces))):
        try:
            series = parse_series(series_text) if series_text else None
            with st.spinner("Validating…"):
                result = add_pair(base, tuned, prompts or "", traces=traces or "", sft=sft,
                                  series=series, name=name, settings=settings,
                                  cache=state.cache_dir(), model_roots=access.model_roots(),
                                  submitter=state.submitter())
        except (ValueError, JobError) as e:
            show_error(e)
        else:
            st.dataframe(pd.DataFrame(result.report.rows()), hide_index=True)
            if result.jobs:
                st.success(md_escape(f"Queued {len(result.jobs)} job(s): "
                                     + ", ".join(j.run for j in result.jobs)))
            else:
                # each failure names its check and role ("base: weights", "tuned: ..."):
                # the same folder given as both models reads as two distinct refusals
                show_error("Refused: " + "; ".join(f"{c.name}: {c.message}"
                                                   for c in result.report.failures()))
    jobs_panel()


if __name__ == "__main__":  # Streamlit runs the page file as __main__
    render()
