"""What a person may see of a post while it waits for (or is in) its blind second review: the
one rule, applied by the core functions that hand posts, verdicts and history to people
(``review.browse.list_posts`` / ``get_posts``, ``review.queue.queue_page``,
``review.followup.load_post``, ``review.decisions.history``, ``review.workbench.ReviewSession``),
so that no caller (page, command line, API) receives a hidden verdict, label or note. The notes
rule outside blind reviews is here too (:func:`may_read_note`).

Not covered yet (older than this module): the queue still orders, filters and counts hidden
second reviews by their verdict (priority is severity × confidence; the category, violation and
confidence filters and the per-category counts read the verdict), and a thumbnail the verdict's
category blurs stays blurred, so a moderator can infer a hidden verdict from where a post
appears. Closing that needs a queue position for second reviews that does not depend on the
verdict: a change of behaviour, left for its own issue.

Two facts, one function (:func:`sight`):

- **blind** (earlier decisions hidden): the post is in second review, the person has no
  standing decision on it, and either holds its claim (a lead reviewing it too) or may not read
  others' notes. Earlier moderators' labels and notes are hidden from them.
- **verdict hidden** (only with ``settings.second_review_hide_verdict``): on the review desk, for
  the post under review, when the reviewer is blind; everywhere else (listings, a post's
  details), for everyone but leads (``READ_ALL_NOTES``) while the post is in second review.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import EventAction, Post, PostStatus
from review import labels
from review.auth import Actor, Permission
from review.config import Settings

HIDDEN_BLUR = "flagged as possibly graphic"  # why an image is blurred, when the verdict's category must not show


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a signed-in ``actor``, or None for the command line (an operator with the
    database at hand, who is no one's blind reviewer); ``hide_verdict`` is
    ``settings.second_review_hide_verdict``."""

    actor: Actor | None
    hide_verdict: bool = False

    @classmethod
    def of(cls, actor: Actor, settings: Settings) -> Viewer:
        return cls(actor, settings.second_review_hide_verdict)


COMMAND_LINE = Viewer(None)


@dataclass(frozen=True)
class Sight:
    """What a viewer may see of one post (see the module's docstring for the rule)."""

    blind: bool = False  # earlier moderators' labels and notes are hidden
    verdict_hidden: bool = False  # the model's verdict (and the category that blurs its images) is hidden


EVERYTHING = Sight()


def sight(viewer: Viewer, status: str, claimed_by_id: int | None, rated: bool, *, reviewing: bool = False) -> Sight:
    """The rule, on a post's facts: its ``status``, who holds its claim, and whether the viewer
    has a standing decision on it (``rated``). ``reviewing``: the post is the one under review
    on the viewer's review desk."""
    actor = viewer.actor
    if actor is None or status != PostStatus.SECOND_REVIEW:
        return EVERYTHING
    lead = actor.can(Permission.READ_ALL_NOTES)
    blind = not rated and (claimed_by_id == actor.id or not lead)
    hidden = viewer.hide_verdict and (blind if reviewing else not lead)
    return Sight(blind=blind, verdict_hidden=hidden)


def sights(session: Session, viewer: Viewer, post_ids: Collection[int], *, reviewing: bool = False) -> dict[int, Sight]:
    """:func:`sight` for each of ``post_ids`` that exists, read in one query."""
    ids = list(post_ids)
    if viewer.actor is None or not ids:
        return dict.fromkeys(ids, EVERYTHING)
    rows = session.execute(
        select(Post.id, Post.status, Post.claimed_by_id, labels.rated_by(viewer.actor.id)).where(Post.id.in_(ids))
    )
    return {
        post_id: sight(viewer, status, holder, bool(rated), reviewing=reviewing)
        for post_id, status, holder, rated in rows
    }


# Events whose notes are the desk's own record, not a person's reasoning (why reports sent a post
# back; what an ingest update replaced): read by everyone who reads the post's history.
PUBLIC_NOTES = (EventAction.REQUEUE, EventAction.UPDATE)


def may_read_note(actor: Actor, author_id: int | None, action: str, *, blind: bool = False) -> bool:
    """The notes rule: the desk's own notes (PUBLIC_NOTES) are read by everyone who reads the
    post's history; a person's note (a decision's reason, an escalation's) by its author and by
    the roles that read every note (leads, admins), and by no blind reviewer (:func:`sight`)."""
    if action in PUBLIC_NOTES:
        return True
    return not blind and (author_id == actor.id or actor.can(Permission.READ_ALL_NOTES))


def blind_for(session: Session, actor: Actor, post_id: int) -> bool:
    """Whether ``actor`` must not see the earlier decisions on ``post_id`` (see :func:`sight`)."""
    found = sights(session, Viewer(actor), [post_id])
    return post_id in found and found[post_id].blind
