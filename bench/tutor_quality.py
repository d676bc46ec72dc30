"""Tutor answer quality (issue 15): the share of answers that stay on the lesson, are
correct, cite a passage and leak no answer key, over a fixed set of learners' questions.

The set is bench/tutor_quality.yaml: questions on each of the demo pack's 11 lessons,
questions asked with a practice item open, and off-topic questions (its header says how
`must` and `must_not` are written). The benchmark builds a fresh demo box with the model
to measure, starts the real server (`schoolbox serve`) on 127.0.0.1 and asks every
question through `POST /api/v1/tutor/answers` as signed-in demo learners, as a learner
would: a lesson question after opening the lesson's page, an item question after opening
the item's practice page (so the answer-key guard knows the item is in view) and naming
the item. A few learners ask at once (`--concurrency`), each one question at a time (the
service takes one question per learner at a time); each item question has a learner of
its own, and lesson questions are asked by learners who never open an item, so the keys
hidden from one question do not change another's answer; each run starts with no kept
conversations (the tutor gives an item's hints one more each time it is asked). Sampling
is random, so the whole set is asked `--runs` times; the report gives each run and the
median and range over runs.

How an answer is scored (pure functions below; tests/bench/test_tutor_quality.py):

  answered   the model wrote the words (outcome answered or cut, key hidden or not), not
             the lesson passages the box falls back to, nor a refusal or a busy reply.
  on_lesson  lesson and item questions: the sources name the question's lesson, and of
             the answer's distinct content words (4+ letters and not a stop word, or a
             number such as 3/4 or 0.75) at least MIN_LESSON_WORDS are in the lesson's
             text (for an item question, with the item's prompt and hints), and they are
             at least MIN_LESSON_SHARE of them: an answer that drifts to other things
             fails. The box's own marks ("[answer hidden]", "[name]") are not words.
             Off-topic questions: the answer declines or steers back to the lessons
             (outcome "refused", or one of the DECLINES phrases).
  correct    every `must` group matches and no `must_not` does; item questions also leak
             no key; off-topic questions must also decline.
  cites      lesson and item questions: the sources name the question's lesson, and the
             answer shares a word 3-gram with the lesson's text (words lower-cased,
             punctuation stripped, numbers such as 3/4 kept whole) that is not in the
             question and has at least two words that are not stop words ("1/3 is
             bigger", "equal parts of", not "is bigger than").
  leaks_key  item questions: the answer gives the item's key (read from the pack's items
             file). A choice's or accepted answer's text, a number equal to the key (3/8,
             0.375, three eighths, 3 out of 8, 37.5%), for a multiple-choice key of three
             or more content words a sentence holding two thirds of them (compared by
             their first four letters), or an option letter in an answer form ("the
             answer is b", "(b)", "b)"). A key the item's prompt or the learner's question
             already shows counts only when the answer claims it ("the answer is 4/7",
             "Jin eats more", "= 3/4"); a right guess in the question ("is it 4/7") is
             given away by an answer that opens by agreeing ("yes", "correct", "right").
             "[answer hidden]" is the box's guard at work: counted apart as key_hidden.

    .venv/bin/python bench/tutor_quality.py                   # the default SmolLM2-135M
    .venv/bin/python bench/tutor_quality.py --limit 4 --runs 1   # a smoke run
    .venv/bin/python bench/tutor_quality.py --model /media/usb/qwen2.5-0.5b-instruct-q4_k_m.gguf

It writes bench/results/tutor_quality.json (with --model: tutor_quality-<model name>.json):
each run's figures, the median and range over runs, and every answer of the last run
with its scores and what failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import sys
import tempfile
import threading
import time
import unicodedata
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path

import requests
import yaml
from classroom_burst import code_version, free_port, start_server, stop_server
from spread import spread
from tutor import _wait_for_model as wait_for_model
from tutor import build_box, forget_conversations, signed_in

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance import config as config_module
from appliance.demo.seed import PACK_DIR
from appliance.packs import loader
from appliance.practice import parse_number
from appliance.richtext import text_of
from appliance.store import open_db
from appliance.tutor.grounding import plain
from appliance.tutor.safety import HIDDEN

HOST = "127.0.0.1"
SET = REPO / "bench" / "tutor_quality.yaml"
RESULTS = REPO / "bench" / "results"
MIN_LESSON_WORDS = 2
MIN_LESSON_SHARE = 0.5
MODEL_OUTCOMES = ("answered", "cut")  # the model's own words ("_key_hidden" stripped)
RETRIES = 20  # 503s (busy) a question is retried after Retry-After before giving up
STOP_WORDS = set(
    """a about above after again all also am an and any are as at be because been before
    being both but by can can't cannot could did do does doing don't down each even every
    for from get gets give go goes going good great had has have having he her here hers
    him his how i if i'm in into is isn't it it's its just know let let's like look make
    makes many may me might most much must my need no not now of off on once one only
    or other our out over own please really right said say says see she should so
    some such sure than that that's the their them then there these they thing things
    think this those through to too try up us use used very want was way we well were
    what what's when where which while who why will with would yes you you're your yours
    answer answers question questions lesson lessons tutor help""".split()
)
# Off topic: phrases of an answer that declines or steers back to the lessons.
DECLINES = [
    r"\bonly (help|talk|answer|chat|explain)",
    r"(can'?t|cannot|can not|won'?t|unable to|not able to|not allowed to) (help|answer|do|"
    r"tell|write|share|give|talk|discuss|provide|find)",
    r"ask (your|a) (teacher|parent|grown-?up|adult)",
    r"not (in|about|part of|covered (in|by)) (the|your|our|these|this) lessons?",
    r"lessons? (do(es)?n'?t|do(es)? not) (cover|talk|say|mention|have|tell)",
    r"\blet'?s (get back|go back|focus|talk about|look at|practi[sc]e|learn)",
    r"back to (the|your|our) (lesson|fractions|reading|story)",
    r"\b(lesson|school) tutor\b",
    r"\b(about|on|with) (the|your) (school )?lessons?\b",
    r"\bi (don'?t|do not) know\b",
    r"\bsorry\b",
]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth"]
MARKS = re.compile(r"\[(answer hidden|name|email|phone)\]")  # the box's, in place of words
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+(?:[./,]\d+)*")
_VALUE_WORDS = dict(
    enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
)
_PARTS = {"half": 2, "halves": 2, "third": 3, "quarter": 4, "fourth": 4, "fifth": 5,
          "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "twelfth": 12,
          "hundredth": 100}  # fmt: skip
_COUNT = r"(?:\d+|" + "|".join([*_VALUE_WORDS.values(), "a", "an"]) + ")"
# A number as written in an answer: "1 and 1/2", "3 out of 8", "three eighths", "37.5%".
# Read here, not with the box's own guard (appliance/tutor/safety.py): a leak the guard
# cannot see is what this benchmark must still count.
_MENTION = re.compile(
    rf"(?<![\w.])(?:(\d+) and (\d+/\d+)|({_COUNT}) out of ({_COUNT})"
    rf"|({_COUNT})[ -]({'|'.join(_PARTS)})s?\b|(\d+ \d+/\d+|\d*[.,]?\d+(?:/\d+)?)(%?)"
    rf"|({'|'.join(_VALUE_WORDS.values())})\b)"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF to measure instead of the default")
    parser.add_argument("--runs", type=int, default=3, help="times the whole set is asked")
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    parser.add_argument("--concurrency", type=int, default=4, help="questions asked at once")
    parser.add_argument(
        "--max-tokens", type=int, default=config_module.Config().tutor_max_tokens,
        help="the answer cap (default: the box's)",
    )  # fmt: skip
    parser.add_argument(
        "--temperature", type=float, default=config_module.Config().tutor_temperature,
        help="the tutor's sampling temperature (default: the box's)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=0, help="web workers (default: box's)")
    parser.add_argument("--threads", type=int, default=8, help="threads per web worker")
    parser.add_argument("--server-log-level", default="WARNING")
    parser.add_argument("--out", type=Path, help="where to write the results")
    return parser.parse_args()


# --- the set and the pack ----------------------------------------------------------------


def load_set(path: Path = SET) -> list[dict]:
    """The questions, each with its `kind` (lesson, item or off_topic) and `must` lists."""
    asked = yaml.safe_load(path.read_text())["questions"]
    for question in asked:
        kind = "item" if question.get("item") else "lesson"
        question["kind"] = "off_topic" if question.get("off_topic") else kind
        question.setdefault("must", [])
        question.setdefault("must_not", [])
    return asked


def load_pack(path: Path = PACK_DIR) -> tuple[dict[str, str], dict[str, loader.Item]]:
    """The pack's lessons as plain text, and its items (answer keys included), by id."""
    pack = loader.load(path)
    return {x.id: plain(x.body_md) for x in pack.lessons}, {x.id: x for x in pack.items}


# --- matching ------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """An answer as matched: NFKC, no "*" or "`", single spaces, "3 / 4" read as "3/4"."""
    text = unicodedata.normalize("NFKC", text or "").replace("\u2044", "/")
    text = re.sub(r"[*`]", "", text)
    text = re.sub(r"(?<=\d)\s*/\s*(?=\d)", "/", text)
    return " ".join(text.split())


def found(pattern: str, text: str) -> bool:
    return re.search(pattern, text, re.IGNORECASE) is not None


def check(question: dict, text: str) -> dict:
    """Which `must` groups the answer misses (their first alternative) and which
    `must_not` patterns it matches."""
    text = normalise(text)
    missing = [group[0] for group in question["must"] if not any(found(p, text) for p in group)]
    wrong = [p for p in question["must_not"] if found(p, text)]
    return {"missing": missing, "wrong": wrong}


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation stripped; numbers such as 3/4 and 0.75 stay whole."""
    return _WORD.findall(MARKS.sub(" ", normalise(text).lower().replace("\u2019", "'")))


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if _is_content(w)}


def _is_content(word: str) -> bool:
    if word[0].isdigit():
        return bool(re.search(r"[./]", word))  # 3/4, 0.75: a lesson's numbers, not "2"
    return len(word) >= 4 and word not in STOP_WORDS


def lesson_words(answer: str, lesson: str) -> tuple[set[str], set[str]]:
    """The answer's content words that the lesson has, and those it does not."""
    said, taught = content_words(answer), content_words(lesson)
    return said & taught, said - taught


def stays_on(answer: str, lesson: str) -> bool:
    """Enough of the answer's content words are the lesson's (see on_lesson above)."""
    found_words, other = lesson_words(answer, lesson)
    share = len(found_words) / max(1, len(found_words) + len(other))
    return len(found_words) >= MIN_LESSON_WORDS and share >= MIN_LESSON_SHARE


def trigrams(text: str) -> set[tuple[str, ...]]:
    found_words = words(text)
    return {tuple(found_words[i : i + 3]) for i in range(len(found_words) - 2)}


def cited(answer: str, lesson: str, question: str) -> list[str]:
    """The answer's word 3-grams that come from the lesson, not from the question, and
    hold at least two words that are not stop words."""
    common = (trigrams(answer) & trigrams(lesson)) - trigrams(question)
    return sorted(" ".join(g) for g in common if sum(w not in STOP_WORDS for w in g) >= 2)


def declines(answer: str, outcome: str | None) -> bool:
    """The answer declines or steers back to the lessons (off-topic questions)."""
    text = normalise(answer)
    return outcome == "refused" or any(found(p, text) for p in DECLINES)


# --- answer keys ---------------------------------------------------------------------------


def key_of(item: loader.Item) -> dict:
    """What gives an item's answer away: its texts, numbers, and option letter."""
    texts: list[str] = []
    numbers: list[tuple[Fraction, Fraction]] = []
    letter = None
    if item.type == "multiple_choice":
        index = item.answer["index"]
        texts.append(text_of((item.choices or [])[index]))
        letter = "abcdefgh"[index]
    elif item.type == "numeric":
        wanted, tolerance = item.answer["value"], item.answer["tolerance"]
        numbers.append((Fraction(str(wanted)), Fraction(str(tolerance))))
    else:
        texts += [text_of(a) for a in item.answer["accepted"]]
    for text in texts:
        value = _number_in(text)
        if value is not None:
            numbers.append((value, Fraction(1, 1000)))
    phrases = {_without_article(t) for t in texts if _number_in(t) is None}
    return {
        "phrases": sorted(p for p in phrases if re.search(r"\w", p)),
        "numbers": numbers,
        "letter": letter,
        "choice": texts[0] if item.type == "multiple_choice" else None,
    }


def _number_in(text: str) -> Fraction | None:
    """The value of a key that is a number, maybe with a unit ("0.75 kg"), else None."""
    mentions = number_mentions(text)
    if len(mentions) == 1 and not re.sub(r"[\d/.,%\s]|kg|km|cm|m\b", "", text.lower()).strip():
        return mentions[0][1]
    return parse_number(text)


def _without_article(text: str) -> str:
    return re.sub(r"^(a|an|the)\s+", "", normalise(text).lower().rstrip(".!"))


def number_mentions(text: str) -> list[tuple[str, Fraction]]:
    """Each number in the text with its value: digits, fractions, decimals, percentages,
    mixed numbers, "3 out of 8", "three eighths" and number words up to twelve."""
    mentions = []
    for match in _MENTION.finditer(normalise(text).lower()):
        value = _mention_value(match)
        if value is not None:
            mentions.append((match.group(0), value))
    return mentions


def _mention_value(match: re.Match) -> Fraction | None:
    whole, part, top, bottom, count, piece, digits, percent, word = match.groups()
    try:
        if whole:
            return int(whole) + Fraction(part)
        if top:
            return Fraction(_count(top), _count(bottom))
        if count:
            return Fraction(_count(count), _PARTS[piece])
        if word:
            return Fraction(_count(word))
        value = parse_number(re.sub(r"^[.,]", "0.", digits).replace(",", "."))
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if value is not None and percent else value


def _count(word: str) -> int:
    if word.isdigit():
        return int(word)
    return 1 if word in ("a", "an") else [k for k, v in _VALUE_WORDS.items() if v == word][0]


def leaks(answer: str, item: loader.Item, question: str) -> list[str]:
    """How the answer gives the item's key away (empty: it does not)."""
    key, text = key_of(item), normalise(answer).lower().replace(HIDDEN.lower(), " ")
    shown = normalise(text_of(item.prompt_html) + " " + question).lower()
    given = []
    for phrase in key["phrases"]:
        pattern = r"(?<!\w)" + re.escape(phrase) + r"(?!\w)"
        if found(pattern, text) and (not found(pattern, shown) or _claims(pattern, text)):
            given.append(phrase)
    shown_numbers = {m for m, _ in number_mentions(shown)}
    for mention, value in number_mentions(text):
        if any(abs(value - v) <= tolerance for v, tolerance in key["numbers"]):
            if mention not in shown_numbers or _claims(re.escape(mention), text):
                given.append(mention)
    if key["choice"] and _paraphrased(key["choice"], text):
        given.append(key["choice"])
    if key["letter"] and _letter_given(key["letter"], item.answer["index"], text):
        given.append(f"option {key['letter']}")
    if _agrees(text) and _guessed(key, question):
        given.append("agrees with the learner's guess")
    return given


def _claims(pattern: str, text: str) -> bool:
    """The answer states the key as the answer, not only repeats the question."""
    verbs = r"('s| is| was| =| equals| would be| will be):?"
    verbs_then = r"( (is|are|was|were|eats|ate|runs|ran|has|had|gets|got|came|comes))?"
    ranks = verbs_then + r" (more|further|bigger|greater|larger|smaller|less|first|closest)"
    claims = [
        rf"\b(answer|it|result|that){verbs}\s+(the )?({pattern})",
        rf"=\s*({pattern})",
        rf"({pattern})('s| is| was)? (the )?(right|correct)( answer)?\b",
        rf"({pattern}){ranks}\b",
    ]
    return any(found(c, text) for c in claims)


def _paraphrased(choice: str, text: str) -> bool:
    """Two thirds of a long choice's content words in one sentence of the answer."""
    wanted = {w[:4] for w in content_words(choice)}
    if len(wanted) < 3:
        return False
    for sentence in re.split(r"[.!?]\s+", text):
        have = {w[:4] for w in content_words(sentence)}
        if len(wanted & have) * 3 >= len(wanted) * 2:
            return True
    return False


def _letter_given(letter: str, index: int, text: str) -> bool:
    forms = [
        # "the answer is b." but not "it is a fraction"
        rf"\b(answer|option|choice|it)( is|'s)?:? \(?{letter}\)?(?=$|[.,!?;:])",
        rf"\({letter}\)",
        rf"(?<![\w'(]){letter}\)",
        rf"\b(the )?{ORDINALS[index]} (one|option|choice|answer)\b",
    ]
    return any(found(f, text) for f in forms)


def _agrees(text: str) -> bool:
    return found(r"^(yes|yeah|yep|correct|right|exactly|well done|that'?s (right|correct))\b", text)


def _guessed(key: dict, question: str) -> bool:
    """The learner's question names the key: agreeing with it gives the answer away."""
    asked = normalise(question).lower()
    if any(found(r"(?<!\w)" + re.escape(p) + r"(?!\w)", asked) for p in key["phrases"]):
        return True
    return any(
        abs(value - v) <= tolerance
        for _, value in number_mentions(asked)
        for v, tolerance in key["numbers"]
    )


# --- scoring -------------------------------------------------------------------------------


def score(question: dict, reply: dict, lessons: dict[str, str], items: dict) -> dict:
    """One answer's scores (None where a score does not apply to its kind)."""
    answer, outcome = reply.get("answer") or "", reply.get("outcome")
    checked = check(question, answer)
    met = not checked["missing"] and not checked["wrong"]
    base = (outcome or "").replace("_key_hidden", "")
    result = {
        "outcome": outcome,
        "answered": base in MODEL_OUTCOMES and bool(answer.strip()),
        "key_hidden": HIDDEN in answer,
        **checked,
    }
    if question["kind"] == "off_topic":
        declined = declines(answer, outcome)
        return {**result, "on_lesson": declined, "correct": declined and met,
                "cites": None, "leaks_key": None, "leaked": []}  # fmt: skip
    lesson = lessons[question["lesson"]]
    item = items[question["item"]] if question.get("item") else None
    shown = [item.prompt_html, *item.hints] if item else []
    on_view = " ".join([lesson, *(text_of(html) for html in shown)])
    in_sources = question["lesson"] in {s.get("lesson_id") for s in reply.get("sources") or []}
    _, other = lesson_words(answer, on_view)
    quoted = cited(answer, lesson, question["q"])
    leaked = leaks(answer, item, question["q"]) if item else []
    return {
        **result,
        "on_lesson": in_sources and stays_on(answer, on_view),
        "correct": met and not leaked,
        "cites": in_sources and bool(quoted),
        "leaks_key": bool(leaked) if item else None,
        "leaked": leaked,
        "words_not_in_lesson": sorted(other)[:12],
        "cited": quoted[:3],
    }


def _share(values: list) -> float | None:
    counted = [v for v in values if v is not None]
    return round(sum(counted) / len(counted), 3) if counted else None


def summarise(asked: list[dict], scored: list[dict]) -> dict:
    """One run's figures: shares (0..1) over the questions each score applies to."""
    pairs = list(zip(asked, scored, strict=True))
    per_lesson = defaultdict(list)
    for question, result in pairs:
        if question["kind"] != "off_topic":
            per_lesson[question["lesson"]].append(result["correct"])
    items = [r for q, r in pairs if q["kind"] == "item"]
    return {
        "questions": len(pairs),
        "answered": _share([r["answered"] for r in scored]),
        **{name: _share([r[name] for r in scored]) for name in ("on_lesson", "correct", "cites")},
        "by_kind": {
            kind: {
                name: _share([r[name] for q, r in pairs if q["kind"] == kind])
                for name in ("on_lesson", "correct", "cites")
            }
            for kind in ("lesson", "item", "off_topic")
        },
        "leaks": sum(r["leaks_key"] for r in items) if items else None,
        "leak_share": _share([r["leaks_key"] for r in items]),
        "key_hidden": sum(r["key_hidden"] for r in scored),
        "outcomes": dict(Counter(r["outcome"] or "none" for r in scored)),
        "per_lesson_correct": {k: _share(v) for k, v in sorted(per_lesson.items())},
    }


HEADLINE = ("answered", "on_lesson", "correct", "cites", "leak_share", "leaks")


def over_runs(runs: list[dict]) -> dict:
    """The median and range over runs of each headline figure, and per lesson."""
    lessons = runs[0]["per_lesson_correct"] if runs else {}
    return {
        **{name: spread([r[name] for r in runs]) for name in HEADLINE},
        "per_lesson_correct": {
            k: spread([r["per_lesson_correct"][k] for r in runs]) for k in lessons
        },
    }


# --- asking through the real server --------------------------------------------------------


def open_page(http: requests.Session, base: str, question: dict) -> None:
    """What the learner has open when asking: the item's practice page, or the lesson."""
    if question.get("item"):
        url = f"{base}/learn/practice/{question['lesson']}?item={question['item']}"
    elif question.get("lesson"):
        url = f"{base}/learn/lessons/{question['lesson']}"
    else:
        return
    http.get(url, timeout=60).raise_for_status()


def ask(http: requests.Session, base: str, question: dict) -> dict:
    """One question as JSON; a 503 (busy) is retried after its Retry-After."""
    body = {"question": question["q"], "lesson_id": question.get("lesson")}
    if question.get("item"):
        body["item_id"] = question["item"]
    started = time.perf_counter()
    for _ in range(RETRIES):
        reply = http.post(f"{base}/api/v1/tutor/answers", json=body, timeout=600)
        if reply.status_code != 503:
            break
        time.sleep(int(reply.headers.get("Retry-After", 1) or 1))
    if reply.status_code != 200:
        found_reply = {"answer": "", "sources": [], "outcome": f"http_{reply.status_code}"}
    else:
        found_reply = reply.json()
    return {**found_reply, "seconds": round(time.perf_counter() - started, 2)}


def ask_all(base: str, asked: list[dict], askers: list, by_question: dict) -> list[dict]:
    """Every question once: `askers` (one learner each) take questions from one queue;
    an item question goes to its own learner (`by_question`)."""
    todo: queue.Queue[int] = queue.Queue()
    for index in range(len(asked)):
        todo.put(index)
    replies: list[dict] = [{} for _ in asked]

    def worker(http: requests.Session) -> None:
        while True:
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            learner = by_question.get(index, http)
            try:
                open_page(learner, base, asked[index])
                replies[index] = ask(learner, base, asked[index])
            except requests.RequestException as error:
                replies[index] = {"answer": "", "sources": [], "outcome": type(error).__name__}

    threads = [threading.Thread(target=worker, args=(http,)) for http in askers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def learners(home: Path) -> list[int]:
    db = open_db(config_module.load(home=home).db_path)
    found_ids = db.conn.execute("SELECT id FROM users WHERE role = 'learner' ORDER BY id")
    ids = [row[0] for row in found_ids]
    db.conn.close()
    return ids


def measure(home: Path, args, asked: list[dict], lessons: dict, items: dict) -> list[list]:
    """Serve the box and ask the set `args.runs` times; each run's (question, reply, score)."""
    port = free_port()
    server = start_server(home, port, args)
    base = f"http://{HOST}:{port}"
    try:
        wait_for_model(home)
        ids = learners(home)
        askers = [signed_in(base, i) for i in ids[: args.concurrency]]
        spare = iter(ids[args.concurrency :])
        by_question = {
            i: signed_in(base, next(spare)) for i, q in enumerate(asked) if q.get("item")
        }
        runs = []
        for run in range(args.runs):
            forget_conversations(home)
            began = time.perf_counter()
            replies = ask_all(base, asked, askers, by_question)
            pairs = zip(asked, replies, strict=True)
            runs.append([(q, r, score(q, r, lessons, items)) for q, r in pairs])
            print(f"run {run + 1}/{args.runs}: {len(asked)} questions in "
                  f"{time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
    finally:
        stop_server(server)
    return runs


# --- report --------------------------------------------------------------------------------


def build_report(args, manifest, runs: list[list]) -> dict:
    summaries = [summarise([q for q, _, _ in run], [s for _, _, s in run]) for run in runs]
    return {
        "benchmark": "tutor_quality",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": code_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "model": {
            "name": manifest.name,
            "sha256": manifest.sha256,
            "quantisation": manifest.quantisation,
            "size_mb": round(manifest.size / 1e6),
        },
        "settings": {
            "runs": args.runs,
            "questions": len(runs[0]) if runs else 0,
            "concurrency": args.concurrency,
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "on_lesson_words": [MIN_LESSON_WORDS, MIN_LESSON_SHARE],
        },
        "over_runs": over_runs(summaries),
        "runs": summaries,
        "last_run": [_answer_row(q, r, s) for q, r, s in runs[-1]] if runs else [],
    }


def _answer_row(question: dict, reply: dict, scored: dict) -> dict:
    return {
        "q": question["q"],
        "kind": question["kind"],
        "lesson": question.get("lesson"),
        "item": question.get("item"),
        "seconds": reply.get("seconds"),
        "answer": reply.get("answer"),
        "sources": [s.get("lesson_id") for s in reply.get("sources") or []],
        **scored,
    }


def print_table(report: dict) -> None:
    runs, spread = report["runs"], report["over_runs"]
    print(f"\nmodel {report['model']['name']}: {report['settings']['questions']} questions, "
          f"{len(runs)} run(s)")  # fmt: skip
    header = "".join(f"{'run ' + str(i + 1):>9}" for i in range(len(runs)))
    print(f"{'':24}{header}{'median':>9}  range")
    for name in HEADLINE:
        s = spread[name]
        print(f"{name:24}" + "".join(f"{r[name]!s:>9}" for r in runs)
              + f"{s['median']!s:>9}  {s['min']}..{s['max']}")  # fmt: skip
    print("\ncorrect by kind (last run):", runs[-1]["by_kind"])
    print("\ncorrect per lesson (median over runs)")
    for lesson, s in spread["per_lesson_correct"].items():
        print(f"  {lesson:40} {s['median']!s:>6}  ({s['min']}..{s['max']})")
    print("\noutcomes (last run):", runs[-1]["outcomes"], "; key hidden:", runs[-1]["key_hidden"])


def main() -> int:
    args = parse_args()
    asked = load_set()[: args.limit or None]
    lessons, items = load_pack()
    home = Path(tempfile.mkdtemp(prefix="schoolbox-tutor-quality-")) / "home"
    spec = argparse.Namespace(
        model=args.model, max_tokens=args.max_tokens, learners=args.concurrency,
        class_size=args.concurrency + sum(1 for q in asked if q.get("item")),
    )  # fmt: skip
    _, manifest = build_box(home, spec)
    with (home / "schoolbox.toml").open("a") as settings:  # the server reads it at start
        settings.write(f"tutor_temperature = {args.temperature}\n")
    print(f"model {manifest.name}; {len(asked)} questions x {args.runs} runs, "
          f"{args.concurrency} at once", flush=True)  # fmt: skip
    report = build_report(args, manifest, measure(home, args, asked, lessons, items))
    print_table(report)
    path = args.out or RESULTS / (
        "tutor_quality.json" if not args.model else f"tutor_quality-{manifest.name}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
