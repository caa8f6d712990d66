"""``POST /v1/posts``: a batch of records into the desk through the one ingest path
(:func:`review.ingest.ingest_records`), with what only the API has to do first.

Per record, before ingest: the fields the API takes (the ingest format; any other field rejects
the record, where a file's unknown columns would join its metadata; ``source`` is required,
where a file's records default to ``local``) and its images, each either inline (``{"name",
"data": base64}``, decoded here) or the name of a file part of a multipart request. An image name
is only ever a key into the request's own bytes, never a path: a record naming an image the
request does not carry is rejected. A record's reports are stored with the post it creates, in
the same transaction (a post that was already there keeps its reports: later ones go to the
flags routes), and name the token.

Every failure is that record's rejection with its reason; the others are stored.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from review import audit
from review.api.schemas import BatchResult, InlineImage, RecordResult
from review.audit import ApiClient
from review.desk import Desk
from review.ingest import ingest_records
from review.ingest.records import RECORD_FIELDS, format_validation, named
from review.tokens import TokenInfo


@dataclass
class Accepted:
    """A record that passed the API's own checks, on its way to ingest."""

    index: int
    record: dict[str, Any]
    attachments: dict[str, bytes] = field(default_factory=dict)


def _decoded(image: InlineImage) -> bytes | str:
    """The inline image's bytes, or why they cannot be read."""
    try:
        return base64.b64decode(image.data, validate=True)
    except (binascii.Error, ValueError):
        return f"image {image.name!r}: data is not valid base64 (standard alphabet, padded, no line breaks)"


def _images(images: Any, files: dict[str, bytes | None]) -> tuple[list[str], dict[str, bytes]] | str:
    """The record's image names and the bytes the request carries for them, or why they are
    refused. A name the request has no bytes for is left to ingest, which rejects the record."""
    if images is None:
        return [], {}
    if not isinstance(images, list):
        return "images must be a list of {name, data} objects or names of file parts"
    names: list[str] = []
    attachments: dict[str, bytes] = {}
    for position, item in enumerate(images):
        if isinstance(item, str):  # a file part's name
            if item in files:
                part = files[item]
                if part is None:
                    return f"image {item!r}: its part came without a filename; send images as file parts"
                attachments[item] = part
            names.append(item)
            continue
        try:
            image = InlineImage.model_validate(item)
        except ValidationError as exc:
            return format_validation(exc, f"images[{position}]")
        data = _decoded(image)
        if isinstance(data, str):
            return data
        if attachments.get(image.name, data) != data:
            return f"image {image.name!r}: two different images under one name"
        attachments[image.name] = data
        names.append(image.name)
    return names, attachments


def accept(index: int, raw: dict[str, Any], files: dict[str, bytes | None]) -> Accepted | str:
    """The API's checks of one record: the record ready for ingest, or why it is rejected."""
    unknown = sorted(set(raw) - RECORD_FIELDS)
    if unknown:
        listed = ", ".join(repr(str(name)[:80]) for name in unknown[:5])
        return (
            f"unknown field{'s' if len(unknown) > 1 else ''} {listed}; a record has {', '.join(sorted(RECORD_FIELDS))}"
        )
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        # a file's records may take the command's --source; a platform names its own
        return "source is required over the API: name the platform (or surface) the post comes from"
    images = _images(raw.get("images"), files)
    if isinstance(images, str):
        return images
    names, attachments = images
    record = dict(raw)
    if "images" in record:
        record["images"] = names
    return Accepted(index, record, attachments)


def ingest_batch(
    desk: Desk, records: list[dict[str, Any]], files: dict[str, bytes | None], token: TokenInfo
) -> BatchResult:
    """Store the batch's good records (one ingest run) and their reports; every record's outcome."""
    results: dict[int, RecordResult] = {}
    accepted: list[Accepted] = []
    for index, raw in enumerate(records):
        checked = accept(index, raw, files)
        if isinstance(checked, str):
            source, external_id = named(raw)
            results[index] = RecordResult(
                index=index, source=source, external_id=external_id, status="rejected", reason=checked
            )
        else:
            accepted.append(checked)
    if accepted:
        report = ingest_records(
            desk.sessions,
            [item.record for item in accepted],
            desk.settings,
            attachments=[item.attachments for item in accepted],
            token_id=token.id,
        )
        for outcome in report.outcomes:
            item = accepted[outcome.order - 1]
            source, external_id = named(item.record)
            results[item.index] = RecordResult(
                index=item.index,
                source=outcome.source or source,
                external_id=outcome.external_id or external_id,
                status=outcome.status,
                post_id=outcome.post_id,
                reason=outcome.reason,
            )
    ordered = [results[index] for index in sorted(results)]
    answer = BatchResult(
        results=ordered,
        created=sum(r.status == "created" for r in ordered),
        already_present=sum(r.status == "already_present" for r in ordered),
        rejected=sum(r.status == "rejected" for r in ordered),
    )
    audit.log(desk.sessions, ApiClient(token.name), audit.Action.INGEST, f"POST /v1/posts ({len(ordered)} records)",
              outcome="done", added=answer.created, already_present=answer.already_present,
              rejected=answer.rejected)  # fmt: skip
    return answer
