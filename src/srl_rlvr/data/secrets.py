"""Secret redaction: API keys, tokens, private keys and passwords become `[SECRET]` before text is stored.

The detectors are Yelp's `detect-secrets` (maintained, used in pre-commit hooks across the industry, one
curated regex per provider: AWS, GitHub, GitLab, OpenAI, Slack, Stripe, JWTs, private-key blocks...)
rather than patterns of our own; Presidio was the alternative, but it needs spaCy models and finds PII,
which `pii.py` already covers. detect-secrets flags lines, not spans, so each match is widened to the
whole token it sits in (its JWT pattern stops before the signature, its GitHub one reports only the
prefix). Its keyword detector finds `password: x` / `api_key = "x"` assignments; one sentence form of
our own, "my password is x", is added because chat users write that way. Text is normalised first
(`normalise`: NFKC, format characters dropped) so full-width letters or zero-width spaces do not split
a secret from its detector.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

PLACEHOLDER = "[SECRET]"


@functools.cache
def _detectors() -> tuple[tuple[re.Pattern[str], ...], Any]:
    """detect-secrets' provider patterns and its keyword detector, built on first use: `normalise`
    (which PII redaction, and so the server's config, imports) must not need detect-secrets."""
    from detect_secrets.plugins.artifactory import ArtifactoryDetector
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.keyword import KeywordDetector
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    detectors = (
        ArtifactoryDetector, AWSKeyDetector, AzureStorageKeyDetector, BasicAuthDetector,
        DiscordBotTokenDetector, GitHubTokenDetector, GitLabTokenDetector, JwtTokenDetector,
        MailchimpDetector, NpmDetector, OpenAIDetector, PrivateKeyDetector, PypiTokenDetector,
        SendGridDetector, SlackDetector, SquareOAuthDetector, StripeDetector, TelegramBotTokenDetector,
        TwilioKeyDetector,
    )  # fmt: skip
    return tuple(pattern for detector in detectors for pattern in detector.denylist), KeywordDetector()


# The keyword detector reads assignments as a file of each kind would hold them.
_KEYWORD_FILE_KINDS = ("secrets.yaml", "secrets.py")
_SAID = re.compile(
    r"(?i)\b(?:password|passwd|passphrase|pass ?code|pin|secret|api[ _-]?key|access[ _-]?key|token)"
    r"(?:\s+(?:is|was|are)\s*:?|\s*[:=])\s*[\"']?(?P<value>[^\s\"',;]{4,})"
)
_TOKEN_CHARS = re.compile(r"[^\s\"'`<>()\[\]{},;]")


def normalise(text: str) -> str:
    """NFKC (full-width and other compatibility forms folded) with format characters (zero-width
    spaces and joiners, bidi marks, tag characters) dropped: what detectors must see."""
    if text.isascii():  # nothing to fold: the common case stays cheap
        return text
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in folded if unicodedata.category(c) != "Cf")


def _widen(text: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and _TOKEN_CHARS.match(text[start - 1]):
        start -= 1
    while end < len(text) and _TOKEN_CHARS.match(text[end]):
        end += 1
    return start, end


def redact_secrets(text: str, known: Iterable[str] = ()) -> tuple[str, int]:
    """`text` normalised, with every secret found (and every string in `known`, such as the server's own
    API keys) replaced by `[SECRET]`; and how many were replaced."""
    text = normalise(text)
    spans: list[tuple[int, int]] = []
    for secret in known:
        if secret:
            spans += [(m.start(), m.end()) for m in re.finditer(re.escape(normalise(secret)), text)]
    patterns, keywords = _detectors()
    for pattern in patterns:
        spans += [_widen(text, m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]
    spans += [m.span("value") for m in _SAID.finditer(text)]
    for line in text.splitlines():
        for kind in _KEYWORD_FILE_KINDS:
            for found in keywords.analyze_line(filename=kind, line=line):
                value = found.secret_value or ""
                spans += [(m.start(), m.end()) for m in re.finditer(re.escape(value), text)] if value else []
    if not spans:
        return text, 0
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        text = text[:start] + PLACEHOLDER + text[end:]
    return text, len(merged)
