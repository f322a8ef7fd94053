"""Which session a browser tab works in, and the one helper that sets it for every UI handler.

A tab keeps its session id in NiceGUI's tab storage (RAM, keyed by the tab id that lives in the
browser's ``sessionStorage``): a reload keeps it, a new tab or window gets a fresh one. NiceGUI
copies tab storage into a *duplicated* tab; the owner tab id stored beside the session id tells
such a copy apart, and it gets a fresh workspace too. Sharing is explicit only: an invite link.

Resources of a page (thumbnails, previews, the upload route) are reached through a per-client
token, never the session id, and stop working when the client is gone.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from nicegui import Client, context

from core import data_service
from core.clients import address_of, client_scope, current_client
from core.sessions import is_session_id, new_session_id, session_scope

SESSION_KEY = "darkroom_session"
OWNER_KEY = "darkroom_owner_tab"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Binding:
    session_id: str
    token: str  # names this client's resources in URLs (thumbnails, upload); not the session id
    client_address: str  # the address that loaded the page: its handlers' decodes and sessions count there


_by_client: dict[str, Binding] = {}
_by_token: dict[str, str] = {}  # token -> client id


def choose_session(
    tab: dict[str, Any], tab_id: str, invited: str | None = None, remembered: object = None
) -> tuple[str, str]:
    """The session for a tab and why: ``"invited"``, ``"kept"`` (a reload) or ``"new"``.
    ``tab`` is the tab's storage; it is updated so that a reload finds the same session.
    ``remembered`` is the id the tab's own ``sessionStorage`` kept: used only when the tab storage
    is empty, i.e. after a server restart (tab storage lives in the server's RAM), so that a tab
    finds its workspace again in disk or sql mode."""
    stored = tab.get(SESSION_KEY)
    if invited is not None:
        session_id, reason = invited, "invited"
    elif is_session_id(stored) and tab.get(OWNER_KEY) == tab_id:
        session_id, reason = stored, "kept"
    elif stored is None and is_session_id(remembered):
        session_id, reason = str(remembered), "kept"
    else:
        # New, or a duplicated tab: it arrives with a copy of its original's storage but its own tab id.
        session_id, reason = new_session_id(), "new"
    tab[SESSION_KEY] = session_id
    tab[OWNER_KEY] = tab_id
    return session_id, reason


def bind(client: Client, session_id: str) -> Binding:
    """Attach ``client`` (one page load) to ``session_id`` until the client is deleted."""
    unbind(client)
    binding = Binding(session_id, secrets.token_urlsafe(24), _page_address(client))
    _by_client[client.id] = binding
    _by_token[binding.token] = client.id
    return binding


def _page_address(client: Client) -> str:
    """The client address of the request that loaded ``client``'s page."""
    try:
        request = client.request
    except (RuntimeError, AttributeError):  # a client made without a request (tests)
        return current_client()
    return address_of(request.scope, data_service.settings().trusted_proxies)


def unbind(client: Client) -> None:
    binding = _by_client.pop(client.id, None)
    if binding is not None:
        _by_token.pop(binding.token, None)


def binding_of(client: Client) -> Binding:
    binding = _by_client.get(client.id)
    if binding is None:
        raise LookupError("this page is not bound to a workspace (it was closed or has not connected yet)")
    return binding


def session_for_token(token: str) -> str | None:
    """The session behind a page resource token, or None once its page is gone."""
    client_id = _by_token.get(token)
    binding = _by_client.get(client_id) if client_id else None
    return binding.session_id if binding else None


def client_for_token(token: str) -> str | None:
    return _by_token.get(token)


def _handler_client(args: tuple[Any, ...]) -> Client:
    """The client whose event this is: from the event arguments when given, else the slot context.
    Never inherited from the task: a value bound across clients runs B's handler in A's task."""
    for arg in args:
        client = getattr(arg, "client", None)
        if isinstance(client, Client):
            return client
    return context.client


@contextlib.contextmanager
def tab_scope(client: Client) -> Iterator[None]:
    """The UI's one session setter: ``client``'s session and client address for the block. Event
    handlers enter it through ``in_session``; code that is not a handler (page build, event-bus
    consumers, tasks a handler starts) through ``run_in_session`` or this directly."""
    binding = binding_of(client)
    with session_scope(binding.session_id), client_scope(binding.client_address):
        yield


def in_session(handler: Callable[P, R]) -> Callable[P, Any]:
    """Wrap a UI event handler so that it runs inside its own tab's ``session_scope``. Every
    handler that touches workspace data goes through this (the ARCHITECTURE's second place)."""
    if inspect.iscoroutinefunction(handler):

        @functools.wraps(handler)
        async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            with tab_scope(_handler_client(args)):
                return await handler(*args, **kwargs)

        return run_async

    @functools.wraps(handler)
    def run(*args: P.args, **kwargs: P.kwargs) -> Any:
        with tab_scope(_handler_client(args)):
            return handler(*args, **kwargs)

    return run


def run_in_session(client: Client, func: Callable[..., R], *args: Any) -> R:
    """Call ``func`` in ``client``'s session from code that is not an event handler (page build,
    event-bus consumers), in a copied context so nothing leaks into the caller's."""
    binding_of(client)  # a client without a tab raises here, in the caller's context

    def call() -> R:
        with tab_scope(client):
            return func(*args)

    return contextvars.copy_context().run(call)
