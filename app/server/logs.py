"""Secrets never reach the server's log: every log record is redacted as it is made, whatever its logger or level.

uvicorn's access log prints each request's path with its query string, so a WebSocket opened with
``?token=...`` (browsers cannot set headers on a handshake) wrote the token at ``--log-level info``;
the websockets library at debug level prints request lines and headers (``Authorization: Bearer ...``).
``install_redaction`` wraps the logging module's record factory, so each record's message, arguments
and traceback text are redacted once, before any handler or formatter sees them (uvicorn's access
formatter reads ``record.args`` as a tuple: the arguments are redacted one by one and keep their shape).
Redacted: the value of any ``token`` / ``access_token`` query parameter, the credential after
``Bearer``, and every literal secret given (the server's token).
"""

from __future__ import annotations

import logging
import re
import traceback

REDACTED = "[redacted]"
_QUERY_TOKEN = re.compile(r"((?:^|[?&;\s])(?:access_)?token=)[^&\s\"';]*", re.IGNORECASE)
_BEARER = re.compile(r"(bearer\s+)[^\s\"',]+", re.IGNORECASE)


class Redactor:
    def __init__(self, secrets: list[str] | tuple[str, ...] = ()):
        self.secrets = [s for s in secrets if s]

    def text(self, value: str) -> str:
        for s in self.secrets:
            if s in value:
                value = value.replace(s, REDACTED)
        value = _QUERY_TOKEN.sub(lambda m: m.group(1) + REDACTED, value)
        return _BEARER.sub(lambda m: m.group(1) + REDACTED, value)

    def value(self, v):
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, bytes):
            return self.text(v.decode("latin-1")).encode("latin-1")
        if isinstance(v, (int, float, type(None))):
            return v
        text = str(v)  # an object whose str() holds the URL (a request, an exception): its redacted text
        red = self.text(text)
        return v if red == text else red

    def record(self, rec: logging.LogRecord) -> logging.LogRecord:
        if isinstance(rec.msg, str):
            rec.msg = self.text(rec.msg)
        elif rec.msg is not None:
            rec.msg = self.value(rec.msg)
        if isinstance(rec.args, tuple):
            rec.args = tuple(self.value(a) for a in rec.args)
        elif isinstance(rec.args, dict):
            rec.args = {k: self.value(a) for k, a in rec.args.items()}
        if rec.exc_info and rec.exc_info[0] is not None:
            # formatted now, redacted, and kept in exc_text, which formatters use instead of exc_info
            rec.exc_text = self.text("".join(traceback.format_exception(*rec.exc_info)).rstrip("\n"))
        if rec.stack_info:
            rec.stack_info = self.text(rec.stack_info)
        return rec


_installed: dict = {}


def install_redaction(secrets: list[str] | tuple[str, ...] = ()) -> Redactor:
    """Redact every log record of this process from now on (idempotent: a second call updates the secrets)."""
    if "redactor" in _installed:
        _installed["redactor"].secrets = [s for s in secrets if s]
        return _installed["redactor"]
    redactor = Redactor(secrets)
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        return redactor.record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed["redactor"] = redactor
    return redactor
