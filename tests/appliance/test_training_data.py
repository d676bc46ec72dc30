"""The read-only door federated training has into the box: consent first, no ids, no
erased learners, the most recent answers held out."""

from __future__ import annotations

from appliance.store import audit, site, training_data, transaction, users


def _consent(db, granted: bool = True) -> None:
    with transaction(db):
        site.set_consent(db, audit.SYSTEM, training_data.FEATURE, granted)


def test_nothing_is_read_without_the_schools_consent(config, db):
    assert training_data.read(config.db_path) is None
    _consent(db)
    assert training_data.read(config.db_path) is not None
    _consent(db, False)
    assert training_data.read(config.db_path) is None


def test_sequences_carry_every_answer_but_no_id_of_the_box(config, db):
    _consent(db)
    data = training_data.read(config.db_path, min_answers=1)
    with_skills = db.conn.execute(
        "SELECT count(*) FROM attempts WHERE item_id IN (SELECT item_id FROM item_skills)"
    ).fetchone()[0]
    assert data.answers == with_skills > 100
    answers = [a for learner in data.learners for a in learner]
    assert all(isinstance(a.problem, int) and all(isinstance(s, int) for s in a.skills)
               for a in answers)  # fmt: skip
    assert {a.correct for a in answers} == {0, 1}
    for learner, first_recent in zip(data.learners, data.recent_from, strict=True):
        assert 1 <= first_recent <= len(learner)


def test_an_erased_learner_is_not_there(config, db, ids):
    _consent(db)
    before = training_data.read(config.db_path, min_answers=1)
    learner_id = ids["learners"]["Class 4A"][0]
    theirs = db.conn.execute(
        "SELECT count(*) FROM attempts WHERE learner_id = ? AND item_id IN"
        " (SELECT item_id FROM item_skills)", (learner_id,)
    ).fetchone()[0]  # fmt: skip
    assert theirs
    with transaction(db):
        users.erase_learner(db, audit.SYSTEM, learner_id)
    after = training_data.read(config.db_path, min_answers=1)
    assert after.answers == before.answers - theirs
    assert len(after.learners) == len(before.learners) - 1
