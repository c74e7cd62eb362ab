"""Bearer-token authentication of the server: the token file, the check, and the ASGI gate.

The gate is a plain ASGI middleware placed outside every route, so that a request without the
right token gets ``401`` and nothing else: no route matching happens first, hence unknown paths,
wrong methods and validation errors are never revealed to an unauthenticated client. WebSocket
handshakes are refused before they are accepted (an HTTP 401 denial response where the server
supports the ASGI ``websocket.http.response`` extension, otherwise a close with code 4401).

Which tokens are valid, and whose they are, is the TokenRegistry's answer (app/server/tokens.py: the
token file's primary admin token and the issued ones, re-read when their files change). A reader token
passes the gate only for its own study's reading routes (READER_ROUTES); anything else gets ``403``
(a WebSocket: a 403 denial, or a close with code 4403), again before any route is matched.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import stat
from pathlib import Path
from urllib.parse import parse_qs

WS_CLOSE_UNAUTHORIZED, WS_CLOSE_FORBIDDEN = 4401, 4403
_BODY_401 = json.dumps({"detail": "unauthorized: send 'Authorization: Bearer <token>'"}).encode()


def default_token_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("RadSynth Studio", "RadSynth")) / "server-token"


def load_or_create_token(path: Path) -> tuple[str, bool]:
    """The server's token from ``path``, created (owner read/write only) if absent.

    Returns ``(token, created)``. An existing file readable by group or others is refused: a
    token others can read is no secret.
    """
    path = Path(path).expanduser()
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if os.name == "posix" and mode & 0o077:
            raise PermissionError(
                f"token file {path} is readable by others (mode {mode:o}); run 'chmod 600 {path}' or delete it"
            )
        token = path.read_text().strip()
        if len(token) < 16:
            raise ValueError(f"token file {path} holds no usable token (at least 16 characters); delete it")
        return token, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL + mode 0600 at creation: the token never exists in a file with wider permissions
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True


def token_matches(presented: str | None, token: str) -> bool:
    """Constant-time comparison (hmac.compare_digest) of the presented token with the server's."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode("utf-8", "replace"), token.encode("utf-8"))


def bearer_from_scope(scope) -> str | None:
    """The token of a request: the Authorization header, or (WebSocket only) ``?token=``."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            scheme, _, cred = text.partition(" ")
            if scheme.lower() == "bearer":
                return cred.strip()
            return None
    if scope["type"] == "websocket":  # browsers cannot set headers on a WebSocket handshake
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if values:
            return values[0]
    return None


#: what a reader token may do: (method, path pattern); ``study`` must be the token's study (id or name)
READER_ROUTES = (
    ("GET", re.compile(r"^/api/reading/(?P<study>[^/]+)/cases$")),
    ("GET", re.compile(r"^/api/reading/(?P<study>[^/]+)/cases/[^/]+/image$")),
    ("POST", re.compile(r"^/api/reading/(?P<study>[^/]+)/answers$")),
)
PRINCIPAL_KEY = "radsynth.principal"


def reader_may(principal, method: str, path: str) -> bool:
    """Whether a reader token may make this request: only its own study's reading routes."""
    for m, pattern in READER_ROUTES:
        hit = pattern.match(path)
        if hit and method == m:
            return hit["study"] in {principal.study, principal.study_name} - {None}
    return False


def principal_of(scope):
    """The Principal the gate found for this request (None in an app without the gate)."""
    return scope.get(PRINCIPAL_KEY)


class TokenGate:
    """ASGI middleware: every HTTP request and WebSocket handshake must carry a valid token (401), and a
    reader token may only reach its own study's reading routes (403 for everything else)."""

    def __init__(self, app, token: str | None = None, registry=None):
        from app.server.tokens import TokenRegistry

        self.app = app
        self.registry = registry if registry is not None else TokenRegistry(token or "")

    async def _deny(self, scope, receive, send, status: int, body: bytes, extra=()):
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        # WebSocket: refuse before accepting
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": WS_CLOSE_UNAUTHORIZED if status == 401 else WS_CLOSE_FORBIDDEN})

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)  # lifespan
        principal = self.registry.principal(bearer_from_scope(scope))
        if principal is None:
            return await self._deny(scope, receive, send, 401, _BODY_401,
                                    [(b"www-authenticate", b'Bearer realm="radsynth"')])
        if not principal.is_admin and not (scope["type"] == "http" and
                                           reader_may(principal, scope.get("method", ""), scope["path"])):
            study = principal.study_name or principal.study
            body = json.dumps({"detail": f"forbidden: token {principal.id} is a reader token of study {study!r} for "
                                         f"reader {principal.reader!r}; it may only read that study "
                                         f"(/api/reading/{study}/cases, .../cases/ID/image, .../answers)"}).encode()
            return await self._deny(scope, receive, send, 403, body)
        scope[PRINCIPAL_KEY] = principal
        return await self.app(scope, receive, send)
