"""Shared annotations of an image: tags, a star rating and a note, and the rules that merge edits.

Every tab and script of a workspace edits the same annotations, so edits meet. The rules:

- **Tags merge as sets**, and adding wins over a concurrent remove of the same tag. Each tag
  remembers the version at which it was last added. A remove applies to what its sender saw: with
  ``expected_version`` v, it removes a tag only if that tag was added at v or before; a tag
  (re-)added after v was not seen by the remover, so it stays. Without ``expected_version`` the
  sender is taken to have seen the current state.
- **Rating, pick and note are last-writer-wins with a version number.** Every change bumps
  ``version``. A patch that sets the rating, the pick or the note with a stale ``expected_version``
  is refused as a whole (``StaleVersion``, 409) and carries the current value, so the client can
  show it or retry. The pick is a culling verdict: ``"picked"``, ``"rejected"`` or none.
- **Bounds.** A tag is at most 64 characters once control characters are removed; an image has at
  most 32 tags; a note is at most 4 KiB of UTF-8; a rating is 0-5 or null. Edits are rate-limited
  per tab or client (``RateLimiter``). A batch (``parse_batch``: "keep the best of this burst,
  reject the rest") holds at most 300 edits (what a full bucket pays for) and costs one edit of
  the rate per 10 it holds, taken as a whole or not at all, so a batch is never cut off half-way.

This module is pure (no storage, no session): stores call ``apply_patch`` inside their lock or
transaction, so two concurrent patches are applied one after the other and no tag is lost.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import BadRequest, DarkroomError, TooLarge
from core.text import clean_text, one_line

MAX_TAG_CHARS = 64
MAX_TAGS = 32
MAX_NOTE_BYTES = 4096
MAX_RATING = 5
PICKS = ("picked", "rejected")  # a culling verdict; None: no verdict yet
MAX_PATCH_BODY_BYTES = 64 * 1024  # a full patch is well under this; more is not a patch
EDITS_PER_SECOND = 10.0  # sustained rate per tab or client
EDIT_BURST = 30  # edits a client may make at once before the rate applies
MAX_TRACKED_CLIENTS = 10_000  # the rate limiter's memory is bounded too
PATCH_FIELDS = ("tags_add", "tags_remove", "rating", "pick", "note", "expected_version")
EDITS_PER_RATE_TOKEN = 10  # a batch costs one edit of the rate limit per this many edits it holds
MAX_BATCH_EDITS = EDIT_BURST * EDITS_PER_RATE_TOKEN  # edits in one batch: 300, which a full bucket pays for
MAX_BATCH_BODY_BYTES = 1024 * 1024


class InvalidAnnotation(DarkroomError):
    """A well-formed patch whose values are not allowed (an empty tag, a rating of 7): 422."""

    status_code = 422


class StaleVersion(DarkroomError):
    """The rating or note was changed by someone else since ``expected_version``: 409, with the
    current annotations so the client can show them."""

    status_code = 409

    def __init__(self, current: Annotations) -> None:
        super().__init__(
            f"the annotations changed since the version you edited; they are now at version {current.version} "
            "(the current value is in 'current'): apply your change to it and send it again"
        )
        self.current = current

    @property
    def fields(self) -> dict[str, Any]:
        return {"current": self.current.to_public()}


class RateLimited(DarkroomError):
    """Too many edits from one tab or client: 429."""

    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"too many annotation edits; at most {EDITS_PER_SECOND:g} per second (bursts of {EDIT_BURST}); "
            f"try again in {max(retry_after, 0.1):.1f} s"
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class Annotations:
    """The annotations of one image. ``tag_versions`` maps each tag to the version at which it was
    last added, in the order tags were first added."""

    tag_versions: Mapping[str, int] = field(default_factory=dict)
    rating: int | None = None
    note: str = ""
    version: int = 0
    updated_at: str | None = None
    updated_by: str | None = None
    pick: str | None = None

    @property
    def tags(self) -> list[str]:
        return list(self.tag_versions)

    @property
    def is_empty(self) -> bool:
        return self.version == 0

    def to_public(self) -> dict[str, Any]:
        """What the API answers: ``{"tags", "rating", "pick", "note", "version", "updated_at", "updated_by"}``."""
        return {
            "tags": self.tags,
            "rating": self.rating,
            "pick": self.pick,
            "note": self.note,
            "version": self.version,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }

    def to_json(self) -> str:
        """The stored form (stores keep this text; its UTF-8 length is what counts against quotas)."""
        return json.dumps(
            {
                "tags": [[tag, added] for tag, added in self.tag_versions.items()],
                "rating": self.rating,
                "pick": self.pick,
                "note": self.note,
                "version": self.version,
                "updated_at": self.updated_at,
                "updated_by": self.updated_by,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @property
    def nbytes(self) -> int:
        """Bytes held for these annotations (0 while there are none)."""
        return 0 if self.is_empty else len(self.to_json().encode("utf-8"))

    @classmethod
    def from_json(cls, text: str) -> Annotations:
        """Read the stored form back (written by ``to_json``; forms stored before picks have none)."""
        raw = json.loads(text)
        return cls(
            tag_versions={str(tag): int(added) for tag, added in raw["tags"]},
            rating=raw["rating"],
            note=raw["note"],
            version=int(raw["version"]),
            updated_at=raw["updated_at"],
            updated_by=raw["updated_by"],
            pick=raw.get("pick"),
        )


EMPTY = Annotations()


class _Unchanged:
    """The rating or pick is not part of the patch (``None`` means: clear it)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()


@dataclass(frozen=True)
class AnnotationPatch:
    """One edit: tags to add and remove, a new rating or pick (None clears it), a new note (None: keep)."""

    tags_add: tuple[str, ...] = ()
    tags_remove: tuple[str, ...] = ()
    rating: int | None | _Unchanged = UNCHANGED
    note: str | None = None
    expected_version: int | None = None
    pick: str | None | _Unchanged = UNCHANGED

    @property
    def sets_value(self) -> bool:
        """True if the patch writes the rating, the pick or the note (the last-writer-wins part)."""
        return self.rating is not UNCHANGED or self.pick is not UNCHANGED or self.note is not None


# -- validation --
def clean_tag(raw: object) -> str:
    """A tag as stored: ``core.text.one_line`` (control and format characters removed, white space
    runs made one space, trimmed).
    Raises BadRequest (not text), InvalidAnnotation (empty) or TooLarge (over 64 characters)."""
    if not isinstance(raw, str):
        raise BadRequest("a tag must be a string")
    tag = one_line(raw)
    if not tag:
        raise InvalidAnnotation("a tag cannot be empty")
    if len(tag) > MAX_TAG_CHARS:
        raise TooLarge(f"a tag is at most {MAX_TAG_CHARS} characters; '{tag[:20]}...' has {len(tag)}")
    return tag


def clean_note(raw: object) -> str:
    """A note as stored: ``core.text.clean_text`` keeping newlines and tabs, at most 4 KiB."""
    if not isinstance(raw, str):
        raise BadRequest("'note' must be a string")
    note = clean_text(raw, keep="\n\t").strip()
    size = len(note.encode("utf-8"))
    if size > MAX_NOTE_BYTES:
        raise TooLarge(
            f"a note is at most {MAX_NOTE_BYTES} bytes of UTF-8 ({MAX_NOTE_BYTES // 1024} KiB); this has {size}"
        )
    return note


def _tag_list(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    raw = body.get(name)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadRequest(f"'{name}' must be a list of strings")
    if len(raw) > MAX_TAGS:
        raise TooLarge(f"'{name}' lists {len(raw)} tags; an image holds at most {MAX_TAGS}")
    return tuple(dict.fromkeys(clean_tag(item) for item in raw))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_patch(body: object) -> AnnotationPatch:
    """Validate a PATCH body: a JSON object with any of ``tags_add``, ``tags_remove``, ``rating``,
    ``pick``, ``note``, ``expected_version``. Malformed: BadRequest (400); over a bound: TooLarge (413);
    not allowed (a rating of 7, an empty tag): InvalidAnnotation (422)."""
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object with any of: {', '.join(PATCH_FIELDS)}")
    unknown = sorted(str(k)[:40] for k in body if k not in PATCH_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(PATCH_FIELDS)}")
    rating: int | None | _Unchanged = UNCHANGED
    if "rating" in body:
        rating = body["rating"]
        if rating is not None:
            if not _is_int(rating):
                raise BadRequest("'rating' must be a whole number of stars from 0 to 5, or null to clear it")
            if not 0 <= rating <= MAX_RATING:
                raise InvalidAnnotation(f"a rating is 0 to {MAX_RATING} stars, not {rating}")
    pick: str | None | _Unchanged = UNCHANGED
    if "pick" in body:
        pick = body["pick"]
        if pick is not None and not isinstance(pick, str):
            raise BadRequest('\'pick\' must be "picked", "rejected" or null to clear it')
        if pick is not None and pick not in PICKS:
            raise InvalidAnnotation(f'a pick is "picked", "rejected" or null, not \'{one_line(pick)[:20]}\'')
    expected = body.get("expected_version")
    if expected is not None and (not _is_int(expected) or expected < 0):
        raise BadRequest("'expected_version' must be a version number (a whole number from 0)")
    return AnnotationPatch(
        tags_add=_tag_list(body, "tags_add"),
        tags_remove=_tag_list(body, "tags_remove"),
        rating=rating,
        note=clean_note(body["note"]) if body.get("note") is not None else None,
        expected_version=expected,
        pick=pick,
    )


def parse_batch(body: object) -> list[tuple[str, AnnotationPatch]]:
    """Validate a batch: ``{"edits": [{"image_id": ..., <any patch field>}, ...]}``, at most
    ``MAX_BATCH_EDITS``, each image at most once. Every edit is checked before any is applied:
    one bad edit refuses the batch (400/413/422, naming the edit)."""
    if not isinstance(body, dict) or set(body) != {"edits"} or not isinstance(body["edits"], list):
        raise BadRequest('the body must be {"edits": [{"image_id": "...", "pick": "picked"}, ...]}')
    edits = body["edits"]
    if not edits:
        raise BadRequest("'edits' is empty: send at least one edit")
    if len(edits) > MAX_BATCH_EDITS:
        raise TooLarge(f"a batch holds at most {MAX_BATCH_EDITS} edits; this has {len(edits)}: send it in parts")
    parsed: list[tuple[str, AnnotationPatch]] = []
    seen: set[str] = set()
    for number, edit in enumerate(edits, start=1):
        if not isinstance(edit, dict) or not isinstance(edit.get("image_id"), str):
            raise BadRequest(f"edit {number}: each edit is an object with an 'image_id' and patch fields")
        image_id = edit["image_id"]
        if image_id in seen:
            raise BadRequest(f"edit {number}: image {image_id[:40]} is edited twice in one batch; merge its edits")
        seen.add(image_id)
        try:
            patch = parse_patch({k: v for k, v in edit.items() if k != "image_id"})
        except DarkroomError as exc:
            raise exc.with_message(f"edit {number} ({image_id[:40]}): {exc.message}") from None
        parsed.append((image_id, patch))
    return parsed


def batch_cost(edits: int) -> int:
    """What a batch of ``edits`` takes from its client's rate: one edit per ``EDITS_PER_RATE_TOKEN``."""
    return max(1, -(-edits // EDITS_PER_RATE_TOKEN))


# -- the merge --
def apply_patch(current: Annotations, patch: AnnotationPatch, author: str, now: str) -> Annotations:
    """The annotations after ``patch`` (see the module's rules). Returns ``current`` itself when
    nothing changes. Raises StaleVersion, or TooLarge when the image would hold over 32 tags."""
    if patch.sets_value and patch.expected_version is not None and patch.expected_version != current.version:
        raise StaleVersion(current)
    seen = current.version if patch.expected_version is None else min(patch.expected_version, current.version)
    next_version = current.version + 1
    tags = dict(current.tag_versions)
    for tag in patch.tags_remove:
        if tag in tags and tags[tag] <= seen:
            del tags[tag]
    for tag in patch.tags_add:  # after the removes: a tag both added and removed in one patch stays
        tags[tag] = next_version
    if len(tags) > MAX_TAGS:
        raise TooLarge(f"an image holds at most {MAX_TAGS} tags; this would make {len(tags)}: remove some first")
    rating = current.rating if patch.rating is UNCHANGED else patch.rating
    pick = current.pick if patch.pick is UNCHANGED else patch.pick
    note = current.note if patch.note is None else patch.note
    assert not isinstance(rating, _Unchanged) and not isinstance(pick, _Unchanged)
    if (
        tags == dict(current.tag_versions)
        and rating == current.rating
        and pick == current.pick
        and note == current.note
    ):
        return current
    return Annotations(tags, rating, note, next_version, now, author, pick)


# -- rate limit --
class RateLimiter:
    """A token bucket per client key (a tab's or script's id within a session): ``burst`` edits at
    once, then ``rate`` per second. Remembers at most ``max_clients`` keys (least recent go)."""

    def __init__(
        self,
        rate: float = EDITS_PER_SECOND,
        burst: int = EDIT_BURST,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, session_id: str, client: str, cost: int = 1) -> None:
        """Take ``cost`` edits (at most ``burst``) from the client's bucket, or raise RateLimited
        (nothing is taken)."""
        key = (session_id, client)
        cost = min(cost, self.burst)
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < cost:
                self._buckets[key] = (tokens, now)
                raise RateLimited((cost - tokens) / self.rate)
            self._buckets[key] = (tokens - cost, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)

    def forget_session(self, session_id: str) -> None:
        """Drop the buckets of a session (it was cleared or expired)."""
        with self._lock:
            for key in [k for k in self._buckets if k[0] == session_id]:
                del self._buckets[key]


limiter = RateLimiter()


def tag_counts(all_annotations: Mapping[str, Annotations]) -> list[tuple[str, int]]:
    """The workspace's tags with how many images carry each, most used first (for autocomplete)."""
    counts: dict[str, int] = {}
    for image_annotations in all_annotations.values():
        for tag in image_annotations.tag_versions:
            counts[tag] = counts.get(tag, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0].casefold()))
