"""The HTTP API through a real uvicorn server on 127.0.0.1, with a real HTTP client.

Two servers per module: ``keyed`` (API keys, the model-free ``basic`` captioner with RapidOCR and the
``template`` writer, small upload and duration limits) and ``tight`` (no keys, the ``serve-test`` captioner
from serve_helpers, one worker and a queue of one, a 2 s request timeout, private URLs allowed, CORS for
one origin). Job restarts get servers of their own on a shared jobs folder.
"""

from __future__ import annotations

import csv
import functools
import http.server
import io
import json
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from captionkit.media.generate import write_video
from captionkit.serve import ServeSettings
from serve_helpers import (
    FAIL_WIDTH,
    SLOW_WIDTH,
    STUCK_SECONDS,
    STUCK_WIDTH,
    LiveServer,
    image_bytes,
    live_server,
    pipeline_config,
)

KEY = "test-key-" + uuid.uuid4().hex
AUTH = {"X-API-Key": KEY}
PASSWD_MARKERS = ("root:x:0:0", "root:*:0:0")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    jobs = tmp_path_factory.mktemp("jobs-keyed")
    settings = ServeSettings(port=0, ui=False, jobs_dir=str(jobs), max_upload_mb=1, max_duration_s=1.0)
    with live_server(pipeline_config("basic", ocr="rapidocr"), settings, api_keys=[KEY], headers=AUTH) as server:
        yield server


@pytest.fixture(scope="module")
def client(keyed):
    with httpx.Client(base_url=keyed.url, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    jobs = tmp_path_factory.mktemp("jobs-tight")
    settings = ServeSettings(port=0, ui=False, jobs_dir=str(jobs), concurrency=1, queue_size=1, request_timeout_s=2.0,
                             allow_private_urls=True, cors_origins=("https://studio.example",), shutdown_timeout_s=5)
    with live_server(pipeline_config(), settings) as server:
        yield server


@pytest.fixture(scope="module")
def image_host(tmp_path_factory):
    """A plain static file server on 127.0.0.1 (the kind of address the SSRF guard refuses)."""
    folder = tmp_path_factory.mktemp("www")
    image_bytes(folder, "poster.png", size=(200, 150), text="OPEN DAY")
    (folder / "notes.txt").write_text("just text\n")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def _no_secrets(response: httpx.Response) -> None:
    text = response.text
    assert "Traceback" not in text and "captionkit-request-" not in text, text[:500]
    assert not any(m in text for m in PASSWD_MARKERS), text[:500]


# --------------------------------------------------------------------------------------------- health


def test_health_is_open_and_ready_reports_models(keyed):
    assert httpx.get(f"{keyed.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{keyed.url}/readyz", headers=AUTH)
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["models"] == {"caption": "basic", "ocr": "rapidocr", "writer": "template"}
    assert body["queue"]["concurrency"] == 1 and isinstance(body["notices"], list)


def test_offline_defaults_fall_back_with_notices(tmp_path):
    """No model named and no model hub: the basic captioner and template writer, said in /readyz."""
    settings = ServeSettings(port=0, ui=False, jobs_dir=str(tmp_path / "jobs"), warmup=False)
    from captionkit.config import RunConfig
    from captionkit.models.settings import OCRSettings, SpeechSettings

    config = RunConfig(ocr=OCRSettings(engine="none"), speech=SpeechSettings(model="none"))
    with live_server(config, settings) as server:
        body = httpx.get(f"{server.url}/readyz").json()
        assert body["models"]["caption"] == "basic" and body["models"]["writer"] == "template"
        notices = " ".join(body["notices"])
        assert "default captioner" in notices and "default writer" in notices
        r = httpx.post(f"{server.url}/v1/posts", files={"file": ("a.png", image_bytes(tmp_path, size=(90, 60)))},
                       data={"brand": "Acme", "num_candidates": "2"}, timeout=60)
        assert r.status_code == 200, r.text
        assert len(r.json()["posts"]) == 2


# ------------------------------------------------------------------------------------ describe and posts


def test_describe_an_upload(client, tmp_path):
    data = image_bytes(tmp_path, size=(240, 160), text="SALE 50%")
    r = client.post("/v1/describe", files={"file": ("poster.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "image" and body["facts"]["width"] == 240
    assert body["description"].startswith("A landscape image")
    assert "SALE" in (body["ocr_text"] or "")
    assert body["models"]["caption"] == "basic"
    assert "media" not in body["details"] and "posts" not in body
    _no_secrets(r)


def test_posts_from_a_multipart_upload(client, tmp_path):
    data = image_bytes(tmp_path, size=(200, 140), text="NEW IN")
    form = {"brand": "Acme", "handle": "@acme", "date": "2026-06-01", "platform": "instagram", "tone": "playful",
            "expected_likes": "1200", "num_candidates": "3", "unused": ""}
    r = client.post("/v1/posts", files={"file": ("shoe.png", data, "image/png")}, data={k: v for k, v in form.items() if k != "unused"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["platform"] == "instagram" and body["models"]["writer"] == "template"
    assert body["description"] and len(body["posts"]) == 3
    for post in body["posts"]:
        assert post["text"] and post["chars"] == len(post["text"])
    assert any("Acme" in p["text"] for p in body["posts"])
    assert len({p["text"] for p in body["posts"]}) == 3  # candidates differ


def test_posts_options_are_validated(client, tmp_path):
    data = image_bytes(tmp_path)
    for form, words in (({"platform": "myspace"}, "unknown platform"), ({"num_candidates": "0"}, "num_candidates"),
                        ({"num_candidates": "11"}, "at most 10"), ({"expected_likes": "many"}, "expected_likes"),
                        ({"colour": "red"}, "colour")):
        r = client.post("/v1/posts", files={"file": ("a.png", data)}, data=form)
        assert r.status_code == 422, (form, r.text)
        assert words in json.dumps(r.json()), (form, r.json())


def test_posts_from_a_json_url_body_blocked_then_allowed(client, tight, image_host):
    body = {"url": f"{image_host}/poster.png", "brand": "Acme", "num_candidates": 3, "platform": "x"}
    refused = client.post("/v1/posts", json=body)
    assert refused.status_code == 422
    assert "loopback" in refused.json()["error"]
    allowed = httpx.post(f"{tight.url}/v1/posts", json=body, timeout=30)
    assert allowed.status_code == 200, allowed.text
    posts = allowed.json()["posts"]
    assert len(posts) == 3 and all(p["text"] and p["chars"] == len(p["text"]) for p in posts)
    assert allowed.json()["description"] == "a test picture of 200 by 150 pixels"
    # the URL may also come as a form field; text behind a URL is refused by content, not by name
    as_form = httpx.post(f"{tight.url}/v1/describe", data={"url": f"{image_host}/poster.png"}, timeout=30)
    assert as_form.status_code == 200 and as_form.json()["facts"]["width"] == 200
    text = httpx.post(f"{tight.url}/v1/describe", json={"url": f"{image_host}/notes.txt"}, timeout=30)
    assert text.status_code == 415, text.text


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/passwd", "/etc/passwd", "../../etc/passwd",
                                 "data:image/png;base64,iVBORw0KGgo=", "http://", "gopher://127.0.0.1:70/_x",
                                 "http://169.254.169.254/latest/meta-data/", "http://[::1]:22/", "http://10.0.0.1/a.png"])
def test_urls_other_than_public_http_are_refused(client, url):
    for r in (client.post("/v1/describe", json={"url": url}), client.post("/v1/posts", data={"url": url})):
        assert r.status_code == 422, (url, r.text)
        assert r.json()["error"]
        _no_secrets(r)


def test_request_shape_errors(client, tmp_path):
    data = image_bytes(tmp_path)
    cases = [
        client.post("/v1/describe", content=b"hello", headers={"content-type": "text/plain"}),  # body type
        client.post("/v1/describe", content=b"{not json", headers={"content-type": "application/json"}),
        client.post("/v1/describe", json=["https://example.com/a.png"]),
        client.post("/v1/describe", json={}),
        client.post("/v1/describe", json={"url": "https://example.com/a.png", "path": "/etc/passwd"}),
        client.post("/v1/describe", files={"file": ("a.png", data)}, data={"url": "https://example.com/a.png"}),
        client.post("/v1/describe", data={"file": "/etc/passwd"}),  # a path as a form value is not a file
        client.post("/v1/describe", files={"file": ("a.png", b"")}),
    ]
    assert [r.status_code for r in cases] == [415, 422, 422, 422, 422, 422, 422, 422]
    for r in cases:
        assert set(r.json()) == {"error", "detail"}
        _no_secrets(r)


# ------------------------------------------------------------------------------------------- security


def test_api_keys(keyed, tmp_path):
    data = image_bytes(tmp_path)
    for path, kwargs in (("/v1/describe", {"files": {"file": ("a.png", data)}}), ("/v1/jobs", {}), ("/readyz", {})):
        method = httpx.get if path != "/v1/describe" else httpx.post
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer nope"},
                        {"X-API-Key": KEY[:-1]}):
            r = method(f"{keyed.url}{path}", headers=headers, **kwargs)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and "API key" in r.json()["error"]
    assert httpx.get(f"{keyed.url}/v1/jobs", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(f"{keyed.url}/v1/jobs", headers=AUTH).status_code == 200
    assert httpx.get(f"{keyed.url}/healthz").status_code == 200


def test_oversize_uploads_get_413(client, keyed, tmp_path):
    big = b"\xff\xd8\xff\xe0" + os.urandom(int(1.5 * 2**20))  # JPEG magic, 1.5 MiB; the limit is 1 MiB
    r = client.post("/v1/describe", files={"file": ("big.jpg", big)})  # under the body cap: refused while copying
    assert r.status_code == 413 and "upload limit" in r.json()["error"]
    huge = os.urandom(3 * 2**20)
    r = client.post("/v1/describe", files={"file": ("huge.jpg", huge)})  # Content-Length over the cap: refused at once
    assert r.status_code == 413
    # no Content-Length (chunked): counted while it streams in
    boundary = "ckboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()

    def chunks():
        yield head
        for _ in range(40):
            yield os.urandom(2**17)  # 5 MiB in all
        yield f"\r\n--{boundary}--\r\n".encode()

    r = httpx.post(f"{keyed.url}/v1/describe", content=chunks(), timeout=30,
                   headers={**AUTH, "content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413, r.text
    assert client.get("/healthz").status_code == 200


def test_content_is_sniffed_not_trusted_from_the_name(client, tmp_path):
    fake = client.post("/v1/describe", files={"file": ("photo.jpg", b"this is only text, not a JPEG\n" * 10, "image/jpeg")})
    assert fake.status_code == 415 and "photo.jpg" in fake.json()["error"]
    page = client.post("/v1/describe", files={"file": ("cat.png", b"<!doctype html><html><script>x</script></html>")})
    assert page.status_code == 415 and "HTML" in page.json()["error"]
    real = client.post("/v1/describe", files={"file": ("notes.txt", image_bytes(tmp_path), "text/plain")})
    assert real.status_code == 200 and real.json()["kind"] == "image"
    broken = client.post("/v1/describe", files={"file": ("broken.png", image_bytes(tmp_path, size=(300, 200))[:200])})
    assert broken.status_code == 422 and "broken.png" in broken.json()["error"], broken.text
    assert broken.json()["detail"]["stage"] == "media"
    _no_secrets(broken)


def test_video_duration_limit(client, tmp_path):
    video = write_video(tmp_path / "long.mp4", seconds=2.0, fps=5, size=(64, 48)).read_bytes()
    r = client.post("/v1/describe", files={"file": ("long.mp4", video)})
    assert r.status_code == 413 and "limit is 1 s" in r.json()["error"], r.text


def test_upload_names_cannot_escape(client, tmp_path):
    target = Path("/tmp") / f"escape-{uuid.uuid4().hex}.png"
    r = client.post("/v1/describe", files={"file": (f"../../../../..{target}", image_bytes(tmp_path))})
    assert r.status_code == 200 and not target.exists()


def _raw_get(port: int, target: str) -> tuple[int, bytes]:
    """A request line sent as is (HTTP clients normalise ``..`` away)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.parametrize("target", [
    "/v1/jobs/..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/v1/jobs/../../../../etc/passwd",
    "/v1/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd/results?format=jsonl", "/v1/jobs/..", "/v1/jobs/.%2e",
    "/v1/jobs/0123456789abcdef0123456789abcdef", "/v1/jobs/0123456789abcdef0123456789abcdef/results?format=csv",
    "/v1/jobs/ZZZZ/results?format=../../etc/passwd", "/docs/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
])
def test_no_server_path_is_readable(keyed, target):
    status, data = _raw_get(keyed.port, target)
    assert status in (400, 404, 422), (target, status)
    assert b"root:" not in data and b"Traceback" not in data


def test_host_header_and_cors(keyed, tight):
    assert httpx.get(f"{keyed.url}/healthz", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
    r = httpx.get(f"{keyed.url}/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers and r.headers["x-content-type-options"] == "nosniff"
    pre = {"Origin": "https://studio.example", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "x-api-key"}
    ok = httpx.options(f"{tight.url}/v1/describe", headers=pre)
    assert ok.headers.get("access-control-allow-origin") == "https://studio.example"
    other = httpx.options(f"{tight.url}/v1/describe", headers={**pre, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


# ---------------------------------------------------------------------------------------- reliability


def test_a_failing_model_call_fails_that_request_only(tight, tmp_path):
    r = httpx.post(f"{tight.url}/v1/posts", files={"file": ("f.png", image_bytes(tmp_path, size=(FAIL_WIDTH, 30)))}, timeout=30)
    assert r.status_code == 422
    assert r.json()["error"] == "caption failed: the test model failed on this image"
    assert r.json()["detail"] == {"stage": "caption", "type": "RuntimeError"}
    ok = httpx.post(f"{tight.url}/v1/posts", files={"file": ("g.png", image_bytes(tmp_path, size=(60, 30)))}, timeout=30)
    assert ok.status_code == 200 and ok.json()["posts"]


def test_full_queue_answers_503_then_recovers(tight, tmp_path):
    """One worker and a queue of one: of six requests at once, two are served and the rest get 503."""
    slow = image_bytes(tmp_path, "slow.png", size=(SLOW_WIDTH, 30))

    def send(_):
        return httpx.post(f"{tight.url}/v1/describe", files={"file": ("slow.png", slow)}, timeout=30)

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(send, range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 2 and codes.count(503) >= 3 and set(codes) <= {200, 503}, codes
    for r in responses:
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["error"]
    stats = httpx.get(f"{tight.url}/readyz").json()["queue"]
    assert stats["refused"] >= 3 and stats["in_flight"] == 0
    again = httpx.post(f"{tight.url}/v1/describe", files={"file": ("n.png", image_bytes(tmp_path, size=(50, 30)))}, timeout=30)
    assert again.status_code == 200


def test_timeout_answers_504_and_the_server_keeps_serving(tight, tmp_path):
    stuck = image_bytes(tmp_path, "stuck.png", size=(STUCK_WIDTH, 30))
    start = time.monotonic()
    r = httpx.post(f"{tight.url}/v1/describe", files={"file": ("stuck.png", stuck)}, timeout=30)
    assert r.status_code == 504 and "timed out after 2 s" in r.json()["error"]
    assert time.monotonic() - start < STUCK_SECONDS
    assert httpx.get(f"{tight.url}/healthz").status_code == 200  # the event loop is free
    # the stuck call still holds the only worker for a moment; then requests are served again
    deadline = time.monotonic() + 15
    while True:
        ok = httpx.post(f"{tight.url}/v1/describe", files={"file": ("n.png", image_bytes(tmp_path, size=(52, 30)))}, timeout=30)
        if ok.status_code == 200 or time.monotonic() > deadline:
            break
        assert ok.status_code in (503, 504)
    assert ok.status_code == 200, ok.text


def test_shutdown_lets_a_running_request_finish(tmp_path):
    settings = ServeSettings(port=0, ui=False, jobs_dir=str(tmp_path / "jobs"), shutdown_timeout_s=10, warmup=False)
    server = LiveServer(pipeline_config(), settings).start()
    slow = image_bytes(tmp_path, "slow.png", size=(SLOW_WIDTH, 30))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, f"{server.url}/v1/describe", files={"file": ("slow.png", slow)}, timeout=30)
        deadline = time.monotonic() + 10
        while httpx.get(f"{server.url}/readyz").json()["queue"]["running"] < 1:  # until it is in the model call
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.stop()
        response = pending.result()
    assert response.status_code == 200 and response.json()["description"].startswith("a test picture")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")


# ----------------------------------------------------------------------------------------------- jobs


def _dataset(tmp_path: Path, rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _wait_job(client: httpx.Client, job_id: str, statuses: tuple[str, ...] = ("done", "failed"), timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/v1/jobs/{job_id}").json()
        if status["status"] in statuses:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def test_job_upload_progress_and_downloads(client, keyed, tmp_path):
    rows = [
        {"id": "p1", "media": "red.png", "username": "acme", "inferred company": "Acme", "likes": "10", "content": "hi"},
        {"id": "p2", "media": "blue.png", "username": "acme", "inferred company": "Acme", "likes": "20", "content": "yo"},
        {"id": "p3", "media": "/etc/passwd", "username": "acme", "inferred company": "Acme", "likes": "0", "content": "x"},
        {"id": "p4", "media": "../../../../../etc/passwd", "username": "a", "inferred company": "A", "likes": "0", "content": "x"},
        {"id": "p5", "media": "file:///etc/passwd", "username": "a", "inferred company": "A", "likes": "0", "content": "x"},
    ]
    files = [("dataset", ("posts.csv", _dataset(tmp_path, rows), "text/csv")),
             ("media", ("red.png", image_bytes(tmp_path, "r.png", size=(120, 80), seed=1))),
             ("media", ("blue.png", image_bytes(tmp_path, "b.png", size=(80, 120), seed=2)))]
    r = client.post("/v1/jobs", files=files, data={"platform": "linkedin", "num_candidates": "2"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "done") and job["total"] == 5
    assert job["links"]["results_csv"].endswith("format=csv")
    done = _wait_job(client, job["id"])
    assert done["status"] == "done" and (done["done"], done["failed"], done["pending"]) == (2, 3, 0)
    assert done["progress"] == 1.0
    assert any("not allowed" in f["reason"] for f in done["failures"])
    lines = client.get(done["links"]["results_jsonl"])
    assert lines.status_code == 200 and lines.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in lines.text.splitlines()]
    assert [rec["id"] for rec in records] == ["p1", "p2", "p3", "p4", "p5"]
    assert all(len(rec["posts"]) == 2 for rec in records[:2])
    assert all("not allowed" in rec["error"]["reason"] for rec in records[2:])
    table = client.get(done["links"]["results_csv"])
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(table.text)))) == 5
    root = str(keyed.app.state.jobs.root)
    for resp in (lines, table):
        _no_secrets(resp)
        assert root not in resp.text  # media named as uploaded, not where the server keeps them
    assert records[0]["item"]["media"][0]["url"] == "red.png"
    listed = client.get("/v1/jobs").json()["jobs"]
    assert job["id"] in [j["id"] for j in listed]
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_job_uploads_are_checked(client, tmp_path):
    good = _dataset(tmp_path, [{"id": "a", "media": "x.png"}])
    cases = [
        client.post("/v1/jobs", files={"dataset": ("posts.exe", b"MZ")}),
        client.post("/v1/jobs", files={"dataset": ("posts.csv", good), "media": ("x.png", b"not an image at all")}),
        client.post("/v1/jobs", files={"dataset": ("posts.csv", b"id,caption\n1,hello\n")}),  # no media column
        client.post("/v1/jobs", data={"platform": "x"}),  # not multipart
        client.post("/v1/jobs", files={"media": ("x.png", image_bytes(tmp_path))}),  # no dataset
        client.post("/v1/jobs", json={"dataset": "/etc/passwd"}),
        client.post("/v1/jobs", files={"dataset": ("posts.csv", good)}, data={"map": "nonsense"}),
    ]
    assert [r.status_code for r in cases] == [415, 415, 422, 415, 422, 415, 422], [r.text for r in cases]
    for r in cases:
        _no_secrets(r)


def test_jobs_survive_a_restart_and_resume(tmp_path):
    """Stop the server in the middle of a job: the next server on the same folder resumes it from SQLite."""
    jobs_dir = tmp_path / "jobs"
    settings = ServeSettings(port=0, ui=False, jobs_dir=str(jobs_dir), shutdown_timeout_s=10, warmup=False)
    n = 6
    rows = [{"id": f"s{i}", "media": f"m{i}.png", "username": "acme"} for i in range(n)]
    files = [("dataset", ("slow.csv", _dataset(tmp_path, rows)))]
    files += [("media", (f"m{i}.png", image_bytes(tmp_path, f"m{i}.png", size=(SLOW_WIDTH, 20 + i)))) for i in range(n)]

    first = LiveServer(pipeline_config(), settings).start()
    with httpx.Client(base_url=first.url, timeout=30) as c:
        job_id = c.post("/v1/jobs", files=files).json()["id"]
        _wait_job(c, job_id, ("running",))
        deadline = time.monotonic() + 30
        while c.get(f"/v1/jobs/{job_id}").json()["done"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    first.stop()  # the job finishes its current item and stops
    meta = json.loads((jobs_dir / job_id / "job.json").read_text())
    assert meta["status"] == "interrupted", meta

    second = LiveServer(pipeline_config(), settings).start()
    try:
        with httpx.Client(base_url=second.url, timeout=30) as c:
            after = c.get(f"/v1/jobs/{job_id}").json()
            assert after["total"] == n and after["done"] >= 1  # progress kept across the restart
            done = _wait_job(c, job_id)
            assert done["status"] == "done" and done["done"] == n and done["failed"] == 0
            records = [json.loads(x) for x in c.get(done["links"]["results_jsonl"]).text.splitlines()]
            assert [r["id"] for r in records] == [f"s{i}" for i in range(n)]  # every item once, in order
            assert all(r["attempts"] == 1 for r in records)  # finished items were not redone
    finally:
        second.stop()


# ------------------------------------------------------------------------------------------- OpenAPI


def test_openapi_document(keyed):
    doc = httpx.get(f"{keyed.url}/openapi.json").json()
    assert {"/v1/describe", "/v1/posts", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/results",
            "/healthz", "/readyz"} <= set(doc["paths"])
    body = doc["paths"]["/v1/posts"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert body["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert {"ApiKey", "Bearer"} <= set(doc["components"]["securitySchemes"])
    assert httpx.get(f"{keyed.url}/docs").status_code == 200
