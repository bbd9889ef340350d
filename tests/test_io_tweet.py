"""The media-cell parser: snscrape reprs (property-based round trips), JSON, plain URLs, and hostile input."""

from __future__ import annotations

import builtins
import dataclasses
import json
from typing import Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captionkit.errors import MediaStringError
from captionkit.io.tweet import best_variant, parse_media_cell
from captionkit.records import MediaRef
from captionkit.records import VideoVariant as KitVariant

# --- snscrape's own dataclasses (same names, fields and order), so repr() renders cells exactly as it does ---


@dataclasses.dataclass
class Photo:
    previewUrl: str
    fullUrl: str
    altText: Optional[str] = None


@dataclasses.dataclass
class VideoVariant:
    contentType: str
    url: str
    bitrate: Optional[int]


@dataclasses.dataclass
class Video:
    thumbnailUrl: str
    variants: list
    duration: Optional[float] = None
    views: Optional[int] = None
    altText: Optional[str] = None


@dataclasses.dataclass
class Gif:
    thumbnailUrl: str
    variants: list
    altText: Optional[str] = None


PHOTO = (
    "[Photo(previewUrl='https://pbs.twimg.com/media/ID?format=jpg&name=small', "
    "fullUrl='https://pbs.twimg.com/media/ID?format=jpg&name=large')]"
)
GIF = (
    "[Gif(thumbnailUrl='https://pbs.twimg.com/tweet_video_thumb/X.jpg', variants=[VideoVariant("
    "contentType='video/mp4', url='https://video.twimg.com/tweet_video/X.mp4', bitrate=0)])]"
)
VIDEO = (
    "[Video(thumbnailUrl='https://pbs.twimg.com/thumb/V.jpg', variants=["
    "VideoVariant(contentType='application/x-mpegURL', url='https://video.twimg.com/V.m3u8', bitrate=None), "
    "VideoVariant(contentType='video/mp4', url='https://video.twimg.com/V_480.mp4', bitrate=832000), "
    "VideoVariant(contentType='video/mp4', url='https://video.twimg.com/V_720.mp4', bitrate=2176000)], "
    "duration=12.345, views=1234)]"
)

# --------------------------------------------------------------------------------------------- examples


def test_photo_uses_full_url_and_keeps_preview():
    [ref] = parse_media_cell(PHOTO)
    assert ref.kind == "photo"
    assert ref.url == "https://pbs.twimg.com/media/ID?format=jpg&name=large"
    assert ref.preview_url == "https://pbs.twimg.com/media/ID?format=jpg&name=small"


def test_photo_without_full_url_falls_back_to_preview():
    [ref] = parse_media_cell("[Photo(previewUrl='p.jpg', fullUrl=None)]")
    assert ref.url == "p.jpg"


def test_gif():
    [ref] = parse_media_cell(GIF)
    assert (ref.kind, ref.url) == ("gif", "https://video.twimg.com/tweet_video/X.mp4")
    assert ref.thumbnail_url == "https://pbs.twimg.com/tweet_video_thumb/X.jpg"
    assert ref.variants == [KitVariant("https://video.twimg.com/tweet_video/X.mp4", "video/mp4", 0)]


def test_video_picks_highest_bitrate_mp4_and_keeps_everything():
    [ref] = parse_media_cell(VIDEO)
    assert ref.kind == "video"
    assert ref.url == "https://video.twimg.com/V_720.mp4"
    assert (ref.duration, ref.views, ref.thumbnail_url) == (12.345, 1234, "https://pbs.twimg.com/thumb/V.jpg")
    assert [v.bitrate for v in ref.variants] == [None, 832000, 2176000]
    assert ref.variants[0].content_type == "application/x-mpegURL"


def test_several_items_in_one_cell_keep_their_order():
    cell = PHOTO[:-1] + ", " + GIF[1:-1] + ", " + VIDEO[1:]
    assert [r.kind for r in parse_media_cell(cell)] == ["photo", "gif", "video"]


def test_animated_gif_alt_text_and_unknown_keywords():
    cell = (
        "[AnimatedGif(thumbnailUrl='t.jpg', variants=[VideoVariant(contentType='video/mp4', url='g.mp4', "
        "bitrate=None, fps=30)], altText='a cat', mediaKey='7_123')]"
    )
    [ref] = parse_media_cell(cell)
    assert (ref.kind, ref.url, ref.alt_text) == ("gif", "g.mp4", "a cat")


def test_video_without_mp4_uses_best_remaining_variant():
    cell = (
        "[Video(thumbnailUrl='t', variants=[VideoVariant(contentType='application/x-mpegURL', url='a.m3u8', "
        "bitrate=None), VideoVariant(contentType='video/webm', url='b.webm', bitrate=5)])]"
    )
    assert parse_media_cell(cell)[0].url == "b.webm"


def test_mp4_recognised_by_url_when_content_type_is_missing():
    variants = [KitVariant("hi.webm", "video/webm", 9_000_000), KitVariant("lo.mp4?tag=12", None, 1)]
    assert best_variant(variants).url == "lo.mp4?tag=12"


def test_negative_numbers_and_tuples():
    [ref] = parse_media_cell(
        "(Video(thumbnailUrl='t', variants=[VideoVariant(contentType='video/mp4', url='v.mp4', bitrate=1)], duration=-1.5, views=-3),)"
    )
    assert (ref.duration, ref.views) == (-1.5, -3)


@pytest.mark.parametrize("empty", [None, float("nan"), "", "  ", "[]", "nan", "None", "NaN", [], ()])
def test_missing_values_mean_no_media(empty):
    assert parse_media_cell(empty) == []


def test_json_lists_of_strings_and_objects():
    refs = parse_media_cell(json.dumps(["a.jpg", "https://x.test/v.mp4", "b.gif"]))
    assert [(r.kind, r.url) for r in refs] == [
        ("image", "a.jpg"),
        ("video", "https://x.test/v.mp4"),
        ("gif", "b.gif"),
    ]
    refs = parse_media_cell('[{"kind": "video", "url": "clip", "duration": 2}, {"url": "x.png"}]')
    assert [(r.kind, r.url, r.duration) for r in refs] == [("video", "clip", 2.0), ("image", "x.png", None)]


def test_item_shape_media_dicts_round_trip():
    ref = parse_media_cell(VIDEO)[0]
    assert parse_media_cell([ref.to_dict()]) == [ref]
    assert parse_media_cell(json.dumps([ref.to_dict()])) == [ref]


def test_python_list_of_paths():
    refs = parse_media_cell("['a.jpg', 'dir/b.mov']")
    assert [(r.kind, r.url) for r in refs] == [("image", "a.jpg"), ("video", "dir/b.mov")]


@pytest.mark.parametrize("sep", ["|", ";", "\n", " | ", "\r\n"])
def test_separated_urls_and_paths(sep):
    refs = parse_media_cell(sep.join(["https://x.test/a.jpg?x=1&y=2", "rel/b.mp4", "/abs/c.gif", "noext"]))
    assert [(r.kind, r.url) for r in refs] == [
        ("image", "https://x.test/a.jpg?x=1&y=2"),
        ("video", "rel/b.mp4"),
        ("gif", "/abs/c.gif"),
        ("image", "noext"),
    ]


def test_paths_that_merely_contain_brackets_are_paths():
    assert parse_media_cell("[2020] trip.jpg")[0].url == "[2020] trip.jpg"
    assert parse_media_cell("photo(1).jpg")[0].url == "photo(1).jpg"


# --------------------------------------------------------------------------------------- malformed cells

MALFORMED = [
    PHOTO[:-1],  # truncated: Excel cuts cells at 32767 characters
    PHOTO[:40],
    "[Photo(previewUrl='a', fullUrl='b')",
    "[Photo(previewUrl='a', fullUrl='b'))]",
    "Photo(previewUrl='a'",
    "[Foo(url='x')]",
    "[Photo(previewUrl='a', fullUrl='b'), Tweet(id=1)]",
    "[VideoVariant(contentType='video/mp4', url='x', bitrate=1)]",
    "[Video(thumbnailUrl='t', variants=[])]",
    "[Video(thumbnailUrl='t', variants=[Photo(previewUrl='a', fullUrl='b')])]",
    "[Video(thumbnailUrl='t', variants=[VideoVariant(contentType='video/mp4', bitrate=1)])]",
    "[Video(thumbnailUrl='t', variants=[VideoVariant(contentType='video/mp4', url='v', bitrate='fast')])]",
    "[Photo(previewUrl=1, fullUrl=2)]",
    "[Photo('positional')]",
    "[Photo(**{'fullUrl': 'x'})]",
    "[Photo(fullUrl=f'x{1}')]",
    "[Photo(fullUrl='a' + 'b')]",
    "[Photo(fullUrl=nan)]",
    "[Photo(fullUrl=b'bytes')]",
    "[1, 2]",
    "[[Photo(previewUrl='a', fullUrl='b')]]",
    "{'fullUrl': 'x'}",
    '{"kind": "sculpture", "url": "x"}',
    "[Photo(fullUrl=[x for x in 'ab'])]",
]


@pytest.mark.parametrize("cell", MALFORMED)
def test_malformed_cells_raise_media_string_error(cell):
    with pytest.raises(
        MediaStringError, match=r"^(cannot parse media cell at column \d+: |media |a JSON|unknown)"
    ):
        parse_media_cell(cell)


def test_error_names_position_and_excerpt():
    with pytest.raises(MediaStringError) as info:
        parse_media_cell("[Photo(previewUrl='a', fullUrl='b'), Foo(url='x')]")
    message = str(info.value)
    assert message.startswith("cannot parse media cell at column 38: unknown media class 'Foo'")
    assert "Foo(url='x')" in message


HOSTILE = [
    "__import__('os').system('touch {marker}')",
    "[__import__('os').system('touch {marker}')]",
    "[Photo(fullUrl=__import__('os').system('touch {marker}'))]",
    "[Photo.__class__.__init__(fullUrl='{marker}')]",
    "[open('{marker}', 'w')]",
    "[(lambda: open('{marker}', 'w'))()]",
    "[Photo(fullUrl=(x := open('{marker}', 'w')))]",
    "[exec(\"open('{marker}', 'w')\")]",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_cells_never_execute(template, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec must never be called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    with pytest.raises(MediaStringError):
        parse_media_cell(template.format(marker=marker))
    assert not marker.exists()


def test_non_text_cells_are_rejected_clearly():
    with pytest.raises(MediaStringError, match="number"):
        parse_media_cell(3.5)
    with pytest.raises(MediaStringError, match="object"):
        parse_media_cell(object())


# ------------------------------------------------------------------------------------- property-based

URL_TAILS = st.text(min_size=1, max_size=30)  # any unicode, quotes, backslashes, newlines...
urls = st.one_of(
    URL_TAILS,
    st.builds(
        lambda tail, ext: f"https://video.twimg.com/{tail}{ext}",
        URL_TAILS,
        st.sampled_from(["", ".mp4", ".m3u8", "?a=1&b='2'"]),
    ),
    st.sampled_from(
        ["https://pbs.twimg.com/media/ID?format=jpg&name=large", 'it\'s\\a "test"&=.mp4', "日本語.mp4"]
    ),
)
content_types = st.sampled_from(["video/mp4", "application/x-mpegURL", "video/webm", "VIDEO/MP4"]) | st.text(
    max_size=12
)
bitrates = st.none() | st.integers(min_value=0, max_value=10**9)
variants = st.builds(VideoVariant, contentType=content_types, url=urls, bitrate=bitrates)
alt_texts = st.none() | st.text(max_size=20)
photos = st.builds(Photo, previewUrl=urls, fullUrl=urls, altText=alt_texts)
videos = st.builds(
    Video,
    thumbnailUrl=urls,
    variants=st.lists(variants, min_size=1, max_size=5),
    duration=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    views=st.none() | st.integers(min_value=-(10**12), max_value=10**12),
    altText=alt_texts,
)
gifs = st.builds(
    Gif, thumbnailUrl=urls, variants=st.lists(variants, min_size=1, max_size=3), altText=alt_texts
)
media_lists = st.lists(st.one_of(photos, videos, gifs), min_size=1, max_size=4)


def expected_best(vs: list[VideoVariant]) -> VideoVariant:
    """The reference rule, written independently: highest-bitrate mp4 (first on ties), else highest overall."""

    def is_mp4(v: VideoVariant) -> bool:
        path = v.url.split("?", 1)[0].split("#", 1)[0].lower()
        return v.contentType.split(";", 1)[0].strip().lower() == "video/mp4" or path.endswith(".mp4")

    pool = [v for v in vs if is_mp4(v)] or vs
    top = max(v.bitrate or 0 for v in pool)
    return next(v for v in pool if (v.bitrate or 0) == top)


def check_round_trip(source, ref: MediaRef) -> None:
    assert ref.alt_text == source.altText
    if isinstance(source, Photo):
        assert (ref.kind, ref.url, ref.preview_url) == ("photo", source.fullUrl, source.previewUrl)
        return
    assert ref.kind == ("video" if isinstance(source, Video) else "gif")
    assert ref.thumbnail_url == source.thumbnailUrl
    assert ref.variants == [
        KitVariant(url=v.url, content_type=v.contentType, bitrate=v.bitrate) for v in source.variants
    ]
    assert ref.url == expected_best(source.variants).url
    if isinstance(source, Video):
        assert ref.duration == source.duration
        assert ref.views == source.views


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(media_lists)
def test_snscrape_repr_round_trips(items):
    cell = repr(items)  # exactly how the dataset's media column was produced
    refs = parse_media_cell(cell)
    assert len(refs) == len(items)
    for source, ref in zip(items, refs):
        check_round_trip(source, ref)


@settings(max_examples=100, deadline=None)
@given(media_lists)
def test_snscrape_repr_survives_csv_style_whitespace(items):
    cell = "  [" + ",\n   ".join(repr(item) for item in items) + "]\n"  # some exports wrap long cells
    assert len(parse_media_cell(cell)) == len(items)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_only_ever_raises_media_string_error(text):
    try:
        refs = parse_media_cell(text)
    except MediaStringError:
        return
    assert all(isinstance(r, MediaRef) and r.url for r in refs)


@settings(max_examples=300, deadline=None)
@given(media_lists, st.data())
def test_mutated_reprs_only_ever_raise_media_string_error(items, data):
    cell = repr(items)
    start = data.draw(st.integers(0, len(cell)))
    end = data.draw(st.integers(start, min(len(cell), start + 8)))
    insert = data.draw(
        st.sampled_from(["", "(", ")", "[", "]", "'", '"', ",", "=", "x", "__import__('os')", "\\", "-"])
    )
    mutated = cell[:start] + insert + cell[end:]
    try:
        refs = parse_media_cell(mutated)
    except MediaStringError:
        return
    assert all(isinstance(r, MediaRef) for r in refs)


@settings(max_examples=200, deadline=None)
@given(media_lists, st.integers(min_value=1))
def test_truncated_reprs_raise(items, cut):
    cell = repr(items)
    truncated = cell[: cut % len(cell)] if cut % len(cell) else cell[:1]
    with pytest.raises(MediaStringError):
        parse_media_cell(truncated)
