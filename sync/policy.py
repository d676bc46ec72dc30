"""What may leave the box: the record types and fields sync sends, and pseudonymous ids.

docs/data-policy.md says the same in words; a test holds every bundle to FIELDS. A
field not listed here cannot be sent at all. The fields in OPTIONAL go only where the
district's policy (`<home>/sync-policy.json`) names them; names, PINs, passwords and
tutor conversations are in neither list and so can never leave.

Learners and classes go up under pseudonyms: HMAC-SHA256 under a per-site key
(`<home>/keys/pseudonym.key`, made once, 0600) that never leaves the box, so the
district can follow one learner over time without being able to tell who it is, and the
same learner has unrelated ids at two schools.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from pathlib import Path

from appliance import paths
from sync.files import create_secret

# record type -> its fields, in the order rows carry them
FIELDS: dict[str, list[str]] = {
    # One row per answer. `id` is the answer's UUIDv7, which carries its time.
    "attempts": ["id", "learner", "item", "lesson", "correct", "hints", "duration_ms"],
    # The latest estimate per learner x skill that changed since the last bundle.
    "mastery": ["learner", "skill", "p", "answers", "model"],
    # Per class and skill: how many learners practised it, their mean mastery, answers.
    "class_skills": ["class", "skill", "learners", "mean_p", "answers"],
    # Per day: answers, learners who answered, tutor questions (counts only).
    "usage": ["day", "answers", "learners", "tutor_questions"],
    # The box itself: software version, free disk, database size, answers not yet sent.
    "health": ["version", "disk_free_mb", "database_mb", "backlog"],
    # A learner erased on the box: the hub deletes everything under this pseudonym.
    "erasures": ["learner", "erased_at"],
}
# Fields a district may switch on, per record type, in its policy file.
OPTIONAL: dict[str, list[str]] = {
    "attempts": ["response"],  # what the learner typed: free text, off by default
}
POLICY_FILE = "sync-policy.json"


class PolicyError(ValueError):
    """A district policy that asks for something the box never sends."""


def fields(home: Path) -> dict[str, list[str]]:
    """The fields each record type carries on this box: FIELDS plus what the district's
    policy allows of OPTIONAL."""
    allowed = _district_policy(home)
    return {kind: FIELDS[kind] + allowed.get(kind, []) for kind in FIELDS}


def _district_policy(home: Path) -> dict[str, list[str]]:
    path = home / POLICY_FILE
    if not path.exists():
        return {}
    document = json.loads(path.read_text())
    allow = document.get("allow", {}) if isinstance(document, dict) else None
    if not isinstance(allow, dict):
        raise PolicyError(f"{path} has no 'allow' object.")
    for kind, names in allow.items():
        refused = [n for n in names if n not in OPTIONAL.get(kind, [])]
        if refused:
            raise PolicyError(
                f"{path} allows {kind}.{', '.join(refused)}, which this box never sends "
                f"(optional fields: {OPTIONAL})."
            )
    return allow


def pseudonymiser(home: Path) -> Callable[[str, str], str]:
    """`pseudonym(kind, local id)`: the id the district sees for a learner or class."""
    key = _pseudonym_key(home)

    def pseudonym(kind: str, local_id: str) -> str:
        return hmac.new(key, f"{kind}:{local_id}".encode(), hashlib.sha256).hexdigest()[:24]

    return pseudonym


def _pseudonym_key(home: Path) -> bytes:
    path = paths.pseudonym_key(home)
    if not path.exists():
        create_secret(path, secrets.token_hex(32).encode())  # False: another process won
    key = bytes.fromhex(path.read_text().strip())
    if len(key) != 32:  # an empty or cut key would make every pseudonym guessable
        raise PolicyError(f"{path} is damaged; restore it from a backup before syncing.")
    return key
