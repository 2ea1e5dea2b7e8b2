"""Pydantic's validation errors in the config's words: each names the key as typed in
`Pulumi.<stack>.yaml`, the closest allowed key or value to a typo first, and what would have
been accepted (`describe_error`), found by walking the models from the stack's (`model_in`,
`field_bounds`: scripts/config_reference.py reads the same).

Imports only the config package's own modules (never a component).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal, get_args

from pydantic import BaseModel

from components.config.fields import PROJECT, WrittenFloat, closest
from components.config.stack import StackConfig

# A value as YAML writes a number: digits with a dot (1.30), or without (7).
NUMBER_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
# A number as YAML hands back a two-digit minor ending in 0: 1.30 and 1.20 become 1.3, 1.2.
ONE_DECIMAL_RE = re.compile(r"^[0-9]+\.[0-9]$")


def describe_error(error: Any) -> str:
    """One pydantic error in the config's words: the key as typed, what is allowed."""
    loc = tuple(error["loc"])
    key = _key(loc)
    kind, value = error["type"], error.get("input")
    field = _field_at(loc)
    if _is_number(value) and (
        kind in ("string_type", "literal_error")
        # a rule of ours refusing text it was handed as a float (cpuLimit: 0.5)
        or (kind == "config" and isinstance(value, float) and str in _flatten(_type_of(field)))
    ):
        return _number_not_text(key, value, [str(v) for v in _literal_values(field)])
    if kind == "config":
        # a model's own rule: name the section; a rule whose text names its key says so
        return f"{key}: {error['ctx']['message']}" if key else error["ctx"]["message"]
    if kind == "extra_forbidden":
        section = _section_at(loc[:-1])
        allowed = ", ".join(_aliases(section)) if section else ""
        # the provider's keys too: `region` is most likely meant as aws:region
        keys = [f.alias or n for n, f in section.model_fields.items()] if section else []
        where = _key(loc[:-1]) or PROJECT
        return f"{where}: unknown key {loc[-1]!r}; {_guess(str(loc[-1]), keys)}allowed: {allowed}"
    if kind == "literal_error":
        allowed = [str(v) for v in _literal_values(field)]
        guess = _guess(value, allowed) if isinstance(value, str) else ""
        return (
            f"{key}: {value!r} is not allowed; {guess}allowed: {', '.join(allowed)}"
            f"{_maybe_a_number(value)}"
        )
    if kind in ("int_type", "int_from_float", "greater_than_equal", "less_than_equal"):
        low, high = field_bounds(field)
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        shown = value.text if isinstance(value, WrittenFloat) else repr(value)
        return f"{key}: {shown} is not allowed; use a whole number {bounds}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = _section_at(loc)
        allowed = ", ".join(_aliases(section)) if section else ""
        return f"{key}: {value!r} is not allowed; must be an object with keys {allowed}"
    if kind in ("tuple_type", "list_type"):
        return f"{key}: {value!r} is not allowed; use a list"
    if kind == "string_type":
        return f"{key}: {value!r} is not allowed; use a string"
    if kind == "missing":
        return f"{key}: not set"
    return f"{key}: {error['msg']}"


def _guess(word: str, allowed: list[str]) -> str:
    """'did you mean X? ' for a word that looks like a typo of X, put before the list of
    what is allowed. Not for a number: 1.33 is not a misspelt 1.34, and a guess would pick
    a version for the user."""
    found = None if NUMBER_RE.match(word) else closest(word, allowed)
    return f"did you mean {found}? " if found else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_not_text(key: str, value: float, allowed: list[str]) -> str:
    """A number where text belongs. YAML reads an unquoted 1.30 as the number 1.3, which
    no longer says how it was written: show the stack file's text where its reader kept it
    (stack_file.py), else the spellings the number stands for; the way out is quotes."""
    shown = repr(value)
    if isinstance(value, WrittenFloat):
        what, meant = f"{value.text} is read as the number {shown}", [value.text]
    elif isinstance(value, float) and ONE_DECIMAL_RE.match(shown):
        # Pulumi's CLI hands the program this number too (see _maybe_a_number)
        what = f"read as the number {shown} (YAML reads {shown} and {shown}0 alike, unquoted)"
        meant = [shown, f"{shown}0"]
    else:
        what, meant = f"read as the number {shown}", [shown]
    if allowed and not set(meant) & set(allowed):
        way = "one of " + ", ".join(f'"{v}"' for v in allowed)
    else:
        way = " or ".join(f'"{v}"' for v in meant if not allowed or v in allowed)
    return f"{key}: {what}, not as text; write it in quotes: {way}"


def _maybe_a_number(value: Any) -> str:
    """For '1.3' handed over as text: the Pulumi CLI hands every top-level value as text,
    and an unquoted 1.30 in the stack file reaches the program as '1.3' (Pulumi's YAML
    reader makes it the float 1.3 and prints that: pulumi/pulumi sdk/go/common/resource/
    config/object.go, UnmarshalYAML and MarshalString)."""
    if isinstance(value, str) and ONE_DECIMAL_RE.match(value):
        return (
            f" (an unquoted {value}0 in the stack file reaches the program as {value!r}: YAML"
            " reads it as a number; write versions in quotes)"
        )
    return ""


def _key(loc: Iterable[Any]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _field_at(loc: tuple[Any, ...]) -> Any:
    """The FieldInfo of the key at `loc` (list indexes skipped), or None."""
    model: type[BaseModel] | None = StackConfig
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            return None
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        model = model_in(field.annotation)
    return field


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section (model) whose keys sit at `loc`: the whole stack for ()."""
    if not loc:
        return StackConfig
    field = _field_at(loc)
    return model_in(field.annotation) if field else None


def model_in(annotation: Any) -> type[BaseModel] | None:
    return next(
        (t for t in _flatten(annotation) if isinstance(t, type) and issubclass(t, BaseModel)),
        None,
    )


def _flatten(annotation: Any) -> list[Any]:
    """The types inside an annotation (Optional[X], tuple[X, ...], Annotated[...])."""
    args = get_args(annotation)
    if not args:
        return [annotation]
    return [annotation, *(t for arg in args for t in _flatten(arg))]


def _type_of(field: Any) -> Any:
    return field.annotation if field else None


def _literal_values(field: Any) -> list[Any]:
    for inner in _flatten(_type_of(field)):
        if getattr(inner, "__origin__", None) is Literal:
            return list(get_args(inner))
    return []


def field_bounds(field: Any) -> tuple[Any, Any]:
    low = high = None
    for rule in field.metadata if field else []:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high


def _aliases(model: type[BaseModel]) -> list[str]:
    # aws:region is the AWS provider's key, not one of this project's
    return [f.alias or n for n, f in model.model_fields.items() if ":" not in (f.alias or "")]
