"""Integrations (admins): the API tokens a platform calls the HTTP API with, the webhook endpoints
the desk delivers its decisions to, and those deliveries (failed ones redelivered).

A token and a signing secret are shown once, in the run that makes them, and kept nowhere in the
app: not in session_state, not in a widget (:func:`show_once`), so the next click or a page change
leaves no trace of them (the database keeps a token's hash, and the secret, which signing needs).
The lists are read after the forms, so they hold what was just made. Every change goes through
review.tokens and review.webhooks, which check the admin's permission again against the stored
account and write the audit log.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from db.models import DeliveryStatus
from pages._common import allowed_or_stop, current_actor, current_desk, show_error
from review import tokens, webhooks
from review.auth import Permission
from review.errors import ReviewError
from review.outbox import ALL_TYPES, EVENT_TYPES

FLASH = "integrations_flash"  # session_state: a success message for the next run
REVOKING = "integrations_revoking"  # session_state: the token whose revocation waits for confirmation
ALL_EVENTS = "all (every event type, present and future)"
ANY = "any"
DELIVERY_LIMITS = [50, 200, 1000]
HELP = """
**A platform calls the API** with a token in every request's header:
`Authorization: Bearer <token>`. Start the API with `python -m review api` (OpenAPI at `/docs`);
scopes: `ingest` (push posts and reports), `read` (a post, its verdict and decisions), `decisions`
(the decision feed, `GET /v1/decisions`).

**A receiver verifies each delivery** per Standard Webhooks: the headers `webhook-id` (the event's
id, the same on every retry: drop one seen before), `webhook-timestamp` and `webhook-signature`
(HMAC-SHA256 with the endpoint's signing secret over `id.timestamp.body`); the `standardwebhooks`
package does it in one call, `Webhook(secret).verify(body, headers)`. A delivery the receiver does
not answer with a 2xx is retried with backoff (`WEBHOOK_RETRY_SCHEDULE`), then marked dead: redeliver
it here. The delivery worker is `python -m review deliver` (or `python -m review api --deliver`).

**On the command line**: `python -m review token add NAME --scopes ingest,read,decisions`,
`python -m review token list|revoke`, `python -m review webhook add URL --events ...`,
`python -m review webhook list|disable|enable|deliveries|redeliver`.
"""

desk = current_desk()
actor = current_actor()
allowed_or_stop(actor, Permission.INTEGRATIONS, "manage integrations")

st.title("Integrations")
st.caption("API tokens for a platform that pushes posts and reads decisions, and webhooks that deliver decisions.")


def show_once(what: str, secret: str, warning: str | None = None) -> None:
    """A token or signing secret just made, at the top of the page, for this run only."""
    with once:
        st.warning(f"{what}: copy it now. It cannot be shown again.", icon="🔑")
        st.code(secret, language=None)
        if warning:
            st.warning(warning)


def done(message: str) -> None:
    st.session_state[FLASH] = message
    st.rerun()


once = st.container()  # filled by show_once
if message := st.session_state.pop(FLASH, None):
    st.success(message)

tokens_tab, webhooks_tab, help_tab = st.tabs(["API tokens", "Webhooks", "How a platform connects"])

# ---------------------------------------------------------------------------------------------
# API tokens

with tokens_tab:
    add, revoke = st.columns(2, gap="large")
    with add, st.form("token_add", clear_on_submit=True):
        st.subheader("Make a token")
        name = st.text_input("Name (letters, digits, '-', '_', '.')", key="token_name", max_chars=64)
        scopes = st.multiselect(
            "Scopes",
            [s.value for s in tokens.Scope],
            key="token_scopes",
            help="ingest: push posts and reports · read: posts, verdicts, decisions · decisions: the decision feed",
        )
        if st.form_submit_button("Make token", type="primary"):
            try:
                made, token = tokens.create_token(desk.sessions, actor, name, scopes)
            except ReviewError as exc:
                show_error("The token was not made.", str(exc))
            else:
                show_once(f"Token `{made.name}` ({', '.join(s.value for s in made.scopes)})", token)

    listed = tokens.list_tokens(desk.sessions)
    with revoke:
        st.subheader("Revoke a token")
        live = [t.name for t in listed if t.active]
        chosen = st.selectbox("Token", live, index=None, placeholder="Choose a token", key="token_revoke_name")
        pending = st.session_state.get(REVOKING)
        if pending is None:
            if st.button("Revoke…", key="token_revoke", disabled=chosen is None):
                st.session_state[REVOKING] = chosen
                st.rerun()
        else:
            st.warning(
                f"Revoke `{pending}`? Every request with it is refused from now on (401); this cannot be undone."
            )
            confirm, cancel = st.columns(2)
            if confirm.button(f"Revoke `{pending}`", key="token_revoke_confirm", type="primary"):
                del st.session_state[REVOKING]
                try:
                    tokens.revoke_token(desk.sessions, actor, pending)
                except ReviewError as exc:
                    show_error("The token was not revoked.", str(exc))
                else:
                    done(f"Revoked `{pending}`.")
            if cancel.button("Cancel", key="token_revoke_cancel"):
                del st.session_state[REVOKING]
                st.rerun()

    if listed:
        st.dataframe(
            pd.DataFrame(
                {
                    "name": [t.name for t in listed],
                    "hint": [f"{t.hint}…" for t in listed],
                    "scopes": [", ".join(s.value for s in t.scopes) for t in listed],
                    "created": [t.created_at for t in listed],
                    "last used": [t.last_used_at for t in listed],
                    "revoked": [t.revoked_at for t in listed],
                }
            ),
            hide_index=True,
            column_config={
                "hint": st.column_config.TextColumn("Begins with", help="enough to recognise a token, never to use it"),
                "created": st.column_config.DatetimeColumn("Created (UTC)", format="YYYY-MM-DD HH:mm"),
                "last used": st.column_config.DatetimeColumn("Last used (UTC)", format="YYYY-MM-DD HH:mm"),
                "revoked": st.column_config.DatetimeColumn("Revoked (UTC)", format="YYYY-MM-DD HH:mm"),
            },
        )
    else:
        st.info("No tokens yet: make one above for each platform or service that calls the API.")

# ---------------------------------------------------------------------------------------------
# Webhooks


def event_types(e: webhooks.EndpointInfo) -> str:
    return "all" if e.event_types == (ALL_TYPES,) else ", ".join(e.event_types)


def endpoint_name(endpoints: dict[int, webhooks.EndpointInfo], endpoint_id: int) -> str:
    return f"{endpoint_id}: {webhooks.shown_url(endpoints[endpoint_id].url)}"


with webhooks_tab:
    register, manage = st.columns(2, gap="large")
    with register, st.form("webhook_add", clear_on_submit=True):
        st.subheader("Register an endpoint")
        url = st.text_input("URL (https)", key="webhook_url", max_chars=webhooks.MAX_URL_LENGTH)
        types = st.multiselect("Event types", [ALL_EVENTS, *EVENT_TYPES], key="webhook_events")
        description = st.text_input(
            "Description", key="webhook_description", max_chars=webhooks.MAX_DESCRIPTION, help="whose, for what"
        )
        if st.form_submit_button("Register", type="primary"):
            if not types:
                show_error("The endpoint was not registered.", "choose the event types it receives (or all)")
            else:
                wanted = [ALL_TYPES] if ALL_EVENTS in types else types
                try:
                    added, secret = webhooks.add_endpoint(
                        desk.sessions, actor, url, desk.settings, event_types=wanted, description=description
                    )
                except ReviewError as exc:
                    show_error("The endpoint was not registered.", str(exc))
                else:
                    plain = (
                        None if added.encrypted else "This URL is plain http: anyone on the way can read the events."
                    )
                    show_once(f"Signing secret of endpoint {added.id}", secret, plain)

    endpoints = {e.id: e for e in webhooks.list_endpoints(desk.sessions)}
    with manage:
        st.subheader("Change an endpoint")
        picked = st.selectbox(
            "Endpoint",
            list(endpoints),
            index=None,
            placeholder="Choose an endpoint",
            format_func=lambda i: endpoint_name(endpoints, i),
            key="webhook_manage",
        )
        chosen_endpoint = endpoints.get(picked) if picked is not None else None
        buttons = st.container(horizontal=True)
        active = chosen_endpoint is not None and chosen_endpoint.active
        label = "Disable" if active else "Enable"
        if buttons.button(label, key="webhook_toggle", disabled=chosen_endpoint is None):
            assert picked is not None
            try:
                changed = webhooks.set_active(desk.sessions, actor, picked, not active)
            except ReviewError as exc:
                show_error(f"{label}: not done.", str(exc))
            else:
                done(f"Endpoint {changed.id} {'enabled' if changed.active else 'disabled'}.")
        dead = chosen_endpoint.dead if chosen_endpoint is not None else 0
        if buttons.button(f"Redeliver dead events ({dead})", key="webhook_redeliver_dead", disabled=not dead):
            assert picked is not None
            try:
                count = webhooks.redeliver(desk.sessions, actor, endpoint_id=picked, status=DeliveryStatus.DEAD)
            except ReviewError as exc:
                show_error("Nothing was redelivered.", str(exc))
            else:
                done(f"{count} dead deliver{'ies' if count != 1 else 'y'} of endpoint {picked} will be sent again.")

    if endpoints:
        st.dataframe(
            pd.DataFrame(
                {
                    "id": list(endpoints),
                    "url": [webhooks.shown_url(e.url) for e in endpoints.values()],
                    "events": [event_types(e) for e in endpoints.values()],
                    "active": [e.active for e in endpoints.values()],
                    "why disabled": [e.disabled_reason or "" for e in endpoints.values()],
                    "pending": [e.pending for e in endpoints.values()],
                    "delivered": [e.delivered for e in endpoints.values()],
                    "dead": [e.dead for e in endpoints.values()],
                    "description": [e.description for e in endpoints.values()],
                    "created": [e.created_at for e in endpoints.values()],
                }
            ),
            hide_index=True,
            column_config={
                "id": st.column_config.NumberColumn("Id", format="%d"),
                "url": st.column_config.TextColumn("URL", help="up to its first path segment: the rest may hold a key"),
                "active": st.column_config.CheckboxColumn("Active", help="a disabled endpoint gets no deliveries"),
                "created": st.column_config.DatetimeColumn("Created (UTC)", format="YYYY-MM-DD HH:mm"),
            },
        )
    else:
        st.info("No webhook endpoints yet: register the URL of the platform's receiver above.")

    st.subheader("Deliveries")
    by_endpoint, by_status, by_limit = st.columns([3, 1, 1])
    endpoint_filter = by_endpoint.selectbox(
        "Endpoint",
        [None, *endpoints],
        format_func=lambda i: "all endpoints" if i is None else endpoint_name(endpoints, i),
        key="deliveries_endpoint",
    )
    status_filter = by_status.selectbox("Status", [ANY, *DeliveryStatus], key="deliveries_status")
    limit = by_limit.selectbox("Rows", DELIVERY_LIMITS, key="deliveries_limit")
    found = webhooks.deliveries(
        desk.sessions, endpoint_id=endpoint_filter, status=None if status_filter == ANY else status_filter, limit=limit
    )
    if not found:
        st.caption("No deliveries under these filters.")
    else:
        table = pd.DataFrame(
            {
                "endpoint": [d.endpoint_id for d in found],
                "event id": [d.event_uid for d in found],
                "type": [d.type for d in found],
                "post": [f"{d.source}/{d.external_id}" for d in found],
                "status": [d.status for d in found],
                "attempts": [d.attempts for d in found],
                "last status code": [d.last_status_code for d in found],
                "last error": [d.last_error or "" for d in found],
                "next attempt": [d.next_attempt_at if d.status == DeliveryStatus.PENDING else None for d in found],
            }
        )
        # the key names the rows shown, so a selection never points at rows that moved
        shown = hashlib.sha256(repr([(d.id, d.status) for d in found]).encode()).hexdigest()[:16]
        selection = st.dataframe(
            table,
            key=f"deliveries:{shown}",
            hide_index=True,
            on_select="rerun",
            selection_mode="multi-row",
            column_config={
                "endpoint": st.column_config.NumberColumn("Endpoint", format="%d"),
                "last status code": st.column_config.NumberColumn("Last status", format="%d"),
                "last error": st.column_config.TextColumn("Last error", width="large"),
                "next attempt": st.column_config.DatetimeColumn("Next attempt (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            },
        )
        rows = [found[i].id for i in (selection.selection.rows if selection else []) if i < len(found)]
        more = f" (the newest {limit})" if len(found) == limit else ""
        st.caption(f"{len(found)} deliveries, newest first{more}. Select rows to send them again.")
        if st.button(f"Redeliver selected ({len(rows)})", key="deliveries_redeliver", disabled=not rows):
            try:
                count = webhooks.redeliver(desk.sessions, actor, delivery_ids=rows)
            except ReviewError as exc:
                show_error("Nothing was redelivered.", str(exc))
            else:
                done(f"{count} deliver{'ies' if count != 1 else 'y'} will be sent again (the same event ids).")

with help_tab:
    st.markdown(HELP)
