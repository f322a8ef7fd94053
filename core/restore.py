"""The round trip: a Darkroom archive's ``annotations.json`` uploaded back restores its annotations.

Darkroom's archive download (``core.api.export``) writes, beside the originals, an
``annotations.json``: a list with one object per annotated image, ``{"file": member name, "id",
"tags", "rating", "note", ...}``. When that archive is uploaded again, the file is recognised (at
the archive's root, or in its one folder once unpacked and packed again), consumed (it is never
an image nor a skipped member) and, into a workspace that held no image when the upload began or
when the upload asks for it (``restore_annotations=true``), its entries are applied to the images
of the same archive by member name.

Nothing else of the archive is trusted. The file is client data: at most ``MAX_NOTES_BYTES``
(never inflated past that), UTF-8 JSON, a list of no more entries than the archive has other
members; ids, versions and authors in it are ignored; every value goes through
``core.annotations.parse_patch`` (tags, rating, note and whatever else a patch takes, such as the
pick); an entry naming no member of the archive, or an image that was not stored, is skipped. What
was restored and what was skipped is told in the upload's answer. Restoring never clears: an empty
value (no rating, no note) adds nothing to an image that already has one.

Reading happens in ``read_notes`` (no session: the archive's worker thread); applying in
``apply_notes``, inside ``core.uploads.commit``, after the archive's images are stored, so an
upload that fails before its archive is stored applies nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core import workspace
from core.annotations import PATCH_FIELDS, AnnotationPatch, parse_patch
from core.data_service import namespace
from core.errors import BadRequest, DarkroomError
from core.ingest import clean_filename
from core.storage.base import ImageRecord
from core.units import format_bytes

ANNOTATIONS_MEMBER = "annotations.json"  # the archive's annotations, beside the originals
# An exported entry is a few hundred bytes; one with 32 full tags and a 4 KiB note about 7 KiB, so
# this holds hundreds of the fullest entries and thousands of usual ones.
MAX_NOTES_BYTES = 4 * 1024 * 1024
RESTORE_AUTHOR = "an archive"  # updated_by of restored annotations: the archive's own authors are not trusted
RESTORE_QUERY = "restore_annotations"  # the upload routes' query parameter asking for a restore anyway
# An entry's keys as the archive writes them, and the patch field each becomes (a field the patch
# does not take, such as "pick" before it existed, is left out rather than refused).
_ENTRY_FIELDS = {"tags": "tags_add", "rating": "rating", "note": "note", "pick": "pick"}
# What an entry as the archive writes it holds outside its strings: one object and one list (its
# tags), and at most 9 keys plus 32 tags, so about 40 values. Parsing builds a Python object per
# value, tens of bytes each against the one or two bytes a value takes in the file ("{}" is a
# 64-byte dict, "[]" a 56-byte list), so the file's shape is counted before it is parsed.
_CONTAINERS_PER_ENTRY = 2
_VALUES_PER_ENTRY = 64
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)  # a JSON string, escapes included


@dataclass(frozen=True)
class ArchiveNotes:
    """An archive's ``annotations.json``, read and checked: the patch per member name (in file
    order), the entries not taken and why, or why the whole file was not read."""

    patches: tuple[tuple[str, AnnotationPatch], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (entry's name, reason)
    refused: str | None = None

    @property
    def filename(self) -> str:
        return ANNOTATIONS_MEMBER


@dataclass
class Restore:
    """What an upload did with the ``annotations.json`` of its archives: the images whose
    annotations were restored, the entries skipped (name, reason), a sentence per file."""

    restored: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)

    @property
    def detail(self) -> str:
        return " ".join(self.sentences)

    def to_public(self) -> dict[str, Any]:
        """The upload answer's ``annotations``: ``{"filename": "annotations.json", "restored":
        [image names], "skipped": [{"filename", "reason"}], "detail": plain words}``."""
        return {
            "filename": ANNOTATIONS_MEMBER,
            "restored": list(self.restored),
            "skipped": [{"filename": name, "reason": reason} for name, reason in self.skipped],
            "detail": self.detail,
        }


def parse_flag(raw: str | None) -> bool:
    """``restore_annotations``'s value: absent or false/0/no is False, true/1/yes True; else 400."""
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in {"true", "1", "yes"}:
        return True
    if value in {"", "false", "0", "no"}:
        return False
    raise BadRequest(f"'{RESTORE_QUERY}' is true or false")


def is_notes_member(name: str) -> bool:
    """Whether an archive member is where Darkroom's archive puts ``annotations.json``: at the
    root, or one folder down (the archive unpacked and packed again, as a file manager does)."""
    return name == ANNOTATIONS_MEMBER or (name.count("/") == 1 and name.endswith("/" + ANNOTATIONS_MEMBER))


def read_notes(data: bytes | None, problem: str | None, members: frozenset[str], folder: str = "") -> ArchiveNotes:
    """Check an archive's ``annotations.json`` (``data``, or the ``problem`` that kept it from
    being read) against the archive's other ``members`` (their cleaned names); its entries name
    files beside it, in ``folder`` ("" or "name/"). Blocks: call it from a worker thread (it parses
    up to ``MAX_NOTES_BYTES`` of JSON)."""
    if problem is not None:
        return _refused(problem)
    assert data is not None
    if len(data) > MAX_NOTES_BYTES:  # the archive reader holds it to this already; kept as a guard
        return _refused(f"it is over the {format_bytes(MAX_NOTES_BYTES)} limit")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _refused("it is not UTF-8 text")
    shape = _shape_problem(text, len(members))
    if shape is not None:
        return _refused(shape)
    try:
        entries = json.loads(text)
    except (ValueError, RecursionError):  # nesting too deep is not the file Darkroom writes either
        return _refused("it is not valid JSON")
    if not isinstance(entries, list):
        return _refused("it must be a JSON list of entries, as Darkroom's archive writes it")
    if len(entries) > len(members):
        return _refused(
            f"it lists {len(entries)} entries but the archive holds {len(members)} other file(s); "
            "it lists at most one entry per image"
        )
    patches: list[tuple[str, AnnotationPatch]] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            skipped.append((f"entry {number}", "it is not a JSON object"))
            continue
        raw_name = entry.get("file")
        if not isinstance(raw_name, str) or not raw_name.strip():
            skipped.append((f"entry {number}", "it has no 'file' naming a member of the archive"))
            continue
        name = clean_filename(folder + raw_name)
        if name in seen:
            skipped.append((name, "it is listed twice; the first entry was used"))
            continue
        seen.add(name)
        if name not in members:
            skipped.append((name, "no file of the archive has this name"))
            continue
        try:
            patch = parse_patch(_patch_body(entry))
        except DarkroomError as exc:
            skipped.append((name, exc.message))
            continue
        if patch != AnnotationPatch():
            patches.append((name, patch))
    return ArchiveNotes(tuple(patches), tuple(skipped))


def _patch_body(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A patch body from an entry's annotation keys, for ``parse_patch`` to validate: empty values
    are left out (restoring never clears), and so is a key whose field patches do not take."""
    body: dict[str, Any] = {}
    for key, patch_field in _ENTRY_FIELDS.items():
        if key not in entry or patch_field not in PATCH_FIELDS:
            continue
        value = entry[key]
        if value is None or (isinstance(value, str | list) and not value):
            continue  # nothing here: restoring adds nothing, and never clears
        body[patch_field] = value
    return body


def _shape_problem(text: str, members: int) -> str | None:
    """Why ``text`` cannot be the ``annotations.json`` of an archive of ``members`` other files,
    told from its shape alone: more objects and lists, or more values, than that many entries
    hold. One pass over the text at C speed, so a hostile file never costs the hundred megabytes
    its parse would (4 MiB of ``{},`` is two million dicts)."""
    bare = _STRING.sub("", text)  # what is left outside strings: structure, numbers, literals
    containers = bare.count("{") + bare.count("[")
    if containers > 1 + _CONTAINERS_PER_ENTRY * members:
        return (
            f"it holds {containers} JSON objects and lists, more than a list of entries for the "
            f"archive's {members} other file(s) can (one object per image, with a list of tags)"
        )
    values = bare.count(",") + 1
    if values > _VALUES_PER_ENTRY * max(members, 1):
        return (
            f"it holds {values} JSON values, more than entries for the archive's {members} other "
            f"file(s) can (at most {_VALUES_PER_ENTRY} per image)"
        )
    return None


def _refused(reason: str) -> ArchiveNotes:
    return ArchiveNotes(refused=reason)


def apply_notes(notes: ArchiveNotes, stored: Mapping[str, ImageRecord], restore: bool, outcome: Restore) -> None:
    """Apply ``notes`` to the images this archive ``stored`` (by name; an image whose bytes the
    workspace held already counts as stored), when ``restore``; tell ``outcome`` what was done.
    Runs in a store thread, in the current session, after the archive's images are stored."""
    if notes.refused is not None:
        outcome.sentences.append(f"{ANNOTATIONS_MEMBER} was not read: {notes.refused}; no annotations were restored.")
        return
    if not restore:
        outcome.sentences.append(
            f"{ANNOTATIONS_MEMBER} was not applied: the workspace already held images when the upload "
            f"began (send {RESTORE_QUERY}=true to restore its annotations anyway)."
        )
        return
    outcome.skipped.extend(notes.skipped)
    restored = 0
    for name, patch in notes.patches:
        record = stored.get(name)
        if record is None:
            outcome.skipped.append((name, "its image was not stored"))
            continue
        try:
            _apply(record, patch)
        except DarkroomError as exc:  # a full workspace, or more tags than an image holds
            outcome.skipped.append((name, exc.message))
            continue
        outcome.restored.append(name)
        restored += 1
    sentence = f"restored the annotations of {restored} image(s) from {ANNOTATIONS_MEMBER}"
    skipped = len(notes.skipped) + len(notes.patches) - restored
    outcome.sentences.append(sentence + (f"; {skipped} entry(ies) skipped (see 'skipped')." if skipped else "."))


def _apply(record: ImageRecord, patch: AnnotationPatch) -> None:
    """``workspace.patch_annotations`` without its per-client rate limit: one system edit per
    image this same upload just stored (already held to the upload's limits, shares and the
    quota), so a 2,000-image restore is not refused as 2,000 edits of one client. The store's
    patch path counts the bytes against the quota; the event reaches every open tab."""
    store, key, session_id = namespace()
    workspace.apply_edit(store, key, session_id, record.id, patch, RESTORE_AUTHOR)
