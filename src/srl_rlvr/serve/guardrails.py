"""Guardrails per role: what a request may ask, and what an answer may say.

Input, in order: size, schema, prompt-injection patterns (over every message, the joined conversation,
and their normalised, de-leeted and decoded forms: `injection_views`), scope patterns (each refuses), then PII
redaction (the model never sees the PII). Output: format against the role's schema (the caller retries a
non-conforming answer once, then refuses), length (truncates), blocklist (replaces the answer with a
safe reply), PII redaction. Each rule a request trips comes back as a `Violation` for the audit log; the
text that tripped it never does.
"""

from __future__ import annotations

import base64
import codecs
import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from srl_rlvr.data.pii import redact_text
from srl_rlvr.serve.config import InputRules, OutputRules, RoleConfig

Message = dict[str, str]


@dataclass(frozen=True)
class Violation:
    rule: str  # e.g. "input.injection", "output.format"
    action: str  # "refuse", "redact", "retry", "truncate" or "replace"


@dataclass
class Checked:
    """The request's messages or the answer's text after the rules, and what the rules did to it."""

    value: list[Message] | str
    violations: list[Violation] = field(default_factory=list)

    @property
    def refused(self) -> Violation | None:
        return next((v for v in self.violations if v.action == "refuse"), None)


@functools.lru_cache(maxsize=64)
def _schema(reference: str) -> type[BaseModel]:
    from srl_rlvr.tasks.extraction import load_schema

    return load_schema(reference)


def _matches_json(schema: type[BaseModel], text: str) -> bool:
    try:
        schema.model_validate_json(text)
    except ValidationError:
        return False
    return True


_INVISIBLE = re.compile(
    r"[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufe00-\ufe0f]"
)
_BLANKS = {0x2800: " ", 0x3164: " ", 0xFFA0: " "}  # the Braille blank and Hangul fillers show as spaces
_LEET = str.maketrans("0134578@$|!", "oieastbasii")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


@functools.cache
def _skeleton_table() -> dict[int, str]:
    """Character -> the ASCII letter or digit it is confusable with (Unicode's confusables.txt, as the
    `confusable-homoglyphs` package ships it): Cyrillic 'о' reads as 'o', Greek 'Α' as 'A'."""
    from confusable_homoglyphs.confusables import confusables_data

    table: dict[int, str] = {}
    for char, glyphs in confusables_data.items():
        if len(char) == 1 and not char.isascii():
            ascii_ones = [
                g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalnum()
            ]
            if ascii_ones:
                table[ord(char)] = ascii_ones[0]
    return table


def normalise(text: str) -> str:
    """What injection patterns are matched against: combining marks stripped, compatibility forms
    folded (NFKC: full-width and styled letters become plain), confusable letters read as the ASCII
    ones they imitate, invisible, format (tag characters too) and control characters dropped, blank
    look-alikes made spaces, case folded, every run of whitespace one space. "I g n o r e" spelled with
    spaces between letters is not undone."""
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    text = unicodedata.normalize("NFKC", text).translate(_BLANKS).translate(_skeleton_table())
    text = _INVISIBLE.sub("", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf"))
    return " ".join(text.casefold().split())


def _decoded(text: str) -> list[str]:
    """Obvious encodings of hidden text: base64 runs that decode to text, and the whole text in ROT13."""
    found = [codecs.encode(text, "rot13")]
    for run in _BASE64.findall(text):
        try:
            plain = base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        if plain.isprintable() or all(ch.isprintable() or ch.isspace() for ch in plain):
            found.append(plain)
    return found


def injection_views(messages: list[Message]) -> list[str]:
    """Every text the injection patterns must see: each message and the whole conversation joined (a
    phrase split over two messages), each also with leetspeak read as letters and with obvious
    encodings (base64, ROT13) decoded; all normalised."""
    raw = [m["content"] for m in messages]
    raw.append(" ".join(raw))
    views: list[str] = []
    for text in raw:
        for variant in (text, *_decoded(text)):
            plain = normalise(variant)
            views += [plain, plain.translate(_LEET)]
    return list(dict.fromkeys(views))


def check_input(rules: InputRules, messages: list[Message]) -> Checked:
    """Refuse (first rule that trips) or pass the messages on, PII redacted when the role asks.

    Injection patterns look at every message, system and assistant ones included (a client's system
    message is as much client text as its user message), after `normalise`.
    """
    user = [m["content"] for m in messages if m["role"] == "user"]
    if rules.max_chars is not None and sum(len(m["content"]) for m in messages) > rules.max_chars:
        return Checked(messages, [Violation("input.size", "refuse")])
    if rules.schema_ is not None and not (user and _matches_json(_schema(rules.schema_), user[-1])):
        return Checked(messages, [Violation("input.schema", "refuse")])
    texts = injection_views(messages)
    if any(re.search(p, text, re.IGNORECASE) for p in rules.injection_patterns for text in texts):
        return Checked(messages, [Violation("input.injection", "refuse")])
    if rules.scope_patterns and not any(re.search(p, text) for p in rules.scope_patterns for text in user):
        return Checked(messages, [Violation("input.scope", "refuse")])
    if not rules.redact_pii:
        return Checked(messages)
    redacted, found = [], 0
    for m in messages:
        text, counts = redact_text(m["content"], rules.redact_pii)
        redacted.append({**m, "content": text})
        found += sum(counts.values())
    return Checked(redacted, [Violation("input.pii", "redact")] if found else [])


def format_check(role: RoleConfig) -> Callable[[str], bool] | None:
    """Whether an answer is in the role's format: its task's parse() finds an answer, or the last JSON
    object in it validates against the output schema. None when the role has neither."""
    if role.task is not None:
        from srl_rlvr.tasks import load_task

        task = load_task(role.task)
        return lambda text: task.parse(text) is not None
    if role.guardrails.output.schema_ is not None:
        from srl_rlvr.tasks.task_data import last_json_object

        schema = _schema(role.guardrails.output.schema_)

        def conforms(text: str) -> bool:
            found = last_json_object(text)
            try:
                return found is not None and schema.model_validate(found) is not None
            except ValidationError:
                return False

        return conforms
    return None


@functools.lru_cache(maxsize=64)
def _blocklist_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)


def check_output(rules: OutputRules, text: str) -> Checked:
    """Length, blocklist and PII rules on an answer that already passed the format check."""
    violations = []
    if rules.max_chars is not None and len(text) > rules.max_chars:
        text = text[: rules.max_chars]
        violations.append(Violation("output.length", "truncate"))
    if rules.blocklist and _blocklist_pattern(tuple(rules.blocklist)).search(text):
        return Checked(rules.safe_reply, [*violations, Violation("output.blocklist", "replace")])
    if rules.redact_pii:
        text, counts = redact_text(text, rules.redact_pii)
        if counts:
            violations.append(Violation("output.pii", "redact"))
    return Checked(text, violations)
