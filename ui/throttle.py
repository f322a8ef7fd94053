"""At most one run of a page's redraw per window, however often it is asked for.

A drop of hundreds of photos asks the page to redraw its cards and counts once per file, and a
hostile page can ask for every card again as often as its socket takes messages. ``Throttle`` runs
its action soon after the first ask (on the next turn of the event loop, so that asks of the same
turn go together), then at most once per ``seconds``: asks in between are folded into one run at the
end of the window.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from nicegui import background_tasks


class Throttle:
    """``soon()`` runs ``action`` (plain or async) at most once per ``seconds``."""

    def __init__(self, seconds: float, action: Callable[[], Awaitable[None] | None], name: str) -> None:
        self.seconds = seconds
        self.action = action
        self.name = name  # of its background task
        self.pending = False  # a run is on its way
        self._ran_at = float("-inf")
        self._running = False
        self._again = False

    def soon(self) -> None:
        if self._running:  # asked while the action runs: once more after it, never two at once
            self._again = True
            return
        if self.pending:
            return
        self.pending = True
        background_tasks.create(self._run(), name=self.name)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._ran_at + self.seconds - loop.time()))
        self._ran_at = loop.time()
        self._running = True
        try:
            result = self.action()
            if inspect.isawaitable(result):
                await result
        finally:
            self._running = False
            self.pending = False
            if self._again:
                self._again = False
                self.soon()
