"""The OpenAPI 3.1 description of /api/v1. A test checks it matches the routes exactly."""

from __future__ import annotations

from appliance import __version__

_ID = {"type": "integer"}
_TEXT = {"type": "string"}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"status": _ID, "message": _TEXT},
            "required": ["status", "message"],
        }
    },
}
_ITEM = {
    "type": "object",
    "description": "An item as a learner sees it: never the answer key.",
    "properties": {
        "id": _TEXT,
        "lesson_id": _TEXT,
        "type": {"enum": ["multiple_choice", "numeric", "short_text"]},
        "prompt_html": _TEXT,
        "choices": {"type": ["array", "null"], "items": _TEXT},
        "hint_count": _ID,
    },
}
_SESSION_IN = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"username": _TEXT, "password": _TEXT},
            "required": ["username", "password"],
        },
        {
            "type": "object",
            "properties": {"learner_id": _ID, "pin": _TEXT},
            "required": ["learner_id", "pin"],
        },
    ]
}
_ATTEMPT_IN = {
    "type": "object",
    "properties": {
        "item_id": _TEXT,
        "response": {"type": ["string", "number"], "description": "choice index, number or text"},
        "hints_used": _ID,
        "duration_ms": _ID,
        "client_key": {
            "type": "string",
            "description": "8-64 URL-safe characters chosen by the client; a resend with the "
            "same key returns the first result instead of recording twice",
        },
    },
    "required": ["item_id", "response"],
}

_TUTOR_IN = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "maxLength": 500},
        "lesson_id": {"type": ["string", "null"], "description": "the lesson being read"},
        "item_id": {
            "type": ["string", "null"],
            "description": "the practice item open now: the tutor gives hints, never its answer",
        },
        "stream": {
            "type": "boolean",
            "description": "true: Server-Sent Events (sources, token..., done) as words come",
        },
    },
    "required": ["question"],
}

_IDS = {"type": "array", "items": _ID}
_GROUP_IN = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 40}, "learners": _IDS},
    "required": ["name"],
}
_ASSIGNMENT_IN = {
    "type": "object",
    "description": "Who has the lesson (no groups or learners: the whole class), by when",
    "properties": {
        "due_on": {"type": ["string", "null"], "format": "date"},
        "groups": _IDS,
        "learners": _IDS,
    },
}

_QUIZ_IN = {
    "type": "object",
    "description": "A draft quiz: chosen items and/or items drawn at random from skills, "
    "for the whole class unless groups or learners are named, with an optional window",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "items": {"type": "array", "items": _TEXT},
        "random": {
            "type": "object",
            "properties": {"count": _ID, "skills": {"type": "array", "items": _TEXT}},
        },
        "groups": _IDS,
        "learners": _IDS,
        "opens_at": {"type": ["string", "null"], "format": "date-time"},
        "closes_at": {"type": ["string", "null"], "format": "date-time"},
    },
    "required": ["title"],
}
_QUIZ_ANSWER_IN = {
    "type": "object",
    "properties": {
        "item_id": _TEXT,
        "response": {"type": ["string", "number"]},
        "duration_ms": _ID,
        "client_key": _TEXT,
    },
    "required": ["item_id", "response"],
}

_CSV_IN = {"type": "string", "description": "a CSV file, UTF-8"}

_CLASS_LESSON_IN = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "parts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "lesson_id": _TEXT,
                    "item_id": {"type": ["string", "null"]},
                    "resource_id": {"type": ["string", "null"]},
                },
                "required": ["lesson_id"],
            },
            "description": "in order: one of the lesson's questions (item_id), one of its"
            " resources (resource_id), or, with neither, the pack lesson's reading",
        },
        "due_on": {"type": ["string", "null"], "format": "date"},
        "groups": _IDS,
        "learners": _IDS,
    },
    "required": ["title", "parts"],
}

_INTEGER_PARAMS = {"class_id", "learner_id", "number", "group_id", "quiz_id", "class_lesson_id"}

# (method, path, summary, who may call it, request body schema or None)
ROUTES = [
    ("get", "/openapi.json", "This document", "anyone", None),
    (
        "put",
        "/session/language",
        "Choose the interface's language (en, fr, sw, ar) for this device and the signed-in user",
        "anyone",
        {"type": "object", "properties": {"language": _TEXT}, "required": ["language"]},
    ),
    ("get", "/signin/classes", "Classes to pick from when a learner signs in", "anyone", None),
    ("get", "/signin/classes/{class_id}/learners", "Learners' names in a class", "anyone", None),
    ("get", "/session", "Who is signed in, and the CSRF token", "anyone", None),
    (
        "post",
        "/session",
        "Sign in (staff: username+password; learner: id+PIN)",
        "anyone",
        _SESSION_IN,
    ),
    ("delete", "/session", "Sign out", "anyone", None),
    ("get", "/lessons", "Lessons (and a learner's assigned lessons)", "signed in", None),
    (
        "get",
        "/lessons/{lesson_id}",
        "One lesson's rendered text and its resources (video, audio, PDF, EPUB, app)",
        "signed in",
        None,
    ),
    (
        "get",
        "/resources/{resource_id}",
        "One resource: its kind, file URL (Range requests work), captions; my progress",
        "signed in",
        None,
    ),
    (
        "post",
        "/resources/{resource_id}/done",
        "Mark a resource finished (a player sends it at the end)",
        "learner",
        None,
    ),
    (
        "get",
        "/lessons/{lesson_id}/next-item",
        "The next item to practise in a lesson, and why it was chosen",
        "learner",
        None,
    ),
    (
        "get",
        "/practice/next",
        "What to practise next across the learner's assigned lessons, and why",
        "learner",
        None,
    ),
    ("get", "/items/{item_id}/hints/{number}", "Hint number N of an item", "learner", None),
    (
        "post",
        "/attempts",
        "Submit an answer; get feedback and the next item",
        "learner",
        _ATTEMPT_IN,
    ),
    ("get", "/progress", "My progress per skill and lesson", "learner", None),
    (
        "get",
        "/learners/{learner_id}/progress",
        "A learner's progress",
        "self, their teacher, admin",
        None,
    ),
    ("get", "/classes", "Classes the caller may see", "signed in", None),
    (
        "get",
        "/classes/{class_id}/progress",
        "Learner x skill grid of a class",
        "its teacher, admin",
        None,
    ),
    ("get", "/classes/{class_id}/groups", "The groups of a class", "its teacher, admin", None),
    ("post", "/classes/{class_id}/groups", "Make a group", "its teacher, admin", _GROUP_IN),
    (
        "put",
        "/classes/{class_id}/groups/{group_id}",
        "Rename a group and set its learners",
        "its teacher, admin",
        _GROUP_IN,
    ),
    (
        "delete",
        "/classes/{class_id}/groups/{group_id}",
        "Remove a group (409 while a lesson is set for it)",
        "its teacher, admin",
        None,
    ),
    (
        "get",
        "/classes/{class_id}/assignments",
        "A class's lessons: for whom, due when, how many done, not started, late",
        "its teacher, admin",
        None,
    ),
    (
        "get",
        "/classes/{class_id}/assignments/{lesson_id}",
        "One lesson set for a class, and each learner's status",
        "its teacher, admin",
        None,
    ),
    (
        "put",
        "/classes/{class_id}/assignments/{lesson_id}",
        "Set a lesson for the class, groups or learners (201 when new)",
        "its teacher, admin",
        _ASSIGNMENT_IN,
    ),
    (
        "delete",
        "/classes/{class_id}/assignments/{lesson_id}",
        "Take a lesson off a class (answers stay)",
        "its teacher, admin",
        None,
    ),
    (
        "get",
        "/classes/{class_id}/reports/lessons",
        "Each learner's status and time spent on each lesson of the class",
        "its teacher, admin",
        None,
    ),
    (
        "get",
        "/classes/{class_id}/reports/difficult-questions",
        "The questions the class gets wrong most often, with the commonest wrong answers",
        "its teacher, admin",
        None,
    ),
    (
        "post",
        "/roster/learners",
        "Learners from a CSV body (name, class, pin): the checked lines (dry_run, the "
        "default), or with dry_run=0 and no problems, added (201) with their PINs",
        "admin",
        _CSV_IN,
    ),
    (
        "post",
        "/classes/{class_id}/roster",
        "Learners for this class from a CSV body (name, pin); dry_run as above",
        "its teacher, admin",
        _CSV_IN,
    ),
    (
        "post",
        "/roster/staff",
        "Staff from a CSV body (name, username, role, class); dry_run as above; 201 gives "
        "each new password once",
        "admin",
        _CSV_IN,
    ),
    (
        "get",
        "/classes/{class_id}/lessons",
        "Lessons the class's teachers composed",
        "its teacher, admin",
        None,
    ),
    (
        "post",
        "/classes/{class_id}/lessons",
        "Compose a lesson from any pack's readings and questions, in order, and set it",
        "its teacher, admin",
        _CLASS_LESSON_IN,
    ),
    (
        "get",
        "/classes/{class_id}/lessons/{class_lesson_id}",
        "A composed lesson and each learner's progress",
        "its teacher, admin",
        None,
    ),
    (
        "delete",
        "/classes/{class_id}/lessons/{class_lesson_id}",
        "Remove a composed lesson (packs and answers stay)",
        "its teacher, admin",
        None,
    ),
    ("get", "/class-lessons", "Lessons my teachers composed for me", "learner", None),
    (
        "get",
        "/class-lessons/{class_lesson_id}",
        "A composed lesson's readings and questions in order, and my progress",
        "learner it is set for",
        None,
    ),
    ("get", "/classes/{class_id}/quizzes", "A class's quizzes", "its teacher, admin", None),
    ("post", "/classes/{class_id}/quizzes", "Make a draft quiz", "its teacher, admin", _QUIZ_IN),
    (
        "get",
        "/classes/{class_id}/quizzes/{quiz_id}",
        "A quiz: who started and finished, scores, and results per question",
        "its teacher, admin",
        None,
    ),
    (
        "post",
        "/classes/{class_id}/quizzes/{quiz_id}/start",
        "Open a draft quiz to its learners",
        "its teacher, admin",
        None,
    ),
    (
        "post",
        "/classes/{class_id}/quizzes/{quiz_id}/close",
        "Close a quiz: learners see their results",
        "its teacher, admin",
        None,
    ),
    (
        "delete",
        "/classes/{class_id}/quizzes/{quiz_id}",
        "Remove a quiz nobody answered (409 otherwise)",
        "its teacher, admin",
        None,
    ),
    ("get", "/quizzes", "My quizzes, with my score once each is closed", "learner", None),
    (
        "get",
        "/quizzes/{quiz_id}",
        "A quiz's questions and my answers; grades and right answers once it is closed",
        "learner it is set for",
        None,
    ),
    (
        "post",
        "/quizzes/{quiz_id}/answers",
        "Answer one question: recorded, not graded to me (409: answered already, closed)",
        "learner it is set for",
        _QUIZ_ANSWER_IN,
    ),
    ("post", "/quizzes/{quiz_id}/finish", "Hand the quiz in", "learner it is set for", None),
    (
        "get",
        "/search",
        "Search lesson passages (results), questions and resource titles (query"
        " parameter q); a learner never finds a quiz's questions while it is live for them",
        "signed in",
        None,
    ),
    (
        "post",
        "/tutor/answers",
        "Ask the tutor; the answer, the lesson passages it used, and how it was made."
        " 503 with Retry-After when the tutor is busy",
        "learner (when the school and class allow the tutor)",
        _TUTOR_IN,
    ),
]


def _operation(method: str, path: str, summary: str, who: str, body: dict | None) -> dict:
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _ID if name in _INTEGER_PARAMS else _TEXT,
        }
        for name in (part[1:-1] for part in path.split("/") if part.startswith("{"))
    ]
    if path == "/search":
        parameters.append({"name": "q", "in": "query", "required": True, "schema": _TEXT})
    if body is _CSV_IN:
        parameters.append(
            {"name": "dry_run", "in": "query", "required": False, "schema": _TEXT,
             "description": "0 to add the lines; anything else (the default) only checks"}
        )  # fmt: skip
    if path.endswith("/next-item"):
        parameters.append(
            {"name": "after", "in": "query", "required": False, "schema": _TEXT,
             "description": "the item just answered: never offered next"}
        )  # fmt: skip
    operation = {
        "summary": summary,
        "description": f"Who may call it: {who}.",
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "4XX": {
                "description": "A clear error",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }
    if method != "get":
        operation["parameters"].append(
            {"name": "X-CSRFToken", "in": "header", "required": True, "schema": _TEXT}
        )
    if body is not None:
        media = "text/csv" if body is _CSV_IN else "application/json"
        operation["requestBody"] = {"required": True, "content": {media: {"schema": body}}}
    if path == "/attempts":
        operation["responses"]["201"] = {"description": "Recorded (durably) and graded"}
        operation["responses"]["200"]["description"] = "Already recorded under this client_key"
    return operation


def document() -> dict:
    """The whole OpenAPI document."""
    paths: dict[str, dict] = {}
    for method, path, summary, who, body in ROUTES:
        paths.setdefault(path, {})[method] = _operation(method, path, summary, who, body)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Schoolbox API", "version": __version__},
        "servers": [{"url": "/api/v1"}],
        "components": {"schemas": {"Item": _ITEM, "Error": _ERROR}},
        "paths": paths,
    }
