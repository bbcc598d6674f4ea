"""Settings read from the environment: a bad value names the variable and the value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from savedhub import config
from savedhub.errors import ConfigError

NUMERIC: list[tuple[str, Callable[[], float]]] = [
    ("SAVEDHUB_HTTP_TIMEOUT", config.http_timeout),
    ("SAVEDHUB_HTTP_RETRIES", config.http_retries),
    ("SAVEDHUB_HTTP_BACKOFF", config.http_backoff),
    ("SAVEDHUB_MAX_EXTRACT_MEMBERS", config.max_extract_members),
    ("SAVEDHUB_MAX_EXTRACT_BYTES", config.max_extract_bytes),
    ("SAVEDHUB_LOCK_TIMEOUT", config.lock_timeout),
    ("SAVEDHUB_LOCK_STALE_SECONDS", config.lock_stale_seconds),
]


@pytest.mark.parametrize("name, read", NUMERIC, ids=[n for n, _ in NUMERIC])
@pytest.mark.parametrize("bad", ["four", "-1", "nan"])
def test_a_bad_number_names_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch, name: str, read: Callable[[], float], bad: str
) -> None:
    monkeypatch.setenv(name, bad)
    with pytest.raises(ConfigError) as caught:
        read()
    assert f"{name}={bad!r}" in str(caught.value)
    assert (caught.value.name, caught.value.value) == (name, bad)
    assert isinstance(caught.value, ValueError)


def test_numbers_parse_and_an_empty_value_means_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SAVEDHUB_HTTP_RETRIES", "7")
    monkeypatch.setenv("SAVEDHUB_HTTP_TIMEOUT", "2.5")
    assert config.http_retries() == 7 and isinstance(config.http_retries(), int)
    assert config.http_timeout() == 2.5
    monkeypatch.setenv("SAVEDHUB_HTTP_RETRIES", "")
    assert config.http_retries() == 4


def test_other_bad_settings_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFHUB_MODEL_LOAD_FORMAT", "zipped")
    with pytest.raises(ConfigError, match="TFHUB_MODEL_LOAD_FORMAT"):
        config.model_load_format()
    monkeypatch.setenv("SAVEDHUB_MIRRORS", "https://tfhub.dev")
    with pytest.raises(ConfigError, match="prefix=replacement"):
        config.mirrors()


def test_hugging_face_settings_are_read_at_call_time_as_huggingface_hub_places_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.hf_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert config.hf_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert config.hf_cache_dir() == tmp_path / "hub"
    assert config.hf_endpoint() == "https://huggingface.co"
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.internal:8080/")
    assert config.hf_endpoint() == "http://mirror.internal:8080"
    assert not config.hf_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert config.hf_offline() and not config.offline()  # only hf:// handles go offline
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("SAVEDHUB_OFFLINE", "1")
    assert config.hf_offline()
