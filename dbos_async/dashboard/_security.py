"""Who may act: the token, the session cookie, and the defences against cross-site requests.

Without a token the dashboard is read-only: every action is refused (403). With one,
an action (a POST) is allowed for a request that carries either

- ``Authorization: Bearer <token>`` (scripts; a browser never sends it cross-site
  without asking the server first, which this app never allows), or
- the session cookie set by the login form, together with the form's CSRF field (a
  value derived from the session, unknown to another site) and, when the browser says
  where the request comes from (``Sec-Fetch-Site``, ``Origin``), the same origin.

The session cookie holds a random nonce and its expiry (``SESSION_SECONDS`` after the
login), signed with a key derived from the token (HMAC-SHA256), never the token itself;
it is ``HttpOnly`` and ``SameSite=Strict``. A session ends when it expires, when the
token changes (every session), or at logout: the process that served the logout refuses
that session's cookie from then on, even a copy of it (other processes serving the same
dashboard refuse it when it expires).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from starlette.requests import Request

__all__ = ["COOKIE", "SESSION_SECONDS", "Guard"]

COOKIE = "dbos_dashboard_session"
#: How long a login lasts.
SESSION_SECONDS = 12 * 3600


def _now() -> float:
    """The time sessions are stamped and checked with (epoch seconds)."""
    return time.time()


class Guard:
    """The token (None: read-only) and what it signs."""

    def __init__(self, token: str | None) -> None:
        if token is not None and (not isinstance(token, str) or len(token) < 8):
            raise ValueError(
                "the dashboard token must be a str of at least 8 characters "
                "(use a long random one, e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(24))')"
            )
        self._token = token
        self._key = (
            hashlib.sha256(b"dbos_async dashboard\x00" + token.encode()).digest()
            if token is not None
            else b""
        )
        #: Sessions logged out here, each until it would have expired.
        self._ended: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        """True if a token is configured (actions possible)."""
        return self._token is not None

    def _sign(self, purpose: str, value: str) -> str:
        message = f"{purpose}\x00{value}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the token (constant time)."""
        if self._token is None:
            return False
        return hmac.compare_digest(given.encode(), self._token.encode())

    def new_session(self) -> str:
        """A session cookie value: ``nonce.expiry.signature`` (expiry in epoch seconds)."""
        nonce = secrets.token_urlsafe(16)
        session = f"{nonce}.{int(_now()) + SESSION_SECONDS}"
        return f"{session}.{self._sign('session', session)}"

    def session_nonce(self, request: Request) -> str | None:
        """The nonce of the request's session cookie if it is valid (signed with this
        token, not expired, not logged out here), else None."""
        if not self.enabled:
            return None
        session, _, signature = request.cookies.get(COOKIE, "").rpartition(".")
        nonce, _, expiry = session.partition(".")
        if not nonce or not hmac.compare_digest(signature, self._sign("session", session)):
            return None
        if not expiry.isdigit() or int(expiry) <= _now() or nonce in self._ended:
            return None
        return nonce

    def end_session(self, request: Request) -> None:
        """Refuse the request's session from now on in this process (logout)."""
        nonce = self.session_nonce(request)
        if nonce is None:
            return
        now = _now()
        self._ended = {n: t for n, t in self._ended.items() if t > now}  # (forget expired)
        self._ended[nonce] = now + SESSION_SECONDS

    def csrf_token(self, nonce: str) -> str:
        """The CSRF field value of a session."""
        return self._sign("csrf", nonce)

    def bearer_ok(self, request: Request) -> bool:
        """Whether the request carries ``Authorization: Bearer <token>``."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given.strip())

    def check_action(self, request: Request, csrf: str | None) -> str | None:
        """None if the request may act, else why not (for a 403)."""
        if not self.enabled:
            return (
                "this dashboard is read-only: no token is configured "
                "(start it with a token to enable cancel, resume and fork)"
            )
        if self.bearer_ok(request):
            return None
        if not same_origin(request):
            return "refused: the request comes from another site"
        nonce = self.session_nonce(request)
        if nonce is None:
            return "refused: log in with the dashboard's token first"
        if csrf is None or not hmac.compare_digest(csrf, self.csrf_token(nonce)):
            return "refused: the form's CSRF token is missing or wrong (reload the page)"
        return None


def same_origin(request: Request) -> bool:
    """False if the browser says the request comes from another origin: a
    ``Sec-Fetch-Site`` other than ``same-origin``, or an ``Origin`` whose host is not
    this request's host. (Without either header, the CSRF token decides.)"""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is not None:
        if origin == "null":
            return False
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc.lower() != host.lower():
            return False
    return True
