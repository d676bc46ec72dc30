"""The interface in English, French, Kiswahili and Arabic: complete, compiled catalogues;
a language chosen per user and per box; right-to-left pages for Arabic; the tutor in
the language of the lessons, where its model speaks it."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from appliance.messages import LANGUAGES, RIGHT_TO_LEFT
from appliance.store import site, transaction
from appliance.tutor import grounding
from appliance.web.days import due_text
from models.registry import installed as model_store
from tests.conftest import as_role

ROOT = Path(__file__).parents[2]
CATALOGUES = ROOT / "appliance" / "web" / "translations"
TRANSLATED = sorted(set(LANGUAGES) - {"en"})
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[-.0-9]*[sdfr]|%%")


def _template() -> set[str]:
    with open(CATALOGUES / "messages.pot", "rb") as found:
        return {m.id for m in read_po(found) if m.id}


def test_the_template_holds_every_string_marked_in_the_code(tmp_path):
    """`make messages` was run after the last string was marked (or changed)."""
    out = tmp_path / "now.pot"
    subprocess.run(
        [str(Path(sys.executable).parent / "pybabel"), "extract", "-F", "babel.cfg",
         "-k", "_l", "-o", str(out), "."],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    with open(out, "rb") as found:
        now = {m.id for m in read_po(found) if m.id}
    assert now - _template() == set(), "new strings: run `make messages` and translate them"
    assert _template() - now == set(), "strings no longer used: run `make messages`"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_string_is_translated_with_its_placeholders(language):
    with open(CATALOGUES / language / "LC_MESSAGES" / "messages.po", "rb") as found:
        catalogue = read_po(found)
    translated = {m.id: m.string for m in catalogue if m.id}
    missing = sorted(m for m in _template() if not translated.get(m))
    assert missing == [], f"{len(missing)} strings untranslated in {language}: {missing[:5]}"
    broken = [
        m
        for m, text in translated.items()
        if sorted(PLACEHOLDER.findall(m)) != sorted(PLACEHOLDER.findall(text))
    ]
    assert broken == [], f"placeholders changed in {language}: {broken[:5]}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_committed_compiled_catalogue_matches_its_source(language):
    folder = CATALOGUES / language / "LC_MESSAGES"
    with open(folder / "messages.po", "rb") as source, open(folder / "messages.mo", "rb") as built:
        wanted = {m.id: m.string for m in read_po(source) if m.id}
        compiled = {m.id: m.string for m in read_mo(built) if m.id}
    assert compiled == wanted, "run `make messages` to compile the catalogues"


def test_a_learner_chooses_kiswahili_and_keeps_it_after_signing_in_again(app, ids):
    learner = as_role(app, "learner", ids)
    home = learner.get("/learn/").get_data(as_text=True)
    assert '<html lang="en" dir="ltr">' in home and 'value="sw" lang="sw"' in home
    changed = learner.post("/language", {"language": "sw", "next": "/learn/lessons"})
    assert changed.status_code == 303 and changed.location.endswith("/learn/lessons")
    page = learner.get("/learn/").get_data(as_text=True)
    assert '<html lang="sw" dir="ltr">' in page
    assert "Sign out" not in page and "Toka" in page
    learner.post("/signout")
    again = as_role(app, "learner", ids)
    assert '<html lang="sw"' in again.get("/learn/").get_data(as_text=True)
    other = as_role(app, "teacher", ids)  # another user: still the box's language
    assert '<html lang="en"' in other.get("/teach/").get_data(as_text=True)


def test_the_admin_sets_the_box_to_arabic_and_pages_turn_right_to_left(app, db, ids):
    admin = as_role(app, "admin", ids)
    assert admin.post("/admin/language", {"language": "ar"}).status_code == 302
    assert site.get(db)["language"] == "ar"
    anonymous = app.test_client()
    signin = anonymous.get("/signin").get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in signin
    assert "تسجيل الدخول" in signin  # "sign in"
    assert admin.post("/admin/language", {"language": "xx"}).status_code == 400
    assert site.get(db)["language"] == "ar"
    assert "ar" in RIGHT_TO_LEFT


def test_the_api_sets_and_reports_the_language(app, ids):
    learner = as_role(app, "learner", ids)
    assert learner.api("PUT", "/api/v1/session/language", {"language": "fr"}).get_json() == {
        "language": "fr",
        "direction": "ltr",
    }
    session = learner.get("/api/v1/session").get_json()
    assert session["language"] == "fr" and session["languages"]["ar"] == "العربية"
    refused = learner.api("PUT", "/api/v1/session/language", {"language": "de"})
    assert refused.status_code == 400 and "en, fr, sw, ar" in refused.get_json()["error"]["message"]


def test_due_days_are_said_in_the_readers_language(app):
    friday = date(2026, 12, 11)  # a Friday, four days after a Monday
    with app.test_request_context():
        from flask import g

        g.language = "fr"
        assert due_text(friday.isoformat(), friday - timedelta(days=4)) == "à rendre vendredi"


def test_the_tutor_is_told_the_lessons_language(db):
    rules = grounding.messages("Ni nini?", [], None, [], "sw")[0]["content"]
    assert "Answer in Swahili, the language of the lessons." in rules
    assert (
        "language of the lessons"
        not in grounding.messages("What?", [], None, [], "en")[0]["content"]
    )


def test_a_model_speaks_what_its_gguf_declares_else_english(tmp_path):
    manifest = model_store.Manifest(
        name="m", kind="tutor-llm", format="gguf", file="m.gguf", quantisation="Q4_1",
        sha256="0" * 64, size=1, licence="x", source="x", context_length=1,
        architecture="llama", parameters="1", title="m", added_at="2026-12-05",
    )  # fmt: skip
    assert model_store.speaks(manifest, "en") and not model_store.speaks(manifest, "sw")
    manifest = dataclasses.replace(manifest, languages=["en", "sw"])
    assert model_store.speaks(manifest, "sw-TZ") and not model_store.speaks(manifest, "ar")


def test_the_default_tutor_model_declares_english(default_gguf):
    from models.registry.formats import inspect

    assert inspect(default_gguf).languages == ("en",)


def test_a_swahili_lesson_gets_its_own_words_when_the_model_speaks_only_english(
    db, ids, config, default_gguf
):
    """The default model declares English: a question on a Kiswahili pack's lesson is
    answered from the lesson's passages, with a note, not by the model in English."""
    from appliance.tutor import conversation

    with transaction(db):
        db.conn.execute("UPDATE packs SET language = 'sw'")
    lesson_id = "fractions-01-parts-of-a-whole"
    learner_id = ids["learners"]["Class 4A"][0]
    prepared = conversation.prepare(db, learner_id, "What are equal parts?", lesson_id, None)
    assert prepared.language == "sw"
    assert "Answer in Swahili" in prepared.messages[0]["content"]
    model = model_store.import_file(config.home, default_gguf)  # it declares ["en"]
    model_store.activate(config.home, model.name)
    kept = []
    events = list(conversation.answer(prepared, config, lambda *a: kept.append(a)))
    text = "".join(e.get("token", "") for e in events)
    assert "cannot answer in the language of this lesson" in text
    assert kept and kept[0][1] == "from_lessons"


def test_css_has_no_physical_sides_left():
    """Left and right are written as inline-start and inline-end, so Arabic mirrors."""
    css = (ROOT / "appliance" / "web" / "static" / "style.css").read_text()
    rules = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    assert not re.search(r"(margin|padding|border)-(left|right)|text-align:\s*(left|right)|"
                         r"(?<![-\w])(left|right):", rules)  # fmt: skip
