"""Messages marked in the data layer are translated when shown, in the reader's language,
without the data layer importing Flask-Babel."""

from __future__ import annotations

from appliance import messages
from appliance.store import users
from tests.conftest import Browser


def test_a_lazy_message_is_translated_each_time_it_becomes_text(monkeypatch):
    message = messages.lazy("The username %(name)s is taken.", name="amina")
    assert str(message) == "The username amina is taken."
    monkeypatch.setattr(messages, "_translate", lambda text, **p: "«" + text % p + "»")
    assert str(message) == "«The username amina is taken.»"
    assert "amina" in message and message == "«The username amina is taken.»"


def test_what_a_user_typed_in_a_message_is_escaped_on_a_page():
    message = messages.lazy("The username %(name)s is taken.", name="<b>x</b>")
    assert message.__html__() == "The username &lt;b&gt;x&lt;/b&gt; is taken."


def test_the_web_app_translates_the_stores_messages_through_flask_babel(app):
    Browser(app).get("/")  # the app installed Flask-Babel's gettext when it was made
    assert messages._translate is not messages._english
    assert [str(label) for _, label in users.picture_names("12")] == ["sun", "fish"]
