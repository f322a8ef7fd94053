"""Features of the current session's images: cached per image, computed off the event loop.

``extract`` reads the session from ``CURRENT_SESSION_ID`` (through ``core.workspace``) like the
seed's feature services did. Results are cached per image and group in the session's store, so
they count against its quota and go with the image. Every decode runs in the decode sandbox
(``core.sandbox``): it gets image *bytes* (never sessions: context does not cross into processes),
and whole-session runs keep at most ``DARKROOM_FEATURE_WORKERS`` images (default: one per decode
worker) in flight and publish progress events.

No loop over a whole workspace runs on the event loop: reading the caches, presenting, flattening
and grouping each take one hop to a worker thread per request (``asyncio.to_thread`` copies the
context, so the session is known there), never one per image.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

from core import data_service, workspace
from core.annotations import EMPTY as EMPTY_ANNOTATIONS
from core.annotations import Annotations
from core.errors import CapacityExceeded, DarkroomError, QuotaExceeded
from core.events import PROGRESS, Event, bus
from core.features.compute import compute_features
from core.features.hashes import hash_value
from core.features.near_duplicates import near_duplicate_groups
from core.features.quality import odd_size_flags
from core.features.registry import resolve_groups
from core.sessions import current_session_id
from core.storage.base import ImageRecord

_CACHE_PREFIX = "features:"


def _approx_nbytes(value: object) -> int:
    """What a cached result costs in RAM, roughly as CPython holds it."""
    if isinstance(value, dict):
        return 64 + sum(50 + len(str(k)) + _approx_nbytes(v) for k, v in value.items())
    if isinstance(value, list):
        return 56 + 8 * len(value) + sum(_approx_nbytes(v) for v in value)
    if isinstance(value, str):
        return 50 + len(value)
    return 32


def _cached(image_id: str, groups: list[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for name in groups:
        value = workspace.cache_get(image_id, _CACHE_PREFIX + name)
        if value is not None:
            found[name] = value
    return found


def _remember(image_id: str, computed: dict[str, dict[str, Any]]) -> None:
    for name, value in computed.items():
        try:
            workspace.cache_put(image_id, _CACHE_PREFIX + name, value, _approx_nbytes(value))
        except (QuotaExceeded, CapacityExceeded):
            return  # a full workspace still gets its numbers, just not cached


def _present(
    record: ImageRecord, groups: list[str], values: dict[str, dict[str, Any]], include_vectors: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record.id, "name": record.filename}
    for name in groups:
        group = values[name]
        if name == "hog" and not include_vectors:
            group = {k: v for k, v in group.items() if k != "hog"}
        out[name] = group
    return out


def extract(image_id: str, groups: str | list[str] | None = None, include_vectors: bool = False) -> dict[str, Any]:
    """One image of the current session: ``{"id", "name", group: {...}}`` in FEATURES.md's schema.
    CPU-bound: call it from a worker thread (``asyncio.to_thread`` keeps the session)."""
    names = resolve_groups(groups)
    record = workspace.get_record(image_id)
    values = _cached(image_id, names)
    missing = [n for n in names if n not in values]
    if missing:
        _, data = workspace.load_image(image_id)
        max_pixels = data_service.settings().feature_max_pixels
        heavy = workspace.heavy_record(record)
        computed = data_service.sandbox().call(compute_features, data, missing, max_pixels, heavy=heavy)
        _remember(image_id, computed)
        values.update(computed)
    return _present(record, names, values, include_vectors)


def _publish_progress(session_id: str | None, done: int, total: int) -> None:
    if session_id is not None:
        bus.publish(Event(PROGRESS, session_id, {"task": "features", "done": done, "total": total}))


Values = dict[str, dict[str, dict[str, Any]]]


def _read_cached(names: list[str]) -> tuple[list[ImageRecord], Values, list[tuple[ImageRecord, list[str]]]]:
    """The session's records, the cached groups of each and the groups still missing, in one pass
    (a worker thread's: it reads every image's cache)."""
    records = workspace.list_images()
    values: Values = {}
    todo: list[tuple[ImageRecord, list[str]]] = []
    for record in records:
        values[record.id] = _cached(record.id, names)
        missing = [n for n in names if n not in values[record.id]]
        if missing:
            todo.append((record, missing))
    return records, values, todo


async def _session_values(names: list[str]) -> tuple[list[ImageRecord], Values]:
    """Every record of the current session and its groups ``names``: the cached ones read in one
    thread hop, the missing ones computed in worker processes across all cores, a ``progress``
    event after each finished image. Cancelling stops the computations still queued."""
    session_id = current_session_id()
    records, values, todo = await asyncio.to_thread(_read_cached, names)
    total, done = len(records), len(records) - len(todo)
    _publish_progress(session_id, done, total)
    if not todo:
        return records, values
    pool = data_service.sandbox()
    max_pixels = data_service.settings().feature_max_pixels
    # within the session's decode share, so a feature run never refuses its own images
    workers = min(data_service.settings().feature_workers or pool.workers, pool.session_tasks, len(todo))
    queue = iter(todo)  # shared by the workers: each takes the next image when it is free

    async def work() -> None:
        nonlocal done
        for record, missing in queue:
            _, data = await data_service.run_store(workspace.load_image, record.id)
            try:
                heavy = workspace.heavy_record(record)
                computed = await pool.run(compute_features, data, missing, max_pixels, heavy=heavy)
            except DarkroomError as exc:
                raise exc.with_message(f"{record.filename}: {exc.message}") from None
            await asyncio.to_thread(_remember, record.id, computed)  # sizing a HOG vector is not the loop's work
            values[record.id].update(computed)
            done += 1
            _publish_progress(session_id, done, total)

    running = [asyncio.ensure_future(work()) for _ in range(max(1, workers))]  # a fixed few, not one per image
    try:
        await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
    return records, values


def _present_all(
    records: list[ImageRecord], names: list[str], values: Values, include_vectors: bool
) -> list[dict[str, Any]]:
    return [_present(record, names, values[record.id], include_vectors) for record in records]


async def extract_session(groups: str | list[str] | None = None, include_vectors: bool = False) -> list[dict[str, Any]]:
    """Every image of the current session, in upload order. Uncached images are computed in worker
    processes across all cores; a ``progress`` event follows each finished image."""
    names = resolve_groups(groups)
    records, values = await _session_values(names)
    return await asyncio.to_thread(_present_all, records, names, values, include_vectors)


# -- session-level results --
DUPLICATE_GROUPS = ["basic", "hashes", "cleanvision"]


@dataclass(frozen=True)
class DuplicateGroups:
    exact: list[list[ImageRecord]]
    near: list[tuple[list[ImageRecord], int]]
    threshold: int


def _group_duplicates(
    records: list[ImageRecord], values: Values, limit: int, stop: threading.Event | None = None
) -> DuplicateGroups:
    """``find_duplicates``' grouping, for a worker thread: images deleted meanwhile are left out."""
    current = {record.id: record for record in workspace.list_images()}
    kept = [current[record.id] for record in records if record.id in current]
    by_pixels: dict[tuple, list[ImageRecord]] = {}
    for record in kept:
        basic, cleanvision = values[record.id]["basic"], values[record.id]["cleanvision"]
        key = (cleanvision["pixel_md5"], basic["width"], basic["height"], basic["mode"])
        by_pixels.setdefault(key, []).append(record)
    exact = [group for group in by_pixels.values() if len(group) > 1]
    hashes = [hash_value(values[record.id]["hashes"]["phash"]) for record in kept]
    found = near_duplicate_groups(hashes, limit, stop=stop)
    near = [([kept[i] for i in members], distance) for members, distance in found.groups]
    return DuplicateGroups(exact, near, limit)


async def find_duplicates(threshold: int | None = None) -> DuplicateGroups:
    """Exact duplicates (same pixels: CleanVision's pixel hash, size and mode) and near-duplicate
    groups (pHash Hamming distance at most ``threshold``, 0 to 64, linked transitively; each with
    the widest distance of a link in it), found in near-linear time off the event loop
    (``core.features.near_duplicates``). A search that would compare too many pairs (large
    thresholds on large workspaces) is refused with TooLarge (413)."""
    limit = data_service.settings().near_duplicate_distance if threshold is None else threshold
    records, values = await _session_values(DUPLICATE_GROUPS)
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_group_duplicates, records, values, limit, stop)
    except asyncio.CancelledError:
        stop.set()  # the thread gives up at its next batch
        raise


# Lists kept in the table as columns of their own (short and meaningful); others are left out.
_LIST_COLUMNS = {"lbp.lbp_hist"}


def _flatten(prefix: str, value: Any, row: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}", inner, row)
    elif isinstance(value, list):
        if prefix in _LIST_COLUMNS:
            for index, item in enumerate(value):
                row[f"{prefix}.{index}"] = item
        elif prefix.startswith("dominant_colors.") and value:
            top = value[0]
            row[f"{prefix}.top_hex"] = "#" + "".join(f"{round(c):02x}" for c in top["rgb"])
            row[f"{prefix}.top_fraction"] = top["fraction"]
    else:
        row[prefix] = value


def _add_annotations(rows: list[dict[str, Any]], annotated: dict[str, Annotations]) -> None:
    """The shared annotations as the table's last columns: tags as a JSON array (unambiguous for any
    tag text), the rating and the pick (empty when unset) and the note."""
    for row in rows:
        value = annotated.get(row["id"], EMPTY_ANNOTATIONS)
        row["annotations.tags"] = json.dumps(value.tags, ensure_ascii=False)
        row["annotations.rating"] = value.rating
        row["annotations.pick"] = value.pick
        row["annotations.note"] = value.note


def _table(records: list[ImageRecord], names: list[str], values: Values) -> tuple[list[str], list[dict[str, Any]]]:
    """``feature_table``'s rows and columns, for a worker thread."""
    rows: list[dict[str, Any]] = []
    for record in records:
        item = _present(record, names, values[record.id], include_vectors=False)
        row: dict[str, Any] = {"id": item["id"], "filename": item["name"]}
        for name in names:
            _flatten(name, item[name], row)
        rows.append(row)
    if "cleanvision" in names:
        flags = odd_size_flags([row["cleanvision.size"] for row in rows])
        for row, (score, odd) in zip(rows, flags, strict=True):
            row["cleanvision.odd_size_score"] = score
            row["cleanvision.is_odd_size"] = odd
    _add_annotations(rows, workspace.list_annotations())
    columns: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for column in row:
            if column not in seen:
                seen.add(column)
                columns.append(column)
    return columns, rows


async def feature_table(groups: str | list[str] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per image: id, filename, then every scalar feature as a dotted column. Lists are
    left out (histograms, vectors, per-angle values) or summarised (LBP histogram as 10 columns,
    dominant colours as the top colour and its fraction). With ``cleanvision``, CleanVision's
    dataset-relative odd-size score and flag are added. The last columns are the shared
    annotations: ``annotations.tags``, ``annotations.rating``, ``annotations.pick``,
    ``annotations.note``. The rows are
    built in one worker thread."""
    names = resolve_groups(groups)
    records, values = await _session_values(names)
    return await asyncio.to_thread(_table, records, names, values)
