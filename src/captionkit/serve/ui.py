"""The web UI: a Gradio page at /ui over the same service the API uses.

Upload an image, GIF or video (a preview appears), fill in the brand, handle, date, platform, tone and
expected likes, press Generate: the page shows the description, the text found in the media, and the post
candidates, each with its character count and a copy button. Work goes through the server's admission
queue, like an API request; every error is shown as a one-line message.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from captionkit.errors import MediaError
from captionkit.extras import require
from captionkit.media.generate import write_animated_gif, write_image, write_video
from captionkit.media.sniff import sniff
from captionkit.prompts.platforms import PLATFORMS, get_platform
from captionkit.serve.errors import ServiceError
from captionkit.serve.intake import MediaInput, safe_name
from captionkit.serve.queue import Admission
from captionkit.serve.schemas import PostOptions
from captionkit.serve.service import CaptionService
from captionkit.serve.settings import ServeSettings

log = logging.getLogger("captionkit.serve")
MAX_POSTS = 5  # post boxes on the page; the number slider goes up to this
TONES = ["friendly", "playful", "professional", "informative", "excited", "calm"]
_STAGES = {"check": (0.1, "Checking the file…"), "fetch": (0.1, "Fetching…"),
           "describe": (0.3, "Describing the media…"), "write": (0.75, "Writing posts…")}
_CSS = ".ck-post textarea { font-size: 1rem; }"


def mount_ui(app: Any, service: CaptionService, admission: Admission, settings: ServeSettings) -> Any:
    """Mount the UI at /ui on ``app`` (access control is the server's guard middleware)."""
    gr = require("gradio", "serve", "the web UI (or pass --no-ui)")
    examples = _example_media()
    blocks = build_ui(service, admission, settings, examples)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])  # no web fonts
    return gr.mount_gradio_app(
        app, blocks, path="/ui", max_file_size=settings.max_upload_bytes, allowed_paths=[str(examples)],
        show_error=True, footer_links=[], run_history=False, ssr_mode=False, mcp_server=False, theme=theme, css=_CSS,
    )


def build_ui(service: CaptionService, admission: Admission, settings: ServeSettings, examples: Path) -> Any:
    import gradio as gr

    # Uploads in Gradio's cache are deleted after an hour (checked hourly): a server runs for weeks.
    with gr.Blocks(title="captionkit", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        gr.Markdown("# captionkit\nDescribe an image, GIF or video and write posts for it.")
        notices = gr.Markdown(elem_id="notices")
        with gr.Row():
            with gr.Column(scale=1):
                media = gr.File(label="Image, GIF or video", file_types=["image", "video", ".gif"],
                                type="filepath", elem_id="media")
                preview_image = gr.Image(label="Preview", type="filepath", interactive=False, visible=False,
                                         elem_id="preview-image")
                preview_video = gr.Video(label="Preview", interactive=False, visible=False, elem_id="preview-video")
                with gr.Row():
                    brand = gr.Textbox(label="Brand", placeholder="Acme", elem_id="brand", max_length=120)
                    handle = gr.Textbox(label="Handle", placeholder="@acme", elem_id="handle", max_length=64)
                with gr.Row():
                    date = gr.Textbox(label="Date", placeholder="2026-06-01", elem_id="date", max_length=40)
                    likes = gr.Number(label="Expected likes", precision=0, minimum=0, elem_id="likes",
                                      info="0: not given")
                with gr.Row():
                    platform = gr.Dropdown(list(PLATFORMS), value=get_platform(service.write_base.platform).name,
                                           label="Platform", elem_id="platform")
                    tone = gr.Dropdown(TONES, value=service.write_base.tone, allow_custom_value=True,
                                       label="Tone", elem_id="tone")
                count = gr.Slider(1, min(MAX_POSTS, settings.max_candidates), step=1,
                                  value=min(3, settings.max_candidates), label="Post candidates", elem_id="count")
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=1):
                description = gr.Textbox(label="Description", lines=3, interactive=False, elem_id="description",
                                         buttons=["copy"])
                found_text = gr.Textbox(label="Text found in the media", lines=2, interactive=False,
                                        elem_id="ocr-text", buttons=["copy"])
                posts = [gr.Textbox(label=f"Post {i + 1}", lines=3, interactive=False, visible=False,
                                    buttons=["copy"], elem_id=f"post-{i + 1}", elem_classes=["ck-post"])
                         for i in range(MAX_POSTS)]
        inputs = [media, brand, handle, date, platform, tone, likes, count]
        gr.Examples(examples=_examples(examples), inputs=inputs, label="Examples (click one, then Generate)")

        media.change(_preview, inputs=media, outputs=[preview_image, preview_video])

        async def run(path: str | None, brand: str, handle: str, date: str, platform: str, tone: str,
                      likes: float | None, n: float, progress: Any = gr.Progress()) -> list[Any]:
            if not path:
                raise gr.Error("Upload an image, GIF or video first.")
            try:
                options = PostOptions(brand=brand or None, handle=handle or None, date=date or None,
                                      platform=platform or None, tone=tone or None,
                                      expected_likes=int(likes) if likes else None,
                                      num_candidates=int(n))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise gr.Error(_first_problem(exc)) from None
            progress(0.02, desc="Waiting for a free worker…")

            def on_stage(stage: str) -> None:
                if stage in _STAGES:
                    progress(_STAGES[stage][0], desc=_STAGES[stage][1])

            media_in = MediaInput(path=Path(path), filename=Path(path).name)
            try:
                result = await admission.run(lambda: service.handle(media_in, options, write=True, on_stage=on_stage))
            except ServiceError as exc:
                raise gr.Error(exc.message) from None
            except Exception:
                log.exception("the web UI request failed")
                raise gr.Error("Something went wrong on the server (it has been logged).") from None
            return _outputs(gr, result)

        generate.click(run, inputs=inputs, outputs=[notices, description, found_text, *posts],
                       concurrency_limit=settings.concurrency + settings.queue_size)
    blocks.queue(max_size=max(1, settings.queue_size))
    return blocks


def _outputs(gr: Any, result: dict[str, Any]) -> list[Any]:
    limit = get_platform(result.get("platform") or "x").max_chars
    boxes = []
    for i in range(MAX_POSTS):
        if i < len(result["posts"]):
            post = result["posts"][i]
            count = f"{post['chars']} / {limit} characters" if limit else f"{post['chars']} characters"
            boxes.append(gr.update(value=post["text"], label=f"Post {i + 1} · {count}", visible=True))
        else:
            boxes.append(gr.update(value="", visible=False))
    notices = "\n".join(f"> **Note:** {n}" for n in result.get("notices") or [])
    return [notices, result.get("description") or "", result.get("ocr_text") or "(no text found)", *boxes]


def _preview(path: str | None) -> tuple[Any, Any]:
    import gradio as gr

    if not path:
        return gr.update(value=None, visible=False), gr.update(value=None, visible=False)
    try:
        kind, _fmt = sniff(path)
    except MediaError:
        gr.Warning(f"{safe_name(Path(path).name)} is not an image, GIF or video that can be read.")
        return gr.update(value=None, visible=False), gr.update(value=None, visible=False)
    if kind == "video":
        return gr.update(value=None, visible=False), gr.update(value=path, visible=True)
    return gr.update(value=path, visible=True), gr.update(value=None, visible=False)


def _first_problem(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"
    return str(exc)


def _example_media() -> Path:
    """A few generated media files for the Examples table (removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="captionkit-ui-examples-"))
    atexit.register(shutil.rmtree, folder, True)
    write_image(folder / "summer-sale.png", size=(480, 320), seed=4, text="SUMMER SALE -30%")
    write_image(folder / "landscape.jpg", size=(480, 320), seed=7)
    write_animated_gif(folder / "loop.gif", n_frames=8)
    write_video(folder / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    return folder


def _examples(folder: Path) -> list[list[Any]]:
    return [
        [str(folder / "summer-sale.png"), "Acme", "@acme", "2026-06-01", "instagram", "playful", 1200, 3],
        [str(folder / "landscape.jpg"), "Northwind", "@northwind", "2026-07-15", "x", "friendly", 300, 2],
        [str(folder / "loop.gif"), "Acme", "@acme", "", "x", "excited", 80, 2],
        [str(folder / "clip.mp4"), "Contoso", "@contoso", "2026-09-01", "linkedin", "professional", 150, 2],
    ]
