"""Keep credentials out of everything sleuth writes or prints.

API keys never enter sleuth's files (``BackendConfig.public_dict`` leaves
them out), but a URL can carry a password too (``http://user:pass@host/v1``,
often set through ``OPENAI_BASE_URL``), and it reaches config files, error
messages, traces and pages. ``redact`` masks the user-info part of every URL
in a text, and bearer tokens and ``sk-`` style keys, wherever they occur.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://user[:password]@host  ->  scheme://***@host
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")
# "Bearer <token>" in echoed headers, and OpenAI-style secret keys
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}")
_SECRET_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


def redact(text: str) -> str:
    """``text`` with URL credentials, bearer tokens and ``sk-...`` keys masked."""
    if not text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _SECRET_KEY.sub(f"sk-{MASK}", text)


def redact_value(value: Any) -> Any:
    """``redact`` applied to every string inside dicts, lists and tuples (keys included)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value
