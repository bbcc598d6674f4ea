"""The hub's pages in a real browser (headless Chromium): the front page lists a
published model, search narrows it, and the model page shows its signature and
the copy-paste snippet. Screenshots land in ``test-artifacts/`` for a human look."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubserver import RunningHub, running_hub
from savedhub.publish.push import push

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TOKEN = "browser-test-token"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is missing; scripts/test installs it (apt-get install chromium)",
)


def _chromium(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
            url,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def dom(url: str) -> str:
    return _chromium(url, "--dump-dom").stdout


def screenshot(url: str, name: str, width: int, height: int) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / f"{name}.png"
    out.unlink(missing_ok=True)
    _chromium(url, f"--screenshot={out}", f"--window-size={width},{height}")
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (width, height)
    return out


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, text_embedding_path: str, my_mul_path: str
) -> Iterator[RunningHub]:
    base = tmp_path_factory.mktemp("browser-hub")
    tokens = base / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    model = base / "text-embedding"
    shutil.copytree(text_embedding_path, model)
    (model / "README.md").write_text(
        "# Sentence embedding\n\nMaps short English sentences to 32 numbers.\n\n"
        "## Example\n\n```python\nembed = hub.KerasLayer(URL)\nembed(['a sentence'])\n```\n"
    )
    with running_hub(base / "root", base, tokens_file=tokens) as running:
        push(model, f"{running.url}/demo-org/sentence-embedding/1", token=TOKEN)
        push(my_mul_path, f"{running.url}/tutorials/my-mul/1", token=TOKEN)
        push(my_mul_path, f"{running.url}/tutorials/my-mul/2", token=TOKEN)
        yield running


def test_front_page_lists_and_searches_models(hub: RunningHub) -> None:
    page = dom(hub.url + "/")
    assert 'href="/demo-org/sentence-embedding"' in page
    assert 'href="/tutorials/my-mul"' in page
    assert "Maps short English sentences to 32 numbers." in page
    screenshot(hub.url + "/", "hub-front-page", 1280, 800)
    screenshot(hub.url + "/", "hub-front-page-phone", 390, 844)

    found = dom(hub.url + "/?q=sentence")
    assert 'href="/demo-org/sentence-embedding"' in found
    assert 'href="/tutorials/my-mul"' not in found


def test_model_page_shows_signature_and_snippet(hub: RunningHub) -> None:
    url = f"{hub.url}/demo-org/sentence-embedding"
    page = dom(url)
    assert f'hub.KerasLayer("{url}/1")' in page
    assert "serving_default" in page
    for cell in ("<code>inputs</code>", "string", "<code>default</code>", "(None, 32)"):
        assert cell in page
    assert "<h1>Sentence embedding</h1>" in page  # the README, rendered
    screenshot(url, "hub-model-page", 1280, 1100)
    screenshot(url, "hub-model-page-phone", 390, 1600)

    versions = dom(f"{hub.url}/tutorials/my-mul/1")
    assert f'hub.KerasLayer("{hub.url}/tutorials/my-mul/1")' in versions
    assert 'href="/tutorials/my-mul/2"' in versions
