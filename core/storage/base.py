"""The contracts of the backends ``DARKROOM_STORAGE`` chooses, and the errors a store raises.

- ``ImageStore``: images per *namespace key*: a session id, or the legacy shared folder. The key is
  an explicit argument here (stores are adapters); ``core.data_service`` resolves it from
  ``CURRENT_SESSION_ID`` so nothing above the service layer ever passes it around.
- ``EventRelay``: carries the event bus's events (``core.events``) to the other processes' buses.
- ``InviteBook``: where invite links (``core.invites``) are kept.
- ``PresenceMirror``: where each process's members of a workspace (``core.presence``) are listed
  for every process.

Each has an in-process adapter (``core.storage.local``, ``memory.py``, ``disk.py``, ``sql.py``) and a
Redis one (``core.storage.redis``); ``core.storage.factory`` builds the set for the settings.
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.annotations import Annotations
from core.errors import CapacityExceeded, NotFound, QuotaExceeded
from core.ingest import IngestedImage
from core.units import format_bytes

if TYPE_CHECKING:  # these modules use the contracts below; the types are only named here
    from core.events import Event
    from core.invites import Invite

__all__ = [
    "RECORD_OVERHEAD_BYTES",
    "AddOutcome",
    "CapacityExceeded",
    "EventRelay",
    "ImageRecord",
    "ImageStore",
    "InviteBook",
    "NotFound",
    "PresenceEntry",
    "PresenceMirror",
    "QuotaExceeded",
    "StoreTotals",
    "is_image_id",
    "new_image_id",
]

# Metadata, dict slots and object headers: small, but held, so counted against quotas.
RECORD_OVERHEAD_BYTES = 1024

_IMAGE_ID = re.compile(r"[0-9a-f]{32}")


def new_image_id() -> str:
    return uuid.uuid4().hex


def is_image_id(raw: object) -> bool:
    return isinstance(raw, str) and _IMAGE_ID.fullmatch(raw) is not None


def image_not_found() -> NotFound:
    # The same words whether the id never existed or belongs to another session.
    return NotFound("no such image in this workspace")


def workspace_full(held: int, quota: int, needed: int) -> QuotaExceeded:
    """The one message every session store gives when a workspace's quota would be passed."""
    return QuotaExceeded(
        f"the workspace is full: it holds {format_bytes(held)} of {format_bytes(quota)} and this needs "
        f"{format_bytes(needed)} more; delete images or clear it"
    )


def storage_full(where: str = "storage") -> CapacityExceeded:
    """The one message every session store gives when all sessions together would pass the cap
    (``where``: the server's "memory" or "storage")."""
    return CapacityExceeded(
        f"the server's {where} for images is full; try again later or clear workspaces you no longer use"
    )


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ImageRecord:
    """What the API lists about an image (never its session)."""

    id: str
    filename: str
    format: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    uploaded_at: str
    thumbnail_mime: str = "image/jpeg"

    def to_public(self) -> dict[str, object]:
        """The record as the API shows it (built directly: this runs per record on every listing)."""
        return {
            "id": self.id,
            "filename": self.filename,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "uploaded_at": self.uploaded_at,
        }

    @classmethod
    def from_ingested(cls, image: IngestedImage, image_id: str | None = None) -> ImageRecord:
        return cls(
            id=image_id or new_image_id(),
            filename=image.filename,
            format=image.format,
            width=image.width,
            height=image.height,
            size_bytes=len(image.data),
            sha256=image.sha256,
            uploaded_at=utc_now_iso(),
            thumbnail_mime=image.thumbnail_mime,
        )


@dataclass(frozen=True)
class AddOutcome:
    """``duplicate``: the same bytes under the same name were already there, nothing was stored
    and ``record`` is that image. ``same_bytes_as``: a new record was made for a new name, sharing
    the bytes of that earlier image (held once)."""

    record: ImageRecord
    duplicate: bool = False
    same_bytes_as: ImageRecord | None = None


@dataclass(frozen=True)
class StoreTotals:
    sessions: int
    images: int
    bytes_held: int
    capacity_bytes: int


class ImageStore(ABC):
    """Images per namespace. Every method is safe to call from several threads at once."""

    #: Whether calls may wait on I/O (files, a database, the network). Callers on an event loop run
    #: such a store's calls in a worker thread; a store that only takes a lock briefly says False.
    blocking_io: bool = True
    #: Whether the images live in this process's own RAM, beside the uploads in flight: the room
    #: for uploads is then what the memory cap has left after them (``core.inflight``).
    in_process_memory: bool = False
    #: Whether the images outlive this process (a restarted server still has them): the page then
    #: remembers its tab's workspace across a restart.
    outlives_the_process: bool = True

    @abstractmethod
    def add(self, key: str, image: IngestedImage) -> AddOutcome:
        """Store ``image``. The same bytes under the same name are not stored again; under another
        name they get a record of their own that shares the bytes. Raises QuotaExceeded (413) or
        CapacityExceeded (507), leaving the namespace unchanged."""

    @abstractmethod
    def list(self, key: str) -> list[ImageRecord]:
        """Records in upload order (an unknown namespace is empty)."""

    @abstractmethod
    def get(self, key: str, image_id: str) -> ImageRecord:
        """The record, or NotFound."""

    @abstractmethod
    def read(self, key: str, image_id: str) -> bytes:
        """The original bytes, or NotFound."""

    @abstractmethod
    def read_thumbnail(self, key: str, image_id: str) -> bytes:
        """The preview bytes (``record.thumbnail_mime``), or NotFound."""

    @abstractmethod
    def delete(self, key: str, image_id: str) -> None:
        """Remove one image and everything cached for it, or NotFound."""

    @abstractmethod
    def clear(self, key: str) -> int:
        """Remove the namespace and everything in it; returns how many images went."""

    @abstractmethod
    def touch(self, key: str) -> None:
        """Mark the namespace as used now (creates it empty if it is new)."""

    @abstractmethod
    def expire_idle(self, idle_seconds: float, now: float | None = None) -> list[str]:
        """Remove namespaces unused for ``idle_seconds``; returns their keys."""

    @abstractmethod
    def cache_get(self, key: str, image_id: str, name: str) -> object | None:
        """A value cached for the image (None if absent); NotFound if the image is gone."""

    @abstractmethod
    def cache_put(self, key: str, image_id: str, name: str, value: object, nbytes: int) -> None:
        """Cache ``value`` for the image, counted as ``nbytes`` against the quota and the cap."""

    @abstractmethod
    def totals(self) -> StoreTotals:
        """Aggregate counts (never keys)."""

    def bytes_held(self, key: str) -> int:
        """Bytes the namespace holds, counted as against its quota."""
        raise NotImplementedError

    def session_count(self) -> int:
        """How many namespaces exist (the session cap counts these)."""
        return self.totals().sessions

    def has_session(self, key: str) -> bool:
        """Whether the namespace exists (touched or holding images)."""
        return self.bytes_held(key) > 0

    def evict_empty_session(self) -> str | None:
        """Remove the least recently used namespace that holds nothing (made and never used), so that
        empty sessions cannot keep real ones out at the session cap; returns its key, None when there
        is none."""
        return None

    def get_annotations(self, key: str, image_id: str) -> Annotations:
        """The image's annotations (empty, version 0, if never edited), or NotFound."""
        raise NotImplementedError

    def patch_annotations(self, key: str, image_id: str, change: Callable[[Annotations], Annotations]) -> Annotations:
        """Replace the image's annotations with ``change(current)`` atomically: inside the store's
        lock or transaction, so concurrent patches apply one after the other and none is lost.
        ``change`` may raise (stale version, too many tags): then nothing is stored. The stored
        annotations count against the quota (QuotaExceeded, nothing stored) and go with the image.
        Returns what was stored; NotFound for an unknown image."""
        raise NotImplementedError

    def list_annotations(self, key: str) -> dict[str, Annotations]:
        """Annotations of the namespace's images that have any, by image id."""
        raise NotImplementedError


class EventRelay(ABC):
    """Carries events between the buses of several processes. A bus owns one relay: it starts it,
    sends each event it publishes through it and is handed the events the others sent; a relay
    never hands a bus back its own events. Delivery is best effort (a relay that lost its link
    drops events until it is back), and ``send`` never raises."""

    @abstractmethod
    def start(self, deliver: Callable[[Event], None]) -> None:
        """Hand every event another bus sends from now on to ``deliver`` (possibly on another thread)."""

    @abstractmethod
    def send(self, event: Event) -> None:
        """Pass ``event`` to the other buses."""

    @abstractmethod
    def wait_until_listening(self, timeout: float) -> bool:
        """True once events the others send reach ``deliver`` (False if not within ``timeout``)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop sending and delivering."""


class InviteBook(ABC):
    """Where invites are kept: ``core.invites.Invites`` makes them and applies the rules, the book
    only stores. Every call costs O(the session's own invites). ``now`` is wall-clock seconds, the
    same for every process."""

    @abstractmethod
    def add(self, invite: Invite, most_active: int, now: float) -> bool:
        """Keep ``invite``, unless its session already has ``most_active`` unexpired ones: then False
        and nothing is kept."""

    @abstractmethod
    def find(self, token: str) -> Invite | None:
        """The invite of ``token`` (possibly expired), or None when unknown or revoked."""

    @abstractmethod
    def live(self, session_id: str, now: float) -> list[Invite]:
        """The session's unexpired invites, in any order."""

    @abstractmethod
    def remove(self, session_id: str, token: str) -> bool:
        """Remove one of the session's invites; False (and nothing removed) when ``token`` is not one."""

    @abstractmethod
    def remove_all(self, session_id: str) -> int:
        """Remove all the session's invites; returns how many there were."""


@dataclass(frozen=True)
class PresenceEntry:
    """A member of a workspace as every process lists it: its public form (with the image it views,
    if any), when it came and until when it stays listed unless its process renews it (wall-clock
    seconds, the same for every process). An adapter reads back an unreadable ``viewing`` as None."""

    id: str
    name: str
    colour: str
    kind: str
    joined: float
    until: float
    viewing: str | None = None  # the image id it looks at in the culling view (``is_image_id``), or None

    def to_public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "colour": self.colour, "kind": self.kind, "viewing": self.viewing}


class PresenceMirror(ABC):
    """Lists every process's members of each workspace (``core.presence`` keeps and renews its own
    in it). Best effort: a mirror that cannot be reached logs it, writes nothing and reads None."""

    @abstractmethod
    def write(self, session_id: str, entries: Sequence[PresenceEntry]) -> None:
        """Add or replace these members of the session (by id)."""

    @abstractmethod
    def remove(self, session_id: str, member_ids: Sequence[str]) -> None:
        """Remove these members of the session (unknown ids are ignored)."""

    @abstractmethod
    def read(self, session_id: str) -> list[PresenceEntry] | None:
        """The session's entries, expired ones included, in any order; None when it cannot be read."""

    @abstractmethod
    def prune(self, session_id: str, now: float) -> bool:
        """Remove the session's entries that expired by ``now``; True if this call removed any (so
        that one process, not every one, tells the workspace)."""
