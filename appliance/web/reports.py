"""A teacher's reports on a class, as pages and as CSV files a spreadsheet opens: lesson
completion with time spent, difficult questions, and each quiz's results."""

from __future__ import annotations

import csv
import io
import re

from flask import Blueprint, Response, abort, render_template
from flask_babel import gettext as _
from markupsafe import Markup

from appliance import practice
from appliance.richtext import text_of
from appliance.store import quizzes, reports
from appliance.web.access import managed_class, teacher_required
from appliance.web.db import get_db

bp = Blueprint("reports", __name__, url_prefix="/teach/classes/<int:class_id>")
# A cell a spreadsheet would run as a formula starts with one of these (OWASP, "CSV
# injection"): a learner's typed answer could be one.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _status_words() -> dict[str, str]:
    return {"not_started": _("not started"), "in_progress": _("in progress"), "done": _("done"),
            "started": _("started"), "finished": _("handed in")}  # fmt: skip


@bp.get("/reports")
@teacher_required
def class_reports(class_id: int):
    found = managed_class(class_id)
    db = get_db()
    return render_template(
        "teacher/reports.html",
        cls=found,
        completion=reports.lesson_completion(db, class_id),
        difficult=reports.difficult_questions(db, class_id, _shown),
        quizzes=quizzes.of_class(db, class_id),
    )


def _shown(item: dict, response: str) -> Markup:
    return Markup(practice.response_html(item, response))  # noqa: S704 - sanitised on import or escaped


@bp.get("/reports/lessons.csv")
@teacher_required
def lessons_csv(class_id: int):
    found = managed_class(class_id)
    report = reports.lesson_completion(get_db(), class_id)
    header = [_("Learner")]
    for lesson in report["lessons"]:
        header += [lesson["title"], _("%(lesson)s: minutes", lesson=lesson["title"])]
    words, lines = _status_words(), []
    for learner in report["learners"]:
        line = [learner["display_name"]]
        for lesson in report["lessons"]:
            cell = report["cells"].get((learner["id"], lesson["lesson_id"]))
            if cell is None:  # the lesson is set for others in the class
                line += ["", ""]
            else:
                status = words[cell["status"]] + (f" ({_('late')})" if cell["late"] else "")
                line += [status, round(cell["seconds"] / 60)]
        lines.append(line)
    return _csv(f"{found['name']} lessons", header, lines)


@bp.get("/reports/difficult-questions.csv")
@teacher_required
def difficult_csv(class_id: int):
    found = managed_class(class_id)
    header = [_("Lesson"), _("Question"), _("Answers"), _("Wrong"), _("Share wrong"),
              _("Commonest wrong answers")]  # fmt: skip
    lines = [
        [
            q["lesson_title"],
            text_of(q["prompt_html"]),
            q["answers"],
            q["wrong"],
            f"{q['share_wrong']:.0%}",
            "; ".join(f"{answer} ({n})" for answer, n in q["common_wrong"]),
        ]  # fmt: skip
        for q in reports.difficult_questions(get_db(), class_id, _plain)
    ]
    return _csv(f"{found['name']} difficult questions", header, lines)


def _plain(item: dict, response: str) -> str:
    return text_of(practice.response_html(item, response))


@bp.get("/quizzes/<int:quiz_id>/report.csv")
@teacher_required
def quiz_csv(class_id: int, quiz_id: int):
    managed_class(class_id)
    db = get_db()
    quiz = quizzes.get(db, quiz_id)
    if quiz is None or quiz["class_id"] != class_id:
        abort(404)
    header = [_("Learner"), _("Status"), _("Score"), _("Out of")]
    header += [_("Q%(n)d", n=item["position"]) for item in quiz["items"]]
    words, lines = _status_words(), []
    right, wrong = _("right"), _("wrong")
    for learner in quizzes.progress(db, quiz):
        given = quizzes.answers(db, quiz_id, learner["learner_id"])
        marks = [
            "" if item["id"] not in given else right if given[item["id"]]["correct"] else wrong
            for item in quiz["items"]
        ]
        status = words[learner["status"]]
        lines.append([learner["name"], status, learner["score"], len(quiz["items"]), *marks])
    return _csv(f"{quiz['title']} results", header, lines)


def _csv(title: str, header: list, lines: list[list]) -> Response:
    """A CSV download: UTF-8 with a byte-order mark (so spreadsheets read accents), no
    cell a spreadsheet would run as a formula."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    for line in [header, *lines]:
        writer.writerow([_cell(value) for value in line])
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-").lower() or "report"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value
