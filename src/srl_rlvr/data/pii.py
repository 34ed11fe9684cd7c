"""PII redaction: emails, phones, card numbers, SSNs, IBANs, IPs and street addresses become placeholders.

Text is also matched folded (NFKC, format characters dropped: `secrets.normalise`), so full-width digits
or a zero-width space inside a number do not hide it; an SSN without dashes counts when it is named as
one; IPv6 addresses count as `ip`.

Every generated row passes through here before it is stored, and the serving guardrails reuse the same
functions, so this is regex-only stdlib code that stays cheap (1,000 trajectories in about 0.2 s).
Where a shape alone is ambiguous a checksum decides: Luhn (ISO/IEC 7812) for cards, mod-97
(ISO 13616) for IBANs, so a random long number or an invoice reference is left alone. The rules favour
precision: arithmetic, dates, money, invoice numbers and code must come through untouched.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from srl_rlvr.data.secrets import normalise

PII_KINDS: tuple[str, ...] = ("email", "phone", "card", "ssn", "iban", "ip", "address")

# Applied in this order: a card or IBAN holds digit groups the phone rule would otherwise half-eat, and
# an email may hold digits, so the most specific shapes go first and later rules see their placeholders.
_ORDER = ("email", "iban", "card", "ssn", "ip", "phone", "address")

# The digit patterns below open with a lookahead on their first character: it lets `re` skip ahead to
# candidate starts instead of trying the lookbehinds at every position (a third faster on invoices).
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+@"
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,}"  # labels and TLD may be non-ASCII (café.example)
    r"(?![\w-])"
)

# ISO 13616 registry: an IBAN's length is fixed by its country, which makes the mod-97 check far stricter.
_IBAN_LENGTHS = dict(
    AD=24, AE=23, AL=28, AT=20, AZ=28, BA=20, BE=16, BG=22, BH=22, BI=27, BR=29, BY=28, CH=21, CR=22,
    CY=28, CZ=24, DE=22, DJ=27, DK=18, DO=28, EE=20, EG=29, ES=24, FI=18, FK=18, FO=18, FR=27, GB=22,
    GE=22, GI=23, GL=18, GR=27, GT=28, HR=21, HU=28, IE=22, IL=23, IQ=23, IS=26, IT=27, JO=30, KW=30,
    KZ=20, LB=28, LC=32, LI=21, LT=20, LU=20, LV=21, LY=25, MC=27, MD=24, ME=22, MK=19, MN=20, MR=27,
    MT=31, MU=30, NI=28, NL=18, NO=15, OM=23, PK=24, PL=28, PS=29, PT=25, QA=29, RO=24, RS=22, RU=33,
    SA=24, SC=31, SD=18, SE=24, SI=19, SK=24, SM=27, SO=23, ST=25, SV=28, TL=23, TN=24, TR=26, UA=29,
    VA=22, VG=24, XK=20,
)  # fmt: skip
_IBAN = re.compile(
    r"(?=[A-Za-z])(?<!\w)[A-Za-z]{2}\d{2}"  # any case: the checksum reads it upper-cased
    r"(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,3})?)"  # unbroken, or in groups of 4
    r"(?!\w)"
)

# 13-19 digits, either unbroken or in groups split by one kind of separator (4-4-4-4, Amex 4-6-5). Never
# from the middle of a run of digit groups: the tail of "DE16 5001 0517 3875 0000 00" may pass Luhn.
_CARD = re.compile(
    r"(?=\d)(?<![\w-])(?<!\d[ .-])(?:\d{13,19}|\d{4}(?P<sep>[ .-])\d{2,6}(?:(?P=sep)\d{2,6}){1,3})(?!\w|\.\d)"
)

# US SSN; area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
_SSN = re.compile(r"(?=\d)(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")

# Undashed or spaced, an SSN is only told from any nine digits by the words before it.
_SSN_NAMED = re.compile(
    r"(?i)(?P<lead>\b(?:ssn|social security(?: number| no\.?)?)\b\D{0,20}?)"
    r"(?P<number>(?<!\d)(?!000|666|9\d\d)\d{3}[ .]?(?!00)\d{2}[ .]?(?!0000)\d{4}(?!\d))"
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IP = re.compile(rf"(?=\d)(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")

# `(?<!\d )` and `(?! \d)` keep a run of spaced numbers ("sizes 200 300 4000 5000") from reading as a phone.
_PHONE = re.compile(
    r"(?=[\d+(])(?<![\w+)=*/-])(?<!\d )(?:"
    r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,4}){2,6}"  # international: +44 20 7946 0958
    r"|(?:1[-. ])?\([2-9]\d{2}\) ?[2-9]\d{2}[-. ]\d{4}"  # (415) 555-0100
    r"|(?:1[-. ])?[2-9]\d{2}(?P<sep>[-. ])[2-9]\d{2}(?P=sep)\d{4}"  # 415-555-0100, 415.555.0100
    r"|[2-9]\d{2}-\d{4}"  # local 555-0100; a leading 1 keeps Tokyo's postcode 105-0014 out
    r")(?![\w-]|\.\d| \d| ?=|[+*/<>])"  # "500-1000=-500" is a sum, "555-0100 / +44 ..." is two phones
)

_STREET_SUFFIXES = (
    "Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Lane", "Ln", "Drive", "Dr",
    "Court", "Ct", "Way", "Parkway", "Pkwy", "Place", "Pl", "Terrace", "Crescent", "Square", "Sq",
    "Circle", "Highway", "Hwy",
)  # fmt: skip
_STREET_WORD = r"(?:[A-Z][a-z'’]+|\d{1,3}(?:st|nd|rd|th))"  # Baker, O'Connell, 5th
_UNIT = r"(?:\.?,? (?i:apt|apartment|suite|ste|unit|flat|room|floor)\.? ?#?[A-Za-z0-9-]{1,5}\b)"
_ADDRESS = re.compile(
    rf"(?=\d)(?<![\w.-])\d{{1,5}}[A-Za-z]?(?: {_STREET_WORD}){{1,4}} (?:{'|'.join(_STREET_SUFFIXES)})\b{_UNIT}?"
)

# IPv6: a candidate of hex groups and colons; ipaddress decides (a time like 10:30:00 is no address).
_IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:)(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")

_DIGIT = re.compile(r"\d")


def _luhn_ok(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if len(compact) != _IBAN_LENGTHS.get(compact[:2]):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _ip_ok(candidate: str) -> bool:
    """Public and private addresses: a private one (10.0.0.7, 192.168.1.20) names a machine on
    someone's network, which production traffic should not leak either. Loopback, unspecified and
    multicast addresses name no one and stay. Code and data about networks (a codegen task on IP
    parsing) can leave `ip` out of the kinds they redact.

    Four one-digit octets (1.2.3.4, 8.8.8.8, 1.1.1.1) are version numbers or public resolvers, not people.
    """
    try:
        address = ipaddress.IPv4Address(candidate)
    except ValueError:
        return False
    if address.is_loopback or address.is_unspecified or address.is_multicast or address.is_reserved:
        return False
    return (address.is_global or address.is_private) and len(candidate) > len("1.2.3.4")


def _ipv6_ok(candidate: str) -> bool:
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified or address.is_multicast)


def _phone_ok(candidate: str) -> bool:
    """E.164 allows at most 15 digits; fewer than 8 after a '+' is a signed number, not a phone."""
    return not candidate.startswith("+") or 8 <= sum(c.isdigit() for c in candidate) <= 15


# kind -> (pattern, checksum or sanity check on a match, a character every match holds: a cheap gate).
_RULES: dict[str, tuple[re.Pattern[str], Callable[[str], bool] | None, str]] = {
    "email": (_EMAIL, None, "@"),
    "iban": (_IBAN, _iban_ok, ""),
    "card": (_CARD, _luhn_ok, ""),
    "ssn": (_SSN, None, "-"),
    "ip": (_IP, _ip_ok, "."),
    "phone": (_PHONE, _phone_ok, ""),
    "address": (_ADDRESS, None, " "),
}


def _valid_length(candidate: str, valid: Callable[[str], bool]) -> int:
    """How much of a match `valid` accepts: all of it, all but its last group, or nothing (0).

    A greedy match may swallow the next token ("IBAN AT61 1904 3002 3457 3201 BIC", "card ... 2024");
    dropping that one group finds the real number instead of losing it. One cut only: each extra cut is
    another draw at passing a checksum by chance.
    """
    if valid(candidate):
        return len(candidate)
    cut = max(candidate.rfind(sep) for sep in " -.")
    return cut if cut > 0 and valid(candidate[:cut]) else 0


def _redact_kind(text: str, kind: str, counts: Counter[str]) -> str:
    pattern, valid, gate = _RULES[kind]
    placeholder = f"[{kind.upper()}]"
    if kind == "ssn":  # the forms without dashes, named as an SSN
        text = _SSN_NAMED.sub(lambda m: (counts.update([kind]), m.group("lead") + placeholder)[1], text)
    if kind == "ip" and ":" in text:
        text = _IPV6.sub(
            lambda m: (counts.update([kind]), placeholder)[1] if _ipv6_ok(m.group(0)) else m.group(0), text
        )
    if gate not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        cut = len(found) if valid is None else _valid_length(found, valid)
        if cut == 0:
            return found
        counts[kind] += 1
        return placeholder + found[cut:]

    return pattern.sub(replace, text)


def _checked_kinds(kinds: Iterable[str]) -> frozenset[str]:
    selected = frozenset((kinds,) if isinstance(kinds, str) else kinds)
    unknown = sorted(selected - set(PII_KINDS))
    if unknown:
        raise ValueError(
            f"unknown PII kind(s) {', '.join(map(repr, unknown))}; valid: {', '.join(PII_KINDS)}"
        )
    return selected


def _redact(text: str, selected: frozenset[str], counts: Counter[str]) -> str:
    """Matched on the text as written; and where folding it (full-width digits, zero-width or other
    format characters splitting a number) reveals more, the folded text is what comes back."""
    found = _redact_as_written(text, selected, counts)
    folded = normalise(text)
    if folded == text:
        return found
    more: Counter[str] = Counter()
    folded = _redact_as_written(folded, selected, more)
    if sum(more.values()) > sum(counts.values()):
        counts.clear()
        counts.update(more)
        return folded
    return found


def _redact_as_written(text: str, selected: frozenset[str], counts: Counter[str]) -> str:
    # Every kind but email needs a digit (or an IPv6 colon): most prose is done after one cheap scan.
    if "@" not in text and not _DIGIT.search(text) and ":" not in text:
        return text
    for kind in _ORDER:
        if kind in selected:
            text = _redact_kind(text, kind, counts)
    return text


def _as_dict(counts: Counter[str]) -> dict[str, int]:
    return {kind: counts[kind] for kind in PII_KINDS if counts[kind] > 0}


def redact_text(text: str, kinds: Iterable[str] = PII_KINDS) -> tuple[str, dict[str, int]]:
    """Replace each PII match with a placeholder like [EMAIL], [PHONE], [CARD], [SSN], [IBAN], [IP], [ADDRESS].

    Returns the new text and how many of each kind were replaced (only kinds with count > 0). A bare
    string names one kind; an unknown kind name raises ValueError listing the valid ones.
    """
    counts: Counter[str] = Counter()
    return _redact(text, _checked_kinds(kinds), counts), _as_dict(counts)


def redact_value(value: Any, kinds: Iterable[str] = PII_KINDS) -> tuple[Any, dict[str, int]]:
    """Recursively redact every str inside dicts/lists/tuples (keys untouched); other values unchanged.

    Built for a row as JSON-like data (e.g. `trajectory.model_dump()`); counts are summed over the row.
    """
    selected = _checked_kinds(kinds)
    counts: Counter[str] = Counter()

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return _redact(item, selected, counts)
        if isinstance(item, dict):
            return {key: walk(val) for key, val in item.items()}
        if isinstance(item, list):
            return [walk(val) for val in item]
        if isinstance(item, tuple):
            return tuple(walk(val) for val in item)
        return item

    return walk(value), _as_dict(counts)
