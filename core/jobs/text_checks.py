"""Validation of the text a pair will read, before any job: each prompt's token count and
each checkpoint's chat template (core.jobs.validate turns these into report checks).

Fields are already capped in bytes when the file is read (core.inputs.prompts), so every
tokenisation here is bounded; chat templates render in a child process under the template
limits (core.engine.chat_render). Nothing here loads weights.
"""

from __future__ import annotations

import time

from core.engine.chat_render import render_chat, template_of
from core.errors import InputError, PromptSetError, clip
from core.inputs.rollouts import RolloutSet
from core.inputs.text_limits import TextLimits, check_prompt_tokens

SAMPLE = "What is 7+8-3?"  # rendered when there is no prompt to render


def user_text_checks(ps, toks: dict, chat_template: bool, lim: TextLimits):
    """(check name, ok, message, longest prompt's tokens plus 32 or None) for the prompt
    tokens (with the base tokenizer) and for each distinct chat template of `toks`
    ({role: tokenizer}). `ps`: a PromptSet, a RolloutSet or None. Templates are rendered
    when `chat_template` is on or the rollouts hold chat lists."""
    out = []
    if ps is not None and toks.get("base") is not None:
        out.append(_prompt_tokens(ps, toks["base"], lim))
    chats = isinstance(ps, RolloutSet) and any(r.messages for r in ps.rows)
    if chat_template or chats:
        out += _templates(ps, toks, lim)
    return out


def _prompt_tokens(ps, tok, lim: TextLimits):
    if isinstance(ps, RolloutSet):
        first: dict[str, str] = {}
        for r in ps.rows:  # each distinct prompt once, named by its first row
            first.setdefault(r.prompt_text, r.where)
        items = [(where, text) for text, where in first.items()]
    else:
        items = [(f"{ps.path.name}: prompt id {clip(r.id)}", r.prompt) for r in ps.rows]
    try:
        longest = check_prompt_tokens(tok, items, lim)
    except PromptSetError as e:
        return "prompt tokens", False, str(e), None
    return ("prompt tokens", True, f"the longest prompt is {longest:,} tokens (limit "
            f"{lim.max_prompt_tokens:,})", longest + 32)


def _sample_chat(ps) -> list[dict]:
    """The chat the templates render: the first chat list or prompt of `ps`."""
    if isinstance(ps, RolloutSet) and ps.rows:
        r = next((r for r in ps.rows if r.messages), ps.rows[0])
        if r.messages:
            return [{"role": role, "content": c} for role, c in r.messages]
        return [{"role": "user", "content": r.prompt}]
    if ps is not None and ps.rows:
        return [{"role": "user", "content": ps.rows[0].prompt}]
    return [{"role": "user", "content": SAMPLE}]


def _templates(ps, toks: dict, lim: TextLimits):
    roles: dict[str, list[str]] = {}
    for role, tok in toks.items():
        if (template := template_of(tok)) is not None:
            roles.setdefault(template, []).append(role)
    chat, out = _sample_chat(ps), []
    for names in roles.values():
        name = f"chat template ({', '.join(names)})"
        t0 = time.monotonic()
        try:
            text = render_chat(toks[names[0]], chat, limits=lim,
                               what=f"{names[0]}'s chat template")
        except InputError as e:
            out.append((name, False, str(e), None))
            continue
        out.append((name, True, f"renders the first prompt in {time.monotonic() - t0:.1f} s "
                    f"({len(text):,} characters)", None))
    return out
