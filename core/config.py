"""Darkroom's settings: one object, read from ``DARKROOM_*`` environment variables.

This is the only module that reads ``os.environ``. Every option is documented in the README's
configuration table; the ``OPTIONS`` list below is the source of that table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from core.clients import parse_proxies

MiB = 1024 * 1024


PHASH_BITS = 64  # the most two perceptual hashes can differ in


class ConfigError(ValueError):
    """A DARKROOM_* variable holds a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Every option; ``OPTIONS`` documents them."""

    storage: str = "memory"
    session_quota_bytes: int = 256 * MiB
    memory_cap_bytes: int = 1024 * MiB
    session_idle_seconds: float = 3600.0
    sweep_interval_seconds: float = 60.0
    max_pixels: int = 50_000_000
    max_frames: int = 1000
    max_file_bytes: int = 25 * MiB
    max_files_per_request: int = 1000
    zip_max_archive_bytes: int = 200 * MiB
    zip_max_total_bytes: int = 200 * MiB
    zip_max_entries: int = 1000
    zip_max_ratio: float = 100.0
    thumbnail_size: int = 256
    near_duplicate_distance: int = 4
    feature_workers: int = 0
    invite_ttl_seconds: float = 1800.0
    legacy_fallback: bool = True
    legacy_dir: Path = Path("storage/images")
    storage_dir: Path = Path("storage")
    database_url: str = ""
    blob_url: str = ""
    decode_memory_bytes: int = 1024 * MiB
    decode_seconds: float = 5.0
    decode_workers: int = 0
    decode_queue: int = 64
    decode_heavy_pixels: int = 16_000_000
    feature_max_pixels: int = 4_194_304
    max_sessions: int = 10_000
    decode_session_tasks: int = 8
    decode_client_tasks: int = 16
    trusted_proxies: str = ""
    store_threads: int = 8
    upload_budget_bytes: int = 384 * MiB
    upload_min_bytes_per_second: int = 16 * 1024
    upload_grace_seconds: float = 20.0
    upload_idle_seconds: float = 60.0
    client_uploads: int = 16
    client_sessions: int = 500
    client_sessions_per_minute: int = 120
    max_head_bytes: int = 64 * 1024
    head_timeout_seconds: float = 10.0
    archive_downloads: int = 8
    archive_downloads_per_session: int = 2
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_allow_persistence: bool = False
    host: str = "127.0.0.1"
    port: int = 8080

    def sessions_dir(self) -> Path:
        return self.storage_dir / "images"

    def database(self) -> str:
        return self.database_url or f"sqlite:///{(self.storage_dir / 'darkroom.db').resolve()}"

    def blobs(self) -> str:
        return self.blob_url or str((self.storage_dir / "blobs").resolve())


# name, environment variable, meaning (the README table is generated from this list)
OPTIONS: list[tuple[str, str, str]] = [
    (
        "storage",
        "DARKROOM_STORAGE",
        "Session store: `memory` (RAM only), `disk` (a folder per session), `sql` (database + blobs) or "
        "`redis` (RAM-only Redis shared by several processes).",
    ),
    (
        "storage_dir",
        "DARKROOM_STORAGE_DIR",
        "Root of what `disk` and `sql` keep: `<root>/images/<session_id>/`, `<root>/darkroom.db`, `<root>/blobs/`.",
    ),
    (
        "database_url",
        "DARKROOM_DATABASE_URL",
        "`sql` mode's database (SQLAlchemy URL, e.g. `postgresql://user:pw@host/db`); empty: `<root>/darkroom.db`.",
    ),
    (
        "blob_url",
        "DARKROOM_BLOB_URL",
        "`sql` mode's blob store (fsspec URL, e.g. `s3://bucket/darkroom`); empty: `<root>/blobs`.",
    ),
    (
        "session_quota_bytes",
        "DARKROOM_SESSION_QUOTA_BYTES",
        "Bytes one session may hold (originals, thumbnails, caches); over it: 413.",
    ),
    ("memory_cap_bytes", "DARKROOM_MEMORY_CAP_BYTES", "Bytes all sessions together may hold; over it: 507."),
    (
        "session_idle_seconds",
        "DARKROOM_SESSION_IDLE_SECONDS",
        "A session untouched this long is deleted with all its images.",
    ),
    ("sweep_interval_seconds", "DARKROOM_SWEEP_INTERVAL_SECONDS", "How often idle sessions are swept."),
    ("max_pixels", "DARKROOM_MAX_PIXELS", "Largest image (width x height), checked from the header; 413."),
    ("max_frames", "DARKROOM_MAX_FRAMES", "Most frames (GIF, WebP, TIFF pages) per image; 413."),
    ("max_file_bytes", "DARKROOM_MAX_FILE_BYTES", "Largest single image file; 413."),
    ("max_files_per_request", "DARKROOM_MAX_FILES_PER_REQUEST", "Most files in one multipart upload; 413."),
    ("zip_max_archive_bytes", "DARKROOM_ZIP_MAX_ARCHIVE_BYTES", "Largest ZIP archive as uploaded; 413."),
    (
        "zip_max_total_bytes",
        "DARKROOM_ZIP_MAX_TOTAL_BYTES",
        "Most bytes a ZIP may unpack to (declared and actually produced); 413.",
    ),
    ("zip_max_entries", "DARKROOM_ZIP_MAX_ENTRIES", "Most members in a ZIP; 413."),
    (
        "zip_max_ratio",
        "DARKROOM_ZIP_MAX_RATIO",
        "Highest compression ratio of a ZIP member that unpacks to over 1 MiB; 413.",
    ),
    ("thumbnail_size", "DARKROOM_THUMBNAIL_SIZE", "Longest side of the previews made at upload, in pixels."),
    (
        "near_duplicate_distance",
        "DARKROOM_NEAR_DUPLICATE_DISTANCE",
        "Most differing pHash bits (of 64) for two images to count as near duplicates.",
    ),
    (
        "feature_workers",
        "DARKROOM_FEATURE_WORKERS",
        "Images a whole-session feature run computes at once (in the decode workers); `0`: one per decode worker.",
    ),
    (
        "invite_ttl_seconds",
        "DARKROOM_INVITE_TTL_SECONDS",
        "How long an invite link (made on the page to share a workspace) stays valid.",
    ),
    (
        "legacy_fallback",
        "DARKROOM_LEGACY_FALLBACK",
        "`1`: API calls without a session id use the shared legacy folder; `0`: they get 400.",
    ),
    ("legacy_dir", "DARKROOM_LEGACY_DIR", "The shared legacy folder."),
    (
        "decode_memory_bytes",
        "DARKROOM_DECODE_MEMORY_BYTES",
        "Address-space limit of each decode worker process; a file whose decode needs more: 413.",
    ),
    (
        "decode_seconds",
        "DARKROOM_DECODE_SECONDS",
        "CPU seconds to decode one image (validate, thumbnail, preview, features); over it: 413. A decode "
        "also stops after 6x this in wall-clock time.",
    ),
    ("decode_workers", "DARKROOM_DECODE_WORKERS", "Decode worker processes; `0`: one per CPU core."),
    (
        "decode_queue",
        "DARKROOM_DECODE_QUEUE",
        "Most decodes waiting for a worker at once; more: 503 with `Retry-After`.",
    ),
    (
        "decode_heavy_pixels",
        "DARKROOM_DECODE_HEAVY_PIXELS",
        "Decodes of images over this many pixels (and of TIFF, HEIF and AVIF, whose size is not read at a "
        "glance; never JPEG, decoded reduced) run on at most all workers but one at once, so one worker is "
        "always free for ordinary photos and the workers' memory stays bounded.",
    ),
    (
        "feature_max_pixels",
        "DARKROOM_FEATURE_MAX_PIXELS",
        "Features of larger images are computed on a view downscaled to this many pixels (exact below it).",
    ),
    (
        "max_sessions",
        "DARKROOM_MAX_SESSIONS",
        "Most live sessions at once; past it a session never used gives way, else a new one gets 503 "
        "with `Retry-After`.",
    ),
    (
        "decode_session_tasks",
        "DARKROOM_DECODE_SESSION_TASKS",
        "Decodes one session may have running or queued; past it that session's next decode gets 503 with "
        "`Retry-After` (never another session's). Sessions take turns for the workers.",
    ),
    (
        "decode_client_tasks",
        "DARKROOM_DECODE_CLIENT_TASKS",
        "Decodes one client address may have running or queued, over all its sessions; past it: 503 with "
        "`Retry-After`.",
    ),
    (
        "trusted_proxies",
        "DARKROOM_TRUSTED_PROXIES",
        "Comma-separated addresses or CIDR blocks of proxies whose `X-Forwarded-For` names the client; "
        "empty: the TCP peer is the client.",
    ),
    (
        "store_threads",
        "DARKROOM_STORE_THREADS",
        "Threads for blocking store calls (list, read, delete, clear, the idle sweep), apart from decode "
        "and upload work.",
    ),
    (
        "upload_budget_bytes",
        "DARKROOM_UPLOAD_BUDGET_BYTES",
        "Bytes of unfinished uploads (multipart bodies and WebSocket files, and what a ZIP's members unpack "
        "to) held at once, at most what the memory cap has left; past it: 503 with `Retry-After`.",
    ),
    (
        "upload_min_bytes_per_second",
        "DARKROOM_UPLOAD_MIN_BYTES_PER_SECOND",
        "Slowest rate an unfinished upload may arrive at (after the grace period); slower: refused (408), "
        "its reservation returned.",
    ),
    (
        "upload_grace_seconds",
        "DARKROOM_UPLOAD_GRACE_SECONDS",
        "How long an upload may send nothing before the minimum rate applies.",
    ),
    (
        "upload_idle_seconds",
        "DARKROOM_UPLOAD_IDLE_SECONDS",
        "An upload socket that receives no message this long is closed (1008).",
    ),
    (
        "client_uploads",
        "DARKROOM_CLIENT_UPLOADS",
        "Upload sockets and upload requests one client address may have open at once; more: 503 with `Retry-After`.",
    ),
    (
        "client_sessions",
        "DARKROOM_CLIENT_SESSIONS",
        "Live sessions one client address may hold; a new one past it: 503 with `Retry-After`.",
    ),
    (
        "client_sessions_per_minute",
        "DARKROOM_CLIENT_SESSIONS_PER_MINUTE",
        "New sessions one client address may start per minute; faster: 503 with `Retry-After`.",
    ),
    (
        "max_head_bytes",
        "DARKROOM_MAX_HEAD_BYTES",
        "Largest request line plus headers; larger: 431 and the connection is closed.",
    ),
    (
        "head_timeout_seconds",
        "DARKROOM_HEAD_TIMEOUT_SECONDS",
        "A request whose line and headers are not complete this long after they began is closed.",
    ),
    (
        "archive_downloads",
        "DARKROOM_ARCHIVE_DOWNLOADS",
        "Archive downloads (*Download all*, `GET /api/images/archive`) streaming at once; more: 503 with "
        "`Retry-After`.",
    ),
    (
        "archive_downloads_per_session",
        "DARKROOM_ARCHIVE_DOWNLOADS_PER_SESSION",
        "Archive downloads one session may stream at once; more: 503 with `Retry-After`.",
    ),
    (
        "redis_url",
        "DARKROOM_REDIS_URL",
        "`redis` mode's server (`redis://host:port/db`); it must run without RDB/AOF persistence.",
    ),
    (
        "redis_allow_persistence",
        "DARKROOM_REDIS_ALLOW_PERSISTENCE",
        "`1`: accept a Redis with RDB or AOF persistence on (images then reach its disk).",
    ),
    ("host", "DARKROOM_HOST", "Address the server binds to (the `--host` flag wins)."),
    ("port", "DARKROOM_PORT", "Port the server listens on; `--port` wins over it, `PORT` is used when it is unset."),
]

STORAGE_MODES = ("memory", "disk", "sql", "redis")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, raw: str, default: object) -> object:
    raw = raw.strip()
    try:
        if isinstance(default, bool):
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError
        if isinstance(default, int):
            value: object = int(raw)
            if value < 0:
                raise ValueError
            return value
        if isinstance(default, float):
            value = float(raw)
            if not value > 0:
                raise ValueError
            return value
        if isinstance(default, Path):
            return Path(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {type(default).__name__}") from None


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build Settings from the environment (or the mapping given), with defaults for what is unset."""
    env = os.environ if environ is None else environ
    defaults = Settings()
    values: dict[str, object] = {}
    by_field = {f.name: f for f in fields(Settings)}
    for field_name, var, _ in OPTIONS:
        if var in env and env[var].strip() != "":
            values[field_name] = _parse(var, env[var], getattr(defaults, field_name))
    if "port" not in values and env.get("PORT", "").strip():
        values["port"] = _parse("PORT", env["PORT"], defaults.port)
    settings = Settings(**{k: v for k, v in values.items() if k in by_field})
    try:
        parse_proxies(settings.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"DARKROOM_TRUSTED_PROXIES: {exc}") from None
    if settings.storage not in STORAGE_MODES:
        raise ConfigError(f"DARKROOM_STORAGE={settings.storage!r} is not a storage mode; use one of {STORAGE_MODES}")
    if settings.near_duplicate_distance > PHASH_BITS:
        raise ConfigError(
            f"DARKROOM_NEAR_DUPLICATE_DISTANCE={settings.near_duplicate_distance} is more bits than a pHash has;"
            f" use 0 to {PHASH_BITS}"
        )
    return settings


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings
