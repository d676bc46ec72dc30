"""Content packs: validation names file and field, import is all or nothing, versions upgrade."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from appliance.packs.importer import import_pack
from appliance.packs.loader import PackError, load
from appliance.store import assignments, audit, content
from tests.conftest import DEMO_PACK


@pytest.fixture
def pack_dir(tmp_path) -> Path:
    """An editable copy of the demo pack."""
    target = tmp_path / "pack"
    shutil.copytree(DEMO_PACK, target)
    return target


def _set_version(pack: Path, version: str) -> None:
    text = (pack / "pack.yaml").read_text()
    (pack / "pack.yaml").write_text(text.replace("version: 1.1.0", f"version: {version}"))


def _zip(folder: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for file in folder.rglob("*"):
            if file.is_file():
                archive.write(file, prefix + file.relative_to(folder).as_posix())
    return target


def _snapshot(db) -> dict:
    tables = ("packs", "lessons", "items", "skills", "item_skills", "passages", "audit_log")
    return {t: db.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # noqa: S608


def test_the_demo_pack_meets_the_shipped_minimums():
    pack = load(DEMO_PACK)
    assert pack.licence == "CC-BY-4.0"
    assert {s["id"] for s in pack.subjects} == {"fractions", "reading"}
    assert len(pack.lessons) >= 8 and len(pack.items) >= 60 and len(pack.skills) >= 10
    assert {i.type for i in pack.items} == {"multiple_choice", "numeric", "short_text"}
    assert all(i.hints for i in pack.items)
    assert pack.media and all(len(p) > 1 for p in (lesson.passages for lesson in pack.lessons))


def test_problems_name_the_file_and_field_and_are_all_reported(pack_dir):
    items = pack_dir / "items" / "fractions-01-parts-of-a-whole.yaml"
    text = items.read_text().replace("answer: 0", "answer: 9", 1)
    items.write_text(
        text.replace("skills: [fractions.parts-of-whole]", "skills: [no.such-skill]", 1)
    )
    lesson = pack_dir / "lessons" / "reading-01-finding-facts.md"
    lesson.write_text(lesson.read_text().replace("subject: reading", "subject: music"))
    with pytest.raises(PackError) as error:
        load(pack_dir)
    problems = "\n".join(error.value.problems)
    assert "items/fractions-01-parts-of-a-whole.yaml: items[" in problems
    assert ".answer: must be an index into choices" in problems or "no.such-skill" in problems
    assert "'no.such-skill' is not in skills.yaml" in problems
    assert "lessons/reading-01-finding-facts.md: subject: 'music'" in problems


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda p: (p / "pack.yaml").unlink(), "pack.yaml: is missing"),
        (lambda p: (p / "pack.yaml").write_text("format: 1\nid: [oops"), "pack.yaml: is not valid YAML"),
        (lambda p: (p / "pack.yaml").write_text((p / "pack.yaml").read_text().replace("format: 1", "format: 7")), "format"),
        (lambda p: (p / "skills.yaml").write_text("- {id: x}\n"), "skills.yaml: [0]"),
        (lambda p: (p / "lessons" / "extra.md").write_text("no front matter"), "lessons/extra.md: must start with a front matter"),
        (lambda p: (p / "media" / "evil.exe").write_bytes(b"MZ"), "media/evil.exe"),
    ],
)  # fmt: skip
def test_each_kind_of_bad_pack_gets_a_clear_error(pack_dir, change, expected):
    change(pack_dir)
    with pytest.raises(PackError) as error:
        load(pack_dir)
    assert expected in str(error.value)


def test_pictures_need_alt_text_and_must_be_in_the_pack(pack_dir):
    lesson = pack_dir / "lessons" / "fractions-01-parts-of-a-whole.md"
    lesson.write_text(
        lesson.read_text() + "\n\n![](media/pizza-quarters.svg)\n\n![a cat](media/cat.png)\n"
    )
    with pytest.raises(PackError) as error:
        load(pack_dir)
    text = str(error.value)
    assert "picture without alt text" in text and "media/cat.png, which is not in the pack" in text


def test_scripts_and_inline_handlers_never_reach_a_page(pack_dir, db, config):
    lesson = pack_dir / "lessons" / "fractions-01-parts-of-a-whole.md"
    lesson.write_text(
        lesson.read_text()
        + '\n\n<script>alert("x")</script>\n\n<img src=x onerror="alert(1)">\n\n[click](javascript:alert(1))\n'
    )
    _set_version(pack_dir, "1.1.1")
    import_pack(db, config.media_dir, pack_dir, audit.SYSTEM)
    html = content.lesson(db, "fractions-01-parts-of-a-whole")["body_html"]
    tags = _tags(html)
    assert "script" not in {tag for tag, _ in tags}
    assert not [a for _, attrs in tags for a, _ in attrs if a.startswith("on")]
    assert not [v for _, attrs in tags for a, v in attrs if a == "href" and "javascript" in v]
    assert "&lt;script&gt;" in html  # shown as text, harmlessly


def _tags(html: str) -> list[tuple[str, list]]:
    from html.parser import HTMLParser

    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(html)
    return found


def test_a_bad_pack_changes_nothing(pack_dir, db, config):
    before = _snapshot(db)
    media_before = sorted(p.as_posix() for p in config.media_dir.rglob("*"))
    _set_version(pack_dir, "2.0.0")
    (pack_dir / "items" / "reading-02-main-idea.yaml").write_text("lesson: nowhere\nitems: []\n")
    with pytest.raises(PackError):
        import_pack(db, config.media_dir, pack_dir, audit.SYSTEM)
    assert _snapshot(db) == before
    assert sorted(p.as_posix() for p in config.media_dir.rglob("*")) == media_before


def test_a_failure_while_writing_rolls_back_and_removes_the_new_media(
    pack_dir, db, config, monkeypatch
):
    from appliance.packs import importer

    before = _snapshot(db)
    _set_version(pack_dir, "2.0.0")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(importer, "_write_items", crash)
    with pytest.raises(OSError):
        import_pack(db, config.media_dir, pack_dir, audit.SYSTEM)
    assert _snapshot(db) == before
    assert db.conn.execute("SELECT version FROM packs").fetchone()[0] == "1.1.0"
    assert [p.name for p in (config.media_dir / "schoolbox-demo").iterdir()] == ["1.1.0"]


def test_same_or_older_version_is_a_no_op_with_a_message(pack_dir, db, config):
    before = _snapshot(db)
    result = import_pack(db, config.media_dir, pack_dir, audit.SYSTEM)
    assert result.status == "unchanged" and "already at version 1.1.0" in result.message
    _set_version(pack_dir, "0.9.0")
    assert import_pack(db, config.media_dir, pack_dir, audit.SYSTEM).status == "unchanged"
    assert _snapshot(db) == before


def test_a_newer_version_upgrades_in_place_and_keeps_learners_history(pack_dir, db, config):
    attempts_before = db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    gone = db.conn.execute("SELECT item_id FROM attempts LIMIT 1").fetchone()[0]
    items_file = next(f for f in (pack_dir / "items").iterdir() if f"id: {gone}\n" in f.read_text())
    text = items_file.read_text()
    start = text.index(f"  - id: {gone}\n")
    end = text.find("\n  - id:", start + 1)
    items_file.write_text(text[:start] + (text[end + 1 :] if end != -1 else ""))
    lesson = pack_dir / "lessons" / "fractions-01-parts-of-a-whole.md"
    lesson.write_text(
        lesson.read_text().replace("# Parts of a whole", "# Parts of a whole (new)", 1)
    )
    _set_version(pack_dir, "1.2.0")
    result = import_pack(db, config.media_dir, pack_dir, audit.SYSTEM)
    assert result.status == "upgraded"
    assert db.conn.execute("SELECT count(*) FROM attempts").fetchone()[0] == attempts_before
    assert db.conn.execute("SELECT retired FROM items WHERE id = ?", (gone,)).fetchone()[0] == 1
    assert content.item(db, gone) is None  # learners no longer get it
    assert "(new)" in content.lesson(db, "fractions-01-parts-of-a-whole")["body_html"]
    # the version before stays for pages opened during the upgrade; older ones go
    assert sorted(p.name for p in (config.media_dir / "schoolbox-demo").iterdir()) == [
        "1.1.0",
        "1.2.0",
    ]
    _set_version(pack_dir, "1.3.0")
    (pack_dir / "pack.yaml").write_text(
        (pack_dir / "pack.yaml").read_text().replace("1.2.0", "1.3.0")
    )
    import_pack(db, config.media_dir, pack_dir, audit.SYSTEM)
    assert sorted(p.name for p in (config.media_dir / "schoolbox-demo").iterdir()) == [
        "1.2.0",
        "1.3.0",
    ]
    assert db.conn.execute("SELECT count(*) FROM assignments").fetchone()[0] > 0


def test_an_item_moved_to_another_lesson_counts_there_not_twice(pack_dir, db, config, ids):
    from appliance.store import attempts as attempts_store

    learner = ids["learners"]["Class 4A"][0]
    db.conn.execute("DELETE FROM attempts WHERE learner_id = ?", (learner,))
    for (item_id,) in db.conn.execute(
        "SELECT id FROM items WHERE lesson_id = 'fractions-01-parts-of-a-whole'"
    ).fetchall():
        item = content.item(db, item_id)
        attempts_store.record(db, learner, item, "x", True, 0, None, None)
    moved = "fr01-01"
    source = pack_dir / "items" / "fractions-01-parts-of-a-whole.yaml"
    target = pack_dir / "items" / "fractions-02-number-line.yaml"
    text = source.read_text()
    start = text.index(f"  - id: {moved}\n")
    end = text.find("\n  - id:", start + 1)
    block = text[start : end + 1]
    source.write_text(text.replace(block, ""))
    target.write_text(target.read_text().rstrip("\n") + "\n" + block)
    _set_version(pack_dir, "1.2.0")
    import_pack(db, config.media_dir, pack_dir, audit.SYSTEM)
    progress = {a["id"]: a for a in assignments.of_learner(db, learner)}
    first = progress["fractions-01-parts-of-a-whole"]
    assert first["mastered"] == first["item_count"]  # not 8 of 7


@pytest.mark.parametrize("prefix", ["", "my-pack/"])
def test_a_zip_imports_with_or_without_a_top_folder(pack_dir, db, config, tmp_path, prefix):
    _set_version(pack_dir, "3.0.0")
    archive = _zip(pack_dir, tmp_path / "pack.zip", prefix)
    assert import_pack(db, config.media_dir, archive, audit.SYSTEM).status == "upgraded"


def test_a_zip_with_an_unsafe_path_is_refused(pack_dir, tmp_path):
    archive = _zip(pack_dir, tmp_path / "pack.zip")
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("../../etc/evil", "x")
    with pytest.raises(PackError, match="unsafe path"):
        load(archive)


def test_a_pack_may_not_take_another_packs_lesson_ids(pack_dir, db, config):
    text = (pack_dir / "pack.yaml").read_text()
    (pack_dir / "pack.yaml").write_text(text.replace("id: schoolbox-demo", "id: copycat-pack"))
    with pytest.raises(PackError, match="already belongs to pack 'schoolbox-demo'"):
        import_pack(db, config.media_dir, pack_dir, audit.SYSTEM)


def test_lesson_text_is_searchable_by_passage(db):
    results = content.search(db, "equivalent fractions")
    assert results and results[0]["lesson_id"] == "fractions-03-equivalent-fractions"
    assert results[0]["heading"]
    assert content.search(db, "   ") == []
    assert content.search(db, 'AND OR "') == [] or isinstance(content.search(db, 'AND OR "'), list)
