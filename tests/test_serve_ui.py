"""The web UI in Debian's Chromium (Playwright, /usr/bin/chromium, nothing downloaded), against a real server.

The server has an API key, so the browser logs in first (the UI's cookie), then uploads a real PNG, fills the
form, presses Generate and reads the description, the text found in the image and the post candidates.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from browser import CHROMIUM, CHROMIUM_ARGS, sync_playwright_or_skip
from captionkit.media.generate import write_video
from captionkit.serve import ServeSettings
from serve_helpers import image_bytes, live_server, pipeline_config

KEY = "ui-key-" + uuid.uuid4().hex
pytestmark = [  # pandas deprecations raised inside Gradio's queue, not ours
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    settings = ServeSettings(port=0, jobs_dir=str(tmp_path_factory.mktemp("jobs-ui")), ui=True, max_candidates=5)
    with live_server(pipeline_config("basic", ocr="rapidocr"), settings, api_keys=[KEY],
                     headers={"X-API-Key": KEY}) as server:
        yield server


def test_ui_is_behind_the_key(ui_server):
    page = httpx.get(f"{ui_server.url}/ui/")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert httpx.get(f"{ui_server.url}/ui/config").status_code == 401
    assert httpx.post(f"{ui_server.url}/ui/gradio_api/upload", files={"files": ("a.png", b"x")}).status_code == 401
    assert httpx.post(f"{ui_server.url}/login", data={"key": "wrong"}).status_code == 401
    login = httpx.post(f"{ui_server.url}/login", data={"key": KEY})
    assert login.status_code == 303 and KEY not in login.headers["set-cookie"]
    assert "httponly" in login.headers["set-cookie"].lower() and "samesite=strict" in login.headers["set-cookie"].lower()
    with httpx.Client(base_url=ui_server.url, cookies=login.cookies) as c:
        assert c.get("/ui/").status_code == 200
        for target in ("/ui/gradio_api/file=/etc/passwd", "/ui/file=/etc/passwd", "/ui/gradio_api/file=../../../etc/passwd"):
            r = c.get(target)
            assert r.status_code in (403, 404) and "root:" not in r.text, (target, r.status_code)


def test_generate_posts_in_chromium(ui_server, tmp_path):
    sync_playwright = sync_playwright_or_skip()
    photo = tmp_path / "poster.png"
    photo.write_bytes(image_bytes(tmp_path, "src.png", size=(320, 200), text="SALE 50%"))
    clip = write_video(tmp_path / "clip.mp4", seconds=1.0, fps=5, size=(96, 64))
    not_media = tmp_path / "fake.png"
    not_media.write_text("this is text pretending to be a picture\n" * 5)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            outside: list[str] = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((ui_server.url, "data:", "blob:")) else None)

            page.goto(f"{ui_server.url}/ui/")
            assert page.url.endswith("/login")  # the key first
            page.fill("#key", KEY)
            page.click("button[type=submit]")
            page.wait_for_selector("#generate", timeout=30_000)

            page.locator("#media input[type=file]").set_input_files(str(photo))
            page.wait_for_selector("#preview-image img", timeout=15_000)  # the preview shows the upload
            page.locator("#brand input, #brand textarea").first.fill("Acme")
            page.locator("#handle input, #handle textarea").first.fill("@acme")
            page.click("#generate")
            page.wait_for_function("document.querySelector('#post-1 textarea')?.value.length > 0", timeout=30_000)

            description = page.locator("#description textarea").input_value()
            assert description.startswith("A landscape image")
            assert "SALE" in page.locator("#ocr-text textarea").input_value()
            posts = [page.locator(f"#post-{i} textarea").input_value() for i in (1, 2, 3)]
            assert all(posts) and any("Acme" in p for p in posts) and len(set(posts)) == 3
            label = page.locator("#post-1").inner_text()
            assert f"{len(posts[0])} / 280 characters" in label
            assert page.locator("#post-4").is_hidden()
            assert page.locator("#post-1 button[aria-label*='opy'], #post-1 button[title*='opy']").count() >= 1

            # a video gets a video preview
            page.reload()
            page.wait_for_selector("#generate", timeout=30_000)
            page.locator("#media input[type=file]").set_input_files(str(clip))
            page.wait_for_selector("#preview-video video", timeout=15_000)
            assert page.locator("#preview-image").is_hidden()

            # a text file with an image name: a one-line message, no stack trace
            page.reload()
            page.wait_for_selector("#generate", timeout=30_000)
            page.locator("#media input[type=file]").set_input_files(str(not_media))
            page.click("#generate")
            message = page.get_by_text("is not an image, GIF or video").first
            message.wait_for(timeout=15_000)
            assert "Traceback" not in page.content()

            # an example fills the form
            page.get_by_text("landscape.jpg").first.click()
            page.wait_for_function("document.querySelector('#brand input, #brand textarea')?.value === 'Northwind'",
                                   timeout=10_000)
            assert not outside, outside  # no web fonts, no CDN: the page works offline
        finally:
            browser.close()
    assert not errors, errors


def test_api_docs_render_offline_in_chromium(ui_server):
    """/docs serves Swagger UI from installed files (this machine has no internet: a CDN page would stay blank)."""
    page_html = httpx.get(f"{ui_server.url}/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in page_html and "cdn.jsdelivr" not in page_html
    sync_playwright = sync_playwright_or_skip()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{ui_server.url}/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
            assert "captionkit" in page.inner_text(".swagger-ui .info .title")
            assert page.locator('[data-path="/v1/posts"]').count() >= 1  # an operation of the API, drawn
        finally:
            browser.close()
