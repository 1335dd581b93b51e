"""Python types as regular expressions and parsers, for ``generate.format``.

Every string a regex here matches parses to its type: dates are exact
(days per month, February 29 in leap years only, years 0001 to 9999).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INTEGER = r"-?(?:0|[1-9][0-9]*)"
FLOAT = INTEGER + r"(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,2})?"
BOOLEAN = r"True|False"
ANY_TEXT = r"[\s\S]*"
"""``str``: any text at all (generation ends at the model's end-of-generation token or ``max_tokens``)."""

_YEAR = r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
# Leap years: divisible by 4 but not by 100, or divisible by 400 (year 0000 does not exist).
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
DATE = (
    rf"(?:{_YEAR}-(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    rf"|{_YEAR}-(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    rf"|{_YEAR}-02-(?:0[1-9]|1[0-9]|2[0-8])"
    rf"|{_LEAP_YEAR}-02-29)"
)
TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
DATETIME = rf"{DATE}T{TIME}"


@dataclass(frozen=True)
class Format:
    """A type's regex and the function that turns a match into a value."""

    python_type: type
    pattern: str
    parse: Callable[[str], Any]


def _parse_bool(text: str) -> bool:
    if text not in ("True", "False"):
        raise ValueError(f"not a boolean: {text!r}")
    return text == "True"


TYPE_FORMATS: dict[type, Format] = {
    fmt.python_type: fmt
    for fmt in (
        Format(int, INTEGER, int),
        Format(float, FLOAT, float),
        Format(bool, BOOLEAN, _parse_bool),
        Format(dt.date, DATE, dt.date.fromisoformat),
        Format(dt.time, TIME, dt.time.fromisoformat),
        Format(dt.datetime, DATETIME, dt.datetime.fromisoformat),
        Format(str, ANY_TEXT, str),
    )
}


def format_for(python_type: type) -> Format:
    """The :class:`Format` of ``python_type``; ``ValueError`` for types without one."""
    fmt = TYPE_FORMATS.get(python_type)
    if fmt is None:
        names = ", ".join(t.__name__ for t in TYPE_FORMATS)
        raise ValueError(f"generate.format supports {names}; got {python_type!r}")
    return fmt
