"""The playground's files and the routes that serve them, without a browser (the browser tier
is tests/browser): served at / with a CSP, offline (nothing fetched from elsewhere), light,
packaged; /v1/models carries what the page shows; /metrics on the HTTP port."""

from __future__ import annotations

import json
import os
import re
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest

from gateway.openai_api.page import FILES
from tests.standin import HttpFront

ROOT = Path(__file__).resolve().parents[2]
KEY = "m" * 24


@pytest.fixture(scope="module")
def front() -> Iterator[HttpFront]:
    f = HttpFront()
    yield f
    f.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def page_files() -> list[Path]:
    return sorted(p for p in FILES.iterdir() if p.is_file())


def test_index_is_served_at_root_with_a_content_security_policy(front: HttpFront) -> None:
    status, headers, body = get(front.base + "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    assert b'<script type="module" src="/playground/app.js">' in body


def test_every_referenced_file_is_served(front: HttpFront) -> None:
    html = (FILES / "index.html").read_text()
    wanted = set(re.findall(r'(?:src|href)="/playground/([^"]+)"', html))
    for js in FILES.glob("*.js"):
        wanted |= set(re.findall(r'from "\./([^"]+)"', js.read_text()))
    assert wanted == {p.name for p in page_files()} - {"index.html"}
    types = {".js": "text/javascript", ".css": "text/css"}
    for name in wanted:
        status, headers, body = get(f"{front.base}/playground/{name}")
        assert status == 200 and body == (FILES / name).read_bytes(), name
        assert headers["content-type"].startswith(types[Path(name).suffix]), name
    status, _, body = get(front.base + "/playground/nope.js")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


def test_offline_and_light() -> None:
    """No CDN or other origin (no URL with a scheme or protocol-relative //host) and under
    200 KB in all."""
    for path in page_files():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
    assert sum(p.stat().st_size for p in page_files()) < 200 * 1024


def test_packaged_for_a_non_editable_install() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["gateway.openai_api"]
    package_dir = ROOT / "gateway" / "openai_api"
    for path in page_files():
        rel = path.relative_to(package_dir).as_posix()
        assert any(fnmatch(rel, g) for g in globs), rel


def test_models_describe_state_engine_replicas_labels_and_limits(front: HttpFront) -> None:
    status, _, body = get(front.base + "/v1/models")
    assert status == 200
    models = {m["id"]: m for m in json.loads(body)["data"]}
    text, image, audio = models["echo-text"], models["echo-image"], models["echo-audio"]
    assert text["state"] == "ready" and text["engine"] == "echo"
    assert text["replicas"] == {"running": 1, "starting": 0, "min": 1, "max": 1}
    assert text["limits"] == {"max_tokens": 512, "max_n": 4}
    assert models["text-davinci-002"]["root"] == "echo-text"  # aliases as before
    assert image["labels"] == ["sneaker", "ankle boot"] and image["limits"] == {"max_images": 16}
    assert audio["limits"] == {"max_text_chars": 2000}


def test_model_state_words() -> None:
    from gateway.openai_api.models import model_state
    from gateway.registry import ModelState

    assert model_state(ModelState(ready=True, running_replicas=1)) == "ready"
    assert model_state(ModelState(starting_replicas=1)) == "starting"
    assert model_state(ModelState()) == "unavailable"


def test_metrics_on_the_http_port_is_the_gateway_registry(front: HttpFront) -> None:
    front.client().completions.create(model="echo-text", prompt="a b", max_tokens=2)
    status, headers, body = get(front.base + "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    line = next(
        x
        for x in body.decode().splitlines()
        if x.startswith("aigc_requests_total{") and 'model="echo-text"' in x and 'code="OK"' in x
    )
    value = float(line.rsplit(" ", 1)[1])
    assert value == front.metric(
        "aigc_requests_total",
        modality="text",
        model="echo-text",
        method="/v1/completions",
        code="OK",
        protocol="http",
    )


def test_metrics_on_the_http_port_needs_the_key_but_no_rate() -> None:
    os.environ["AIGC_TEST_PLAYGROUND_METRICS_KEYS"] = f"ops:{KEY}"
    f = HttpFront(
        security={
            "api_keys_env": "AIGC_TEST_PLAYGROUND_METRICS_KEYS",
            "rate_limit_per_s": 0.001,
            "rate_limit_burst": 1,
        }
    )
    try:
        status, _, body = get(f.base + "/metrics")
        assert status == 401 and "missing API key" in json.loads(body)["error"]["message"]
        status, _, _ = get(f.base + "/metrics", {"authorization": "Bearer " + "x" * 24})
        assert status == 401
        auth = {"authorization": f"Bearer {KEY}"}
        assert [get(f.base + "/metrics", auth)[0] for _ in range(3)] == [200] * 3
        assert get(f.base + "/v1/models", auth)[0] == 200  # the key's one request
        assert get(f.base + "/v1/models", auth)[0] == 429  # rate-limited; /metrics is not
        assert get(f.base + "/")[0] == 200  # the page itself needs no key: it asks for one
        assert f.metric("aigc_rejected_requests_total", reason="unauthenticated", protocol="http")
    finally:
        f.close()


def test_page_panel_ids_are_unique() -> None:
    ids = re.findall(r'\bid="([^"]+)"', (FILES / "index.html").read_text())
    assert len(ids) == len(set(ids))
    scripts = "".join(p.read_text() for p in FILES.glob("*.js"))
    used = set(re.findall(r'\$\("([a-z-]+)"\)', scripts))
    assert used <= set(ids), used - set(ids)
