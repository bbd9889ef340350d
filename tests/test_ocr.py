"""OCR: both engines on real rendered text, reading order, noise, merging video frames, the ``ocr`` stage
end to end, tesseract languages and errors, and the ``overlay_text`` clean check."""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

import captionkit
import captionkit.stages.ocr  # registers the stage until stages/__init__ imports it
from captionkit.clean import Cleaner, CleanOptions, Row, clean
from captionkit.config import RunConfig
from captionkit.errors import ConfigError, MissingExtraError
from captionkit.extras import available
from captionkit.media.generate import write_image
from captionkit.media.loader import load_media
from captionkit.media.types import FramePolicy
from captionkit.models.settings import OCRSettings
from captionkit.ocr import OCRLine, OCRResult, load_ocr, merge_frames, reading_order
from captionkit.ocr.base import clean_lines, group_rows, to_rgb
from captionkit.ocr.clean_check import OverlayText, text_area
from captionkit.ocr.tesseract import package_for, parse_tsv
from captionkit.pipeline.core import Pipeline
from captionkit.records import Item, MediaRef
from captionkit.stages.ocr import OCRStage, distinct_frames
from conftest import write_csv

HAS_TESSERACT = shutil.which("tesseract") is not None
needs_tesseract = pytest.mark.skipif(not HAS_TESSERACT, reason="tesseract binary not installed (apt-get install tesseract-ocr)")
needs_rapidocr = pytest.mark.skipif(not available("rapidocr_onnxruntime"), reason="pip install 'captionkit[ocr]'")
ENGINES = [pytest.param("rapidocr", marks=needs_rapidocr), pytest.param("tesseract", marks=needs_tesseract)]
BG = (240, 238, 228)
INK = (20, 20, 30)


def font(size: int = 48) -> ImageFont.FreeTypeFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)  # FreeType build of Pillow >= 10.1


def render(lines: list[tuple[str, tuple[int, int]]], size=(640, 320), bg=BG, fs=44) -> Image.Image:
    image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    for text, xy in lines:
        draw.text(xy, text, fill=INK, font=font(fs))
    return image


def squash(text: str) -> str:
    """Upper case without spaces: rapidocr's bundled (Chinese/English) model often drops spaces."""
    return "".join(text.split()).upper()


def like(read: str, expected: str) -> bool:
    return difflib.SequenceMatcher(None, squash(read), squash(expected)).ratio() > 0.8


def engine(name: str, **kw) -> object:
    return load_ocr(name, OCRSettings(engine=name, **kw))


@pytest.fixture(scope="module")
def sale() -> Image.Image:
    return render([("SUMMER SALE", (40, 60)), ("50% OFF TODAY", (40, 180))])


# ---------------------------------------------------------------------------------------------
# Engines on real text


@pytest.mark.parametrize("name", ENGINES)
def test_engine_reads_lines_in_order_with_boxes(name, sale):
    result = engine(name).read(sale)
    assert result.engine == name and isinstance(result, OCRResult)
    assert [ln.text for ln in result.lines] == result.text.split("\n")
    assert len(result.lines) == 2, result.text
    assert like(result.lines[0].text, "SUMMER SALE") and like(result.lines[1].text, "50% OFF TODAY"), result.text
    for line in result.lines:
        x0, y0, x1, y1 = line.box
        assert all(isinstance(v, int) for v in line.box)
        assert 0 <= x0 < x1 <= sale.width and 0 <= y0 < y1 <= sale.height
        assert 0.5 <= line.confidence <= 1.0 and isinstance(line.confidence, float)
    # the first line's box is where it was drawn (text at y 60..~110, x from 40)
    assert 30 <= result.lines[0].box[0] <= 60 and 50 <= result.lines[0].box[1] <= 90 < result.lines[0].box[3]
    as_dict = result.to_dict()
    assert set(as_dict) == {"text", "lines", "engine"} and set(as_dict["lines"][0]) == {"text", "confidence", "box"}
    json.dumps(as_dict)


@pytest.mark.parametrize("name", ENGINES)
def test_skewed_text_still_reads_in_order(name, sale):
    skewed = sale.rotate(3, expand=True, fillcolor=BG, resample=Image.Resampling.BICUBIC)
    result = engine(name).read(skewed)
    assert len(result.lines) == 2, result.text
    assert like(result.lines[0].text, "SUMMER SALE") and like(result.lines[1].text, "50% OFF TODAY"), result.text


@pytest.mark.parametrize("name", ENGINES)
def test_min_confidence_drops_the_least_sure_lines(name, sale):
    lines = engine(name, min_confidence=0.0).read(sale).lines
    assert lines
    weakest = min(ln.confidence for ln in lines)
    stricter = engine(name, min_confidence=min(1.0, weakest + 1e-6)).read(sale).lines
    assert len(stricter) < len(lines)
    assert all(ln.confidence > weakest for ln in stricter)


@pytest.mark.parametrize("name", ENGINES)
def test_light_caption_on_a_photo(name, tmp_path):
    # white text on the mid-grey ground of a drawn landscape: tesseract's default binarisation alone loses it
    write_image(tmp_path / "photo.jpg", size=(480, 320), seed=1, text="WIN A PRIZE")
    result = engine(name).read(Image.open(tmp_path / "photo.jpg"))
    assert len(result.lines) == 1 and like(result.text, "WIN A PRIZE"), result.text


@needs_rapidocr
def test_two_column_layout_reads_column_by_column():
    image = render(
        [("NEWS", (250, 20)), ("APPLES", (30, 110)), ("PEARS", (30, 190)),
         ("TRAINS", (400, 110)), ("BUSES", (400, 190))],
        size=(680, 280),
    )
    texts = [squash(ln.text) for ln in engine("rapidocr").read(image).lines]
    assert texts == ["NEWS", "APPLES", "PEARS", "TRAINS", "BUSES"], texts


@needs_rapidocr
def test_blank_image_reads_nothing():
    result = engine("rapidocr").read(Image.new("RGB", (200, 120), (255, 255, 255)))
    assert result.text == "" and result.lines == [] and result.empty


# ---------------------------------------------------------------------------------------------
# Post-processing (synthetic boxes)


def line(text: str, box: tuple[int, int, int, int], conf: float = 0.9) -> OCRLine:
    return OCRLine(text, conf, box)


def test_noise_and_low_confidence_lines_are_dropped():
    lines = [line("", (0, 0, 5, 5)), line("  .  ", (0, 0, 5, 5)), line("|", (0, 0, 5, 5)), line("--", (0, 0, 9, 5)),
             line("A", (0, 0, 5, 5)), line("5%", (0, 0, 9, 5)), line("faint", (0, 0, 9, 5), conf=0.3),
             line("two  spaces", (0, 0, 9, 5)), line("flat", (0, 5, 9, 5))]
    assert [ln.text for ln in clean_lines(lines, min_confidence=0.5)] == ["A", "5%", "two spaces"]


def test_rows_follow_a_skewed_baseline():
    # four words drifting down 4 px each (first and last do not overlap enough), then a second row
    row1 = [line(w, (10 + 60 * i, 100 + 6 * i, 60 + 60 * i, 120 + 6 * i)) for i, w in enumerate(["a1", "a2", "a3", "a4"])]
    row2 = [line(w, (10 + 60 * i, 150 + 6 * i, 60 + 60 * i, 170 + 6 * i)) for i, w in enumerate(["b1", "b2", "b3", "b4"])]
    shuffled = [row2[2], row1[3], row2[0], row1[0], row1[2], row2[3], row1[1], row2[1]]
    assert [[ln.text for ln in r] for r in group_rows(shuffled)] == [["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"]]
    assert [ln.text for ln in reading_order(shuffled)] == ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"]


def test_reading_order_rows_and_columns():
    # one row of two words with a small gap: left to right
    assert [ln.text for ln in reading_order([line("SALE", (200, 10, 300, 40)), line("BIG", (90, 12, 180, 42))])] == ["BIG", "SALE"]
    # title, two columns whose rows are not aligned, footer across the full width
    lines = [
        line("footer across", (10, 400, 600, 430)),
        line("R1", (350, 80, 600, 110)), line("L2", (10, 140, 250, 170)), line("R2", (350, 150, 600, 180)),
        line("title", (200, 10, 400, 40)), line("L1", (10, 70, 250, 100)), line("L3", (10, 210, 250, 240)),
    ]
    assert [ln.text for ln in reading_order(lines)] == ["title", "L1", "L2", "L3", "R1", "R2", "footer across"]
    # a single row spread wide stays one row, and a plain two-row caption stays in rows
    wide = [line("left", (10, 10, 100, 40)), line("right", (500, 12, 600, 42))]
    assert [ln.text for ln in reading_order(wide)] == ["left", "right"]


def test_merge_frames_keeps_each_line_once_in_first_order():
    frame = lambda *ls: OCRResult.from_lines(list(ls), "x")  # noqa: E731
    merged = merge_frames([
        frame(line("SUMMERSALE", (0, 0, 9, 9), 0.8)),
        frame(line("Summer sale!", (0, 0, 9, 9), 0.95), line("50% OFF", (0, 20, 9, 29))),
        frame(line("SUMMER SA1E", (0, 0, 9, 9), 0.7), line("new text", (0, 40, 9, 49)), line("50 % off", (0, 20, 9, 29))),
    ])
    assert merged.text == "Summer sale!\n50% OFF\nnew text"  # the most confident reading of each, first-seen order
    assert merged.engine == "x" and merge_frames([]).text == ""
    # a line split into fragments on one frame and read whole on another is one line, read whole
    split = frame(line("BIG", (30, 200, 110, 230), 0.99), line("NEWSTODAY", (130, 200, 420, 230), 0.97))
    whole = frame(line("BIG NEWS TODAY", (31, 199, 419, 231), 0.96))
    assert merge_frames([split, whole]).text == merge_frames([whole, split]).text == "BIG NEWS TODAY"
    # ...but a fragment elsewhere on the picture is another line, and one frame never merges with itself
    elsewhere = frame(line("BIG", (30, 10, 110, 40), 0.99))
    assert merge_frames([whole, elsewhere]).text == "BIG NEWS TODAY\nBIG"
    twice = frame(line("SALE", (0, 0, 50, 20)), line("SALE", (0, 100, 50, 120)))
    assert merge_frames([twice]).text == "SALE\nSALE" and merge_frames([twice, twice]).text == "SALE\nSALE"


@needs_rapidocr
def test_merge_frames_on_real_frames_of_one_caption():
    frames = []
    for i, bg in enumerate([(200, 60, 60), (60, 90, 200), (60, 170, 80)]):
        image = render([("BIG NEWS TODAY", (40, 220))], size=(640, 320), bg=bg)
        ImageDraw.Draw(image).rectangle((40 + 120 * i, 40, 120 + 120 * i, 120), fill=(255, 255, 255))
        frames.append(image)
    results = engine("rapidocr").read_many(frames)
    assert all(like(r.text, "BIG NEWS TODAY") for r in results), [r.text for r in results]
    merged = merge_frames(results)
    assert len(merged.lines) == 1 and like(merged.text, "BIG NEWS TODAY")


def test_transparent_images_are_read_on_white():
    image = Image.new("RGBA", (60, 30), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((10, 10, 20, 20), fill=(0, 0, 0, 255))
    flat = to_rgb(image)
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (255, 255, 255) and flat.getpixel((15, 15)) == (0, 0, 0)


def test_identical_frames_are_read_once():
    a = render([("HELLO", (20, 20))], size=(200, 100))
    b = render([("WORLD", (20, 20))], size=(200, 100))
    assert distinct_frames([a, a.copy(), b, b.copy(), a]) == [a, b, a]


# ---------------------------------------------------------------------------------------------
# The ocr stage


def write_caption_video(path: Path, caption: str, seconds: float = 2.0, fps: int = 12) -> Path:
    import av

    n = int(seconds * fps)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 480, 272, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18"}
        for i in range(n):
            image = render([(caption, (30, 190))], size=(480, 272), bg=(60 + 8 * i, 90, 200 - 5 * i), fs=40)
            ImageDraw.Draw(image).rectangle((20 + 16 * i, 30, 90 + 16 * i, 100), fill=(255, 255, 255))
            frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@needs_rapidocr
def test_ocr_stage_end_to_end(tmp_path, sale):
    sale.save(tmp_path / "sale.png")
    write_image(tmp_path / "plain.jpg", size=(160, 120), seed=3)
    write_caption_video(tmp_path / "clip.mp4", "BIG NEWS TODAY")
    rows = [{"id": "sale", "media": str(tmp_path / "sale.png")},
            {"id": "plain", "media": str(tmp_path / "plain.jpg")},
            {"id": "video", "media": str(tmp_path / "clip.mp4")}]
    data = write_csv(tmp_path / "posts.csv", rows)
    config = RunConfig(stages=["media", "ocr"], frames=FramePolicy(mode="uniform", n=3))
    summary = captionkit.run(data, out=tmp_path / "out", config=config)
    assert (summary.done, summary.failed) == (3, 0)
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    [sale_out] = records["sale"]["outputs"]["ocr"]
    assert sale_out["engine"] == "rapidocr" and len(sale_out["lines"]) == 2
    assert like(sale_out["lines"][0]["text"], "SUMMER SALE") and like(sale_out["lines"][1]["text"], "50% OFF TODAY")
    assert records["plain"]["outputs"]["ocr"] == [{"text": "", "lines": [], "engine": "rapidocr"}]
    [video_out] = records["video"]["outputs"]["ocr"]
    assert len(records["video"]["outputs"]["media"][0]["frame_times"]) == 3
    assert len(video_out["lines"]) == 1 and like(video_out["text"], "BIG NEWS TODAY"), video_out  # 3 frames, one line


@needs_rapidocr
def test_ocr_stage_off_and_misconfigured(tmp_path, sale):
    sale.save(tmp_path / "sale.png")
    item = Item("a", media=[MediaRef(kind="image", url=str(tmp_path / "sale.png"))])
    [off] = Pipeline.from_config(RunConfig(stages=["media", "ocr"], ocr=OCRSettings(engine="none"))).process([item])
    assert off.ok and off.outputs["ocr"] is None
    [alone] = Pipeline.from_config(RunConfig(stages=["ocr"])).process([item])
    assert alone.error is not None and "'media' stage" in alone.error.reason
    with pytest.raises(ConfigError, match=r"--ocr: unknown OCR engine 'easyocr'.*rapidocr.*tesseract"):
        Pipeline.from_config(RunConfig(stages=["media", "ocr"], ocr=OCRSettings(engine="easyocr"))).setup()
    with pytest.raises(ConfigError, match="--ocr"):
        load_ocr("nope")
    assert load_ocr("rapidocr", OCRSettings()) is load_ocr("rapidocr", OCRSettings())  # loaded once, reused
    assert isinstance(OCRStage(RunConfig()).config, RunConfig)


# ---------------------------------------------------------------------------------------------
# Tesseract specifics


def test_tesseract_tsv_words_group_into_lines():
    tsv = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "4\t1\t1\t1\t1\t0\t43\t73\t324\t35\t-1\t\n"
        "5\t1\t1\t1\t1\t1\t43\t73\t199\t35\t95.0\tSUMMER\n"
        "5\t1\t1\t1\t1\t2\t256\t75\t111\t35\t85.0\tSALE\n"
        "5\t1\t1\t1\t1\t3\t300\t75\t10\t35\t-1\t \n"
        "5\t1\t2\t1\t1\t1\t43\t193\t87\t35\t96.0\t50%\n"
    )
    lines = parse_tsv(tsv, scale=2.0, size=(320, 160))
    assert [(ln.text, round(ln.confidence, 2), ln.box) for ln in lines] == [
        ("SUMMER SALE", 0.9, (21, 36, 184, 55)), ("50%", 0.96, (21, 96, 65, 114))]
    assert [w.text for w in lines[0].words] == ["SUMMER", "SALE"]


@needs_tesseract
def test_tesseract_languages_and_missing_packs():
    eng = engine("tesseract", languages=("eng",))
    assert eng.languages == "eng"
    with pytest.raises(MissingExtraError, match="apt-get install tesseract-ocr-xyz"):
        engine("tesseract", languages=("eng", "xyz"))
    with pytest.raises(ConfigError, match="not a tesseract language code"):
        engine("tesseract", languages=("../eng",))
    from captionkit.ocr.tesseract import installed_languages

    if "deu" not in installed_languages():
        with pytest.raises(MissingExtraError, match="tesseract-ocr-deu"):
            load_ocr("tesseract", OCRSettings(engine="tesseract", languages="eng+deu"))
    assert package_for("chi_sim") == "tesseract-ocr-chi-sim"


def test_tesseract_missing_binary_says_what_to_install(monkeypatch):
    import captionkit.ocr.tesseract as tess

    monkeypatch.setattr(tess.shutil, "which", lambda name: None)
    with pytest.raises(MissingExtraError, match="apt-get install tesseract-ocr"):
        tess.TesseractEngine(OCRSettings(engine="tesseract"))


# ---------------------------------------------------------------------------------------------
# The overlay_text clean check


@needs_rapidocr
def test_overlay_text_check(tmp_path, sale):
    sale.save(tmp_path / "sale.png")
    render([("SALE", (20, 10))], size=(240, 120), fs=80).save(tmp_path / "big.png")  # 4 characters, huge
    write_image(tmp_path / "plain.jpg", size=(240, 160), seed=4)
    items = [Item(n, media=[MediaRef(kind="image", url=str(tmp_path / f))], reference="x")
             for n, f in [("sale", "sale.png"), ("big", "big.png"), ("plain", "plain.jpg")]]
    kept, report = clean(items, checks=["no_media", "overlay_text"])
    assert [i.id for i in kept] == ["plain"]
    reasons = {f["id"]: f["reason"] for f in report.flagged}
    assert report.counts == {"overlay_text": 2}
    assert "characters (> 10)" in reasons["sale"] and "sale.png" in reasons["sale"]
    assert "covers" in reasons["big"] and "(> 15%)" in reasons["big"]
    # thresholds come from CleanOptions (--max-text-chars / --max-text-area)
    default = OverlayText(CleanOptions())
    assert (default.max_chars, default.max_area) == (10, 0.15)
    lenient = OverlayText(CleanOptions(max_text_chars=100, max_text_area=0.9))
    row = Cleaner(checks=[]).load(items[0])
    assert isinstance(row, Row) and lenient(row) is None
    assert text_area([(0, 0, 10, 10), (5, 5, 15, 15)], (20, 20)) == pytest.approx(175 / 400)


@needs_rapidocr
def test_overlay_text_on_loaded_media_directly(tmp_path, sale):
    sale.save(tmp_path / "sale.png")
    media = load_media(tmp_path / "sale.png", FramePolicy(n=1))
    check = OverlayText(None)
    assert check(Row(Item("s"), media=[media])) is not None
    assert check(Row(Item("e"))) is None  # nothing loaded, nothing to flag
