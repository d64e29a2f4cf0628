"""`RedactPII`: replace emails, phone numbers, IP addresses and secrets with typed placeholders.

Kinds, in the order they are applied (an earlier kind's placeholder can
never be matched by a later one, since placeholders hold no digits):

* ``key`` -> ``<KEY>``: private key blocks (``-----BEGIN ... PRIVATE
  KEY-----`` to ``-----END ... PRIVATE KEY-----``), AWS access key ids
  (AKIA/ASIA + 16), GitHub tokens (ghp_/gho_/ghu_/ghs_/ghr_ + 36 or more,
  github_pat_...), and the value of an assignment to a secret-looking name
  (``api_key = ...``, ``token: ...``, ``password=...``) when the value is
  at least 16 characters of letters, digits and ``+/_-.=`` that mixes
  letters and digits with an entropy of at least 3 bits per character
  (random-looking: a word, a dotted setting name or a repeated pattern is
  not a secret). The name is kept: ``api_key = <KEY>``.
* ``email`` -> ``<EMAIL>``.
* ``ipv6`` -> ``<IP>``: colon-separated hex groups that Python's
  `ipaddress` accepts and that contain a decimal digit (so C++ names such
  as ``beef::cafe`` are left alone); an IPv4 tail (``::ffff:10.0.0.1``) is
  part of the address.
* ``ipv4`` -> ``<IP>``: four dot-separated numbers 0-255 that are not part
  of a longer dotted number. A version number with four parts (``version
  1.2.3.4``) is redacted too: it is indistinguishable from an address, and
  losing a version number costs less than leaking an address.
* ``phone`` -> ``<PHONE>``: international numbers that start with "+"
  (7-15 digits in groups separated by spaces, dots, dashes or a bracketed
  area code), North American numbers written ``(555) 123-4567``,
  ``555-123-4567`` or ``555.123.4567``, and Chinese mobile numbers (11
  digits starting 13-19, alone or as 3-4-4 groups). A date (2024-01-15), a
  plain number of another length or a number inside a longer digit run is
  not a phone.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable

KINDS = ("key", "email", "ipv6", "ipv4", "phone")
PLACEHOLDERS = {"key": "<KEY>", "email": "<EMAIL>", "ipv6": "<IP>", "ipv4": "<IP>",
                "phone": "<PHONE>"}

_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----",
    re.DOTALL)
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(?:(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,255}"
    r"|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9])")
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9])((?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?key(?:[_-]?id)?"
    r"|auth[_-]?token|access[_-]?token|token|password|passwd|pwd|private[_-]?key|client[_-]?secret)"
    r"[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9+/_.=-]{16,})")
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?"
    r"(?![0-9A-Za-z_:])", re.ASCII)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)", re.ASCII)
_PHONE = re.compile(
    r"(?<![0-9A-Za-z_+])(?:"
    r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){1,5}"    # international, +CC ...
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}([.-])\d{3}\1\d{4}"    # North American
    r"|1[3-9]\d(?:\d{8}|([ -])\d{4}\2\d{4})"                      # Chinese mobile
    r")(?![0-9A-Za-z_-]|\.\d)", re.ASCII)
_MIN_SECRET_ENTROPY = 3.0


class RedactPII:
    """Modifier: replace personal data and secrets by placeholders, counting each kind.

    `kinds` chooses which of ``key, email, ipv6, ipv4, phone`` to redact
    (all by default).
    """

    name = "pii"

    def __init__(self, *, kinds: Iterable[str] = KINDS):
        kinds = tuple(kinds)
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"RedactPII: unknown kind(s) {unknown}; choose from {list(KINDS)}")
        self.kinds = [kind for kind in KINDS if kind in kinds]

    def __call__(self, text: str, lang: str | None = None) -> tuple[str, dict[str, int]]:
        """Return the redacted text and the number of replacements of each kind."""
        counts: dict[str, int] = {}
        for kind in self.kinds:
            text, n = _REDACTORS[kind](text)
            if n:
                counts[kind] = n
        return text, counts


def _redact_keys(text: str) -> tuple[str, int]:
    text, blocks = _PRIVATE_KEY.subn("<KEY>", text)
    text, tokens = _TOKEN.subn("<KEY>", text)
    assigned = 0

    def value(match: re.Match[str]) -> str:
        nonlocal assigned
        if not _looks_random(match.group(2)):
            return match.group(0)
        assigned += 1
        return match.group(1) + "<KEY>"

    return _SECRET_ASSIGNMENT.sub(value, text), blocks + tokens + assigned


def _redact_email(text: str) -> tuple[str, int]:
    return _EMAIL.subn("<EMAIL>", text) if "@" in text else (text, 0)


def _redact_ipv6(text: str) -> tuple[str, int]:
    if "::" not in text and text.count(":") < 7:
        return text, 0
    return _substitute(_IPV6, text, "<IP>", _is_ipv6)


def _redact_ipv4(text: str) -> tuple[str, int]:
    return _IPV4.subn("<IP>", text)


def _redact_phone(text: str) -> tuple[str, int]:
    return _substitute(_PHONE, text, "<PHONE>", _is_phone)


_REDACTORS: dict[str, Callable[[str], tuple[str, int]]] = {
    "key": _redact_keys, "email": _redact_email, "ipv6": _redact_ipv6, "ipv4": _redact_ipv4,
    "phone": _redact_phone}


def _substitute(pattern: re.Pattern[str], text: str, placeholder: str,
                accept: Callable[[str], bool]) -> tuple[str, int]:
    replaced = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal replaced
        if not accept(match.group(0)):
            return match.group(0)
        replaced += 1
        return placeholder

    return pattern.sub(replace, text), replaced


def _is_ipv6(candidate: str) -> bool:
    if not any(ch.isdigit() for ch in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _is_phone(candidate: str) -> bool:
    digits = sum(ch.isdigit() for ch in candidate)
    return 7 <= digits <= 15


def _looks_random(value: str) -> bool:
    """True when `value` mixes letters and digits with high per-character entropy."""
    if not (any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value)):
        return False
    entropy = -sum(c / len(value) * math.log2(c / len(value)) for c in Counter(value).values())
    return entropy >= _MIN_SECRET_ENTROPY
