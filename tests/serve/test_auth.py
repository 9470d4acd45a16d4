"""The API key check on its own (serve/auth.py) and in the ingress's middleware (serve/guard.py), without Ray."""

from __future__ import annotations

import asyncio
import json

import pytest

from serve import auth
from serve.auth import KeyCheck, bearer_token, env_keys, read_keys_file
from serve.guard import Guard


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Metrics:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def record(self, route: str, status: int, seconds: float) -> None:
        self.seen.append((route, status))


def test_bearer_header_parsing():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    for bad in (None, "", "Bearer", "Bearer  ", "Basic abc", "abc"):
        assert bearer_token(bad) is None, bad


def test_env_key_and_keys_file(tmp_path):
    assert env_keys({}) == [] and env_keys({"BIGBIRD_API_KEY": "  "}) == []
    assert env_keys({"BIGBIRD_API_KEY": " k1 \n"}) == ["k1"]
    path = tmp_path / "keys"
    path.write_text("# team A\nalpha\n\n  beta  \n#gamma\n")
    assert read_keys_file(path) == ["alpha", "beta"]
    check = KeyCheck(["k1"], path)
    assert check.enabled
    assert [check.allows(k) for k in ("k1", "alpha", "beta", "gamma", "#gamma", "", "alph", "alpha2", None)] == \
        [True, True, True, False, False, False, False, False, False]


def test_no_keys_is_open_and_an_empty_file_lets_nobody_in(tmp_path):
    assert not KeyCheck([], None).enabled
    empty = tmp_path / "keys"
    empty.write_text("# none yet\n")
    check = KeyCheck([], empty)
    assert check.enabled and not check.allows("anything")


def test_unreadable_keys_file_fails_at_the_start_without_its_contents(tmp_path):
    with pytest.raises(ValueError, match=r"cannot read api_keys_file '.*missing': FileNotFoundError"):
        KeyCheck([], tmp_path / "missing")
    binary = tmp_path / "keys"
    binary.write_bytes(b"secret\xff\n")
    with pytest.raises(ValueError) as e:
        KeyCheck([], binary)
    assert "secret" not in str(e.value)


def test_keys_file_rotates_on_change_checked_at_most_once_a_second(tmp_path):
    path, clock = tmp_path / "keys", Clock()
    path.write_text("old\n")
    check = KeyCheck([], path, clock=clock)
    assert check.allows("old") and not check.allows("new")
    path.write_text("new-key\n")  # another size: seen even within the same mtime tick
    clock.now = auth.RELOAD_CHECK_S / 2
    assert check.allows("old"), "looked at the file again within RELOAD_CHECK_S"
    clock.now = auth.RELOAD_CHECK_S
    assert check.allows("new-key") and not check.allows("old")
    path.unlink()  # a file that vanishes keeps the last keys (an editor's save may replace it)
    clock.now += auth.RELOAD_CHECK_S
    assert check.allows("new-key")
    path.write_text("third\n")
    clock.now += auth.RELOAD_CHECK_S
    assert check.allows("third") and not check.allows("new-key")


def test_every_key_is_compared_in_constant_time(monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    check = KeyCheck(["first", "second", "third"])
    for token in ("first", "third", "nope", "a much longer presented key than any configured one"):
        calls.clear()
        check.allows(token)
        assert len(calls) == 3, token  # no early exit on a match
        assert {len(a) for a, _ in calls} == {len(b) for _, b in calls} == {32}  # digests: the length hides


def test_refusal_never_holds_the_key():
    check = KeyCheck(["right"])
    assert check.refusal("Bearer right") is None
    assert check.refusal(None).startswith("missing API key")
    refusal = check.refusal("Bearer wrong-secret-123")
    assert refusal == "invalid API key"


def call(guard: Guard, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict]:
    """One request through the middleware; returns status, headers and JSON body."""
    scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body)


async def ok_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})


def guard(keys: KeyCheck | None, metrics: Metrics) -> Guard:
    return Guard(ok_app, max_body_bytes=1000, routes={"/", "/healthz", "/v1/models"}, metrics=metrics, keys=keys)


def test_guard_answers_401_before_reading_the_body():
    metrics = Metrics()
    g = guard(KeyCheck(["s3cret"]), metrics)
    assert call(g, "/", {"Authorization": "Bearer s3cret"})[0] == 200
    assert call(g, "/healthz")[0] == 200  # open for orchestrators
    status, headers, body = call(g, "/v1/models")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert body["status"] == 401 and body["error"].startswith("missing API key") and body["request_id"]
    status, headers, body = call(g, "/v1/other-task", {"Authorization": "Bearer not-the-key-987"})
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert "not-the-key-987" not in json.dumps(body) + json.dumps(headers)
    assert call(g, "/", {"Authorization": "Basic czNjcmV0"})[0] == 401
    assert metrics.seen == [("/", 200), ("/healthz", 200), ("/v1/models", 401), ("other", 401), ("/", 401)]


def test_guard_without_keys_is_open():
    g = guard(KeyCheck([], None), Metrics())
    assert call(g, "/")[0] == 200 and call(g, "/v1/models", {"Authorization": "Bearer x"})[0] == 200
    assert call(guard(None, Metrics()), "/")[0] == 200


def test_a_key_is_no_setting_and_the_file_path_is_made_absolute(tmp_path, monkeypatch):
    from serve.settings import make_settings

    monkeypatch.chdir(tmp_path)
    s = make_settings({"model": "m", "api_keys_file": "keys.txt", "num_gpus": 0})
    assert s.api_keys_file == str(tmp_path / "keys.txt") and s.limits()["api_keys_file"] == s.api_keys_file
    with pytest.raises(ValueError, match="api_key"):
        make_settings({"model": "m", "api_key": "s3cret", "num_gpus": 0})
