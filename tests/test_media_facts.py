"""media_facts: orientation, aspect, timing and named dominant colours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from captionkit.media.facts import COLOUR_NAMES, aspect_name, dominant_colours, media_facts, orientation
from captionkit.media.generate import write_animated_gif, write_image, write_video
from captionkit.media.loader import load_media
from captionkit.media.types import Frame, FramePolicy, LoadedMedia, MediaInfo


def still(image: Image.Image, fmt: str = "PNG") -> LoadedMedia:
    info = MediaInfo(kind="image", format=fmt, width=image.width, height=image.height, mode=image.mode)
    return LoadedMedia(path=Path("x.png"), info=info, frames=[Frame(image=image, time=0.0, index=0)])


def halves(left, right, size=(100, 50)) -> Image.Image:
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((160, 120), "landscape"),
        ((120, 160), "portrait"),
        ((100, 100), "square"),
        ((100, 104), "square"),
        ((104, 100), "square"),
        ((100, 110), "portrait"),
    ],
)
def test_orientation(size, expected):
    assert orientation(*size) == expected
    assert media_facts(still(Image.new("RGB", size)))["orientation"] == expected


def test_aspect_ratio_and_name():
    facts = media_facts(still(Image.new("RGB", (1920, 1080))))
    assert facts["aspect_ratio"] == pytest.approx(16 / 9, abs=1e-3)
    assert facts["aspect_name"] == "16:9"
    assert aspect_name(1080, 1920) == "9:16"
    assert aspect_name(1000, 370) is None


def test_half_red_half_blue():
    colours = media_facts(still(halves((255, 0, 0), (0, 0, 255))))["dominant_colours"]
    assert [c["name"] for c in colours] == ["red", "blue"]
    assert [c["share"] for c in colours] == [pytest.approx(0.5, abs=0.02)] * 2
    assert [c["hex"] for c in colours] == ["#ff0000", "#0000ff"]


def test_shares_sorted_and_limited():
    image = Image.new("RGB", (100, 100), (250, 250, 250))  # white 50%
    image.paste((20, 150, 40), (0, 0, 30, 100))  # green 30%
    image.paste((10, 10, 10), (30, 0, 50, 100))  # black 20%
    colours = dominant_colours([image], n=3)
    assert [(c["name"], c["share"]) for c in colours] == [("white", 0.5), ("green", 0.3), ("black", 0.2)]
    assert [c["name"] for c in dominant_colours([image], n=1)] == ["white"]


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((250, 130, 20), "orange"),
        ((250, 220, 40), "yellow"),
        ((128, 128, 128), "grey"),
        ((10, 20, 100), "navy"),
        ((130, 80, 35), "brown"),
        ((255, 170, 200), "pink"),
        ((0, 128, 128), "teal"),
    ],
)
def test_colour_names(rgb, name):
    assert dominant_colours([Image.new("RGB", (8, 8), rgb)], n=1)[0]["name"] == name


def test_colour_table_is_compact():
    assert 20 <= len(COLOUR_NAMES) <= 30


def test_deterministic_and_json_friendly(tmp_path):
    loaded = load_media(write_image(tmp_path / "scene.jpg", size=(320, 240), seed=4, text="hello"))
    first, second = media_facts(loaded), media_facts(loaded)
    assert first == second
    assert json.loads(json.dumps(first)) == first
    assert sum(c["share"] for c in first["dominant_colours"]) <= 1.0


def test_facts_of_a_video(tmp_path):
    loaded = load_media(write_video(tmp_path / "v.mp4", seconds=3, fps=12, scenes=3), FramePolicy(n=6))
    facts = media_facts(loaded)
    assert facts["kind"] == "video" and facts["format"] == "mp4"
    assert facts["duration"] == pytest.approx(3.0, abs=0.1)
    assert facts["fps"] == pytest.approx(12)
    assert facts["has_audio"] is True
    assert facts["frames_sampled"] == 6
    assert facts["orientation"] == "landscape"
    # the three scene backgrounds (red, blue, green) dominate across the sampled frames
    assert {c["name"] for c in facts["dominant_colours"]} == {"red", "blue", "green"}


def test_facts_of_an_animation(tmp_path):
    loaded = load_media(write_animated_gif(tmp_path / "a.gif", n_frames=6, size=(72, 72)))
    facts = media_facts(loaded, n_colours=2)
    assert facts["kind"] == "gif" and facts["orientation"] == "square"
    assert facts["frame_count"] == 6 and facts["duration"] == pytest.approx(0.6)
    assert len(facts["dominant_colours"]) == 2
    assert facts["dominant_colours"][0]["name"] == "red"


def test_no_frames_no_colours():
    info = MediaInfo(kind="image", format="PNG", width=10, height=10)
    assert media_facts(LoadedMedia(path=Path("x"), info=info, frames=[]))["dominant_colours"] == []
