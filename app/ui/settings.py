"""A form for any settings dataclass, generated from its fields: one widget per field, with
the field's help text, choices and default (the same source the CLI builds its --options
from), so the app offers every setting the command line has."""

from __future__ import annotations

import dataclasses

import streamlit as st


def settings_widgets(cls, names: tuple[str, ...], key: str) -> dict:
    """{field name: value} from one widget per field of `cls` named in `names`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    cols = st.columns(3)
    for i, name in enumerate(names):
        f = fields[name]
        meta = dict(f.metadata)
        label, helptext, col = name.replace("_", " "), meta.get("help"), cols[i % 3]
        k = f"{key}_{name}"
        typ = str(f.type)
        if typ == "bool":
            out[name] = col.checkbox(label, value=f.default, help=helptext, key=k)
        elif meta.get("choices"):
            choices = list(meta["choices"])
            out[name] = col.selectbox(label, choices, index=choices.index(f.default),
                                      help=helptext, key=k)
        elif typ == "int":
            out[name] = int(col.number_input(label, value=int(f.default), step=1,
                                             help=helptext, key=k))
        elif typ == "float":
            out[name] = float(col.number_input(label, value=float(f.default), help=helptext,
                                               key=k, format="%g"))
        else:
            out[name] = col.text_input(label, value=str(f.default), help=helptext, key=k)
    return out
