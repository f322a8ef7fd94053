"""Settings come from DARKROOM_* variables only, with clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import OPTIONS, ConfigError, Settings, load_settings


def test_defaults_match_the_documented_limits():
    settings = load_settings({})
    assert settings.storage == "memory"
    assert settings.session_quota_bytes == 256 * 2**20
    assert settings.memory_cap_bytes == 2**30
    assert settings.session_idle_seconds == 3600
    assert settings.max_pixels == 50_000_000 and settings.max_frames == 1000
    assert settings.max_file_bytes == 25 * 2**20
    assert settings.zip_max_total_bytes == 200 * 2**20 and settings.zip_max_entries == 1000
    assert settings.zip_max_ratio == 100
    assert settings.legacy_fallback is True and settings.legacy_dir == Path("storage/images")
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)


def test_every_option_is_read_from_its_variable():
    settings = load_settings(
        {
            "DARKROOM_SESSION_QUOTA_BYTES": "1000",
            "DARKROOM_LEGACY_FALLBACK": "0",
            "DARKROOM_LEGACY_DIR": "/tmp/x",
            "DARKROOM_SESSION_IDLE_SECONDS": "1.5",
        }
    )
    assert settings.session_quota_bytes == 1000
    assert settings.legacy_fallback is False
    assert settings.legacy_dir == Path("/tmp/x")
    assert settings.session_idle_seconds == 1.5
    assert {name for name, _, _ in OPTIONS} == set(Settings.__dataclass_fields__)


def test_port_comes_from_port_unless_darkroom_port_is_set():
    assert load_settings({"PORT": "5000"}).port == 5000
    assert load_settings({"PORT": "5000", "DARKROOM_PORT": "6000"}).port == 6000


@pytest.mark.parametrize(
    "variable, value",
    [
        ("DARKROOM_MAX_PIXELS", "many"),
        ("DARKROOM_LEGACY_FALLBACK", "maybe"),
        ("DARKROOM_SESSION_IDLE_SECONDS", "-1"),
        ("DARKROOM_STORAGE", "floppy"),
        ("DARKROOM_NEAR_DUPLICATE_DISTANCE", "65"),
        ("DARKROOM_TRUSTED_PROXIES", "10.0.0.0/33"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(variable, value):
    with pytest.raises(ConfigError) as error:
        load_settings({variable: value})
    assert variable in str(error.value)


def test_readme_documents_every_variable():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for _, variable, meaning in OPTIONS:
        assert f"| `{variable}` |" in readme, variable
        assert meaning in readme, variable
