"""Sign-in sessions: Flask's signed cookies, with each verified cookie remembered a while.

A class's tablets send the same session cookie with every request, and Flask checks it
from scratch each time: it builds a serializer, derives the signing key, checks the HMAC
and decodes the JSON. That was a sixth of the CPU of opening a quiz when a class of 300
opened one at once. This interface keeps the serializer, and remembers which cookies it
has verified (bounded, per process), so a cookie seen before costs one lookup and the
expiry check. Nothing changes in what is accepted:

- an entry is made only after itsdangerous has verified the cookie, and the key is the
  whole cookie, signature included: a cookie never verified is never found;
- the signing time is kept, so a cookie still expires `permanent_session_lifetime` after
  it was signed, as Flask's own check would have it;
- a session holding anything but plain values (flashed messages, lists) is not kept: each
  request gets its own copy to change.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer

REMEMBERED = 4096  # cookies per process: every device of a big school, twice over
_PLAIN = (str, int, float, bool, type(None))


class RememberingSessions(SecureCookieSessionInterface):
    """Flask's cookie sessions, remembering verified cookies (see the module's docstring)."""

    def __init__(self) -> None:
        self._serializer: URLSafeTimedSerializer | None = None
        self._secret: object = None
        self._verified: OrderedDict[str, tuple[dict, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        secret = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if self._serializer is None or secret != self._secret:
            self._serializer = super().get_signing_serializer(app)
            self._secret = secret
            with self._lock:
                self._verified.clear()  # signed with a key no longer in use
        return self._serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        cookie = request.cookies.get(self.get_cookie_name(app))
        if not cookie:
            return self.session_class()
        max_age = app.permanent_session_lifetime.total_seconds()
        with self._lock:
            found = self._verified.get(cookie)
        if found is not None and time.time() - found[1] <= max_age:
            return self.session_class(found[0])
        try:
            data, signed = serializer.loads(cookie, max_age=int(max_age), return_timestamp=True)
        except BadSignature:  # expired, forged or from another box: a fresh session
            return self.session_class()
        if isinstance(data, dict) and all(isinstance(v, _PLAIN) for v in data.values()):
            self._remember(cookie, dict(data), signed.timestamp())
        return self.session_class(data)

    def _remember(self, cookie: str, data: dict, signed: float) -> None:
        with self._lock:
            self._verified[cookie] = (data, signed)
            while len(self._verified) > REMEMBERED:
                self._verified.popitem(last=False)
