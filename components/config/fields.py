"""What every section of the stack config is made of: the project's namespace, the one
error a user sees (`ConfigError`), the base model of a section (camelCase keys, no unknown
key, immutable), and the field types several sections share, each with its rule and its
words (`refuse`, `closest`, `WrittenFloat`).

Imports only pydantic: it is the bottom of the config package.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import SequenceMatcher
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

PROJECT = "cilium-eks"


class ConfigError(ValueError):
    """Raised for invalid stack configuration, before any resource is declared."""


def refuse(message: str) -> PydanticCustomError:
    """A validation error whose words are ours; the key is put in front by `describe_error`."""
    return PydanticCustomError("config", "{message}", {"message": message})


# How alike a word must be to an allowed one to be taken for its typo: difflib's own
# default cutoff (get_close_matches), which finds regoin -> region and eu-west-9 -> eu-west-1
# but not profile -> region.
TYPO_CUTOFF = 0.6


def closest(word: str, allowed: Iterable[str]) -> str | None:
    """The allowed spelling `word` is most likely a typo of (case aside: perAZ -> perAz),
    or None. Of equally close ones the first wins, so callers pass them in a meaningful
    order (a section's keys as declared, regions sorted: eu-west-9 -> eu-west-1)."""
    matcher = SequenceMatcher(b=word.lower())  # b is the side difflib caches
    best, best_ratio = None, 0.0
    for choice in allowed:
        matcher.set_seq1(choice.lower())
        floor = max(best_ratio, TYPO_CUTOFF)
        # the cheap upper bounds first, as get_close_matches does
        if matcher.real_quick_ratio() < floor or matcher.quick_ratio() < floor:
            continue
        ratio = matcher.ratio()
        if ratio >= floor and ratio > best_ratio:
            best, best_ratio = choice, ratio
    return best


class WrittenFloat(float):
    """A number as the stack file wrote it. YAML reads an unquoted 1.30 as the float 1.3,
    which cannot tell 1.3 from 1.30; a reader that keeps the text (components/config/
    stack_file.py) hands this over, so that a message shows what was written."""

    text: str

    def __new__(cls, value: float, text: str) -> WrittenFloat:
        number = super().__new__(cls, value)
        number.text = text
        return number


# --- field types with their rules ----------------------------------------------------------


def _bool_only(value: Any) -> Any:
    # strict models refuse "true" and 1 already; this says so in the config's words
    if not isinstance(value, bool):
        raise refuse(f"{value!r} is not allowed; use true or false")
    return value


Flag = Annotated[bool, BeforeValidator(_bool_only)]


def no_repeats(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(set(values)) != len(values):
        raise refuse("lists the same value twice")
    return values


def not_empty(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if not values:
        raise refuse("must not be empty")
    return values


class Section(BaseModel):
    """A config object: camelCase keys, no unknown key (a typo is an error), immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        strict=True,
    )
