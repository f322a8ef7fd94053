"""Who is asking: the client address of the current request, the owner of every fair share.

One client can hold many sessions, so the shares that stop one client from taking the server
(decode slots, upload sockets and requests, new sessions) are counted per client address as well
as per session. The address is the TCP peer's, or, only when that peer is one of the proxies listed
in ``DARKROOM_TRUSTED_PROXIES``, the last ``X-Forwarded-For`` hop that is not itself a trusted proxy
(the address the nearest proxy we trust saw). A client cannot choose its address by sending the
header itself: from an untrusted peer it is ignored.

``CURRENT_CLIENT`` is set once per request by ``ClientScope`` (an ASGI middleware around the whole
app: the API, the page's routes and NiceGUI's) and once per UI event by ``ui.session``. Code below
reads it with ``current_client()``; work handed to threads keeps it (``asyncio.to_thread`` copies
the context).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from core.config import Settings

UNKNOWN_CLIENT = "unknown"  # no peer address (a test transport, a Unix socket)
FORWARDED_FOR = "x-forwarded-for"
MAX_FORWARDED_HOPS = 32  # a longer header is not read past this many hops from the right

CURRENT_CLIENT: ContextVar[str] = ContextVar("darkroom_current_client", default=UNKNOWN_CLIENT)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def parse_proxies(setting: str) -> tuple[Network, ...]:
    """``DARKROOM_TRUSTED_PROXIES`` as networks: comma-separated addresses or CIDR blocks.
    Raises ValueError naming the entry that is neither."""
    networks = []
    for entry in (part.strip() for part in setting.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or a CIDR block") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: Iterable[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_address(peer: str | None, forwarded_for: list[str], proxies: tuple[Network, ...]) -> str:
    """The client's address for a connection from ``peer`` carrying these ``X-Forwarded-For``
    values (in order): the peer itself unless it is a trusted proxy, else the rightmost forwarded
    hop that is not a trusted proxy. A malformed hop ends the walk (it is what a client forged)."""
    if peer is None:
        return UNKNOWN_CLIENT
    current = _address(peer)
    if not proxies or not _trusted(current, proxies):
        return str(current) if current is not None else peer
    hops = [hop for value in forwarded_for for hop in value.split(",")][-MAX_FORWARDED_HOPS:]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, proxies):
            break
    return str(current)


def address_of(scope: Scope, trusted_proxies: str) -> str:
    """``client_address`` of an ASGI connection scope. Runs on every request: the answer for a
    peer and a short ``X-Forwarded-For`` is remembered, so the hot path parses no address."""
    peer = scope.get("client")
    if not peer:
        return UNKNOWN_CLIENT
    if not trusted_proxies:
        return _resolve_cached(peer[0], (), trusted_proxies)
    forwarded: list[bytes] = []
    size = 0
    for name, value in scope["headers"]:  # ASGI header names are lower-case bytes
        if name == _FORWARDED_FOR_BYTES:
            forwarded.append(value)
            size += len(value)
    if size > _CACHED_FORWARDED_BYTES:  # never kept in the cache
        return _resolve(peer[0], tuple(forwarded), trusted_proxies)
    return _resolve_cached(peer[0], tuple(forwarded), trusted_proxies)


def _resolve(host: str, forwarded: tuple[bytes, ...], trusted_proxies: str) -> str:
    values = [value.decode("latin-1") for value in forwarded]
    return client_address(host, values, parse_proxies(trusted_proxies))


# Bounded in entries and in bytes (keys with long headers are not cached): at most ~2 MiB.
_resolve_cached = lru_cache(maxsize=4096)(_resolve)
_FORWARDED_FOR_BYTES = FORWARDED_FOR.encode("ascii")
_CACHED_FORWARDED_BYTES = 256


@contextmanager
def client_scope(address: str) -> Iterator[str]:
    """Make ``address`` the current client inside the block."""
    token = CURRENT_CLIENT.set(address)
    try:
        yield address
    finally:
        CURRENT_CLIENT.reset(token)


def _settings() -> Settings:
    """The service's current settings (tests replace them); imported on first use, as
    ``core.data_service`` imports this module (through ``core.sandbox``)."""
    global _service_settings
    if _service_settings is None:
        from core import data_service

        _service_settings = data_service.settings
    return _service_settings()


_service_settings: Callable[[], Settings] | None = None


def current_client() -> str:
    return CURRENT_CLIENT.get()


class ClientScope:
    """ASGI middleware: every HTTP request and WebSocket runs with ``CURRENT_CLIENT`` set to its
    client's address (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = CURRENT_CLIENT.set(address_of(scope, _settings().trusted_proxies))
        try:
            await self.app(scope, receive, send)
        finally:
            CURRENT_CLIENT.reset(token)
