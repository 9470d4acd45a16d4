"""API keys end to end: an application built with ``BIGBIRD_API_KEY`` and an ``api_keys_file`` on the session's
Serve; huggingface_hub's stock ``InferenceClient(base_url=..., token=KEY)`` gets answers, no token or a wrong one
gets 401, ``/healthz`` stays open, and a key written into the file is taken (and a removed one refused) without a
restart."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import requests

from tests.serve.common import COMMON, TIMEOUT, assert_close, expected, free_port, post
from tests.serve.replicas import wait_for

hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import InferenceClient  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402

APP, PREFIX = "keyed", "/keyed"
ENV_KEY, FILE_KEY = f"env-{uuid.uuid4().hex}", f"file-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def online_to_nowhere(monkeypatch):
    """The client online (it refuses every request in offline mode), its hub a closed local port."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_TOKEN", raising=False)  # token=None then sends no Authorization header
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", "/nonexistent/hf-token")


@pytest.fixture(scope="module")
def keyed(ray_cluster, task_models, tmp_path_factory) -> dict:
    """The keyed application's URL and keys file: on the session's Serve if it runs, else on one of its own
    (one application, not the session's six)."""
    from ray import serve

    from serve.app import build_application
    from serve.cli import serving_at
    from serve.settings import make_settings

    try:
        host, port = serving_at()
        own = False
    except Exception:  # no Serve yet
        host, port, own = "127.0.0.1", free_port(), True
        serve.start(http_options={"host": host, "port": port})

    keys_file = tmp_path_factory.mktemp("keys") / "api_keys"
    keys_file.write_text(f"# one key a line\n{FILE_KEY}\n")
    settings = make_settings({"model": str(task_models["text-classification"]), "task": "text-classification",
                              "api_keys_file": str(keys_file), **COMMON})
    before = os.environ.get("BIGBIRD_API_KEY")
    os.environ["BIGBIRD_API_KEY"] = ENV_KEY  # read where the application is built
    try:
        app = build_application(settings)
    finally:
        if before is None:
            del os.environ["BIGBIRD_API_KEY"]
        else:
            os.environ["BIGBIRD_API_KEY"] = before
    serve.run(app, name=APP, route_prefix=PREFIX)
    try:
        yield {"url": f"http://127.0.0.1:{port}{PREFIX}", "file": keys_file}
    finally:
        serve.shutdown() if own else serve.delete(APP)


def test_stock_client_with_a_key(keyed, references):
    want = expected(references, "text-classification", "A short review.", {})[0]
    for key in (ENV_KEY, FILE_KEY):
        out = InferenceClient(base_url=keyed["url"], token=key, timeout=TIMEOUT).text_classification("A short review.")
        assert_close([{"label": o.label, "score": o.score} for o in out], want)


@pytest.mark.parametrize("token", [None, "not-a-key-" + uuid.uuid4().hex])
def test_stock_client_without_or_with_a_wrong_key_gets_401(keyed, token):
    with pytest.raises(HfHubHTTPError) as e:
        InferenceClient(base_url=keyed["url"], token=token, timeout=TIMEOUT).text_classification("A short review.")
    r = e.value.response
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
    body = r.json()
    assert body["status"] == 401 and body["request_id"] == r.headers["x-request-id"]
    if token:
        assert token not in r.text and token not in str(r.headers)


def test_every_route_but_healthz_needs_the_key(keyed):
    url = keyed["url"]
    assert requests.get(f"{url}/healthz", timeout=TIMEOUT).status_code == 200
    auth = {"Authorization": f"Bearer {ENV_KEY}"}
    for path in ("/v1/models", "/docs", "/openapi.json"):
        r = requests.get(f"{url}{path}", timeout=TIMEOUT)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (path, r.text)
        assert requests.get(f"{url}{path}", headers=auth, timeout=TIMEOUT).status_code == 200, path
    for path in ("", "/v1/text-classification", "/v1/fill-mask"):
        assert post(f"{url}{path}", {"inputs": "x"}).status_code == 401, path
    assert post(f"{url}/v1/text-classification", {"inputs": "x"}, headers=auth).status_code == 200
    assert post(f"{url}/v1/fill-mask", {"inputs": "x"}, headers=auth).status_code == 404  # past the key check


def test_keys_rotate_through_the_file_without_a_restart(keyed):
    url, path = f"{keyed['url']}/v1/text-classification", Path(keyed["file"])
    new = f"rotated-{uuid.uuid4().hex}"

    def status(key: str) -> int:
        return post(url, {"inputs": "x"}, headers={"Authorization": f"Bearer {key}"}).status_code

    assert status(FILE_KEY) == 200 and status(new) == 401
    path.write_text(f"{new}\n")
    wait_for(lambda: status(new) == 200, 60, "the new key taken")
    assert status(FILE_KEY) == 401 and status(ENV_KEY) == 200  # the old file key is gone; the variable's stays
    path.write_text(f"{FILE_KEY}\n")
    wait_for(lambda: status(FILE_KEY) == 200, 60, "the first key back")


def test_no_key_in_the_logs(keyed, ray_cluster):
    wrong = f"leak-check-{uuid.uuid4().hex}"
    assert post(keyed["url"], {"inputs": "x"}, headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    assert post(keyed["url"], {"inputs": "x"}, headers={"Authorization": f"Bearer {ENV_KEY}"}).status_code == 200
    logs = Path(ray_cluster._private.worker.global_worker.node.get_logs_dir_path())
    for log in logs.rglob("*"):
        if log.is_file():
            text = log.read_bytes()
            assert wrong.encode() not in text and ENV_KEY.encode() not in text and FILE_KEY.encode() not in text, log
