"""Signing in: passwords and PINs, throttling, sessions, CSRF and the audit trail."""

from __future__ import annotations

import hashlib

from appliance.config import pin_key
from appliance.demo.seed import ADMIN, TEACHERS
from appliance.store import audit, transaction, users
from tests.conftest import Browser


def test_staff_sign_in_with_password_and_land_on_their_home(browser):
    response = browser.signin_staff(TEACHERS[0][0], TEACHERS[0][2])
    assert response.status_code == 302 and response.location.endswith("/teach/")
    assert browser.get("/teach/").status_code == 200


def test_a_learner_signs_in_by_class_name_and_pin(browser, ids):
    class_id = ids["classes"]["Class 4A"]
    learner_id = ids["learners"]["Class 4A"][0]
    page = browser.get(f"/signin/class/{class_id}")
    assert f"/signin/learner/{learner_id}".encode() in page.data
    response = browser.signin_learner(learner_id)
    assert response.status_code == 302 and response.location.endswith("/learn/")


def test_a_wrong_pin_is_refused_kindly_and_audited_without_the_pin(browser, ids, db):
    learner_id = ids["learners"]["Class 4A"][0]
    response = browser.signin_learner(learner_id, "9999")
    assert response.status_code == 401
    assert b"That PIN is not right" in response.data
    assert browser.get("/learn/").status_code == 302  # still not signed in
    entry = audit.search(db, action="signin.failure")[0]
    assert entry["target_id"] == str(learner_id) and "9999" not in str(entry)


def test_passwords_are_scrypt_hashes_and_pins_keyed_hmacs_unique_per_learner(db):
    staff = [
        r[0] for r in db.conn.execute("SELECT password_hash FROM users WHERE role != 'learner'")
    ]
    assert staff and all(h.startswith("scrypt:") and "schoolbox" not in h for h in staff)
    pins = [r[0] for r in db.conn.execute("SELECT pin_hash FROM users WHERE role = 'learner'")]
    # Not the PIN, nor its unkeyed hash. (Not "'1234' not in h": a random hex hash holds
    # "1234" about once in a thousand, and the demo has dozens of learners.)
    plain = {"1234", hashlib.sha256(b"1234").hexdigest()}
    assert pins and all(
        h.startswith("hmac-sha256$") and h.split("$")[-1] not in plain for h in pins
    )
    assert len(set(pins)) == len(pins)  # every demo learner has PIN 1234, yet no two hashes match


def test_a_pin_hash_is_useless_without_the_box_secret(app, ids, db):
    from appliance.store import users as users_module

    learner_id = ids["learners"]["Class 4A"][0]
    assert users_module.check_pin(db, learner_id, "1234", app.config["PIN_KEY"])
    assert users_module.check_pin(db, learner_id, "1234", b"another box's key") is None


def test_sign_in_is_throttled_per_account_with_retry_after(app, ids):
    learner_id = ids["learners"]["Class 4A"][1]
    browser = Browser(app)
    for _ in range(5):
        assert browser.signin_learner(learner_id, "0000").status_code == 401
    blocked = browser.signin_learner(learner_id)  # even the right PIN waits now
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    other = Browser(app).signin_learner(ids["learners"]["Class 4A"][2])
    assert other.status_code == 302  # classmates are not locked out


def test_sign_in_is_throttled_per_address_across_accounts(app):
    browser = Browser(app)
    statuses = [browser.signin_staff(f"nobody{i}", "wrong-password").status_code for i in range(31)]
    assert statuses[:30] == [401] * 30 and statuses[30] == 429


def test_a_successful_sign_in_clears_the_accounts_failures(app):
    browser = Browser(app)
    for _ in range(4):
        browser.signin_staff(ADMIN[0], "wrong-password")
    assert browser.signin_staff(ADMIN[0], ADMIN[2]).status_code == 302
    for _ in range(4):
        assert Browser(app).signin_staff(ADMIN[0], "wrong-password").status_code == 401


def test_every_state_changing_request_needs_the_csrf_token(app, ids):
    browser = Browser(app)
    no_token = browser.client.post(
        "/signin/staff", data={"username": ADMIN[0], "password": ADMIN[2]}
    )
    assert no_token.status_code == 400 and b"expired" in no_token.data
    api = browser.client.post("/api/v1/session", json={"username": ADMIN[0], "password": ADMIN[2]})
    assert api.status_code == 400 and api.get_json()["error"]["message"]
    assert browser.signin_staff(ADMIN[0], ADMIN[2]).status_code == 302
    forged = browser.client.post("/admin/consent", data={"feature": "sync", "granted": "1"})
    assert forged.status_code == 400


def test_session_cookie_is_httponly_and_samesite(browser):
    response = browser.signin_staff(ADMIN[0], ADMIN[2])
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_changing_a_pin_signs_the_learner_out_everywhere(app, ids, db):
    learner_id = ids["learners"]["Class 4A"][0]
    browser = Browser(app)
    browser.signin_learner(learner_id)
    assert browser.get("/learn/").status_code == 200
    with transaction(db):
        users.set_pin(db, audit.SYSTEM, learner_id, "4321", pin_key(app.config["SCHOOLBOX"]))
    assert browser.get("/learn/").status_code == 302
    assert Browser(app).signin_learner(learner_id, "4321").status_code == 302


def test_a_switched_off_account_cannot_sign_in(app, ids, db):
    teacher_id = ids["teachers"][TEACHERS[1][0]]
    with transaction(db):
        users.set_active(db, audit.SYSTEM, teacher_id, False)
    assert Browser(app).signin_staff(TEACHERS[1][0], TEACHERS[1][2]).status_code == 401


def test_next_only_redirects_within_the_box(browser):
    response = browser.post(
        "/signin/staff?next=//evil.example/x", {"username": ADMIN[0], "password": ADMIN[2]}
    )
    assert response.location.endswith("/admin/")
    browser2 = browser
    response = browser2.post(
        "/signin/staff?next=/teach/", {"username": ADMIN[0], "password": ADMIN[2]}
    )
    assert response.location.endswith("/teach/")
