"""The sharing dialogs: script access (the session id and snippets) and invite links."""

from __future__ import annotations

from nicegui import ui

from core.config import Settings
from core.errors import DarkroomError
from core.invites import invites
from ui.session import Binding, in_session
from ui.widgets import code_block


def open_once(dialog: ui.dialog) -> None:
    """Open a dialog built for this one use; it is deleted when closed."""
    dialog.on_value_change(lambda event: None if event.value else dialog.delete())
    dialog.open()


def copy_text(text: str, what: str = "Snippet") -> None:
    ui.clipboard.write(text)
    ui.notify(f"{what} copied")


class Sharing:
    """Who else may use this workspace: scripts with the session id, tabs with an invite link."""

    def __init__(self, binding: Binding, base_url: str, settings: Settings) -> None:
        self.binding = binding
        self.base_url = base_url.rstrip("/")
        self.settings = settings

    @in_session
    def show_script_access(self) -> None:
        session_id = self.binding.session_id
        with ui.dialog() as dialog, ui.card().classes("w-full").style("max-width: 760px"):
            ui.label("Use this workspace from a script").classes("text-lg font-bold")
            ui.label(
                "Images a script pushes with this session id appear in this tab at once. The id is a secret: "
                "whoever has it can see and change this workspace."
            ).classes("text-grey-8")
            with ui.row().classes("w-full items-center no-wrap"):
                ui.input("Session id", value=session_id).props(
                    "readonly outlined dense data-testid=session-id"
                ).classes("grow")
                ui.button(icon="content_copy", on_click=lambda: copy_text(session_id, "Session id")).props("flat")
            ui.label("curl").classes("font-medium")
            code_block(
                f'curl -F "files=@photo.jpg" -H "X-Session-Id: {session_id}" {self.base_url}/api/images',
                "bash",
                copy_text,
            )
            ui.label("Python").classes("font-medium")
            code_block(
                "import requests\n\n"
                f'SESSION = "{session_id}"\n'
                'with open("photo.jpg", "rb") as f:\n'
                "    r = requests.post(\n"
                f'        "{self.base_url}/api/images",\n'
                '        headers={"X-Session-Id": SESSION},\n'
                '        files=[("files", ("photo.jpg", f))],\n'
                "    )\n"
                "print(r.status_code, r.json())",
                "python",
                copy_text,
            )
            ui.link("All endpoints: API documentation", "/docs", new_tab=True)
            with ui.row().classes("w-full justify-end"):
                ui.button("Close", on_click=dialog.close).props("flat")
        open_once(dialog)

    @in_session
    def show_invites(self) -> None:
        with ui.dialog() as dialog, ui.card().classes("w-full").style("max-width: 680px"):
            ui.label("Invite another tab or browser").classes("text-lg font-bold")
            minutes = self.settings.invite_ttl_seconds / 60
            ui.label(
                f"Whoever opens an invite link joins this workspace and sees and changes the same images, live. "
                f"Links work for {minutes:g} minutes and can be revoked; joined tabs keep the workspace."
            ).classes("text-grey-8")
            self.invite_list = ui.column().classes("w-full gap-1")
            with ui.row().classes("w-full justify-between"):
                ui.button("Create invite link", icon="link", on_click=self._create_invite)
                ui.button("Close", on_click=dialog.close).props("flat")
        self._render_invites()
        open_once(dialog)

    def invite_url(self, token: str) -> str:
        return f"{self.base_url}/?join={token}"

    @in_session
    def _create_invite(self) -> None:
        try:
            invite = invites.create(self.binding.session_id, self.settings.invite_ttl_seconds)
        except DarkroomError as exc:
            ui.notify(exc.message, type="warning")
            return
        copy_text(self.invite_url(invite.token), "Invite link")
        self._render_invites()

    @in_session
    def _revoke(self, token: str) -> None:
        invites.revoke(self.binding.session_id, token)
        ui.notify("Invite link revoked")
        self._render_invites()

    def _render_invites(self) -> None:
        self.invite_list.clear()
        active = invites.active(self.binding.session_id)
        with self.invite_list:
            if not active:
                ui.label("No active invite links.").classes("text-grey-7")
            for invite in active:
                with ui.row().classes("w-full items-center no-wrap"):
                    ui.input(value=self.invite_url(invite.token)).props(
                        "readonly outlined dense data-testid=invite-link"
                    ).classes("grow")
                    ui.label(f"{invite.seconds_left() / 60:.0f} min left").classes("text-xs text-grey-7")
                    ui.button(
                        icon="content_copy",
                        on_click=lambda t=invite.token: copy_text(self.invite_url(t), "Invite link"),
                    ).props("flat dense")
                    ui.button("Revoke", on_click=lambda t=invite.token: self._revoke(t)).props(
                        "flat dense color=negative"
                    )
