"""Uploads: the one pipeline from a part's bytes to images stored in the current session.

Every way in (multipart ``POST /api/images``, ``POST /api/images/zip``, the upload socket, and the
page's drop zone over the socket or its HTTP fallback) goes through the same two steps, so that
CPU work runs while later bytes still arrive:

1. ``prepare_part``: one part, a photo or a ZIP archive (``Part.arrived`` tells them apart by
   content, where the way in takes archives), becomes prepared images and skipped entries. It needs
   no session. Every decode runs in the decode sandbox (``core.sandbox``), within the session's
   and the address's decode shares; cancelling it (the client left) stops the decode, or the
   archive's inflating and decoding member by member. The ZIP route, whose body is one archive
   refused whole as the request's answer, uses its archive step ``prepare_archive``.
2. ``commit``: store prepared images into the current session, one by one; then, for an archive
   holding Darkroom's ``annotations.json``, restore its annotations (``core.restore``) when asked.

The bytes in flight are counted by the callers (``core.inflight``) until ``commit`` returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from core import formats, workspace
from core.archive import ZipMember, ZipProblem, iter_members, read_central_directory
from core.data_service import in_store_thread, namespace, run_store, sandbox, settings
from core.errors import CorruptImage, DarkroomError, ServiceBusy, UnsupportedImage
from core.events import IMAGE_ADDED
from core.ingest import (
    ImageFacts,
    IngestedImage,
    check_bytes,
    clean_filename,
    inspect_image,
    is_zip,
    with_facts,
)
from core.prechecks import pixels_at_a_glance
from core.restore import (
    ANNOTATIONS_MEMBER,
    MAX_NOTES_BYTES,
    ArchiveNotes,
    Restore,
    apply_notes,
    is_notes_member,
    read_notes,
)
from core.sandbox import RETRY_AFTER_SECONDS as DECODE_RETRY_SECONDS
from core.storage.base import ImageRecord

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Rejection:
    filename: str
    status: int
    detail: str

    @property
    def retry_after(self) -> int | None:
        """A 503 (the decoders were busy): when to send the file again, as ``Retry-After`` says."""
        return DECODE_RETRY_SECONDS if self.status == ServiceBusy.status_code else None


@dataclass(frozen=True)
class Duplicate:
    filename: str
    existing: ImageRecord


@dataclass(frozen=True)
class Skipped:
    filename: str
    reason: str


@dataclass
class UploadReport:
    accepted: list[ImageRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)  # each part's name as stored (clean_filename), in the order sent
    restore: Restore | None = None  # set when an archive of the upload held an ``annotations.json``

    # ``duplicates`` lists files whose bytes were already in the workspace: under the same name
    # they were not stored again; under a new name they are also in ``accepted``.

    @property
    def status_code(self) -> int:
        """200 when anything was stored or already there, else the first rejection's status."""
        if self.accepted or self.duplicates or not self.rejected:
            return 200
        return self.rejected[0].status

    @property
    def detail(self) -> str | None:
        if self.status_code == 200:
            return None
        first = self.rejected[0]
        more = len(self.rejected) - 1
        return f"{first.filename}: {first.detail}" + (f" (and {more} more rejected)" if more else "")

    @property
    def retry_after(self) -> int | None:
        """When every file was refused for busy decoders: when to send them again (else None)."""
        return self.rejected[0].retry_after if self.status_code != 200 else None


# An archive's ``annotations.json`` comes last among its prepared items: ``commit`` applies it
# once the archive's images are stored.
Prepared = IngestedImage | Rejection | ArchiveNotes


@dataclass(frozen=True)
class Part:
    """One file of an upload as it arrived: its bytes, the name the client gave it, and whether it
    is a ZIP archive whose images are unpacked."""

    data: bytes
    filename: str | None
    archive: bool = False

    @classmethod
    def arrived(cls, data: bytes, filename: str | None, archives: bool) -> Part:
        """The part of a way in that takes archives too (``archives``: the page's drop zone) or
        photos only; an archive is told by its content, never by its name."""
        return cls(data, filename, archives and is_zip(data))


# -- prepare --
async def prepare_part(part: Part) -> tuple[list[Prepared], list[Skipped]]:
    """Prepare one part for ``commit``: a photo becomes one image or one rejection; an archive its
    images and the entries it skipped, or, refused whole, one rejection under the archive's name
    (nothing of it is kept; the upload's other parts go on). Cancelling stops its decodes."""
    if not part.archive:
        return [await _prepare_image(part.data, part.filename)], []
    try:
        return await prepare_archive(part.data)
    except DarkroomError as exc:
        return [_rejection(part.filename, exc)], []


async def unpacked_size(archive: bytes) -> int:
    """The bytes an archive's members declare they unpack to (the archive guards hold them to it),
    which are held beside the archive until stored: what a way in reserves in the budget for bytes
    in flight. At most what the budget has beside the archive, so the largest legal archive is never
    refused for it; 0 for an archive the guards refuse anyway (unpacking says why)."""
    try:
        entries = await asyncio.to_thread(read_central_directory, archive, settings())
    except DarkroomError:
        return 0
    return min(sum(entry.size for entry in entries), max(0, settings().upload_budget_bytes - len(archive)))


async def _prepare_image(data: bytes, filename: str | None) -> Prepared:
    """Validate one file and make its thumbnail in the decode sandbox; cancelling stops the decode."""
    try:
        fmt = check_bytes(data, settings())  # refusals that need no decoder cost no worker
        facts = await sandbox().run(inspect_image, data, settings(), heavy=_heavy(data, fmt))
        return with_facts(data, filename, facts)
    except Exception as exc:  # noqa: BLE001  every failure is this file's answer, never a 5xx
        return _rejection(filename, exc)


async def prepare_archive(data: bytes) -> tuple[list[Prepared], list[Skipped]]:
    """``prepare_zip`` for the event loop: cancelling stops its inflating and decoding, member by
    member (the thread running it is told to stop)."""
    return await _run_stoppable(prepare_zip, data)


def prepare_zip(data: bytes, stop: threading.Event | None = None) -> tuple[list[Prepared], list[Skipped]]:
    """Read an archive with every guard and prepare its images (blocks: call it from a worker
    thread). Whole-archive problems raise before anything is kept: UnsafeArchive 422, TooLarge 413,
    UnsupportedImage 415 when it holds no image. Once ``stop`` is set (the client left), nothing
    more is inflated or decoded and nothing is returned. The first ``annotations.json`` (at the
    root, or in the one folder an unpacked and packed-again archive has) is read
    (``core.restore.read_notes``) and comes last, never as an image nor a skip."""
    members: list[ZipMember] = []
    order: list[ZipMember | Rejection] = []
    skipped: list[Skipped] = []
    notes: ZipMember | ZipProblem | None = None
    names: set[str] = set()  # the other members' names, which annotations.json may name
    for item in iter_members(data, settings(), {ANNOTATIONS_MEMBER: MAX_NOTES_BYTES}):
        if stop is not None and stop.is_set():
            return [], []
        if notes is None and is_notes_member(item.name):
            notes = item
            continue
        name = clean_filename(item.name)
        names.add(name)
        if isinstance(item, ZipMember):
            members.append(item)
            order.append(item)
        elif item.status is None:
            skipped.append(Skipped(name, item.reason))
        else:
            order.append(Rejection(name, item.status, item.reason))
    results = iter(_prepare_many(((m.name, m.data) for m in members), stop))
    prepared: list[Prepared] = []
    for entry in order:
        if isinstance(entry, Rejection):
            prepared.append(entry)
            continue
        result = next(results, None)
        if result is None:  # stopped
            return [], []
        if isinstance(result, Rejection) and result.status == UnsupportedImage.status_code:
            skipped.append(Skipped(result.filename, result.detail))
        else:
            prepared.append(result)
    if not prepared and not (stop is not None and stop.is_set()):
        raise UnsupportedImage(
            f"the archive contains no supported images ({formats.accepted_labels()})"
            + (f"; {len(skipped)} file(s) skipped" if skipped else "")
        )
    if notes is not None and prepared:
        folder = notes.name[: -len(ANNOTATIONS_MEMBER)]  # its entries name files beside it
        data_or_none, problem = (notes.data, None) if isinstance(notes, ZipMember) else (None, notes.reason)
        prepared.append(read_notes(data_or_none, problem, frozenset(names), folder))
    return prepared, skipped


async def _run_stoppable(call: Callable[..., T], *args: object) -> T:
    """``call(*args, stop)`` in a worker thread. Cancelled (the client left), it sets ``stop`` and
    waits for the thread to notice (between members and files) before it gives up, so the bytes the
    thread holds stay counted in the upload budget until they are really gone."""
    stop = threading.Event()
    work = asyncio.ensure_future(asyncio.to_thread(call, *args, stop))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(BaseException):
            await work
        raise


def _heavy(data: bytes, fmt: str) -> bool:
    """Whether the decode of these bytes is a heavy task (``DecodePool.is_heavy``)."""
    return sandbox().is_heavy(fmt, pixels_at_a_glance(data, fmt))


def _rejection(filename: str | None, exc: BaseException) -> Rejection:
    if not isinstance(exc, DarkroomError):  # a bug of ours, not the client's: logged, told plainly
        log.error("unexpected failure while reading an upload", exc_info=exc)
        exc = CorruptImage("the file could not be read")
    return Rejection(clean_filename(filename), exc.status_code, exc.message)


def _prepare_many(files: Iterable[tuple[str | None, bytes]], stop: threading.Event | None = None) -> Iterator[Prepared]:
    """Prepare files in order, keeping every worker busy but never more than one task each in
    flight for this caller, nor more than the session's decode share (a 1000-member archive does
    not take the whole queue). Refused for the session's or the address's share while this caller
    has decodes of its own in flight, a file waits for the oldest of them instead of failing."""
    pool = sandbox()
    window: deque[tuple[str | None, bytes, concurrent.futures.Future[ImageFacts] | Exception]] = deque()
    most_in_flight = max(1, min(pool.workers, pool.session_tasks - 1))  # the window reaches one more

    def submit(data: bytes, fmt: str) -> concurrent.futures.Future[ImageFacts]:
        """The file's decode; while this caller's share is full, its oldest decode is settled first."""
        while True:
            try:
                return pool.submit(inspect_image, data, settings(), heavy=_heavy(data, fmt))
            except ServiceBusy:
                if not window or isinstance(window[0][2], Exception):
                    raise
                settled.append(settle())

    def settle() -> Prepared:
        name, data, work = window.popleft()
        try:
            if isinstance(work, Exception):
                raise work
            return with_facts(data, name, pool.result(work))
        except Exception as exc:  # noqa: BLE001  this file's answer; the others go on
            return _rejection(name, exc)

    settled: list[Prepared] = []  # answers settled while waiting for a share, yielded next
    try:
        for name, data in files:
            if stop is not None and stop.is_set():
                return  # the client left: nothing more is decoded (the window is cancelled below)
            try:
                fmt = check_bytes(data, settings())
                work: concurrent.futures.Future[ImageFacts] | Exception = submit(data, fmt)
            except Exception as exc:  # noqa: BLE001  answered in order by settle()
                work = exc
            yield from settled
            settled.clear()
            window.append((name, data, work))
            while len(window) > most_in_flight or (window and isinstance(window[0][2], Exception)):
                yield settle()
        while window:
            yield settle()
    finally:
        for _, _, work in window:  # the caller stopped early: free the workers
            if isinstance(work, concurrent.futures.Future):
                pool.cancel(work)


# -- store --
async def store(prepared: list[Prepared], report: UploadReport, restore: bool = False) -> UploadReport:
    """``commit`` from the event loop: one photo where the store runs it (inline in memory mode: a
    lock held for microseconds), an archive in a store thread: its members and its
    ``annotations.json`` are a loop of up to ``DARKROOM_ZIP_MAX_ENTRIES`` stores and events."""
    run = in_store_thread if len(prepared) > 1 else run_store
    return await run(commit, prepared, report, restore)


def commit(prepared: Iterable[Prepared], report: UploadReport | None = None, restore: bool = False) -> UploadReport:
    """Store prepared images into the current session, one by one (a full quota rejects the
    image that does not fit, not the ones before it). Then an archive's ``annotations.json`` is
    applied to the images stored here, by name, with ``restore`` (the caller's decision: the
    workspace was empty when the upload began, or the upload asked); else the report says why not.
    Call it once per part: the names an ``annotations.json`` matches are its own archive's."""
    report = report or UploadReport()
    store, key, session_id = namespace()
    if session_id is not None:
        workspace.admit_session(store, key)
    stored: dict[str, ImageRecord] = {}  # this part's images by name, the ones already held too
    notes: list[ArchiveNotes] = []
    for item in prepared:
        if isinstance(item, Rejection):
            report.rejected.append(item)
            continue
        if isinstance(item, ArchiveNotes):
            notes.append(item)
            continue
        try:
            outcome = store.add(key, item)
        except DarkroomError as exc:
            report.rejected.append(Rejection(item.filename, exc.status_code, exc.message))
            continue
        stored.setdefault(item.filename, outcome.record)
        if outcome.duplicate:
            report.duplicates.append(Duplicate(item.filename, outcome.record))
            continue
        report.accepted.append(outcome.record)
        if outcome.same_bytes_as is not None:
            report.duplicates.append(Duplicate(item.filename, outcome.same_bytes_as))
        workspace.publish(IMAGE_ADDED, session_id, image=outcome.record.to_public())
    for archive_notes in notes:
        report.restore = report.restore or Restore()
        apply_notes(archive_notes, stored, restore, report.restore)
    return report


# -- the seed's service names (``core.data_service`` serves them) --
def save_uploaded_images(files: Iterable[tuple[str | None, bytes]]) -> UploadReport:
    """Validate and store ``(filename, bytes)`` pairs in the current session."""
    return commit(list(_prepare_many(files)))


def save_and_extract_zip(data: bytes, restore: bool = False) -> UploadReport:
    """Store every image of a ZIP archive in the current session; list what was not taken. With
    ``restore``, its ``annotations.json`` is applied (see ``commit``)."""
    prepared, skipped = prepare_zip(data)
    return commit(prepared, UploadReport(skipped=skipped), restore)
