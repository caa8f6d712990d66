"""Settings of the review desk.

Read in this order, later wins: built-in defaults, a TOML file (``REVIEW_CONFIG`` or
``./review.toml`` when present), environment variables (``DATABASE_URL``, ``MEDIA_DIR``, …).
Relative paths are resolved against the current working directory, so ``./data/`` is the
default home of the embedded SQLite database and the media store.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from review.errors import ConfigError

DEFAULT_DATA_DIR = Path("data")

# Environment variable → setting name. The TOML file uses the setting names (lower case).
ENV_VARS = {
    "DATABASE_URL": "database_url",
    "MEDIA_DIR": "media_dir",
    "EXPORT_DIR": "export_dir",
    "MAX_IMAGE_PIXELS": "max_image_pixels",
    "MAX_IMAGE_BYTES": "max_image_bytes",
    "MAX_TEXT_CHARS": "max_text_chars",
    "THUMBNAIL_SIZE": "thumbnail_size",
    "PROVIDER": "provider",
    "MODEL": "model",
    "MODEL_BASE_URL": "model_base_url",
    "MODEL_MAX_PIXELS": "model_max_pixels",
    "SECOND_REVIEW_SHARE": "second_review_share",
    "SECOND_REVIEW_HIDE_VERDICT": "second_review_hide_verdict",
    "QA_RATERS": "qa_raters",
    "RETAIN_MEDIA_DAYS": "retain_media_days",
    "RETAIN_TEXT_DAYS": "retain_text_days",
    "RETAIN_RAW_OUTPUT_DAYS": "retain_raw_output_days",
    "TRUSTED_PROXY_HEADER": "trusted_proxy_header",
    "REQUEUE_AFTER_REPORTS": "requeue_after_reports",
    "WEBHOOK_ALLOW_PRIVATE": "webhook_allow_private",
    "WEBHOOK_RETRY_SCHEDULE": "webhook_retry_schedule",
    "WEBHOOK_TIMEOUT_SECONDS": "webhook_timeout_seconds",
    "SKIP_DEFER_MINUTES": "skip_defer_minutes",
    "READING_MAX_MINUTES": "reading_max_minutes",
    "MODEL_DTYPE": "model_dtype",
    "MODEL_QUANTIZE": "model_quantize",
    "MODEL_MAX_MEMORY": "model_max_memory",
    "SESSION_IDLE_MINUTES": "session_idle_minutes",
    "SESSION_MAX_HOURS": "session_max_hours",
    "SESSION_COOKIE_SECURE": "session_cookie_secure",
}


MAX_QA_RATERS = 10
DTYPES = ("auto", "float32", "bfloat16")  # model_dtype, --dtype
QUANTIZATIONS = ("none", "int8")  # model_quantize, --quantize
RETENTION_SETTINGS = ("retain_media_days", "retain_text_days", "retain_raw_output_days")
MAX_RETENTION_DAYS = 100 * 366
HEADER_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Settings:
    database_url: str = f"sqlite:///{DEFAULT_DATA_DIR / 'review.db'}"
    media_dir: Path = DEFAULT_DATA_DIR / "media"
    # Where the Export page writes training data (the CLI writes to --out).
    export_dir: Path = DEFAULT_DATA_DIR / "exports"
    # A decoded image larger than this many pixels is refused (decompression-bomb guard).
    # 50 MP admits long phone screenshots (1290 x 30000) and 8K photos.
    max_image_pixels: int = 50_000_000
    # Files larger than this are refused before any decoding.
    max_image_bytes: int = 50 * 1024 * 1024
    # Post text longer than this is refused at ingest (a post, not a book).
    max_text_chars: int = 100_000
    # Longest side of the stored thumbnail, in pixels.
    thumbnail_size: int = 320
    # The verdict model: provider "transformers" (in this process) or "openai" (a server such as
    # vLLM at model_base_url); a hub id or a local folder.
    provider: str = "transformers"
    model: str = "Qwen/Qwen3-VL-2B-Instruct"
    model_base_url: str = ""
    # Pixels per image given to the model (Qwen-VL cost grows with them).
    model_max_pixels: int = 1024 * 28 * 28
    # The transformers provider's weights: auto is bfloat16 on a GPU and on a CPU with native
    # bfloat16 (AVX512-BF16 or AMX), else float32; int8 quantizes the language model's linear
    # layers (a CPU: torch's dynamic int8, computing in float32; a GPU: bitsandbytes).
    model_dtype: str = "auto"
    model_quantize: str = "none"
    # A memory budget for the model's weights and working memory, with its unit ("6GiB", "6GB",
    # "6000MiB"): the precision asked for if it fits, else int8, else a refusal. Empty: the
    # memory free when the model loads decides whether to step down to int8 (never a refusal).
    model_max_memory: str = ""
    # Share (0–1) of moderators' decisions drawn for a blind second review by another moderator.
    second_review_share: float = 0.1
    # Whether the second reviewer also works without the model's verdict on screen.
    second_review_hide_verdict: bool = False
    # How many people label a post drawn for second review, independently and blind to each
    # other (the first decision included): 2 gives pairs (Cohen's kappa), 3 or more lets Fleiss'
    # kappa and Krippendorff's alpha come from the desk's own flow. At most 10.
    qa_raters: int = 2
    # Retention (review/purge.py, `python -m review retention`): days after a post's decision that
    # its images (files, thumbnails, signals), its text (text, author, metadata, verdict texts,
    # review notes) and its verdicts' raw model output are kept. 0 (or empty): for ever.
    retain_media_days: int = 0
    retain_text_days: int = 0
    retain_raw_output_days: int = 0
    # Sign-in throttling (review/auth.py) per client address: the app's own view of it by default
    # (empty). Behind a reverse proxy that every request passes, name the header it sets
    # (X-Forwarded-For): its last entry is then the client. Only with such a proxy: otherwise a
    # client writes the header itself and picks its own address.
    trusted_proxy_header: str = ""
    # Reports from the platform (review/reports.py) on a decided post: it goes back to the queue
    # once this many reports (their counts summed) arrived after its decision. 0: never.
    requeue_after_reports: int = 3
    # Webhooks (review/webhooks.py, review/delivery.py). By default an endpoint may not be on a
    # loopback or private address (a webhook URL is a way into the desk's own network); true
    # allows them, for single-host installs and tests. Link-local (cloud metadata) stays refused.
    webhook_allow_private: bool = False
    # Seconds to wait before each retry of a failed delivery, comma-separated (each lengthened by
    # up to 25 % of random jitter); after the last one the delivery is dead. The default is
    # Svix's schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 27.6 hours in all).
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000,36000"
    # How long one delivery may take (connect and answer), in seconds.
    webhook_timeout_seconds: float = 15.0
    # The Review page (review/workbench.py): a post skipped with S is not offered to that
    # moderator again for this many minutes (0: not again in this browser session, until "Show the
    # posts I skipped again"); an open post's lease is renewed while its tab is open, but not after
    # this many minutes without any action on the page (0: only actions renew it), so an
    # abandoned tab still gives the post back.
    skip_defer_minutes: int = 30
    reading_max_minutes: int = 30
    # Sign-in sessions of the app (review/websession.py): one ends after this many minutes
    # without a click, and in any case this many hours after its sign-in. A reload or a new tab
    # within them keeps the user signed in (an HttpOnly cookie).
    session_idle_minutes: int = 60
    session_max_hours: int = 12
    # Send the session cookie only over HTTPS ("Secure"). Turn on when the app is served over
    # HTTPS (behind a TLS proxy): the app itself cannot tell. Off, the cookie also works on
    # plain http://127.0.0.1.
    session_cookie_secure: bool = False

    def retry_delays(self) -> list[float]:
        """``webhook_retry_schedule`` as numbers (checked when the settings are read)."""
        return _delays(self.webhook_retry_schedule)

    def with_overrides(self, **values: object) -> Settings:
        return replace(self, **_coerce(values))


def _coerce(values: dict[str, object]) -> dict[str, Any]:
    """Each value converted to its setting's type (``Any``: the type differs per name)."""
    # The annotations are strings here (``from __future__ import annotations``): "int", "Path", …
    types = {f.name: str(f.type) for f in fields(Settings)}
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in types:
            raise ConfigError(f"unknown setting {name!r}; known settings: {', '.join(sorted(types))}")
        kind = types[name]
        if name in RETENTION_SETTINGS and str(value).strip() == "":
            value = 0  # empty: keep for ever
        try:
            if kind == "int":
                out[name] = int(str(value).replace("_", ""))
            elif kind == "float":
                out[name] = float(str(value))
            elif kind == "bool":
                out[name] = _boolean(value)
            elif kind == "Path":
                out[name] = Path(str(value)).expanduser()
            else:
                out[name] = str(value)
        except ValueError:
            expected = {"int": "a whole number", "float": "a number", "bool": "true or false"}[kind]
            raise ConfigError(f"setting {name} must be {expected}, got {value!r}") from None
    share = out.get("second_review_share")
    if isinstance(share, float) and not 0.0 <= share <= 1.0:
        raise ConfigError(f"setting second_review_share must be between 0 and 1, got {share}")
    for name in RETENTION_SETTINGS:
        days = out.get(name)
        if isinstance(days, int) and not 0 <= days <= MAX_RETENTION_DAYS:
            raise ConfigError(f"setting {name} is a number of days up to {MAX_RETENTION_DAYS} (0: keep for ever), "
                              f"got {days}")  # fmt: skip
    header = out.get("trusted_proxy_header")
    if isinstance(header, str):
        out["trusted_proxy_header"] = header = header.strip()
        if header and not (len(header) <= 64 and set(header.lower()) <= HEADER_CHARS):
            raise ConfigError(f"setting trusted_proxy_header must be a header name such as X-Forwarded-For (or empty), "
                              f"got {header!r}")  # fmt: skip
    schedule = out.get("webhook_retry_schedule")
    if isinstance(schedule, str):
        try:
            delays = _delays(schedule)
        except ValueError:
            delays = [-1.0]
        if not delays or any(not 0 <= d <= 7 * 86400 for d in delays) or len(delays) > 20:
            raise ConfigError(f"setting webhook_retry_schedule must be 1 to 20 comma-separated numbers of seconds "
                              f"(0 to a week each), got {schedule!r}")  # fmt: skip
    timeout = out.get("webhook_timeout_seconds")
    if isinstance(timeout, float) and not 0 < timeout <= 120:
        raise ConfigError(f"setting webhook_timeout_seconds must be more than 0 and at most 120, got {timeout}")
    requeue = out.get("requeue_after_reports")
    if isinstance(requeue, int) and requeue < 0:
        raise ConfigError(f"setting requeue_after_reports must be 0 (never) or more, got {requeue}")
    for name, allowed in (("model_dtype", DTYPES), ("model_quantize", QUANTIZATIONS)):
        if name in out and out[name] not in allowed:
            raise ConfigError(f"setting {name} must be one of {', '.join(allowed)}, got {out[name]!r}")
    if "model_max_memory" in out:
        parse_bytes(out["model_max_memory"], "setting model_max_memory")
    idle, most = out.get("session_idle_minutes"), out.get("session_max_hours")
    if isinstance(idle, int) and not 1 <= idle <= 7 * 24 * 60:
        raise ConfigError(f"setting session_idle_minutes must be between 1 and {7 * 24 * 60} (a week), got {idle}")
    if isinstance(most, int) and not 1 <= most <= 30 * 24:
        raise ConfigError(f"setting session_max_hours must be between 1 and {30 * 24} (30 days), got {most}")
    for name in ("skip_defer_minutes", "reading_max_minutes"):
        minutes = out.get(name)
        if isinstance(minutes, int) and not 0 <= minutes <= 24 * 60:
            raise ConfigError(f"setting {name} must be between 0 and {24 * 60} (a day), got {minutes}")
    raters = out.get("qa_raters")
    if isinstance(raters, int) and not 2 <= raters <= MAX_QA_RATERS:
        raise ConfigError(f"setting qa_raters must be between 2 and {MAX_QA_RATERS}, got {raters}")
    return out


BYTE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


def parse_bytes(text: str, what: str) -> int | None:
    """A size with its unit ("6GiB", "6 GB", "512MiB") in bytes; None for an empty text. A bare
    number is refused: gigabytes and gibibytes differ by 7 %, and the unit is the reader's to say."""
    cleaned = text.strip().replace(" ", "").replace("_", "")
    if not cleaned:
        return None
    number = cleaned.rstrip("KMGTBkmgtbIi")  # the unit's letters  # noqa: B005
    unit = cleaned[len(number) :].upper()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in BYTE_UNITS or not 2**20 <= value * BYTE_UNITS[unit] < 2**60:
        raise ConfigError(f"{what} must be a size with its unit, such as 6GiB, 6GB or 512MiB (1 MiB at least), "
                          f"got {text!r}")  # fmt: skip
    return int(value * BYTE_UNITS[unit])


def format_bytes(size: int) -> str:
    """A size for people: GiB (or MiB under one GiB), one decimal."""
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _delays(schedule: str) -> list[float]:
    """A comma-separated list of seconds (``webhook_retry_schedule``) as numbers; ValueError if one is not."""
    return [float(part) for part in schedule.split(",") if part.strip()]


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    settings = Settings()
    config_file = env.get("REVIEW_CONFIG")
    path = Path(config_file) if config_file else Path("review.toml")
    if config_file and not path.is_file():
        raise ConfigError(f"REVIEW_CONFIG points to {path}, which does not exist")
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read settings file {path}: {exc}") from None
        settings = settings.with_overrides(**data)
    from_env = {name: env[var] for var, name in ENV_VARS.items() if env.get(var)}
    return settings.with_overrides(**from_env)


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as environment variables: a child process (a scoring worker started from
    the app) loads exactly these settings whatever config file the parent read."""
    env = {}
    for var, name in ENV_VARS.items():
        value = getattr(settings, name)
        env[var] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def configured_url() -> str:
    """DATABASE_URL as the settings give it (environment, then the TOML file), for messages; ""
    when the settings cannot be read."""
    try:
        return load_settings().database_url
    except Exception:
        return ""
