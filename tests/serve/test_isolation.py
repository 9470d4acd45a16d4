"""A bad request harms no neighbour: each request is prepared on its own (422 for it alone), malformed and
unknown bodies get documented statuses, stalled uploads get 408 / 503 instead of stopping the service, and a
fuzz of the HTTP API finds no 500."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serve.common import TIMEOUT, assert_close, assert_error, expected, model_handle, post

DOCUMENTED = {200, 404, 408, 413, 422, 503}  # serve/README.md's error table


def raw(url: str, data: bytes, content_type: str = "application/json") -> requests.Response:
    return requests.post(url, data=data, headers={"content-type": content_type}, timeout=TIMEOUT)


def test_lone_surrogate_is_422_and_its_batch_mates_200(urls, references):
    url = f"{urls['faulty']}/v1/text-classification"
    before = len(model_handle("faulty").batch_sizes.remote().result())
    bad = [{"inputs": "bad \ud800 text"}, {"inputs": ["fine", "also \udfff bad"]}]
    good = [{"inputs": f"good text number {i}"} for i in range(6)]
    bodies = [bad[0], *good[:3], bad[1], *good[3:]]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: post(url, b), bodies))  # requests escapes them: "\ud800" in JSON
    for body, r in zip(bodies, answers):
        if body in bad:
            continue
        assert r.status_code == 200, r.text
        assert_close(r.json(), expected(references, "text-classification", body["inputs"], {}))
    assert_error(answers[0], 422, "input 0", "not valid Unicode", "U+D800")
    assert_error(answers[4], 422, "input 1", "not valid Unicode", "U+DFFF")
    sizes = model_handle("faulty").batch_sizes.remote().result()[before:]
    assert max(sizes) >= 2, f"requests were not batched together: {sizes}"


@pytest.mark.parametrize(("task", "body", "words"), [
    ("question-answering", {"inputs": {"question": "why \ud800?", "context": "Because."}}, ["question", "Unicode"]),
    ("token-classification", {"inputs": "Alice \udbff"}, ["input 0", "U+DBFF"]),
    ("text-classification", {"inputs": "x", "parameters": {"\ud800": 1}}, ["parameters", "unicode string"]),
])
def test_surrogates_anywhere_are_422(urls, task, body, words):
    assert_error(post(f"{urls[task]}/v1/{task}", body), 422, *words)


def test_utf8_encoded_surrogate_is_422(urls):
    url = f"{urls['text-classification']}/v1/text-classification"
    assert_error(raw(url, b'{"inputs": "x \xed\xa0\x80 y"}'), 422, "not valid Unicode")  # CESU-style bytes


@pytest.mark.parametrize("task", ["fill-mask", "question-answering", "text-classification", "token-classification"])
def test_unknown_top_level_field_is_422_naming_it(urls, task):
    inputs = {"question": "Who?", "context": "Alice."} if task == "question-answering" else "a [MASK]"
    r = post(f"{urls[task]}/v1/{task}", {"inputs": inputs, "parameter": {"top_k": 2}, "optoins": {}})
    body = assert_error(r, 422, "parameter: Extra inputs are not permitted", "optoins")
    assert {tuple(d["loc"]) for d in body["detail"]} == {("body", "parameter"), ("body", "optoins")}


@pytest.mark.parametrize(("data", "words"), [
    (b'{"inputs": "caf\xe9"}', ["not valid UTF-8", "0xe9", "offset 15"]),
    (b"\xff\xfe\x00", ["not valid UTF-8"]),
    (b"[" * 100_000 + b"]" * 100_000, ["nested too deeply"]),
    (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ["nested too deeply"]),
    (b'{"inputs": ' + b"[" * 200 + b'"x"' + b"]" * 200 + b"}", ["inputs"]),  # parses; not a text
    (b'{"inputs": "x"', ["body", "JSON"]),
    (b"", ["body", "Field required"]),
])
def test_malformed_bodies_are_422(urls, data, words):
    assert_error(raw(f"{urls['text-classification']}/v1/text-classification", data), 422, *words)


def test_body_that_is_not_json_is_422(urls):
    r = raw(f"{urls['text-classification']}/v1/text-classification", b"inputs=hello", "text/plain")
    assert_error(r, 422)


# ------------------------------------------------------------------------------------- stalled uploads
def stalled(url: str, declared: int = 1000, sent: bytes = b'{"inputs": "') -> socket.socket:
    """A request whose body stops after its first bytes (the client keeps the socket open)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n").encode()
    sock.sendall(head + sent)
    return sock


def status_of(sock: socket.socket) -> int:
    """The status of the answer on a socket (waits at most TIMEOUT seconds: a hang fails the test)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else -1


def test_stalled_upload_gets_408(urls):
    url = f"{urls['bodies']}/v1/text-classification"
    sock = stalled(url)
    assert status_of(sock) == 408
    assert post(url, {"inputs": "after the stall"}).status_code == 200


def test_stalled_uploads_do_not_stop_the_service(urls):
    """With every body-read slot held by a stalled upload, a new request is answered 503 at once (it does not
    wait for the sockets to close); once the stalled reads hit their deadline (408), requests are served."""
    url = f"{urls['bodies']}/v1/text-classification"
    socks = [stalled(url) for _ in range(3)]  # max_body_reads=3
    try:
        for _ in range(50):  # the 3 reads start as their requests reach the ingress
            r = post(url, {"inputs": "a good request"})
            if r.status_code == 503:
                break
        assert_error(r, 503, "overloaded", "request bodies")
        assert r.headers["Retry-After"] == "1"
    finally:
        statuses = [status_of(s) for s in socks]
    assert statuses.count(408) == 3, statuses
    assert post(url, {"inputs": "served again"}).status_code == 200


# ------------------------------------------------------------------------------------------ fuzz
TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=40) | st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "\x1b[31m", "\u202e", "[MASK]", " ", "\r\n"])
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)
PARAMS = st.dictionaries(st.sampled_from(["top_k", "function_to_apply", "topk", "\ud800"]) | TEXT,
                         st.integers(-3, 5) | st.sampled_from(["softmax", "none", None]) | JSON, max_size=3)
BODY = st.fixed_dictionaries({"inputs": TEXT | st.lists(TEXT, max_size=3) | JSON}, optional={"parameters": PARAMS})


def encode(value: Any, how: str) -> bytes:
    if how == "ascii":
        return json.dumps(value).encode()
    if how == "utf8":  # lone surrogates as (invalid) UTF-8 bytes
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    depth = 50_000 if how == "deep" else 3
    return b"[" * depth + json.dumps(value).encode() + b"]" * depth


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=BODY | JSON, how=st.sampled_from(["ascii", "utf8", "deep", "nested"]))
def test_fuzz_no_500_and_good_neighbours(urls, body, how):
    url = f"{urls['text-classification']}/v1/text-classification"
    with ThreadPoolExecutor(2) as pool:
        fuzzed = pool.submit(raw, url, encode(body, how))
        good = pool.submit(post, url, {"inputs": "a good request alongside"})
        r, ok = fuzzed.result(), good.result()
    assert r.status_code in DOCUMENTED and r.status_code != 500, (body, how, r.status_code, r.text)
    if r.status_code != 200:
        assert_error(r, r.status_code)  # the documented error body, valid JSON
    assert ok.status_code == 200, ok.text
