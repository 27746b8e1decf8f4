"""Redaction of credentials from anything the bot shows (DESIGN.md section 4 rule 8).

Every text that leaves the host goes through :func:`redact`: comments, PR titles and bodies,
review replies, check runs, commit messages, logs, job summaries and the dashboard. It
replaces the configured secret values and anything shaped like a credential:

- GitHub tokens (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``github_pat_``, the older
  ``v1.`` installation tokens):
  https://github.blog/engineering/platform-security/behind-githubs-new-authentication-token-formats/
- Anthropic API keys (``sk-ant-``) and other ``sk-`` style API keys;
- AWS access key ids (``AKIA``/``ASIA`` and the other prefixes of
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-unique-ids)
  and the value given to ``aws_secret_access_key`` or ``aws_session_token``;
- PEM private keys (RFC 7468 armour, also when cut off before the END line);
- Slack and Google API tokens, HTTP ``Authorization`` header values and the user
  information of URLs (``https://user:token@host``), as git prints a remote.

A credential split by invisible characters (a zero-width space inside ``ghp_...``) is still
one credential to a reader: matching runs on the text without Default_Ignorable code points
and the whole span, invisible characters included, is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.core.sanitize import IGNORABLE_RE

REDACTED = "[redacted]"

TOKEN_PATTERN = re.compile(
    r"(?:gh[pousr]_[A-Za-z0-9]{20,255}"
    r"|github_pat_[A-Za-z0-9_]{20,255}"
    r"|sk-ant-[A-Za-z0-9_\-]{10,255}"
    r"|\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_\-]{32,255}"
    r"|v1\.[0-9a-f]{40}"
    r"|\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}\b"
    r"|(?i:aws_secret_access_key|aws_session_token)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{16,}"
    r"|-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|\Z)"
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,255}"
    r"|\bAIza[0-9A-Za-z_\-]{35}"
    r"|(?i:authorization:\s*(?:basic|bearer|token)\s+)[A-Za-z0-9+/=._\-~]{8,}"
    r"|(?<=://)[^/\s:@]+:[^/\s@]+@)",
    re.DOTALL,
)


# Every credential shape of TOKEN_PATTERN holds one of these once the text is folded
# (:func:`fold_letters`): a text without any cannot match, and is not searched. The pattern
# tries each of its shapes at every position (41 us for a 236-character log line, against
# 3 us for these).
TOKEN_LITERALS = (
    *("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    *("sk-", "v1.", "aws_s", "-----begin", "xox", "aiza", "authorization", "://"),
    *("akia", "asia", "abia", "acca", "agpa", "aida", "aipa", "anpa", "anva", "apka", "aroa"),
    "asca",
)
_LITERAL_RE = re.compile("|".join(map(re.escape, TOKEN_LITERALS)))


def fold_letters(text: str) -> str:
    """``text`` with every character that TOKEN_PATTERN's case-insensitive parts take for
    an ASCII letter made that lower-case letter, character for character: Python's ``re``
    also takes the dotted capital I (which ``lower`` makes an i and a combining dot), the
    dotless i, the long s and the Kelvin sign for letters."""
    return text.lower().replace("\u0307", "").replace("\u0131", "i").replace("\u017f", "s")


def might_hold_token(text: str) -> bool:
    """False when ``text`` cannot hold a match of :data:`TOKEN_PATTERN`."""
    return _LITERAL_RE.search(fold_letters(text)) is not None


class Redactor:
    """:func:`redact` with its secrets prepared once, for a caller that redacts many texts
    with the same secrets (every log line: bot/observability.py)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        cleaned = {IGNORABLE_RE.sub("", s) for s in secrets}
        self.secrets = tuple(sorted(s for s in cleaned if s))

    def __call__(self, text: str) -> str:
        """``text`` with known token patterns and the secrets replaced by ``[redacted]``."""
        # No Default_Ignorable code point is ASCII: an ASCII text is not searched for one.
        if text.isascii() or IGNORABLE_RE.search(text) is None:
            keep: range | list[int] = range(len(text))
            visible = text
        else:
            keep = [i for i, c in enumerate(text) if IGNORABLE_RE.fullmatch(c) is None]
            visible = "".join(text[i] for i in keep)
        spans = sorted(
            (keep[start], keep[end - 1] + 1) for start, end in self._spans(visible) if end > start
        )
        if not spans:
            return text
        out: list[str] = []
        position = 0
        for start, end in spans:
            if end <= position:
                continue
            if start >= position:
                out += [text[position:start], REDACTED]
            position = end
        out.append(text[position:])
        return "".join(out)

    def leaves_alone(self, texts: Iterable[str]) -> bool:
        """True when redacting each of ``texts`` would change none of them: no text holds a
        secret, and none holds a literal every credential shape needs (so none can match
        :data:`TOKEN_PATTERN`). Checked once on all of them joined, invisible characters
        taken out, which holds each text whole: a secret or literal in any one is in the
        join (a literal the join makes across two texts only costs the caller the redaction
        of each). A log line's values cost one check, not one redaction each."""
        joined = "\n".join(texts)
        if not joined.isascii():  # Default_Ignorable code points are none of them ASCII
            joined = IGNORABLE_RE.sub("", joined)
        if might_hold_token(joined):
            return False
        return not any(secret in joined for secret in self.secrets)

    def _spans(self, text: str) -> list[tuple[int, int]]:
        spans = [m.span() for m in TOKEN_PATTERN.finditer(text)] if might_hold_token(text) else []
        for secret in self.secrets:
            start = text.find(secret)
            while start != -1:
                spans.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        return spans


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace known token patterns and the given secret values with ``[redacted]``."""
    return Redactor(secrets)(text)


def hide_paths(text: str, paths: Iterable[tuple[str, str]]) -> str:
    """Replace each host directory of ``paths`` (``(directory, label)``) with its label where
    it stands as a whole path (not inside a URL or a longer name), longest first, so that the
    data directory, the workspaces, the home and temporary directories of the host are never
    shown (issue 14)."""
    for directory, label in sorted(paths, key=lambda p: len(p[0]), reverse=True):
        stripped = directory.rstrip("/")
        if len(stripped) > 1:
            text = re.sub(
                r"(?<![\w.~/:-])" + re.escape(stripped) + r"(?![^/\s'\"`),:;\]])", label, text
            )
    return text
