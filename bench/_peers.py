"""The peer apps of ``bench/ui.py`` (``bench/peers/``) and their own virtual environment.

The peers are never project dependencies: they live in ``bench/peers/.venv`` (gitignored), made on
first use from ``bench/peers/requirements.txt``, and are remade when that file changes.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

PEERS = Path(__file__).resolve().parent / "peers"
VENV = PEERS / ".venv"
REQUIREMENTS = PEERS / "requirements.txt"
INSTALLED = VENV / "requirements.installed"  # the requirements the environment was made from


def ensure_environment() -> Path:
    """``bench/peers/.venv`` with the pinned peers installed; its ``bin`` folder."""
    wanted = REQUIREMENTS.read_text()
    if not INSTALLED.is_file() or INSTALLED.read_text() != wanted:
        print(f"installing the peers into {VENV} (once) ...", file=sys.stderr, flush=True)
        venv.create(VENV, with_pip=True, clear=True)  # a half-made environment goes too
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True
        )
        INSTALLED.write_text(wanted)
    return VENV / "bin"


def streamlit_command(bin_dir: Path, port: int) -> list[str]:
    """``streamlit run`` of the Streamlit peer on ``port``, as a headless server."""
    return [
        str(bin_dir / "streamlit"),
        "run",
        str(PEERS / "streamlit_app.py"),
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--server.headless=true",
        "--server.fileWatcherType=none",  # nothing is edited while it is measured
        "--browser.gatherUsageStats=false",  # the benchmark's network is closed
        "--global.developmentMode=false",
    ]


def gradio_command(bin_dir: Path, port: int) -> list[str]:
    """The Gradio peer on ``port``."""
    return [str(bin_dir / "python"), str(PEERS / "gradio_app.py"), str(port)]
