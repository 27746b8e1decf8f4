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


def _spans(text: str, secrets: Iterable[str]) -> list[tuple[int, int]]:
    spans = [m.span() for m in TOKEN_PATTERN.finditer(text)]
    for secret in {s for s in secrets if s}:
        start = text.find(secret)
        while start != -1:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
    return spans


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace known token patterns and the given secret values with ``[redacted]``."""
    wanted = [IGNORABLE_RE.sub("", s) for s in secrets if s]
    if IGNORABLE_RE.search(text) is None:
        keep: range | list[int] = range(len(text))
        visible = text
    else:
        keep = [i for i, c in enumerate(text) if IGNORABLE_RE.fullmatch(c) is None]
        visible = "".join(text[i] for i in keep)
    spans = sorted(
        (keep[start], keep[end - 1] + 1)
        for start, end in _spans(visible, [s for s in wanted if s])
        if end > start
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
