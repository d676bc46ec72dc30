"""Sign-in sessions remember verified cookies without accepting anything Flask would not."""

from __future__ import annotations

from appliance.web import sessions
from tests.conftest import as_role


def _cookie(app, data: dict) -> str:
    serializer = app.session_interface.get_signing_serializer(app)
    return serializer.dumps(data)


def _open(app, cookie: str):
    headers = {"Cookie": f"{app.config['SESSION_COOKIE_NAME']}={cookie}"}
    with app.test_request_context("/", headers=headers):
        return app.session_interface.open_session(app, _request())


def _request():
    from flask import request

    return request._get_current_object()


def test_a_signed_in_learner_is_known_on_every_request_through_the_real_app(app, ids):
    learner = as_role(app, "learner", ids)
    for _ in range(3):  # the second and third are answered from what was remembered
        me = learner.get("/api/v1/session").get_json()
        assert me["user"]["role"] == "learner"
    assert len(app.session_interface._verified) >= 1


def test_a_remembered_cookie_still_expires_with_the_session_lifetime(app, monkeypatch):
    cookie = _cookie(app, {"uid": 7, "sv": 1})
    assert dict(_open(app, cookie)) == {"uid": 7, "sv": 1}
    assert cookie in app.session_interface._verified
    lifetime = app.permanent_session_lifetime.total_seconds()
    now = sessions.time.time()
    monkeypatch.setattr(sessions.time, "time", lambda: now + lifetime + 5)
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: now + lifetime + 5)
    assert dict(_open(app, cookie)) == {}  # expired, though remembered


def test_a_cookie_with_a_changed_signature_is_never_found(app):
    cookie = _cookie(app, {"uid": 7, "sv": 1})
    _open(app, cookie)
    forged = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    assert dict(_open(app, forged)) == {}
    assert forged not in app.session_interface._verified


def test_a_session_with_lists_is_not_remembered_and_each_request_gets_its_own(app):
    cookie = _cookie(app, {"uid": 7, "_flashes": [["ok", "Saved."]]})
    first = _open(app, cookie)
    first["_flashes"].clear()
    assert _open(app, cookie)["_flashes"] == [["ok", "Saved."]]
    assert cookie not in app.session_interface._verified


def test_changing_one_request_session_leaves_the_next_as_signed(app):
    cookie = _cookie(app, {"uid": 7, "sv": 1})
    first = _open(app, cookie)
    first["uid"] = 8
    assert _open(app, cookie)["uid"] == 7


def test_a_new_secret_key_forgets_what_the_old_one_verified(app):
    cookie = _cookie(app, {"uid": 7, "sv": 1})
    _open(app, cookie)
    app.secret_key = "another key entirely, as after a restore from another box"
    assert dict(_open(app, cookie)) == {}


def test_the_memory_is_bounded(app, monkeypatch):
    monkeypatch.setattr(sessions, "REMEMBERED", 3)
    cookies = [_cookie(app, {"uid": n}) for n in range(5)]
    for cookie in cookies:
        _open(app, cookie)
    assert list(app.session_interface._verified) == cookies[-3:]


def test_a_changed_session_is_signed_anew_and_the_new_cookie_is_the_one_known(app, ids):
    learner = as_role(app, "learner", ids)
    name = app.config["SESSION_COOKIE_NAME"]
    before = learner.client.get_cookie(name).value
    learner.post("/language", {"language": "fr", "next": "/"})
    after = learner.client.get_cookie(name).value
    assert after != before
    assert '<html lang="fr"' in learner.get("/learn/").get_data(as_text=True)
    assert dict(_open(app, after))["language"] == "fr"
