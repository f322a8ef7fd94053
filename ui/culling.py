"""Culling: a full-screen review of the workspace, one image at a time, with single keys.

``0``-``5`` rate (0 clears the stars), ``P`` picks and ``X`` rejects (again: clears the pick), ``T``
tags (with the workspace's tags to complete from), arrows or Space move, ``Z`` undoes this tab's
last verdict, ``Esc`` closes. After a verdict the view moves on to the next image.

Python owns everything but the view: which images are culled and in what order (the gallery's
order and filters, optionally only the images without a verdict), each image's record, who looks
at which image. The component (``culling.js``) keeps only its position and a few preloaded
previews; a verdict comes back as an event, is checked here and goes through the gallery's patch
path (``core.workspace.patch_annotations``, with the tab's presence name), so every tab sees it
live through the workspace's ``ANNOTATION_CHANGED`` events. An undo is a new patch that puts back
what the verdict changed (the rating, the pick, or the tag it added).

Where the tab looks goes to presence (``core.presence.Presence.view``), at most every
``VIEW_SECONDS``, so every member's culling view shows the others' names on the image they look
at.

A hook for more keys: ``Culling.add_key`` binds a free single key to a handler of the current
image id (e.g. "keep the best of this burst, reject the rest", once ``GET /api/groups`` exists).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nicegui import Client, ui
from nicegui.events import GenericEventArguments

from core import data_service, workspace
from core.annotations import PICKS, RateLimited, parse_patch
from core.errors import DarkroomError
from core.events import ANNOTATION_CHANGED, IMAGE_ADDED, IMAGE_REMOVED, PRESENCE_CHANGED, SESSION_CLEARED, Event
from core.presence import VIEW_SECONDS, presence
from core.units import format_bytes
from ui.collab import Collab, tag_colour
from ui.gallery import Gallery
from ui.routes import PREVIEW_SIZE, fit_preview_size
from ui.session import Binding, tab_scope
from ui.throttle import Throttle

CSS_FILE = Path(__file__).with_name("culling.css")
MAX_UNDO = 200  # verdicts this tab can undo, newest first
MAX_TAG_OPTIONS = 200  # the most used tags offered to complete from
MAX_SCREEN_PIXELS = 100_000  # a screen side the component reports; more is not a screen
RESET_SECONDS = 1.0  # the whole list is sent at most this often, however often a page asks
TELL_VIEW_SECONDS = VIEW_SECONDS + 0.05  # presence tells a view at most every VIEW_SECONDS
RESERVED_KEYS = frozenset("012345pxtzc ")  # the view's own keys (and the page's C), never a hook's


@dataclass(frozen=True)
class Verdict:
    """One verdict of this tab, as it can be undone: the image and the patch that puts back what
    the verdict changed (None: it changed nothing)."""

    image_id: str
    undo: dict[str, Any] | None
    others: tuple[tuple[str, dict[str, Any]], ...] = ()  # a verdict on a whole burst: the rest of it
    # The rating or pick the verdict set: undone only while the image still holds it, so an undo
    # never takes back what another tab has set since.
    done: dict[str, Any] = field(default_factory=dict)

    def overtaken(self, current: Mapping[str, Any]) -> bool:
        """Whether the image's ``current`` annotations no longer hold what this verdict set."""
        return any(current.get(key) != value for key, value in self.done.items())


class CullingView(ui.element, component="culling.js"):
    """The full-screen view, one component: Python sends the records (``reset``, ``apply``) and
    where to go (``goto``), the events say what the user pressed."""

    def __init__(self, preview_url: str) -> None:
        """``preview_url`` has ``{id}`` where the image id goes; the view adds ``?size=``."""
        super().__init__()
        self._props.update(preview=preview_url, size=PREVIEW_SIZE, open=False, unrated=False)
        self._props.update(tags=[], viewers=[], keys={})


def record_of(image: dict[str, Any], annotations: dict[str, Any]) -> dict[str, Any]:
    """What the view shows of one image: its name and facts, stars, pick, tags, who changed it."""
    return {
        "id": image["id"],
        "name": image["filename"],
        "meta": f"{image['width']}×{image['height']} · {image['format']} · {format_bytes(image['size_bytes'])}",
        "rating": annotations["rating"] or 0,
        "pick": annotations.get("pick"),
        "tags": [[tag, tag_colour(tag)] for tag in annotations["tags"]],
        "by": annotations["updated_by"] or "",
        "version": annotations["version"],
    }


def has_verdict(annotations: dict[str, Any]) -> bool:
    """Whether an image was culled already: it has stars or a pick."""
    return bool(annotations["rating"]) or annotations.get("pick") is not None


class Culling:
    """The culling view of one page: opened by the workspace, fed by its events."""

    def __init__(
        self, client: Client, binding: Binding, gallery: Gallery, collab: Collab, preview_url: Callable[[str], str]
    ) -> None:
        self.client = client
        self.binding = binding
        self.gallery = gallery
        self.collab = collab
        self.preview_url = preview_url
        self.order: list[str] = []  # the image ids culled, in the order shown
        self.positions: dict[str, int] = {}  # image id -> its index in ``order``
        self.current: str | None = None  # the image the view shows
        self.unrated = False  # cull only the images without a verdict
        self.undo: deque[Verdict] = deque(maxlen=MAX_UNDO)
        self.keys: dict[str, tuple[str, Callable[[str], Awaitable[None]]]] = {}
        self.ready = False  # the component is mounted
        self.blocked: Callable[[], bool] = lambda: False  # set by the page: C does nothing while True
        self._edits = asyncio.Lock()  # verdicts and undos are applied in the order pressed
        self._resets = Throttle(RESET_SECONDS, self._reset, "darkroom-culling-reset")
        # Choosing the images to cull (open, "unrated only") is a pass over the workspace: a page
        # toggling as fast as its socket goes costs one per RESET_SECONDS.
        self._choices = Throttle(RESET_SECONDS, self._choose, "darkroom-culling-choose")
        self._views = Throttle(TELL_VIEW_SECONDS, self._tell_view, "darkroom-culling-view")
        self._view_sent: str | None = None
        self._gone_at: int | None = None  # where the image shown stood when it was removed

    def build(self) -> None:
        ui.add_css(CSS_FILE.read_text(encoding="utf-8"))
        self.view = CullingView(self.preview_url("{id}")).mark("culling")
        for name, handler in (
            ("open", self._asked_open),
            ("ready", self._mounted),
            ("screen", self._screen),
            ("at", self._at),
            ("verdict", self._verdict),
            ("undo", self._undo),
            ("close", self._closed),
            ("unrated", self._unrated),
            ("tagging", self._tagging),
            ("command", self._command),
        ):
            self.view.on(name, handler, args=[None])

    @property
    def is_open(self) -> bool:
        return bool(self.view.props["open"])

    def add_key(self, key: str, label: str, handler: Callable[[str], Awaitable[None]]) -> None:
        """Bind a free single key (a letter) to ``handler(image id)`` of the image shown, listed in
        the view's key help as ``label``. The hook for keys beyond the view's own."""
        key = key.lower()
        if len(key) != 1 or not key.isalpha() or key in RESERVED_KEYS or key in self.keys:
            raise ValueError(f"the key {key!r} is not free in the culling view")
        self.keys[key] = (label, handler)
        self.view.props["keys"] = {k: text for k, (text, _) in self.keys.items()}
        self.view.update()

    # -- open and close --
    def open(self) -> None:
        """Show the view on the images to cull, from the first without a verdict when only those
        are culled, else from the first."""
        if self.is_open:
            return
        self.current = None
        self.view.props["open"] = True
        self.view.props["tags"] = self.collab.tag_names()[:MAX_TAG_OPTIONS]
        self._show_viewers()  # sends the props
        self._choices.soon()

    def close(self) -> None:
        if not self.is_open:
            return
        self.view.props["open"] = False
        self.view.update()
        self.order, self.positions = [], {}
        self._look_at(None)

    def _choose(self) -> None:
        """Choose the images to cull again (the view opened, or "unrated only" changed), keep the
        image shown if it is still among them, and send the list."""
        if self.view.is_deleted or not self.is_open:
            return
        self._choose_images()
        if self.current not in self.positions:
            self.current = self.order[0] if self.order else None
        self._reset_soon()
        self._look_at(self.current)

    def _choose_images(self) -> None:
        """The images to cull: those the gallery's filters show, in its order (and only those
        without a verdict, when asked)."""
        chosen = [image_id for image_id in self.gallery.ids() if self.gallery.passes(image_id)]
        if self.unrated:
            chosen = [image_id for image_id in chosen if not has_verdict(self.collab.annotations_of(image_id))]
        self.order = chosen
        self.positions = {image_id: index for index, image_id in enumerate(chosen)}

    def _record(self, image_id: str) -> dict[str, Any] | None:
        image = self.gallery.records.get(image_id)
        return record_of(image, self.collab.annotations_of(image_id)) if image is not None else None

    def _reset_soon(self) -> None:
        """Send the whole list, at once after a quiet spell, else at most every RESET_SECONDS (a
        page that keeps asking cannot make the server serialise thousands of records a message)."""
        if self.ready:  # not mounted yet: "ready" sends it
            self._resets.soon()

    def _compact(self) -> None:
        """Drop the removed images from the order; if the image shown went, the next one still
        there takes its place (else the last)."""
        if len(self.order) == len(self.positions):
            return
        if self._gone_at is not None and self.current not in self.positions:
            after = (i for i in self.order[self._gone_at :] if i in self.positions)
            kept_before = [i for i in self.order[: self._gone_at] if i in self.positions]
            self.current = next(after, kept_before[-1] if kept_before else None)
            self._look_at(self.current)
        self._gone_at = None
        self.order = [i for i in self.order if i in self.positions]
        self.positions = {i: n for n, i in enumerate(self.order)}

    def _reset(self) -> None:
        if self.view.is_deleted or not self.is_open:
            return
        self._compact()
        records = [record for image_id in self.order if (record := self._record(image_id)) is not None]
        index = self.positions.get(self.current, 0) if self.current is not None else 0
        self.view.run_method("reset", records, index)

    # -- the workspace's events (called by the page for every event, after its panels) --
    def apply(self, event: Event) -> None:
        """Show another tab's (or this tab's, or a script's) change while the view is open."""
        if not self.is_open:
            return
        if event.kind == ANNOTATION_CHANGED:
            image_id = event.data["image_id"]
            if image_id in self.positions:
                self._send_record(image_id)
        elif event.kind == PRESENCE_CHANGED:
            self._show_viewers()
        elif event.kind == IMAGE_ADDED:
            image_id = event.data["image"]["id"]
            if image_id not in self.positions and image_id in self.gallery.records and self.gallery.passes(image_id):
                self.positions[image_id] = len(self.order)
                self.order.append(image_id)
                self._reset_soon()
        elif event.kind == IMAGE_REMOVED:
            # Only forgotten here; the order is compacted once per list sent (_compact): a delete of
            # N images is then O(N), not a list rebuilt per image.
            at = self.positions.pop(event.data["image_id"], None)
            if at is not None:
                if self.current == event.data["image_id"]:
                    self._gone_at = at
                self._reset_soon()
        elif event.kind == SESSION_CLEARED:
            self.order, self.positions, self.current, self._gone_at = [], {}, None, None
            self.undo.clear()
            self._reset_soon()

    def _send_record(self, image_id: str) -> None:
        record = self._record(image_id)
        if record is not None:
            self.view.run_method("apply", [record])

    def _show_viewers(self) -> None:
        """The other members and the image each looks at: ``[image id, name, colour]``."""
        mine = self.collab.member.id if self.collab.member else None
        self.view.props["viewers"] = [
            [member["viewing"], member["name"], member["colour"]]
            for member in self.collab.members
            if member["id"] != mine and member.get("viewing")
        ]
        self.view.update()

    # -- where this tab looks, told to presence at most every TELL_VIEW_SECONDS --
    def _look_at(self, image_id: str | None) -> None:
        self.current = image_id
        self._views.soon()

    async def _tell_view(self) -> None:
        target = self.current if self.is_open else None
        member = self.collab.member
        if target == self._view_sent or member is None or self.view.is_deleted:
            return
        self._view_sent = target
        with contextlib.suppress(DarkroomError):  # the tab left the workspace (closed, cleared): nobody to tell
            await data_service.run_store(presence.view, self.binding.session_id, member.id, target)

    # -- what the user pressed (every argument comes from the browser: checked) --
    def _known(self, image_id: Any) -> str | None:
        return image_id if isinstance(image_id, str) and image_id in self.positions else None

    def _asked_open(self, event: GenericEventArguments) -> None:
        """C was pressed on the page."""
        if not self.blocked():
            self.open()

    def _mounted(self, event: GenericEventArguments) -> None:
        self.ready = True
        self._screen(event)
        if self.is_open:
            self._reset_soon()

    def _screen(self, event: GenericEventArguments) -> None:
        """The window's size in device pixels, ``[width, height]``: previews fit its longest side."""
        args = event.args
        if not (isinstance(args, list) and len(args) == 2 and all(_whole(v, MAX_SCREEN_PIXELS) for v in args)):
            return
        size = fit_preview_size(max(args))
        if size != self.view.props["size"]:
            self.view.props["size"] = size
            self.view.update()

    def _at(self, event: GenericEventArguments) -> None:
        """The view moved: ``[index, image id]``, which must name the same image."""
        index, image_id = _pair(event.args)
        if _whole(index, len(self.order) - 1, low=0) and self._known(image_id) and self.order[index] == image_id:
            self._look_at(image_id)

    async def _verdict(self, event: GenericEventArguments) -> None:
        """``[kind, image id, value]``: ``["rate", id, 0-5]``, ``["pick", id, "picked"|"rejected"]``
        or ``["tag", id, text]``."""
        args = event.args
        if not (isinstance(args, list) and len(args) == 3):
            return
        kind, image_id, value = args
        image_id = self._known(image_id)
        if image_id is None:
            return
        async with self._edits:
            before = self.collab.annotations_of(image_id)
            if kind == "rate" and _whole(value, 5, low=0):
                body, undo = {"rating": value or None}, {"rating": before["rating"]}
            elif kind == "pick" and value in PICKS:
                body = {"pick": None if before.get("pick") == value else value}
                undo = {"pick": before.get("pick")}
            elif kind == "tag" and isinstance(value, str):
                body, undo = {"tags_add": [value]}, None  # the undo removes the tag only if it is new
            else:
                return
            if undo is not None and body == undo:
                return  # the stars it has already: nothing to save, nothing to undo
            result = await self._send(image_id, body)
            if result is None:
                return
            if kind == "tag":
                added = [tag for tag in result["tags"] if tag not in before["tags"]]
                if not added:
                    return  # a tag it had: Z undoes the verdict before this one
                self.undo.append(Verdict(image_id, {"tags_remove": added}))
                return
            self.undo.append(Verdict(image_id, undo, done=body))

    async def _undo(self, event: GenericEventArguments) -> None:
        """Put back what this tab's last verdict changed (a new patch), and show that image."""
        async with self._edits:
            if not self.undo:
                self._notice("Nothing to undo.")
                return
            verdict = self.undo.pop()
            if verdict.image_id not in self.gallery.records:
                self._notice("The image of the last verdict was deleted meanwhile.")
                return
            if verdict.overtaken(self.collab.annotations_of(verdict.image_id)):
                by = self.collab.annotations_of(verdict.image_id)["updated_by"] or "someone"
                self._notice(f"Not undone: {by} has changed that image since.", warning=True)
                return
            if verdict.others:
                edits = [(verdict.image_id, verdict.undo or {}), *verdict.others]
                if not await self.send_many(edits):
                    self.undo.append(verdict)
                    return
            elif verdict.undo is not None and await self._send(verdict.image_id, verdict.undo) is None:
                self.undo.append(verdict)  # refused (too many edits): it can be undone again
                return
            if verdict.image_id in self.positions:
                self.current = verdict.image_id
                self.view.run_method("goto", self.positions[verdict.image_id])
            self._notice("Undone.")

    async def _send(self, image_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """One edit through the gallery's patch path, as this tab; the new annotations, or None
        when it was refused (the view says why and goes back to the image)."""
        member = self.collab.member
        if member is None:
            self._notice("This page is not in the workspace any more; reload it.")
            return None
        try:
            patch = parse_patch(body)
            with tab_scope(self.client):
                result = await data_service.run_store(
                    workspace.patch_annotations, image_id, patch, member.name, member.id
                )
        except RateLimited as exc:
            self._refused(image_id, f"Not saved, slow down: {exc.message}.")
            return None
        except DarkroomError as exc:
            self._refused(image_id, f"Not saved: {exc.message}.")
            return None
        public = result.to_public()
        self.collab.show(image_id, public)  # the gallery and the filters, at once
        if image_id in self.positions:
            self._send_record(image_id)
        return public

    async def send_many(self, edits: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        """A batch of edits (``core.workspace.patch_many``: one rate-limit charge for the batch) as
        this tab; image id -> new annotations of each edit applied ({} when the batch was refused;
        the view says why)."""
        member = self.collab.member
        if member is None:
            self._notice("This page is not in the workspace any more; reload it.")
            return {}
        current = self.current or (edits[0][0] if edits else "")
        try:
            batch = [(image_id, parse_patch(body)) for image_id, body in edits]
            with tab_scope(self.client):
                outcomes = await data_service.run_store(workspace.patch_many, batch, member.name, member.id)
        except DarkroomError as exc:
            self._refused(current, f"Not saved: {exc.message}.")
            return {}
        applied = {}
        for image_id, outcome in outcomes:
            if isinstance(outcome, DarkroomError):
                continue  # that image alone (deleted meanwhile): the others stand
            applied[image_id] = public = outcome.to_public()
            self.collab.show(image_id, public)
            if image_id in self.positions:
                self._send_record(image_id)
        return applied

    def remember(self, verdict: Verdict) -> None:
        """Keep a verdict made through ``send_many`` so that Z undoes it."""
        self.undo.append(verdict)

    def notice(self, text: str, warning: bool = False) -> None:
        """Say something in the view (a verdict's outcome, a refusal)."""
        self._notice(text, warning)

    def _refused(self, image_id: str, text: str) -> None:
        self._notice(text, warning=True)
        if image_id in self.positions:
            self.current = image_id
            self.view.run_method("goto", self.positions[image_id])

    def _notice(self, text: str, warning: bool = False) -> None:
        self.view.run_method("notice", text, warning)

    def _closed(self, event: GenericEventArguments) -> None:
        self.close()

    def _unrated(self, event: GenericEventArguments) -> None:
        if not isinstance(event.args, bool) or event.args == self.unrated:
            return
        self.unrated = event.args
        self.view.props["unrated"] = event.args
        self.view.update()
        if self.is_open:
            self._choices.soon()

    def _tagging(self, event: GenericEventArguments) -> None:
        """The tag field opened: the workspace's tags as they are now, to complete from."""
        if self.is_open:
            self.view.props["tags"] = self.collab.tag_names()[:MAX_TAG_OPTIONS]
            self.view.update()

    async def _command(self, event: GenericEventArguments) -> None:
        key, image_id = _pair(event.args)
        bound = self.keys.get(key) if isinstance(key, str) else None
        image_id = self._known(image_id)
        if bound is not None and image_id is not None:
            await bound[1](image_id)


def _whole(value: Any, high: int, low: int = 1) -> bool:
    """A whole number (not a bool) from ``low`` to ``high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _pair(args: Any) -> tuple[Any, Any]:
    if isinstance(args, list) and len(args) == 2:
        return args[0], args[1]
    return None, None
