"""Known devices: a signed cookie that says which accounts have signed in on this device.

Sign-in throttling trusts a device an account used before (store/throttle.py): a stranger
guessing a learner's PIN elsewhere cannot lock the learner out of their usual device.
The cookie holds a random device id and short keyed digests of the accounts, never ids
or names a classmate could read off a shared laptop. It is signed with the box's secret,
so it cannot be forged; it only lasts on the device that received it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import Flask, current_app, g, request
from itsdangerous import BadSignature, URLSafeSerializer

COOKIE = "schoolbox_device"
MAX_ACCOUNTS = 40  # a class's shared laptop: every learner of a large class
MAX_AGE_S = 365 * 24 * 3600


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt="schoolbox-device")


def _tag(account: str) -> str:
    return hmac.new(current_app.config["PIN_KEY"], account.encode(), hashlib.sha256).hexdigest()[
        :16
    ]


def _current() -> dict:
    if "device" not in g:
        g.device = None
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                found = _serializer().loads(raw)
            except BadSignature:
                found = None
            if isinstance(found, dict) and isinstance(found.get("accounts"), list):
                g.device = found
    return g.device


def source(address: str) -> str:
    """The throttling source: this device's id where it has one, else its address."""
    device = _current()
    return f"device:{device['id']}" if device else f"addr:{address}"


def knows(account: str) -> bool:
    """True if `account` signed in on this device before."""
    device = _current()
    return bool(device) and _tag(account) in device["accounts"]


def remember(account: str) -> None:
    """Mark this device as known to `account`; the cookie is written with the response."""
    device = _current() or {"id": secrets.token_hex(8), "accounts": []}
    tag = _tag(account)
    accounts = [a for a in device["accounts"] if a != tag] + [tag]
    g.device = {"id": device["id"], "accounts": accounts[-MAX_ACCOUNTS:]}
    g.device_changed = True


def install(app: Flask) -> None:
    @app.after_request
    def write_device_cookie(response):
        if g.get("device_changed"):
            response.set_cookie(
                COOKIE,
                _serializer().dumps(g.device),
                max_age=MAX_AGE_S,
                httponly=True,
                samesite="Lax",
            )
        return response
