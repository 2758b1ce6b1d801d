"""Which volunteer a request is: a registered user, or the anonymous volunteer of a browser session.

Anonymous volunteers can classify at once: their first API call creates a session and a Volunteer
row tied to it. The volunteer id is kept in the session, so the hot paths (next subjects, submit)
need no query to know who is asking. Logging in or registering keeps the history
(:func:`services.volunteer_claim`, run from the ``user_logged_in`` signal).
"""
from __future__ import annotations

from .services import volunteer_claim, volunteer_get_or_create

SESSION_VOLUNTEER = "zoo_volunteer_id"
SESSION_USER = "zoo_volunteer_user"


def request_volunteer_id(request, *, create: bool = True) -> int | None:
    """The id of the volunteer making ``request``; with ``create`` False, None for a visitor who has not
    classified (nor asked for subjects) yet."""
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    authenticated = user is not None and user.is_authenticated
    owner = user.pk if authenticated else None
    if session is not None and session.get(SESSION_USER) == owner and session.get(SESSION_VOLUNTEER):
        return session[SESSION_VOLUNTEER]
    if authenticated:
        volunteer_id = volunteer_get_or_create(user=user).pk
        # Scripts with a token carry no session cookie: do not create a session for them.
        if session is not None and session.session_key:
            _remember(session, volunteer_id, owner)
        return volunteer_id
    if not create or session is None:
        return None
    if not session.session_key:
        session.save()
    volunteer_id = volunteer_get_or_create(session_key=session.session_key).pk
    _remember(session, volunteer_id, None)
    return volunteer_id


def _remember(session, volunteer_id: int, owner: int | None) -> None:
    session[SESSION_VOLUNTEER] = volunteer_id
    session[SESSION_USER] = owner


def forget(request) -> None:
    """Drop the remembered volunteer (it belonged to a session that no longer exists)."""
    session = getattr(request, "session", None)
    if session is not None:
        session.pop(SESSION_VOLUNTEER, None)
        session.pop(SESSION_USER, None)


def on_user_logged_in(sender, request, user, **kwargs) -> None:
    """Attach the session's anonymous volunteer (and its history) to the user who just logged in."""
    session = getattr(request, "session", None)
    if session is None:
        return
    anonymous = session.get(SESSION_VOLUNTEER) if session.get(SESSION_USER) is None else None
    volunteer = volunteer_claim(user=user, volunteer_id=anonymous)
    _remember(session, volunteer.pk, user.pk)
