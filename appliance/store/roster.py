"""Learners and staff from a CSV file a school already keeps: read and checked line by line
for a preview (every problem named with its line), then added all together or not at all.

Learners: columns `name`, `class` and optionally `pin`. Staff: `name`, `username`,
`role` (teacher or admin) and optionally `class` (a class they teach; the same person on
several lines teaches several). A class that does not exist yet is made, when the
importer may make classes (an admin). Commas, semicolons or tabs separate the columns, as
spreadsheets in different countries write them; the file is UTF-8 (a byte-order mark is
fine).
"""

from __future__ import annotations

import csv
import io
import secrets
from dataclasses import dataclass, field

import sqlite_utils

from appliance.messages import lazy as _l
from appliance.store import audit, classes, one, rows, users

MAX_BYTES = 256 * 1024
MAX_LINES = 1000
LEARNER_COLUMNS = {"name": "name", "learner": "name", "class": "class", "pin": "pin"}
STAFF_COLUMNS = {"name": "name", "username": "username", "role": "role", "class": "class"}


class RosterError(ValueError):
    """A file that cannot be read at all (not one line's problem); the message says why."""


@dataclass
class Line:
    """One line of the file as it will be imported, or why it cannot be."""

    number: int
    name: str = ""
    class_name: str = ""
    pin: str = ""
    username: str = ""
    role: str = ""
    class_id: int | None = None
    new_class: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass
class Preview:
    lines: list[Line]
    new_classes: list[str]

    @property
    def ok(self) -> bool:
        return bool(self.lines) and not any(line.problems for line in self.lines)


def read_learners(
    db: sqlite_utils.Database, data: bytes, *, pin_digits: int, allowed_classes: dict[str, int],
    may_make_classes: bool, default_class: str = "",
) -> Preview:  # fmt: skip
    """Check a learners file: every line gets its problems named. `allowed_classes` maps
    the class names the importer may add learners to (by folded name) to their ids."""
    records = _records(data, LEARNER_COLUMNS, required={"name"})
    if "class" not in records[0] and not default_class:
        raise RosterError(_l("The file needs a 'class' column: which class each learner is in."))
    lines: list[Line] = []
    seen: set[tuple[str, str]] = set()
    new: dict[str, str] = {}
    for number, record in records[1]:
        line = Line(number, name=" ".join(record.get("name", "").split()),
                    class_name=" ".join(record.get("class", "").split()) or default_class,
                    pin=record.get("pin", "").strip())  # fmt: skip
        _check_name(line)
        _place_in_class(db, line, allowed_classes, may_make_classes, new)
        if line.pin and not (line.pin.isdigit() and len(line.pin) == pin_digits):
            line.problems.append(str(_l("A PIN here is %(n)d digits.", n=pin_digits)))
        key = (line.class_name.casefold(), line.name.casefold())
        if line.name and key in seen:
            line.problems.append(str(_l("%(name)s is on an earlier line for the same class.",
                                        name=line.name)))  # fmt: skip
        seen.add(key)
        if line.class_id and line.name and _enrolled_name(db, line.class_id, line.name):
            line.problems.append(str(_l("%(cls)s already has a learner called %(name)s.",
                                        cls=line.class_name, name=line.name)))  # fmt: skip
        lines.append(line)
    return Preview(lines, sorted(new.values()))


def add_learners(
    db: sqlite_utils.Database, actor: audit.Actor, preview: Preview, pin_key: bytes,
    pin_digits: int,
) -> list[dict]:  # fmt: skip
    """Add a checked file's learners (call inside one transaction); the sheet to print:
    class, name and PIN of each, a PIN made where the file gave none."""
    if not preview.ok:
        raise RosterError(_l("Fix the lines with problems first; nothing was added."))
    made = _make_classes(db, actor, preview.new_classes)
    sheet = []
    for line in preview.lines:
        class_id = line.class_id or made[line.class_name.casefold()]
        pin = line.pin or users.new_pin(pin_digits)
        learner_id = users.create_learner(db, actor, line.name, pin, pin_key)
        classes.enrol(db, actor, class_id, learner_id)
        sheet.append({"class_name": line.class_name, "name": line.name, "pin": pin,
                      "pictures": []})  # fmt: skip
    audit.record(db, actor, "roster.import", "learners", None, count=len(sheet))
    return sheet


def read_staff(db: sqlite_utils.Database, data: bytes) -> Preview:
    """Check a staff file: usernames free and well formed, roles known, one person's
    lines agreeing with each other."""
    records = _records(data, STAFF_COLUMNS, required={"name", "username"})
    existing = {c["name"].casefold(): c["id"] for c in classes.all_classes(db)}
    lines: list[Line] = []
    people: dict[str, Line] = {}
    new: dict[str, str] = {}
    for number, record in records[1]:
        line = Line(number, name=" ".join(record.get("name", "").split()),
                    username=record.get("username", "").strip().lower(),
                    role=record.get("role", "").strip().lower() or "teacher",
                    class_name=" ".join(record.get("class", "").split()))  # fmt: skip
        _check_name(line)
        try:
            users.validate_username(line.username)
        except users.UserError as error:
            line.problems.append(str(error))
        if one(db, "SELECT 1 FROM users WHERE username = ?", (line.username,)):
            line.problems.append(str(_l("The username %(name)s is taken.", name=line.username)))
        if line.role not in ("teacher", "admin"):
            line.problems.append(str(_l("The role is teacher or admin.")))
        earlier = people.setdefault(line.username, line)
        if earlier is not line and (earlier.name, earlier.role) != (line.name, line.role):
            line.problems.append(str(_l("Line %(n)d gives %(user)s another name or role.",
                                        n=earlier.number, user=line.username)))  # fmt: skip
        if line.class_name:
            _place_in_class(db, line, existing, True, new)
        lines.append(line)
    return Preview(lines, sorted(new.values()))


def add_staff(db: sqlite_utils.Database, actor: audit.Actor, preview: Preview) -> list[dict]:
    """Add a checked file's staff (inside one transaction), each with a new password to
    hand over once, and make them teachers of their classes; the sheet to print."""
    if not preview.ok:
        raise RosterError(_l("Fix the lines with problems first; nothing was added."))
    made = _make_classes(db, actor, preview.new_classes)
    sheet: list[dict] = []
    ids: dict[str, int] = {}
    for line in preview.lines:
        if line.username not in ids:
            password = new_password()
            ids[line.username] = users.create_staff(
                db, actor, line.role, line.name, line.username, password
            )
            sheet.append({"name": line.name, "username": line.username, "role": line.role,
                          "password": password, "classes": []})  # fmt: skip
        if line.class_name:
            class_id = line.class_id or made[line.class_name.casefold()]
            classes.add_teacher(db, actor, class_id, ids[line.username])
            next(s for s in sheet if s["username"] == line.username)["classes"].append(
                line.class_name
            )
    audit.record(db, actor, "roster.import", "staff", None, count=len(sheet))
    return sheet


def new_password() -> str:
    """A password to hand over on paper: four groups of letters and digits, easy to
    type, about 83 bits; the person can change it."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))


def _records(data: bytes, columns: dict[str, str], required: set[str]):
    """(the columns found, [(line number, {column: value})]) or RosterError."""
    if len(data) > MAX_BYTES:
        raise RosterError(_l("The file is larger than %(n)d KB; split it.", n=MAX_BYTES // 1024))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RosterError(
            _l("The file is not UTF-8 text. Save it from the spreadsheet as 'CSV UTF-8'.")
        ) from None
    if not text.strip():
        raise RosterError(_l("The file is empty."))
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel  # one column, or too little to tell: commas
    reader = csv.reader(io.StringIO(text), dialect)
    header = [columns.get(h.strip().lower(), "") for h in next(reader)]
    missing = required - set(header)
    if missing:
        raise RosterError(_l("The first line must name the columns; missing: %(cols)s.",
                             cols=", ".join(sorted(missing))))  # fmt: skip
    records: list[tuple[int, dict[str, str]]] = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue  # a blank line
        if len(records) >= MAX_LINES:
            raise RosterError(_l("At most %(n)d lines at a time; split the file.", n=MAX_LINES))
        record = {name: value for name, value in zip(header, values, strict=False) if name}
        records.append((reader.line_num, record))
    if not records:
        raise RosterError(_l("The file has column names but no lines under them."))
    return set(header), records


def _check_name(line: Line) -> None:
    try:
        users.validate_name(line.name)
    except users.UserError as error:
        line.problems.append(str(error))


def _place_in_class(db, line: Line, allowed: dict[str, int], may_make: bool, new: dict):
    if not line.class_name:
        line.problems.append(str(_l("The class is missing.")))
        return
    if len(line.class_name) > classes.MAX_NAME:
        line.problems.append(str(_l("A class name is 1 to 60 characters.")))
        return
    folded = line.class_name.casefold()
    if folded in allowed:
        line.class_id = allowed[folded]
    elif may_make:
        line.new_class = True
        new.setdefault(folded, line.class_name)
    else:
        line.problems.append(str(_l("%(cls)s is not one of your classes.", cls=line.class_name)))


def _enrolled_name(db: sqlite_utils.Database, class_id: int, name: str) -> bool:
    return any(
        r[0].casefold() == name.casefold()
        for r in rows(
            db,
            "SELECT u.display_name FROM enrolments e JOIN users u ON u.id = e.learner_id"
            " WHERE e.class_id = ? AND u.erased_at IS NULL",
            (class_id,),
        )
    )


def _make_classes(db, actor: audit.Actor, names: list[str]) -> dict[str, int]:
    return {name.casefold(): classes.create(db, actor, name, None) for name in names}
