"""The synthetic training dataset (`captionkit synth`): determinism, formats, and scenes that match their text."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from captionkit.cli.synth import synth
from captionkit.errors import ConfigError
from captionkit.io.readers import read_dataset
from captionkit.training.synth import (
    BRANDS,
    EMOJI,
    NUMBER_WORDS,
    PALETTE,
    WORDS,
    SynthInfo,
    cell_box,
    cell_center,
    make_synthetic,
    position_phrase,
)

N = 40
FILES = ("captions.jsonl", "coco_captions.json", "vqa.jsonl", "posts.jsonl", "posts_chat.jsonl", "dataset.csv",
         "README.md")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> SynthInfo:
    return make_synthetic(tmp_path_factory.mktemp("synth") / "data", n=N, seed=0, size=64, val_fraction=0.25)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _captions(info: SynthInfo) -> dict[str, dict]:
    return {row["id"]: row for row in _jsonl(info.captions)}


# ----------------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    a = make_synthetic(tmp_path / "a", n=12, seed=3)
    b = make_synthetic(tmp_path / "b", n=12, seed=3)
    c = make_synthetic(tmp_path / "c", n=12, seed=4)
    da, db, dc = _digest(a.out_dir), _digest(b.out_dir), _digest(c.out_dir)
    assert da == db
    assert set(da) == {*FILES, *(f"images/synth-{i:06d}.png" for i in range(12))}
    assert set(da) == set(dc)
    assert da["captions.jsonl"] != dc["captions.jsonl"]
    assert sum(da[k] != dc[k] for k in da if k.startswith("images/")) >= 10  # nearly every scene changes


def test_item_i_does_not_depend_on_n(tmp_path: Path, made: SynthInfo) -> None:
    small = make_synthetic(tmp_path / "small", n=5, seed=0, size=64, val_fraction=0.25)
    big = _captions(made)
    for row in _jsonl(small.captions):
        assert row == big[row["id"]]
        assert (small.out_dir / row["image"]).read_bytes() == (made.out_dir / row["image"]).read_bytes()


# ----------------------------------------------------------------------------------------------- counts, splits


def test_counts_and_splits(made: SynthInfo) -> None:
    captions = _jsonl(made.captions)
    assert made.n_images == len(captions) == N
    assert made.n_train + made.n_val == N and made.n_train > 0 and made.n_val > 0
    splits = {row["id"]: row["split"] for row in captions}
    assert Counter(splits.values()) == {"train": made.n_train, "val": made.n_val}
    assert len(list(made.images_dir.glob("*.png"))) == N
    vqa = _jsonl(made.vqa)
    assert len(vqa) == made.n_questions and len(vqa) >= 8 * N
    for row in vqa:  # a question shares its image's split: no leakage across splits
        assert row["split"] == splits[row["id"].rsplit("-q", 1)[0]]
    for path in (made.posts, made.posts_chat):
        rows = _jsonl(path)
        assert len(rows) == made.n_posts == N
        assert all(row["split"] == splits[row["id"]] for row in rows)
    assert f"{N} images ({made.n_train} train, {made.n_val} val)" in made.readme.read_text(encoding="utf-8")


def test_split_fraction_extremes(tmp_path: Path) -> None:
    assert make_synthetic(tmp_path / "none", n=10, val_fraction=0.0).n_val == 0
    assert make_synthetic(tmp_path / "all", n=10, val_fraction=1.0).n_train == 0


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"size": 10}, {"val_fraction": 1.5}])
def test_bad_arguments_raise_config_error(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        make_synthetic(tmp_path / "bad", **kwargs)


# ----------------------------------------------------------------------------------------------- images


def test_images_show_the_described_scene(made: SynthInfo) -> None:
    for row in _captions(made).values():
        scene = row["scene"]
        pixels = np.asarray(Image.open(made.out_dir / row["image"]).convert("RGB"))
        assert pixels.shape == (64, 64, 3)
        background = PALETTE[scene["background"]]
        assert tuple(pixels[0, 0]) == background
        taken = {(s["row"], s["col"]) for s in scene["shapes"]}
        for s in scene["shapes"]:
            x, y = cell_center(64, s["row"], s["col"])
            assert tuple(pixels[y, x]) == PALETTE[s["colour"]], (row["id"], s)
            x0, y0, x1, y1 = cell_box(64, s["row"], s["col"])
            cell = pixels[y0:y1, x0:x1]
            share = np.all(cell == PALETTE[s["colour"]], axis=-1).mean()
            assert share > 0.2  # the shape's colour dominates its cell (a triangle covers ~25 %)
            assert s["colour"] != scene["background"]
        for r in range(3):
            for c in range(3):
                if (r, c) in taken or r == scene["word_row"]:
                    continue
                x0, y0, x1, y1 = cell_box(64, r, c)
                assert np.all(pixels[y0:y1, x0:x1] == background), (row["id"], r, c)  # empty cells stay empty
        if scene["word"]:
            assert scene["word"] in WORDS
            _, y0, _, y1 = cell_box(64, scene["word_row"], 0)
            band = pixels[y0:y1]
            ink = (255, 255, 255) if scene["background"] in ("blue", "purple", "black", "red", "green") else (0, 0, 0)
            assert np.all(band == ink, axis=-1).sum() >= 10  # the word is drawn, in the contrasting colour


def test_some_scenes_have_words_and_all_shape_kinds_occur(made: SynthInfo) -> None:
    rows = list(_captions(made).values())
    with_word = [r for r in rows if r["scene"]["word"]]
    assert 0 < len(with_word) < len(rows)
    assert {s["shape"] for r in rows for s in r["scene"]["shapes"]} == {"circle", "square", "triangle"}
    assert {len(r["scene"]["shapes"]) for r in rows} == {1, 2, 3}


# ----------------------------------------------------------------------------------------------- captions


def test_captions_follow_the_grammar(made: SynthInfo) -> None:
    for row in _captions(made).values():
        scene, caption = row["scene"], row["caption"]
        assert caption.endswith(f"background with the word {scene['word']}" if scene["word"] else "background")
        assert f" {scene['background']} background" in caption
        kinds = {(s["colour"], s["shape"]) for s in scene["shapes"]}
        if len(kinds) == 1 and len(scene["shapes"]) > 1:
            colour, shape = kinds.pop()
            assert caption.startswith(f"{NUMBER_WORDS[len(scene['shapes'])]} {colour} {shape}s on ")
        else:
            for s in scene["shapes"]:
                assert f"{s['colour']} {s['shape']} {position_phrase(s['row'], s['col'])}" in caption
        refs = row["references"]
        assert refs[0] == caption and 3 <= len(refs) <= 5 and len(set(refs)) == len(refs)
        assert " a orange" not in caption and " a orange" not in " ".join(refs)


def test_coco_json_is_consistent(made: SynthInfo) -> None:
    coco = json.loads(made.coco.read_text(encoding="utf-8"))
    images = {im["id"]: im for im in coco["images"]}
    assert len(images) == N and all(isinstance(i, int) for i in images)
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids)
    captions = _captions(made)
    by_image: dict[int, list[str]] = {}
    for ann in coco["annotations"]:
        assert ann["image_id"] in images
        by_image.setdefault(ann["image_id"], []).append(ann["caption"])
    for image_id, image in images.items():
        row = captions[image["item_id"]]
        assert image["file_name"] == row["image"] and (made.out_dir / image["file_name"]).is_file()
        assert (image["width"], image["height"]) == (64, 64)
        assert by_image[image_id] == row["references"]


# ----------------------------------------------------------------------------------------------- questions


def test_answers_match_the_scene(made: SynthInfo) -> None:
    captions = _captions(made)
    for row in _jsonl(made.vqa):
        scene = captions[row["id"].rsplit("-q", 1)[0]]["scene"]
        human, gpt = row["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert human["value"].startswith("<image>\n")
        question, answer = human["value"].split("\n", 1)[1], gpt["value"]
        shapes = scene["shapes"]
        at = {position_phrase(s["row"], s["col"]): s for s in shapes}
        if question == "how many shapes are there?":
            assert answer == NUMBER_WORDS[len(shapes)]
        elif question == "what colour is the background?":
            assert answer == scene["background"]
        elif question == "what word is written?":
            assert answer == (scene["word"] or "none")
        elif question.startswith("what shape is "):
            where = question.removeprefix("what shape is ").removesuffix("?")
            assert answer == (at[where]["shape"] if where in at else "nothing")
        elif question.startswith("how many "):
            kind = question.split()[2].removesuffix("s")
            assert answer == NUMBER_WORDS[sum(s["shape"] == kind for s in shapes)]
        elif question.startswith("what colour is the "):
            rest = question.removeprefix("what colour is the ").removesuffix("?")
            kind, _, where = rest.partition(" ")
            matches = [s for s in shapes if s["shape"] == kind
                       and (not where or position_phrase(s["row"], s["col"]) == where)]
            assert len(matches) == 1 and answer == matches[0]["colour"], row
        else:
            pytest.fail(f"unexpected question {question!r}")


# ----------------------------------------------------------------------------------------------- posts


def _expected_post(caption: str, scene: dict, brand: str, likes: int, platform: str) -> str:
    """The README's rules, written out independently of the generator."""
    shapes = scene["shapes"]
    colours = [s["colour"] for s in shapes]
    kinds = [s["shape"] for s in shapes]
    colour = next(c for c in colours if colours.count(c) == max(colours.count(x) for x in colours))
    kind = next(k for k in kinds if kinds.count(k) == max(kinds.count(x) for x in kinds))
    post = f"{brand}: {caption[0].upper() + caption[1:]}!"
    if likes >= 1000:
        post += " Don't miss it!"
    post += f" {EMOJI[colour]} {BRANDS[brand]}"
    tags = {"x": f" #{kind.title()}s #{brand}", "instagram": f" #{kind.title()}s #{colour.title()} #{brand}",
            "linkedin": ""}
    return post + tags[platform]


def test_posts_follow_the_rules(made: SynthInfo) -> None:
    captions = _captions(made)
    chat = {row["id"]: row for row in _jsonl(made.posts_chat)}
    seen_high = seen_low = 0
    platforms = set()
    for row in _jsonl(made.posts):
        lines = dict(line.split(": ", 1) for line in row["input"].split("\n"))
        assert list(lines) == ["Caption", "Expected Likes", "Username", "Company Name", "Date Time"]
        caption = captions[row["id"]]
        assert lines["Caption"] == caption["caption"]
        brand, likes = lines["Company Name"], int(lines["Expected Likes"])
        platform = lines["Username"].removeprefix(f"{brand.lower()}_")
        platforms.add(platform)
        assert row["output"] == _expected_post(caption["caption"], caption["scene"], brand, likes, platform)
        assert row["instruction"].startswith("Generate the tweet content")
        seen_high += likes >= 1000
        seen_low += likes < 1000
        system, user, assistant = chat[row["id"]]["messages"]
        assert (system["role"], user["role"], assistant["role"]) == ("system", "user", "assistant")
        assert user["content"] == f"{row['instruction']}\n\n{row['input']}" and assistant["content"] == row["output"]
    assert seen_high and seen_low and platforms == {"x", "instagram", "linkedin"}


def test_dataset_csv_reads_as_a_captionkit_dataset(made: SynthInfo) -> None:
    posts = {row["id"]: row["output"] for row in _jsonl(made.posts)}
    with made.dataset.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle))
    assert {"id", "media", "content", "username", "likes", "inferred company", "date"} <= set(header)
    items = list(read_dataset(made.dataset))
    assert len(items) == N
    for item in items:
        assert item.read_error is None
        assert len(item.media) == 1 and Path(item.media[0].url).is_file()
        assert item.reference == posts[item.id]
        assert item.metadata["company"] in BRANDS
        assert str(item.metadata["username"]).startswith(item.metadata["company"].lower() + "_")


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_writes_the_dataset_and_reports_counts(tmp_path: Path) -> None:
    small = typer.Typer()
    small.command()(synth)
    out = tmp_path / "cli"
    result = CliRunner().invoke(small, ["--out", str(out), "--n", "6", "--seed", "2", "--size", "48",
                                        "--val-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    assert "synth: 6 images" in result.output and "questions" in result.output
    assert len(_jsonl(out / "captions.jsonl")) == 6
    assert Image.open(out / "images" / "synth-000000.png").size == (48, 48)
    again = make_synthetic(tmp_path / "api", n=6, seed=2, size=48, val_fraction=0.5)
    assert _digest(out) == _digest(again.out_dir)  # the command and the API make the same bytes

    bad = CliRunner().invoke(small, ["--out", str(out), "--size", "8"])
    assert bad.exit_code == 2 and "--size" in bad.output


def test_every_pixel_is_a_palette_colour(made: SynthInfo) -> None:
    palette = np.array(list(PALETTE.values()))
    for path in sorted(made.images_dir.glob("*.png"))[:10]:
        pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 1, 3)
        assert np.all(np.any(np.all(pixels == palette, axis=-1), axis=-1)), path
