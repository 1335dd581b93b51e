"""Regexes for JSON leaves: integer and number ranges, string formats.

Everything here returns Python regex text over the *decoded* characters of
a JSON value; the schema compiler places it inside the JSON structure.
"""

from __future__ import annotations

import math

# -- integers --------------------------------------------------------------------------------


def _same_length_range(a: str, b: str) -> str:
    """Regex for the decimal numbers from ``a`` to ``b`` (same number of digits).

    Full sub-ranges (``0...0`` to ``9...9``) become ``[0-9]{n}``, so the
    regex grows with the square of the digit count at most (it used to
    double per digit: 13 MB of regex text for ``maximum: 2**63``).
    """
    if a == b:
        return a
    if len(a) == 1:
        return f"[{a}-{b}]"
    if a[0] == b[0]:
        return a[0] + _same_length_range(a[1:], b[1:])
    n = len(a) - 1
    low_full, high_full = a[1:] == "0" * n, b[1:] == "9" * n
    first = int(a[0]) if low_full else int(a[0]) + 1  # leading digits whose tail is any n digits
    last = int(b[0]) if high_full else int(b[0]) - 1
    parts = [] if low_full else [a[0] + _same_length_range(a[1:], "9" * n)]
    if first <= last:
        lead = str(first) if first == last else f"[{first}-{last}]"
        parts.append(f"{lead}[0-9]{{{n}}}")
    if not high_full:
        parts.append(b[0] + _same_length_range("0" * n, b[1:]))
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _non_negative_range(lo: int, hi: int | None) -> str | None:
    """Regex for the integers lo..hi (hi None: no upper bound), lo >= 0, canonical form."""
    if hi is not None and hi < lo:
        return None
    parts = []
    digits_lo = len(str(lo))
    digits_hi = len(str(hi)) if hi is not None else digits_lo
    full: list[int] = []  # lengths whose every number is in range: one counted repeat for all
    for n in range(digits_lo, digits_hi + 1):
        first = max(lo, 10 ** (n - 1) if n > 1 else 0)
        last = min(hi, 10**n - 1) if hi is not None else 10**n - 1
        if n > 1 and first == 10 ** (n - 1) and last == 10**n - 1:
            full.append(n)
        elif first <= last:
            parts.append(_same_length_range(str(first), str(last)))
    if full:
        parts.append(f"[1-9][0-9]{{{full[0] - 1},{full[-1] - 1}}}")
    if hi is None:
        parts.append(f"[1-9][0-9]{{{digits_lo},}}")
    return "(?:" + "|".join(parts) + ")"


def integer_range(lo: int | None, hi: int | None) -> str | None:
    """Regex for the JSON integers in [lo, hi] (None: unbounded). None if empty."""
    if lo is not None and hi is not None and lo > hi:
        return None
    parts = []
    if hi is None or hi >= 0:  # the non-negative part
        part = _non_negative_range(max(lo, 0) if lo is not None else 0, hi)
        if part:
            parts.append(part)
    if lo is None or lo < 0:  # the negative part, as "-" and a positive magnitude
        top = -lo if lo is not None else None
        part = _non_negative_range(max(-hi, 1) if hi is not None else 1, top)
        if part:
            parts.append("-" + part)
    return "(?:" + "|".join(parts) + ")" if parts else None


# -- numbers ----------------------------------------------------------------------------------

_FRACTION = r"(?:\.[0-9]+)?"
_ZERO_FRACTION = r"(?:\.0+)?"
_NONZERO_FRACTION = r"\.[0-9]*[1-9][0-9]*"
_EXPONENT = r"(?:[eE][+-]?[0-9]+)?"
NUMBER = r"-?(?:0|[1-9][0-9]*)" + _FRACTION + _EXPONENT


def _bound(value: float | None, exclusive: bool, lower: bool) -> tuple[int | None, bool]:
    """Round a bound inward to an integer: a subset of the values, never more."""
    if value is None:
        return None, False
    if value == int(value):
        return int(value), exclusive
    return (math.ceil(value) if lower else math.floor(value)), False


def _magnitudes(lo: tuple[int, bool] | None, hi: tuple[int, bool] | None) -> list[str]:
    """Regexes for the magnitudes m >= 0 (integer part and fraction) with lo <= m <= hi.

    ``lo`` and ``hi`` are (integer, exclusive) or None for unbounded.
    """
    lo_i, lo_x = lo if lo is not None else (0, False)
    parts: list[str] = []
    # integer parts strictly between the bounds take any fraction
    any_lo = lo_i + 1 if lo_x else lo_i
    if hi is None:
        any_hi: int | None = None
    else:
        hi_i, hi_x = hi
        any_hi = hi_i - 1
    core = _non_negative_range(any_lo, any_hi) if any_hi is None or any_lo <= any_hi else None
    if core:
        parts.append(core + _FRACTION)
    if lo_x and (hi is None or lo_i < hi[0] or (lo_i == hi[0] and not hi[1])):
        # lo itself, with a fraction that is not zero (lo < m)
        if hi is None or lo_i < hi[0]:
            parts.append(str(lo_i) + _NONZERO_FRACTION)
    if hi is not None:
        hi_i, hi_x = hi
        if not hi_x and hi_i >= any_lo - (0 if not lo_x else 1) and (hi_i > lo_i or not lo_x):
            if hi_i >= lo_i:
                parts.append(str(hi_i) + _ZERO_FRACTION)
    return parts


def number_range(
    minimum: float | None, maximum: float | None, exclusive_min: bool = False, exclusive_max: bool = False
) -> str | None:
    """Regex for JSON numbers x with the given bounds (None when unbounded).

    Exact for integer bounds; a non-integer bound is rounded inward (the
    regex then accepts a subset). Bounded numbers are written without an
    exponent.
    """
    if minimum is None and maximum is None:
        return NUMBER
    lo = _bound(minimum, exclusive_min, lower=True)
    hi = _bound(maximum, exclusive_max, lower=False)
    lo_v, hi_v = lo[0], hi[0]
    if lo_v is not None and hi_v is not None and (lo_v > hi_v or (lo_v == hi_v and (lo[1] or hi[1]))):
        return None
    parts: list[str] = []
    # x >= 0 (or x > 0 side): magnitude bounds are the same numbers
    if hi_v is None or hi_v > 0 or (hi_v == 0 and not hi[1]):
        low = (lo_v, lo[1]) if lo_v is not None and lo_v >= 0 else None
        parts += _magnitudes(low, None if hi_v is None else (hi_v, hi[1]))
    # x < 0: magnitude |x| > 0 with bounds mirrored
    if lo_v is None or lo_v < 0:
        mag_hi = None if lo_v is None else (-lo_v, lo[1])
        if hi_v is not None and hi_v < 0:
            mag_lo = (-hi_v, hi[1])
        else:
            mag_lo = (0, True)  # strictly below zero
        parts += ["-" + p for p in _magnitudes(mag_lo, mag_hi)]
    return "(?:" + "|".join(parts) + ")" if parts else None


# -- string formats ---------------------------------------------------------------------------

_YEAR = r"[0-9]{4}"
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?" + _TIME_OFFSET
_DUR_DATE = r"(?:[0-9]+Y(?:[0-9]+M)?(?:[0-9]+D)?|[0-9]+M(?:[0-9]+D)?|[0-9]+D)"
_DUR_TIME = r"T(?:[0-9]+H(?:[0-9]+M)?(?:[0-9]+S)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_H16 = r"[0-9a-fA-F]{1,4}"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4})"
_IPV6 = (
    "(?:"
    + "|".join(
        [
            rf"(?:{_H16}:){{6}}{_LS32}",
            rf"::(?:{_H16}:){{5}}{_LS32}",
            rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
            rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
            rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
            rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
        ]
    )
    + ")"
)
_LABEL = (
    # letters, digits, inner hyphens, at most 63; never "--" in the 3rd and 4th places (RFC 5891
    # reserves that for A-labels, "xn--" and Punycode, which no regex can check)
    r"[a-zA-Z0-9](?:[a-zA-Z0-9-](?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]{0,59}[a-zA-Z0-9]"
    r"|-[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,58}[a-zA-Z0-9])?)|[a-zA-Z0-9])?"
)
_ATEXT = r"[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]"
# RFC 5322 dot-atom local part, at most 64 characters: a long one without dots, or a dotted one
# of at most 32 characters between the dots
_LOCAL_PART = rf"(?:{_ATEXT}{{1,64}}|{_ATEXT}(?:\.?{_ATEXT}){{0,31}})"
# RFC 3986: scheme ":" ("//" authority path-abempty / path-absolute / path-rootless / empty)
# ["?" query] ["#" fragment]; a port is digits, an IP literal an IPv6 address
_PCT = r"%[0-9A-Fa-f]{2}"
_REG_CHAR = rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|{_PCT})"
_PCHAR = rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|{_PCT})"

STRING_FORMATS: dict[str, str] = {
    "date": DATE,
    "time": TIME,
    "date-time": DATE + "T" + TIME,
    "duration": rf"P(?:{_DUR_DATE}(?:{_DUR_TIME})?|{_DUR_TIME}|[0-9]+W)",
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "email": rf"{_LOCAL_PART}@{_LABEL}(?:\.{_LABEL}){{0,4}}\.[a-zA-Z]{{2,24}}",
    "ipv4": _IPV4,
    "ipv6": _IPV6,
    "hostname": rf"(?:{_LABEL}\.)*{_LABEL}",
    "uri": (
        rf"[a-zA-Z][a-zA-Z0-9+.-]*:"
        rf"(?://(?:(?:{_REG_CHAR}|:)*@)?(?:\[{_IPV6}\]|{_REG_CHAR}*)(?::[0-9]*)?(?:/{_PCHAR}*)*"
        rf"|/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?|{_PCHAR}+(?:/{_PCHAR}*)*|)"
        rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
    ),
}
"""Regexes for the string formats we enforce (content of the JSON string)."""
_JSON_POINTER = r"(?:/(?:[^~/]|~[01])*)*"
STRING_FORMATS.update(
    {
        # the broader formats get a valid subset: an absolute URI is also a URI reference and
        # an IRI, an ASCII address or host name is also an internationalized one
        "uri-reference": STRING_FORMATS["uri"],
        "iri": STRING_FORMATS["uri"],
        "iri-reference": STRING_FORMATS["uri"],
        "idn-email": STRING_FORMATS["email"],
        "idn-hostname": STRING_FORMATS["hostname"],
        "json-pointer": _JSON_POINTER,
        "relative-json-pointer": rf"(?:0|[1-9][0-9]*)(?:#|{_JSON_POINTER})",
    }
)
UNENFORCEABLE_FORMATS = frozenset({"regex", "uri-template"})
"""Standard formats a validator checks that no regex here can enforce: a SchemaError unless
lenient (other unknown formats are annotations, as JSON Schema says)."""
