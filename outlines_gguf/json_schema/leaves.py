"""Regexes for JSON leaves: integer and number ranges, string formats.

Everything here returns Python regex text over the *decoded* characters of
a JSON value; the schema compiler places it inside the JSON structure.
"""

from __future__ import annotations

from decimal import Decimal

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


def _decimal(value: float) -> Decimal:
    """A bound as the decimal the schema wrote (a float's shortest repr: 1.1 is 1.1)."""
    return Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))


def _split(value: Decimal) -> tuple[int, str]:
    """A non-negative decimal as its integer part and its fraction digits (no trailing zeros)."""
    whole = int(value)
    digits = format(value - whole, "f").partition(".")[2].rstrip("0")
    return whole, digits


def _digit_class(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"[{lo}-{hi}]"


# Fraction digits as sets of digit strings D (the value 0.D; the empty string is 0): each helper
# returns (alternatives matching non-empty D, whether the empty D, no fraction at all, is in).


def _fraction_at_least(f: str, strict: bool) -> tuple[list[str], bool]:
    if not f:
        return (["[0-9]*[1-9][0-9]*"] if strict else ["[0-9]+"]), not strict
    alts = [f[:i] + _digit_class(int(c) + 1, 9) + "[0-9]*" for i, c in enumerate(f) if c != "9"]
    alts.append(f + ("[0-9]*[1-9][0-9]*" if strict else "[0-9]*"))
    return alts, False


def _fraction_at_most(f: str, strict: bool) -> tuple[list[str], bool]:
    if not f:
        return ([] if strict else ["0+"]), not strict
    alts = [f[:i] + _digit_class(0, int(c) - 1) + "[0-9]*" for i, c in enumerate(f) if c != "0"]
    alts += [f[:j] for j in range(1, len(f))]  # shorter: the rest of f is not zero
    if not strict:
        alts.append(f + "0*")
    return alts, True


def _fraction_between(a: str, a_strict: bool, b: str, b_strict: bool) -> tuple[list[str], bool]:
    """0.a <= 0.D <= 0.b (or strictly), for 0.a < 0.b."""
    width = max(len(a), len(b))
    pa, pb = a.ljust(width, "0"), b.ljust(width, "0")
    i = next(k for k in range(width) if pa[k] != pb[k])
    prefix, da, db = pb[:i], int(pa[i]), int(pb[i])
    alts = []
    low, _ = _fraction_at_least(a[i + 1 :], a_strict)
    alts += [prefix + str(da) + alt for alt in low]
    if len(a) <= i + 1 and not a_strict:
        alts.append(prefix + str(da))  # D ends at a's last digit (or within its zeros): D = a
    if db - da > 1:
        alts.append(prefix + _digit_class(da + 1, db - 1) + "[0-9]*")
    high, high_empty = _fraction_at_most(b[i + 1 :], b_strict)
    alts += [prefix + str(db) + alt for alt in high]
    if high_empty:
        alts.append(prefix + str(db))
    if not a_strict:  # D shorter than the first difference, and a no longer than D: D = a
        alts += [prefix[:j] for j in range(max(len(a), 1), i + 1)]
    return alts, not a and not a_strict


def _with_fraction(whole: str, fraction: tuple[list[str], bool]) -> str | None:
    alts, empty = fraction
    if not alts:
        return whole if empty else None
    body = r"\.(?:" + "|".join(alts) + ")"
    return whole + (f"(?:{body})?" if empty else body)


def _magnitudes(lo: tuple[Decimal, bool], hi: tuple[Decimal, bool] | None) -> list[str]:
    """Regexes for the magnitudes m >= 0 (integer part and fraction, no exponent) with
    lo <= m <= hi (strictly where the flag says), ``hi`` None for unbounded; exact."""
    (lo_v, lo_x) = lo
    if hi is not None and (lo_v > hi[0] or (lo_v == hi[0] and (lo_x or hi[1]))):
        return []
    lo_i, lo_f = _split(lo_v)
    if hi is not None:
        hi_i, hi_f = _split(hi[0])
        if hi_i == lo_i:
            if lo_f == hi_f:  # lo == hi, both inclusive
                part = _with_fraction(str(lo_i), ([lo_f + "0*"] if lo_f else ["0+"], not lo_f))
            else:
                part = _with_fraction(str(lo_i), _fraction_between(lo_f, lo_x, hi_f, hi[1]))
            return [part] if part else []
    parts = [_with_fraction(str(lo_i), _fraction_at_least(lo_f, lo_x))]
    core = _non_negative_range(lo_i + 1, None if hi is None else hi_i - 1)
    if core:
        parts.append(core + _FRACTION)
    if hi is not None:
        parts.append(_with_fraction(str(hi_i), _fraction_at_most(hi_f, hi[1])))
    return [p for p in parts if p]


_MANTISSA = r"[1-9](?:\.[0-9]+)?"
"""A mantissa in scientific notation as ``json.dumps`` writes one: one non-zero digit first."""


_SIMPLE_EXPONENTS: dict[tuple[int | None, int | None], str] = {
    (0, 0): "[+-]?0+",
    (None, -1): "-0*[1-9][0-9]*",
    (None, 0): "(?:[+-]?0+|-0*[1-9][0-9]*)",
    (1, None): r"\+?0*[1-9][0-9]*",
    (0, None): r"(?:[+-]?0+|\+?0*[1-9][0-9]*)",
}
"""The usual exponent ranges written short (a number's regex is parsed and determinized at
every use)."""


def _exponents(lo: int | None, hi: int | None) -> str | None:
    """Regex for exponent digits (a sign, leading zeros allowed) of the integers lo..hi (None:
    unbounded)."""
    simple = _SIMPLE_EXPONENTS.get((lo, hi))
    if simple is not None:
        return simple
    parts = []
    if hi is None or hi >= 0:
        up = _non_negative_range(max(lo, 0) if lo is not None else 0, hi)
        if up:
            parts.append(rf"\+?0*{up}")
    if lo is None or lo <= 0:
        down = _non_negative_range(max(-hi, 0) if hi is not None else 0, None if lo is None else -lo)
        if down:
            parts.append(f"-0*{down}")
    return "(?:" + "|".join(parts) + ")" if parts else None


def _normalized(value: Decimal) -> tuple[int, Decimal]:
    """A positive decimal as (its exponent, its mantissa in [1, 10))."""
    exponent = value.adjusted()
    return exponent, value.scaleb(-exponent)


def _scientific(lo: tuple[Decimal, bool], hi: tuple[Decimal, bool] | None) -> list[str]:
    """Regexes for the positive magnitudes lo <= m <= hi written in normalized scientific notation
    (``1.5e-07``, ``1e+16``: a non-zero digit, a fraction, an exponent), exact: such numbers
    compare as (exponent, mantissa), so the bounds split them into exponents below, at and
    above each bound's own."""
    (lo_v, lo_x) = lo
    if hi is not None and hi[0] <= 0:
        return []
    low = _normalized(lo_v) if lo_v > 0 else None
    high = None if hi is None else _normalized(hi[0])
    mark = "[eE]"
    ten, one = (Decimal(10), True), (Decimal(1), False)
    def at(exponent: int, mantissas: list[str]) -> list[str]:
        return [_one_of(mantissas) + mark + str(_exponents(exponent, exponent))] if mantissas else []

    if low is not None and high is not None and low[0] == high[0]:
        assert hi is not None
        return at(low[0], _magnitudes((low[1], lo_x), (high[1], hi[1])))
    parts = []
    between = _exponents(None if low is None else low[0] + 1, None if high is None else high[0] - 1)
    if between and (low is None or high is None or low[0] + 1 <= high[0] - 1):
        parts.append(_MANTISSA + mark + between)
    if low is not None:
        parts += at(low[0], _magnitudes((low[1], lo_x), ten))
    if high is not None and hi is not None:
        parts += at(high[0], _magnitudes(one, (high[1], hi[1])))
    return parts


def _one_of(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def number_range(
    minimum: float | None, maximum: float | None, exclusive_min: bool = False, exclusive_max: bool = False
) -> str | None:
    """Regex for JSON numbers x with the given bounds (None when unbounded).

    Exact for any decimal bounds (compared as the decimals the schema wrote) over numbers
    written without an exponent or in normalized scientific notation (a non-zero digit before
    the point: what ``json.dumps`` writes for ``1e-05`` or ``1.5e+16``); other spellings with an
    exponent (``15e-1``, ``0.5e1``) and -0 are left out (a subset).
    """
    if minimum is None and maximum is None:
        return NUMBER
    lo = None if minimum is None else (_decimal(minimum), exclusive_min)
    hi = None if maximum is None else (_decimal(maximum), exclusive_max)
    if lo is not None and hi is not None and (lo[0] > hi[0] or (lo[0] == hi[0] and (lo[1] or hi[1]))):
        return None
    parts: list[str] = []
    zero = Decimal(0)
    if lo is not None and hi is not None and lo[0] == -hi[0] and lo[1] == hi[1] and hi[0] > 0:
        # symmetric bounds: one set of non-zero magnitudes, signed or not (a number's regex is
        # parsed and determinized at every use), and zero as itself
        nonzero = _magnitudes((zero, True), hi) + _scientific((zero, True), hi)
        return f"(?:0(?:\\.0+)?|-?{_one_of(nonzero)})"
    # x >= 0: magnitude bounds are the same numbers
    if hi is None or hi[0] > 0 or (hi[0] == 0 and not hi[1]):
        low = lo if lo is not None and lo[0] >= 0 else (zero, False)
        parts += _magnitudes(low, hi) + _scientific(low, hi)
    # x < 0: magnitude |x| > 0 with bounds mirrored
    if lo is None or lo[0] < 0:
        mag_hi = None if lo is None else (-lo[0], lo[1])
        mag_lo = (-hi[0], hi[1]) if hi is not None and hi[0] < 0 else (zero, True)  # strictly below 0
        negative = _magnitudes(mag_lo, mag_hi) + _scientific(mag_lo, mag_hi)
        if negative:
            parts.append("-" + _one_of(negative))
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
# RFC 3339: "T" and "Z" may be written in lower case; a leap second (":60") ends a UTC day. A
# leap second is taken in UTC only ("Z" or a zero offset): with another offset the local time
# that ends the UTC day differs per offset, thousands of pairs that would multiply the states
_TIME_OFFSET = r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_TIME_FRACTION = r"(?:\.[0-9]{1,9})?"  # (its own name: number_range reads _FRACTION at call time)
TIME = (
    rf"(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]{_TIME_FRACTION}{_TIME_OFFSET}"
    rf"|23:59:60{_TIME_FRACTION}(?:[Zz]|[+-]00:00))"
)
# RFC 3339 appendix A: a duration's units run without a gap (a year, then a month, then a day:
# "P1Y2D" skips the month and is no duration)
_DUR_DATE = r"(?:[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?|[0-9]+M(?:[0-9]+D)?|[0-9]+D)"
_DUR_TIME = r"T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
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
_IDN_LETTERS = "\\uac00-\\ud7a3\\u4e00-\\u9fa5\\u3041-\\u3096\\u30a1-\\u30fa"
_IDN_LABEL = rf"(?:{_LABEL}|[{_IDN_LETTERS}]{{1,10}})"
"""An internationalized host name's label (IDNA 2008), a valid subset: an ASCII label, or up to
10 Hangul syllables, CJK ideographs (the original block), Hiragana or Katakana (all PVALID,
left-to-right, needing no context; 10 keep the Punycode form within 63 characters)."""
_PCT = r"%[0-9A-Fa-f]{2}"  # a percent-escape (RFC 3986)


def _email(international: bool = False) -> str:
    """RFC 5321: a local part, dot-atom (no leading, trailing or doubled dot) or quoted string
    (printable ASCII, ``\\`` escapes), ``@`` a domain or an IPv4 address literal
    (``[127.0.0.1]``; an IPv6 one, ``[IPv6:::1]``, would multiply the states of every email
    under a maxLength for addresses nobody writes).

    Lengths (64 for the local part, 63 for a label) are not counted: counting multiplies the
    automaton's states, and under a maxLength, whose characters are counted over them, a few
    hundred states leave room for a few characters only (an email with maxLength 255 wrote no
    address at all).

    ``international`` (RFC 6531): also the letters of :data:`_IDN_LABEL` in the local part,
    and its labels in the domain."""
    wide = _IDN_LETTERS if international else ""
    atext = rf"[a-zA-Z0-9!#$%&'*+/=?^_`{{|}}~{wide}-]"
    label = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    top = r"[a-zA-Z]{2,24}"
    if international:
        label = rf"(?:{label}|[{_IDN_LETTERS}]{{1,10}})"
        top = rf"(?:{top}|[{_IDN_LETTERS}]{{1,10}})"
    quoted = r'"(?:[ !#-\[\]-~]|\\[ -~])*"'
    domain = rf"(?:{label}(?:\.{label})*\.{top}|\[{_IPV4}\])"
    return rf"(?:{atext}+(?:\.{atext}+)*|{quoted})@{domain}"


def _uri(reference: bool = False, international: bool = False) -> str:
    """RFC 3986: scheme ":" ("//" authority path-abempty / path-absolute / path-rootless /
    empty) ["?" query] ["#" fragment]; a port is digits, an IP literal an IPv6 address.

    ``reference``: a URI-reference, that or a relative reference, which has no scheme and
    whose path, unless it starts with "/" or "//", has no ":" in its first segment (so that
    it does not read as a scheme): "../a", "#top", "?q=1", "" are references.
    ``international``: an IRI (RFC 3987), whose unreserved characters include ``ucschar``
    and whose query ``iprivate`` too."""
    wide = _UCSCHAR if international else ""
    private = _IPRIVATE if international else ""
    reg_char = rf"(?:[A-Za-z0-9\-._~!$&'()*+,;={wide}]|{_PCT})"
    pchar = rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@{wide}]|{_PCT})"
    authority = rf"//(?:(?:{reg_char}|:)*@)?(?:\[{_IPV6}\]|{reg_char}*)(?::[0-9]*)?(?:/{pchar}*)*"
    absolute = rf"/(?:{pchar}+(?:/{pchar}*)*)?"
    tail = rf"(?:\?(?:{pchar}|[/?{private}])*)?(?:#(?:{pchar}|[/?])*)?"
    uri = rf"[a-zA-Z][a-zA-Z0-9+.-]*:(?:{authority}|{absolute}|{pchar}+(?:/{pchar}*)*|){tail}"
    if not reference:
        return uri
    no_colon = rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=@{wide}]|{_PCT})"
    relative = rf"(?:{authority}|{absolute}|{no_colon}+(?:/{pchar}*)*|){tail}"
    return rf"(?:{uri}|{relative})"


_UCSCHAR = (
    "\\u00a0-\\ud7ff\\uf900-\\ufdcf\\ufdf0-\\uffef"
    + "".join(f"\\U{p << 16:08x}-\\U{(p << 16) + 0xFFFD:08x}" for p in range(1, 14))
    + "\\U000e1000-\\U000efffd"
)
"""RFC 3987 ``ucschar`` as class ranges: the characters an IRI takes unescaped."""
_IPRIVATE = "\\ue000-\\uf8ff\\U000f0000-\\U000ffffd\\U00100000-\\U0010fffd"
"""RFC 3987 ``iprivate``: private-use characters, allowed in an IRI's query."""


STRING_FORMATS: dict[str, str] = {
    "date": DATE,
    "time": TIME,
    "date-time": DATE + "[Tt]" + TIME,
    "duration": rf"P(?:{_DUR_DATE}(?:{_DUR_TIME})?|{_DUR_TIME}|[0-9]+W)",
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "email": _email(),
    "ipv4": _IPV4,
    "ipv6": _IPV6,
    "hostname": rf"(?:{_LABEL}\.)*{_LABEL}",
    "uri": _uri(),
}
"""Regexes for the string formats we enforce (content of the JSON string)."""
_JSON_POINTER = r"(?:/(?:[^~/]|~[01])*)*"
STRING_FORMATS.update(
    {
        "uri-reference": _uri(reference=True),
        "iri": _uri(international=True),
        "iri-reference": _uri(reference=True, international=True),
        # the broader formats get a valid subset: an ASCII address or host name is also an
        # internationalized one
        "idn-email": _email(international=True),
        "idn-hostname": rf"(?:{_IDN_LABEL}[.\u3002\uff0e\uff61])*{_IDN_LABEL}",
        "json-pointer": _JSON_POINTER,
        "relative-json-pointer": rf"(?:0|[1-9][0-9]*)(?:#|{_JSON_POINTER})",
    }
)

def _uri_template() -> str:
    """RFC 6570 URI templates (level 4): literals and ``{`` operator, variables with a prefix
    or explode modifier ``}``; literals are the characters RFC 6570 allows (``ucschar`` and
    ``iprivate`` included, so never a Unicode noncharacter) or percent-escapes."""
    planes = "".join(f"\\U{p << 16:08x}-\\U{(p << 16) + 0xFFFD:08x}" for p in range(1, 17) if p != 14)
    wide = f"\\u00a0-\\ud7ff\\ue000-\\ufdcf\\ufdf0-\\uffef{planes}\\U000e1000-\\U000efffd"
    literal = rf"(?:[\x21\x23\x24\x26\x28-\x3b\x3d\x3f-\x5b\x5d\x5f\x61-\x7a\x7e{wide}]|{_PCT})"
    varchar = rf"(?:[A-Za-z0-9_]|{_PCT})"
    varspec = rf"{varchar}(?:\.?{varchar})*(?::[1-9][0-9]{{0,3}}|\*)?"
    return rf"(?:{literal}|\{{[+#./;?&=,!@|]?{varspec}(?:,{varspec})*\}})*"


def _ecma_regex() -> str:
    """A valid subset of ECMA-262 regexes (a regular language; every regex is not): literal
    characters, ``.``, character escapes and classes (ranges from ``0``, ``1``, ``a`` or ``A``
    within digits or letters of one case: ``a-f``, ``1-9``), one quantifier per atom
    (``{n}``/``{n,}`` up to 9999, ``{n,m}`` with n <= m, n < 10, m < 100), assertions, and
    groups one level deep, so that brackets always balance. Read alike by ECMA-262, Python's
    ``re`` and the ``regex`` module."""
    syntax = r"\^$.*+?()[\]{}|"
    escape = rf"\\(?:[dDwWsSfnrtv]|[{syntax}/])"
    literal = rf"[^{syntax}\\]"
    ranges = "0-[0-9]|1-[1-9]|a-[a-z]|A-[A-Z]"  # in order, so valid (from any start: 4x the states)
    klass = rf"\[\^?(?:[^\\\]\[\-]|{escape}|{ranges})+\]"  # never empty: Python reads [] apart
    counted = "|".join(f"{n},(?:[{n}-9]|[1-9][0-9])" for n in range(10))  # n <= m
    quantifier = rf"(?:[*+?]|\{{[0-9]{{1,4}},?\}}|\{{(?:{counted})\}})\??"
    assertion = r"(?:[\^$]|\\[bB])"

    def alternatives(atom: str) -> str:
        term = rf"(?:{assertion}|{atom}(?:{quantifier})?)"
        return rf"{term}*(?:\|{term}*)*"

    flat = rf"(?:{literal}|\.|{escape}|{klass})"
    group = rf"\((?:\?:)?{alternatives(flat)}\)"
    return alternatives(rf"(?:{flat}|{group})")


STRING_FORMATS["uri-template"] = _uri_template()
STRING_FORMATS["regex"] = _ecma_regex()

UNENFORCEABLE_FORMATS: frozenset[str] = frozenset()
"""Standard formats a validator checks that no regex here can enforce: a SchemaError unless
lenient (other unknown formats are annotations, as JSON Schema says)."""
