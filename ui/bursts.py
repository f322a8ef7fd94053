"""Keep the best of a burst: the culling view's ``B`` key.

On the image shown, ``B`` finds its burst or near-duplicate group (``core.features.discovery.groups``,
the same groups and the same suggestion as ``GET /api/groups``), picks the suggested best frame and
rejects the rest, in one batch (``core.workspace.patch_many``: one charge of the edit rate for the
whole burst, so it is never cut off half-way), and says which frame it kept and why ("sharpest:
Laplacian variance 1,810 against 420"). ``Z`` undoes the whole burst's verdict at once.

The groups are found anew at each press (features are cached per image, so only images added since
need work), in a worker thread and the decode sandbox, never on the event loop; one search per tab
at a time.
"""

from __future__ import annotations

import asyncio

from nicegui import Client

from core.errors import DarkroomError
from core.features import discovery
from core.features.bursts import Group
from ui.collab import Collab
from ui.culling import Culling, Verdict
from ui.session import tab_scope

KEY = "b"
LABEL = "keep the best of its burst, reject the rest"


class BurstKeeper:
    """The ``B`` key of one page's culling view."""

    def __init__(self, client: Client, collab: Collab, culling: Culling) -> None:
        self.client = client
        self.collab = collab
        self.culling = culling
        self._searching = asyncio.Lock()
        culling.add_key(KEY, LABEL, self.keep_best)

    async def group_of(self, image_id: str) -> Group | None:
        """The group the image is in now, or None."""
        with tab_scope(self.client):
            found, _ = await discovery.groups()
        return next((group for group in found if any(m.image_id == image_id for m in group.members)), None)

    async def keep_best(self, image_id: str) -> None:
        """Pick the best frame of the image's group and reject the others."""
        if self._searching.locked():
            self.culling.notice("Still looking for the burst of the last B; a moment.")
            return
        async with self._searching:
            self.culling.notice("Looking for this image's burst…")
            try:
                group = await self.group_of(image_id)
            except DarkroomError as exc:
                self.culling.notice(f"Could not find the bursts: {exc.message}.", warning=True)
                return
            if group is None:
                self.culling.notice("This image is in no burst and has no near duplicate: nothing to choose from.")
                return
            best = group.best.image_id
            others = [m.image_id for m in group.members if m.image_id != best]
            before = {i: self.collab.annotations_of(i).get("pick") for i in [best, *others]}
            edits = [(best, {"pick": "picked"})] + [(i, {"pick": "rejected"}) for i in others]
            applied = await self.culling.send_many(edits)
            if not applied:
                return  # refused: the view said why
            self.culling.remember(
                Verdict(
                    best,
                    {"pick": before[best]},
                    tuple((i, {"pick": before[i]}) for i in others if i in applied),
                    done={"pick": "picked"},
                )
            )
            kind = "burst" if group.kind == "burst" else "group of near duplicates"
            self.culling.notice(
                f"Kept {group.best.name} ({group.reason}); rejected the other {len(others)} of its {kind}."
            )
