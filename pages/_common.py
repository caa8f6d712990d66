"""What every page shares: the desk handle, the signed-in user, and the widgets that show a
verdict and an image. Not a screen: the leading underscore keeps it out of the navigation.

Post text, OCR text and model output are untrusted: they are shown with ``st.text`` (or in
tables), never as markdown or HTML.

A database that goes away (a Postgres restart, a cut connection) is shown as an error box that
says what happened and that nothing saved before is lost, never as a traceback: dashboard.py
runs the page inside :func:`outages_shown`, and button callbacks, which Streamlit runs before
the script, are wrapped with :func:`guarded`. The traceback goes to the server's log.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec

import streamlit as st

from db.schema import require_current
from db.session import outage_message, outage_reason
from review import websession
from review.auth import Actor, Permission, Preferences, preferences, request_client
from review.browse import MediaRow, PostRow, VerdictRow
from review.config import configured_url
from review.decisions import Label, release
from review.desk import Desk, open_desk
from review.errors import DatabaseUnavailable, MediaError, ReviewError
from review.media import data_uri, display_jpeg
from review.policy import NO_VIOLATION, Policy
from review.text import one_line
from review.workbench import ReviewState

ACTOR = "actor"  # session_state: the signed-in Actor
WEB_SESSION = "web_session"  # session_state: the id of this tab's sign-in session (review.websession)
HANDOFF = "session_handoff"  # session_state: a fresh sign-in's one-time code, until the browser trades it
FORGET_COOKIE = "forget_cookie"  # session_state: signed out; the sign-in page deletes the cookie
SIGNED_OUT_BECAUSE = "signed_out_because"  # session_state: why the session ended, for the sign-in page
PREFERENCES = "preferences"  # session_state: that user's Preferences
REVIEW = "review"  # session_state: the ReviewState of the review desk
DISPLAY_SIDE = 1600  # longest side of an image on a page
OUTAGE = (
    "The database cannot be reached just now, so this was not saved. Everything saved before is kept: "
    "try again in a moment."
)

log = logging.getLogger("review.app")
P = ParamSpec("P")


@st.cache_resource(show_spinner=False)
def _open() -> Desk:
    return open_desk(check_schema=False)


def show_error(headline: str, detail: str) -> None:
    """An error box; the detail (which may quote paths, URLs or input) is shown verbatim."""
    st.error(headline, icon="🚫")
    st.code(detail, language=None, wrap_lines=True)


def show_ignored(problems: list[str]) -> None:
    """What a page left out of its link (review.queue.filter_from_params' lines): one warning, the
    lines verbatim (they quote the link, which anyone may have written)."""
    if problems:
        st.warning("Part of the link was ignored:", icon=":material/link_off:")
        st.code("\n".join(problems), language=None, wrap_lines=True)


def desk_or_stop() -> Desk:
    """For dashboard.py, once per run: the desk, or an error that says what to run, and a stop."""
    try:
        desk = _open()
        require_current(desk.engine)  # checked on every run: the schema may change under us
    except DatabaseUnavailable as exc:
        log.warning("%s", exc)
        show_error("The database cannot be reached just now. Everything saved before is kept: try again in a moment.",
                   str(exc))  # fmt: skip
        st.stop()
    except ReviewError as exc:
        show_error("The review desk cannot start.", str(exc))
        st.stop()
    return desk


def show_outage(exc: BaseException, reason: str) -> None:
    """The error box for a database outage; the traceback goes to the server log only."""
    log.error("database unreachable (%s)", reason, exc_info=exc)
    show_error(
        OUTAGE, outage_message(reason, configured_url())
    )  # the settings' DATABASE_URL, as the desk was opened with


@contextmanager
def outages_shown() -> Iterator[None]:
    """Run a page (or part of one): a database outage inside becomes an error box and a stop;
    any other exception goes on to Streamlit."""
    try:
        yield
    except Exception as exc:
        reason = outage_reason(exc)
        if reason is None:
            raise
        show_outage(exc, reason)
        st.stop()


def guarded(callback: Callable[P, object]) -> Callable[P, None]:
    """``callback`` for a widget's on_click / on_change / on_submit: Streamlit runs callbacks
    before the page, outside :func:`outages_shown`, so an outage inside one is shown here as
    the error box (at the top of the page) instead of a traceback."""

    @functools.wraps(callback)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            callback(*args, **kwargs)
        except Exception as exc:
            reason = outage_reason(exc)
            if reason is None:
                raise
            show_outage(exc, reason)

    return run


def current_desk() -> Desk:
    """For pages: the desk that dashboard.py has already checked in this run."""
    return _open()


def request_address() -> str:
    """The browser's address as the sign-in throttle and the audit log name it (behind the
    proxy named by ``TRUSTED_PROXY_HEADER``, the address that proxy saw)."""
    return request_client(st.context.ip_address, st.context.headers, current_desk().settings.trusted_proxy_header)


# ---------------------------------------------------------------------------------------------
# The signed-in user


def sso_configured() -> bool:
    """Whether ``st.login`` has an identity provider in .streamlit/secrets.toml ([auth])."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def signed_in(desk: Desk, *, touch: bool = True) -> Actor | None:
    """The user of this browser tab, from its sign-in session (review.websession), checked in
    the database on every run: a deactivated account or an ended session signs the tab out (the
    sign-in page then says why). A new tab or a reload has no session yet: the session cookie
    brings it back. ``touch``: this run is the user's click (it keeps the session from idling);
    a fragment's background refresh is not."""
    session_id: int | None = st.session_state.get(WEB_SESSION)
    if session_id is None:
        found = websession.resume(desk.sessions, st.context.cookies.get(websession.COOKIE), desk.settings)
    else:
        found = websession.check(desk.sessions, session_id, desk.settings, touch=touch)
    if isinstance(found, websession.Gone):
        if session_id is not None:
            st.session_state.clear()  # nothing of the ended session's work survives
        # (a dead cookie, though, leaves this tab's state alone: it holds the sign-in form's input)
        if message := found.message(desk.settings):
            st.session_state[SIGNED_OUT_BECAUSE] = message
        return None
    st.session_state[WEB_SESSION] = found.session_id
    st.session_state[ACTOR] = found.actor
    if PREFERENCES not in st.session_state:
        with desk.sessions() as session:
            st.session_state[PREFERENCES] = preferences(session, found.actor)
    return found.actor


def sign_in(desk: Desk, actor: Actor, client: str) -> None:
    """Start ``actor``'s session in this tab (``actor`` was just authenticated); the next run
    hands its cookie to the browser (:func:`hand_over_cookie`), so reloads and new tabs keep it."""
    started = websession.start(desk.sessions, actor, desk.settings, client=client)
    st.session_state.clear()  # nothing of an earlier user's session survives
    st.session_state[ACTOR] = actor
    st.session_state[WEB_SESSION] = started.session_id
    st.session_state[HANDOFF] = started.handoff


def sign_out() -> None:
    """End this tab's session (every tab that shares its cookie is signed out at its next run),
    give back the post this tab holds, and have the sign-in page delete the cookie."""
    desk = current_desk()
    session_id, actor = st.session_state.get(WEB_SESSION), st.session_state.get(ACTOR)
    held = st.session_state[REVIEW].claim if REVIEW in st.session_state else None
    st.session_state.clear()  # signed out in this tab whatever happens next
    st.session_state[FORGET_COOKIE] = True
    if session_id is not None:
        websession.end(desk.sessions, session_id)
    if held is not None and actor is not None:
        # an account deactivated meanwhile may release nothing (deactivation released its posts)
        with contextlib.suppress(ReviewError):
            release(desk.sessions, actor, held.post_id)
    if sso_configured() and st.user.is_logged_in:
        st.logout()  # or the login page would sign them straight back in


def _route(path: str) -> str:
    """One of app.py's routes as a JavaScript string, under the server's base path."""
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    return json.dumps(("/" + base if base else "") + path)


def _call(path: str, body: str = "") -> None:
    """A same-origin POST from the page to one of app.py's routes (the browser keeps or drops
    the cookie it answers with); a zero-size element, run once."""
    st.html(f"<script>fetch({_route(path)}, {{method: 'POST', body: {json.dumps(body)}, credentials: 'same-origin'}})"
            "</script>", unsafe_allow_javascript=True)  # fmt: skip


def hand_over_cookie() -> None:
    """For dashboard.py, on each signed-in run: right after a sign-in, the browser trades the
    session's one-time code for its cookie (app.py, ``POST /auth/session``)."""
    handoff = st.session_state.pop(HANDOFF, None)
    if handoff is not None:
        _call(websession.TRADE_PATH, handoff)


def forget_cookie() -> None:
    """For the sign-in page: after a sign-out, the browser deletes the session cookie."""
    if st.session_state.pop(FORGET_COOKIE, False):
        _call(websession.SIGN_OUT_PATH)


def leave_beacon(post_id: int | None) -> None:
    """For the Review page: when this tab closes or reloads while the page shows ``post_id``,
    the browser tells app.py (``POST /auth/leave``), which shortens the claim's lease to
    review.decisions.LEAVE_GRACE: a closed tab's post is soon back in the queue, and a reload
    renews the claim. One listener per tab; the post it names follows the page, and it sends
    nothing once the tab shows another page of the app."""
    url = _route(websession.LEAVE_PATH)
    st.html(
        "<script>if (!window.reviewLeave) { window.reviewLeave = {post: null};"
        " window.addEventListener('pagehide', () => { const p = window.reviewLeave.post;"
        # only while the Review page shows the post (not after moving to another page of the app)
        " const shown = [...document.querySelectorAll('.st-key-review_images')]"
        ".some((b) => !b.closest('[data-stale=\"true\"]'));"
        f" if (p !== null && shown) navigator.sendBeacon({url}, String(p)); }}); }}"
        f" window.reviewLeave.post = {json.dumps(post_id)};</script>",
        unsafe_allow_javascript=True,
    )


def current_actor() -> Actor:
    """For pages: the signed-in user, checked again against the database (dashboard.py has
    done so for the navigation; a page may also be rerun on its own, as a fragment is, which is
    not counted as the user's activity)."""
    with outages_shown():  # a page may run on its own (a fragment), outside dashboard.py's guard
        actor = signed_in(current_desk(), touch=False)
    if actor is None:
        why = st.session_state.get(SIGNED_OUT_BECAUSE, "You are signed out.")
        st.error(f"{why} Reload the page to sign in.")
        st.stop()
    return actor


def allowed_or_stop(actor: Actor, permission: Permission, what: str) -> None:
    """Stop the page with a clear refusal when ``actor``'s role lacks ``permission``."""
    if not actor.can(permission):
        st.error(f"Your role ({actor.role}) may not {what}.", icon="🚫")
        st.stop()


HIDDEN_BADGE = "hidden until its second review"  # a listing's verdict cell when the core withholds it


def review_state() -> ReviewState:
    """This browser session's review desk (review.workbench): the one session_state entry that
    the Review page works on and the Queue page hands posts and filters to."""
    state: ReviewState = st.session_state.setdefault(REVIEW, ReviewState())
    return state


def show_history(desk: Desk, actor: Actor, post_id: int) -> None:
    """A post's review events as a table (the core hides what ``actor`` may not read)."""
    import pandas as pd

    from review.decisions import history

    with desk.sessions() as session:
        entries = history(session, actor, post_id)
    table = pd.DataFrame(
        {
            "when": [e.at for e in entries],
            "who": [e.who or "" for e in entries],
            "action": [
                e.action + (" (second review)" if e.second_review else "") + (" (bulk)" if e.bulk_id else "")
                for e in entries
            ],
            "label": [e.label or ("hidden" if e.label_hidden else "") for e in entries],
            "note": [e.note or ("hidden" if e.note_hidden else "") for e in entries],
        }
    )
    st.dataframe(  # not st.table, which renders markdown in its cells
        table,
        hide_index=True,
        column_config={"when": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss")},
    )


def user_preferences() -> Preferences:
    prefs: Preferences = st.session_state.get(PREFERENCES, Preferences())
    return prefs


# ---------------------------------------------------------------------------------------------
# Verdicts and images


@st.cache_data(max_entries=64, show_spinner=False)
def display_image(media_dir: str, rel_path: str, max_pixels: int, blur: bool, grey: bool) -> bytes:
    """A stored image as a JPEG for the browser (oriented, first frame, at most 1600 px)."""
    return display_jpeg(Path(media_dir), rel_path, max_pixels, DISPLAY_SIDE, blur=blur, grey=grey)


def thumbnail(desk: Desk, post: PostRow | None) -> str | None:
    """A post's first image as a table's thumbnail (a data: URI): obscured while flagged, unless
    the user turned blurring off, in greyscale if chosen; None without one."""
    if post is None or not post.media:
        return None
    first, prefs = post.media[0], user_preferences()
    blur = first.blur is not None and prefs.blur_flagged
    return data_uri(desk.settings.media_dir, first.thumb_path, blur=blur, grey=prefs.greyscale)


def show_missing_images(post: PostRow) -> None:
    """The images the post's record named that were not found when it was ingested (stored
    without them: ``ingest --missing-images skip``), so that nobody decides as if it were whole."""
    if post.missing_images:
        count = len(post.missing_images)
        st.warning(
            f"{'1 image' if count == 1 else f'{count} images'} of this post could not be found when it was "
            f"ingested: {'it is' if count == 1 else 'they are'} not shown, and the model did not see "
            f"{'it' if count == 1 else 'them'}. Named in its record:",
            icon=":material/hide_image:",
        )
        more = f"\n… and {count - 10} more" if count > 10 else ""
        st.text("\n".join(one_line(name, 120) for name in post.missing_images[:10]) + more)  # verbatim, untrusted


def show_post_body(desk: Desk, actor: Actor, post: PostRow, empty: str = "(no text)") -> None:
    """A post as the read-only views show it (Posts, a linked post on Review): its text (``empty``
    when it has none), the images it lacks, why it was escalated, and its verdict unless hidden
    from the reader."""
    with st.container(border=True):
        st.text(post.text or empty)
    show_missing_images(post)
    if post.status == "escalated":
        show_escalation(desk, actor, post.id)
    if post.verdict_hidden:
        st.caption(f"Verdict {HIDDEN_BADGE}.")
    else:
        show_verdict(post.verdict)


def show_verdict(verdict: VerdictRow | None) -> None:
    with st.container(border=True):
        if verdict is None:
            st.caption("Not scored yet: `python -m review score`")
            return
        if not verdict.usable:
            st.error(f"Model failure ({verdict.parse_status}); decide this post without a verdict.")
            if verdict.error:
                st.text(verdict.error)
        else:
            headline = f"{verdict.category} · severity {verdict.severity}" if verdict.violation else "No violation"
            (st.warning if verdict.violation else st.success)(f"{headline} · confidence {verdict.confidence:.2f}")
            st.text(verdict.rationale or "")
        st.caption(verdict.provenance)


def verdict_details(verdict: VerdictRow) -> str:
    """The verdict's other fields, one per line, for plain-text display."""
    consistency = " — ".join(x for x in (verdict.image_text_consistency, verdict.consistency_reason) if x)
    facts = [
        ("Description", verdict.description),
        ("Image and text", consistency),
        ("Sentiment", verdict.sentiment),
        ("Tags", ", ".join(verdict.tags)),
    ]
    return "\n".join(f"{name}: {value}" for name, value in facts if value)


def revealed_all(post_id: int) -> str:
    """The session_state key that reveals every image of a post (the review page's shortcut)."""
    return f"reveal:{post_id}"


def show_media(desk: Desk, post_id: int, position: int, m: MediaRow) -> bool:
    """One image of a post, blurred while flagged (unless the user turned blurring off) until
    revealed, in greyscale if the user chose so; its NSFW score, cluster size and OCR text.
    Why it is blurred comes from the core, which does not name a hidden verdict's category.
    Whether a picture was shown (not when the image cannot be read)."""
    prefs = user_preferences()
    details = [f"{m.width}×{m.height} {m.mime}"]
    if m.frames > 1:
        details.append(f"{m.frames} frames (first shown)")
    if m.nsfw is not None:
        details.append(f"NSFW {m.nsfw:.2f}")
    if m.similar_posts:
        details.append(f"{m.similar_posts} similar post{'s' if m.similar_posts > 1 else ''}")
    reveal_key = f"reveal:{post_id}:{position}"
    shown = st.session_state.get(reveal_key) or st.session_state.get(revealed_all(post_id))
    blurred = m.blur is not None and prefs.blur_flagged and not shown
    try:
        settings = desk.settings
        picture = display_image(str(settings.media_dir), m.path, settings.max_image_pixels, blurred, prefs.greyscale)
    except MediaError as exc:
        st.warning(f"Image {position} unavailable:")
        st.text(str(exc))
        return False
    st.image(picture, caption=" · ".join(details))
    if blurred:
        st.caption(f"Blurred: {m.blur}.")
        if st.button(f"Reveal image {position}", key=f"reveal_button:{post_id}:{position}"):
            st.session_state[reveal_key] = True
            st.rerun()
    if m.ocr_text:
        with st.expander(f"Text read in image {position} (OCR)"):
            st.text(m.ocr_text)
    for error in m.signal_errors:  # exception text: plain, never markdown
        st.text(f"signal failed: {error}")
    return True


# ---------------------------------------------------------------------------------------------
# Choosing a label: nothing is preselected


SEVERITIES = {1: "low", 2: "medium", 3: "high"}
SEVERITY_KEYS = {1: "Shift+1", 2: "Shift+2", 3: "Shift+3"}  # the digits alone pick categories
PICKER_COLUMNS = 3


def chosen_label(category: str | None, severity: int | None) -> Label | None:
    """The label a moderator picked, or None while it is incomplete: no category yet, or a
    violation without a severity. Nothing is filled in for them."""
    if category is None:
        return None
    if category == NO_VIOLATION:
        return Label(False, NO_VIOLATION, 0)
    if severity is None:
        return None
    return Label(True, category, int(severity))


def missing_choice(category: str | None) -> str:
    """What is still to be chosen before an overturn (for a prompt)."""
    if category is None:
        return "Choose the new label first: press its key (shown on each category) or click it."
    return "Choose the severity first: Shift+1 low, Shift+2 medium, Shift+3 high."


def label_picker(
    policy: Policy,
    category_key: str,
    severity_key: str,
    *,
    prefix: str,
    title: str = "New label",
    on_pick: Callable[[], None] | None = None,
) -> None:
    """One button per policy category, its shortcut the category's ``key`` from the policy file
    (shown on the button), then the severity (Shift+1..3). The choice is kept in session_state
    under ``category_key`` and ``severity_key``; nothing is chosen until the moderator does,
    and a change of category clears the severity chosen for the old one. ``on_pick`` runs
    after every choice (the Review page finishes an overturn that was waiting for it). The
    containers' keys (``{prefix}_categories``, ``{prefix}_severity``) are what ``move_focus``
    aims at."""
    category = st.session_state.get(category_key)

    def pick_category(category_id: str) -> None:
        if st.session_state.get(category_key) != category_id:
            st.session_state.pop(severity_key, None)
        st.session_state[category_key] = category_id
        if on_pick is not None:
            on_pick()

    def pick_severity(severity: int) -> None:
        st.session_state[severity_key] = severity
        if on_pick is not None:
            on_pick()

    st.caption(title)
    with st.container(key=f"{prefix}_categories"):
        columns = st.columns(PICKER_COLUMNS, gap="xsmall")  # room for the longest id and its key, uncut
        for i, c in enumerate(policy.category):
            columns[i % PICKER_COLUMNS].button(
                c.id, key=f"{prefix}_pick_{c.id}", shortcut=c.key, on_click=pick_category, args=(c.id,),
                type="primary" if category == c.id else "secondary", help=f"{c.label()}: {c.definition}",
                width="stretch",
            )  # fmt: skip
    severity = st.session_state.get(severity_key)
    needs_severity = category not in (None, NO_VIOLATION)
    with st.container(key=f"{prefix}_severity"):
        st.caption("Severity")
        columns = st.columns(PICKER_COLUMNS)
        for i, (level, name) in enumerate(SEVERITIES.items()):
            columns[i].button(
                f"{level} {name}", key=f"{prefix}_severity_{level}", shortcut=SEVERITY_KEYS[level],
                on_click=pick_severity, args=(level,), disabled=not needs_severity,
                type="primary" if needs_severity and severity == level else "secondary", width="stretch",
            )  # fmt: skip
        if needs_severity and category is not None:
            st.caption(f"{category}: {policy.get(category).severity}")


def move_focus(container_key: str, nonce: object) -> None:
    """Put the keyboard focus on the first enabled button (or text area) in the container with
    ``container_key``: a prompt to choose or write there. ``nonce`` differs per prompt, so the
    script runs again each time."""
    selector = json.dumps(f".st-key-{container_key} :is(button:not([disabled]), textarea)")
    st.html(
        f"""<script>/* {nonce} */
        (() => {{  // a scope of its own: the script runs again for every prompt
          let tries = 0;
          const aim = () => {{
            const target = document.querySelector({selector});
            if (target) {{ target.focus(); }} else if (++tries < 40) {{ setTimeout(aim, 50); }}
          }};
          aim();
        }})();
        </script>""",
        unsafe_allow_javascript=True,
    )


def show_escalation(desk: Desk, actor: Actor, post_id: int) -> None:
    """Why the post was escalated, for the lead who decides it (a note: plain text)."""
    from review.decisions import escalations

    with desk.sessions() as session:
        escalation = escalations(session, actor, [post_id]).get(post_id)
    if escalation is None:
        return
    st.warning(f"Escalated for a lead to decide · {escalation.at:%Y-%m-%d %H:%M} UTC. Reason:", icon="⚠️")
    who = escalation.by or "unknown"
    if escalation.reason_hidden:
        st.text(f"{who}: (hidden: only leads read other moderators' notes)")
    else:
        st.text(f"{who}: {escalation.reason or '(no reason was given: escalated before reasons were required)'}")
