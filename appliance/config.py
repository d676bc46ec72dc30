"""The box's configuration: defaults, then SCHOOLBOX_HOME/schoolbox.toml, then environment."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from appliance import paths
from appliance.paths import shared_with_group
from models.tutor import sizing
from sync.files import create_secret

ENV_PREFIX = "SCHOOLBOX_"


@dataclass(frozen=True)
class Config:
    """Everything the box reads at start-up. The data directory holds all it owns."""

    home: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir("schoolbox")))
    host: str = "0.0.0.0"  # noqa: S104 - the box serves the school's Wi-Fi
    port: int = 8080
    threads: int = 8  # per worker
    workers: int = field(default_factory=lambda: min(os.cpu_count() or 1, 4))  # processes
    max_upload_mb: int = 60
    log_level: str = "INFO"
    # Connections per worker; one whose request headers are not in after this many seconds
    # is closed, so slow or stalled clients cannot hold every slot.
    http_connection_limit: int = 1000
    http_header_timeout_s: int = 20
    # The admin is warned below this much free disk; below disk_full_mb /readyz says the
    # box is not ready (a write that finds the disk full is answered 503, "try again later").
    disk_warn_mb: int = 1024
    disk_full_mb: int = 32
    # Sign-in throttling (store/throttle.py): wrong tries allowed within the window from one
    # device on one account; from unknown devices per account, address, class and box.
    login_window_s: int = 900
    login_max_per_source: int = 5
    login_max_per_account: int = 10
    login_max_per_address: int = 30
    login_max_per_class: int = 60
    login_max_per_box: int = 200
    login_alarm_at: int = 50  # wrong tries on the box within the window that alert the admin
    # `serve` runs the housekeeping jobs (appliance/jobs.py) in its supervisor; the image
    # turns this off and runs them as a service of their own (`schoolbox jobs`).
    jobs: bool = True
    # The tutor (issue 4): one service process holds the model for every worker.
    tutor_service: bool = True  # `serve` starts it; off for a box with too little memory
    tutor_socket: str = ""  # default: <home>/run/tutor.sock
    tutor_queue_size: int = 16  # questions waiting; more are told to retry
    tutor_max_tokens: int = 200  # about 150 words: answers stay short for young readers
    tutor_max_seconds: int = 45  # an answer's writing, counted from its first word
    tutor_max_prompt_seconds: int = 60  # reading the prompt (lesson passages and question)
    tutor_max_wait_seconds: int = 180  # waiting in line; then the answer is from the lessons
    tutor_threads: int = 0  # llama.cpp threads; 0 = every core
    tutor_temperature: float = 0.3  # sampling: 0 always picks the likeliest word
    # Answers written side by side in one batch (1: one at a time), the memory of their
    # shared KV cache, and answers each web worker streams at once: 0 = chosen from the
    # box's cores and memory (models/tutor/sizing.py, docs/tutor.md).
    tutor_parallel: int = 0
    tutor_cache_mb: int = 0
    tutor_streams: int = 0
    tutor_retention_days: int = 30  # conversations are deleted after this many days
    # Knowledge tracing (issue 5): a follower job traces new answers this often.
    knowledge_trace_seconds: int = 1
    recommendation_retention_days: int = 180  # why-this-item log, for teachers and audit
    # Sync with the district (issue 6): only once the school consents (admin, consent page).
    sync_url: str = ""  # the district hub, e.g. https://hub.district.example; "" = USB only
    sync_interval_minutes: int = 15  # how often bundles are sealed and, if the hub answers, sent
    sync_suite: str = "x25519"  # or "mlkem768-x25519": post-quantum protection, +1.1 KB a bundle
    sync_max_bundle_kb: int = 1024
    sync_outbox_quota_mb: int = 200
    sync_require_signed_updates: bool = True  # refuse packs and models the district did not sign
    # Federated training (issue 7): the box trains the shared model only with consent, in
    # its window (local hours, wrapping midnight; weekends too if allowed), never while a
    # class is on (an answer in the last idle minutes), at low priority and capped memory.
    federated_hours: str = "18-6"
    federated_weekends: bool = True
    federated_idle_minutes: int = 10
    federated_wait_seconds: int = 600  # a class still on after this: the box sits the round out
    federated_memory_mb: int = 1024  # the training processes' data-memory cap (RLIMIT_DATA)
    federated_threads: int = 1  # torch threads while training; the rest stay with the class
    # What this school insists on, whatever a run asks: its update masked by SecAgg+, and
    # (above 0) differential privacy with at most this epsilon per run.
    federated_require_secure_aggregation: bool = True
    federated_max_epsilon: float = 0.0
    model_cache: str = ""  # where fetched default models are kept; default: user cache dir
    testing: bool = False

    @property
    def db_path(self) -> Path:
        return paths.database(self.home)

    @property
    def media_dir(self) -> Path:
        return paths.media(self.home)

    @property
    def secret_path(self) -> Path:
        return paths.secret(self.home)

    @property
    def tutor_socket_path(self) -> Path:
        return Path(self.tutor_socket) if self.tutor_socket else paths.tutor_socket(self.home)

    @property
    def tutor_answers_at_once(self) -> int:
        return self.tutor_parallel or sizing.parallel()

    @property
    def tutor_streams_per_worker(self) -> int:
        """Tutor answers one web worker streams at once, on threads of their own."""
        if self.tutor_streams:
            return self.tutor_streams
        answers = self.tutor_answers_at_once if self.tutor_service else 1
        return sizing.streams(answers, self.workers, self.threads)

    @property
    def model_cache_dir(self) -> Path:
        if self.model_cache:
            return Path(self.model_cache).expanduser()
        return Path(platformdirs.user_cache_dir("schoolbox")) / "models"

    def with_(self, **changes) -> Config:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


class ConfigError(ValueError):
    """A setting the box cannot start with; the message names where it came from."""


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false"}


def _coerce(name: str, kind: Any, raw: Any, source: str) -> Any:
    """`raw` as the setting's type, or ConfigError naming the setting and `source`."""
    kind = getattr(kind, "__name__", kind)
    if kind == "Path":
        return Path(str(raw)).expanduser()
    if kind == "str":
        if isinstance(raw, (dict, list)):
            raise ConfigError(f"{source}: {name} must be text, not {raw!r}")
        return str(raw)
    try:
        if kind == "bool":
            text = str(raw).lower()
            if isinstance(raw, bool) or text in _TRUE + _FALSE:
                return raw if isinstance(raw, bool) else text in _TRUE
        elif kind == "int" and not isinstance(raw, (bool, float)):
            return int(raw)
        elif kind == "float" and not isinstance(raw, bool):
            return float(raw)
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{source}: {name} must be {_KIND_WORDS.get(kind, kind)}, not {raw!r}")


def _read_toml(path: Path) -> dict:
    """The [schoolbox] table of schoolbox.toml, or ConfigError naming the file and the fault."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("schoolbox", {})
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error})") from error
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [schoolbox] must be a table of settings")
    return table


def load(**overrides) -> Config:
    """Defaults, then the home's schoolbox.toml, then SCHOOLBOX_* variables, then overrides."""
    home = overrides.get("home") or os.environ.get(ENV_PREFIX + "HOME")
    config = Config() if home is None else Config(home=Path(home).expanduser())
    toml_path = paths.settings_file(config.home)
    # Each value with where it came from, so a wrong one is reported against its source.
    values: dict[str, tuple[object, str]] = {}
    if toml_path.exists():
        values.update({k: (v, str(toml_path)) for k, v in _read_toml(toml_path).items()})
    for f in fields(Config):
        env = os.environ.get(ENV_PREFIX + f.name.upper())
        if env is not None:
            values[f.name] = (env, ENV_PREFIX + f.name.upper())
    values.update({k: (v, "the command line") for k, v in overrides.items() if v is not None})
    known = {f.name: f.type for f in fields(Config)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        sources = sorted({values[name][1] for name in unknown})
        raise ConfigError(f"{', '.join(sources)}: unknown setting(s): {', '.join(unknown)}")
    return replace(
        config, **{k: _coerce(k, known[k], raw, source) for k, (raw, source) in values.items()}
    )


def ensure_secret(config: Config) -> bytes:
    """The per-box secret that signs session cookies; created private on first use."""
    config.home.mkdir(parents=True, exist_ok=True)
    create_secret(config.secret_path, secrets.token_hex(32).encode())  # keeps an existing one
    return read_secret(config)


def read_secret(config: Config) -> bytes:
    """The box's secret, or ConfigError if it is unreadable or empty (never a new one: the
    learners' PINs are stored under a key made from it)."""
    path = config.secret_path
    try:
        key = path.read_text().strip().encode()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error}). Restore it from a backup.") from error
    if not key:
        raise ConfigError(
            f"{path}: the secret key is empty. Restore it from a backup; or delete it to make "
            "a new one, after which everyone signs in again and every learner needs a new PIN."
        )
    return key


def secret_is_private(config: Config) -> bool:
    """False when people other than the box's own services can read secret.key."""
    path = config.secret_path
    try:
        mode = path.stat().st_mode
    except OSError:
        return True  # missing: made private when it is created
    return mode & 0o007 == 0 and (mode & 0o070 == 0 or shared_with_group(path.parent))


def pin_key(config: Config) -> bytes:
    """The key learners' PINs are stored under, derived from the box's secret."""
    return hmac.new(ensure_secret(config), b"schoolbox learner PIN v1", hashlib.sha256).digest()
