"""The HTTP API's request and response bodies (pydantic), and its documented limits.

A batch is checked in two steps: its envelope here (``{"posts": [...]}``, at most
:data:`MAX_BATCH` records, no other field: a 422 for the whole request), then each record on its
own (review/api/batch.py and the ingest validation), so that one bad record is rejected with its
reason and the others are stored. That is why a record is documented as an object, not as a
closed schema: a record that breaks the format is answered in the results, not with a 422.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from db.session import db_text
from review.ingest.records import ReportRecord
from review.text import one_line

MAX_BATCH = 500  # records in one POST /v1/posts
MAX_BODY_BYTES = 64 * 1024 * 1024  # a whole request body, JSON or multipart (images included)
MAX_FLAG_BYTES = 64 * 1024  # a report's body
MAX_FILE_PARTS = 1000  # file parts in one multipart request
MAX_POSTS_PART_BYTES = 16 * 1024 * 1024  # the multipart "posts" field (the JSON without file parts)
MAX_FEED_LIMIT = 1000
DEFAULT_FEED_LIMIT = 100

RECORD_FORMAT = f"""A record: `external_id` (required, 1–255 characters), `source` (1–64 characters;
with `external_id` it names the post), `text`, `author`, `created_at` (ISO 8601, RFC 2822, Unix
seconds or milliseconds, `YYYY/MM/DD HH:MM`; UTC when no offset is given; one that cannot be read
is refused), `metadata` (a JSON object), `images` (up to 50: each either
`{{"name": "a.jpg", "data": "<base64>"}}` or, in a multipart request, the name of a file part of
the request), `reports` (who flagged the post: `{{"kind": "user_report" | "classifier",
"reason": "...", "count": 1}}`; added when the post is created, not when it was already there).
Any other field rejects the record. A bad record is answered in `results` with its reason; the
others are stored. At most {MAX_BATCH} records; the body at most {MAX_BODY_BYTES // 2**20} MiB."""


def _storable(value: str) -> str:
    if db_text(value) != value:
        raise ValueError("must not contain NUL characters or lone surrogates")
    return value


Text = Annotated[str, Field(pattern=r"^[^\x00]*$"), AfterValidator(_storable)]
"""A string a database can keep (no NUL, no lone surrogate: JSON can carry both)."""
Echoed = Annotated[str, AfterValidator(one_line)]
"""A value sent back as given, in one line (controls and lone surrogates escaped: JSON-safe)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PostBatch(Strict):
    """``POST /v1/posts``: a batch of records in the ingest format (see :data:`RECORD_FORMAT`)."""

    posts: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH, description=RECORD_FORMAT)


class InlineImage(Strict):
    """An image carried in the JSON itself."""

    name: str = Field(min_length=1, max_length=255)
    data: str = Field(description="the image file's bytes, base64 (standard alphabet, padded)")


ReportIn = ReportRecord  # a report, as records carry them and the flags routes take them


class FlagIn(ReportRecord):
    """``POST /v1/flags``: a report on a post named in the body (an external id may hold "/")."""

    source: str = Field(min_length=1, max_length=64)
    external_id: str = Field(min_length=1, max_length=255)


class RecordResult(BaseModel):
    index: int = Field(description="the record's position in the batch, from 0")
    source: Echoed | None
    external_id: Echoed | None
    status: Literal["created", "already_present", "rejected"]
    post_id: int | None = None
    reason: Echoed | None = None


class BatchResult(BaseModel):
    results: list[RecordResult]
    created: int
    already_present: int
    rejected: int


class FlagResult(BaseModel):
    post_status: str
    report_count: int
    requeued: bool = Field(description="whether this report sent a decided post back to the queue")


class ReportOut(BaseModel):
    """The reports of one kind and reason: their counts summed, the latest one's time."""

    kind: str
    reason: str
    count: int
    last_at: str


class VerdictOut(BaseModel):
    violation: bool | None
    category: str | None
    severity: int | None
    confidence: float | None
    parse_status: str


class PostOut(BaseModel):
    source: str
    external_id: str
    status: str
    report_count: int
    reports: list[ReportOut]
    verdict: VerdictOut | None = Field(description="the model's current verdict; null before scoring")
    decisions: list[dict[str, Any]] = Field(description="the post's decision events, oldest first (as the feed)")


class Feed(BaseModel):
    events: list[dict[str, Any]]
    next: str = Field(description="the cursor to send as `after` next time")


class Health(BaseModel):
    ok: bool
    database: str


class Problem(BaseModel):
    """Every error: ``{"detail": "..."}`` (a 422 gives a list of the fields at fault)."""

    detail: Any
