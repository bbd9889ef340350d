"""A synthetic, self-describing dataset for proving that captionkit's trainers learn.

No real dataset or pretrained weight can be downloaded everywhere, so training is shown on scenes whose truth is
known exactly: a plain background, one to three shapes on a 3×3 grid, sometimes a short word. From each scene a
fixed grammar writes the canonical caption, templates write paraphrased references, questions get exact-match
answers, and a post is written from the caption and the post's metadata by simple rules (brand, likes, platform)
that a model can learn. Everything follows from ``seed``: the same seed gives byte-identical files.

Files written under ``out_dir``:

* ``images/<id>.png``: the scenes;
* ``captions.jsonl``: ``{id, image, caption, references, split, scene}`` (``references`` = the caption first, then
  2-4 paraphrases; also a ``captionkit eval --references`` file);
* ``coco_captions.json``: COCO captions (``images`` with integer ids, ``annotations``: every reference);
* ``vqa.jsonl``: LLaVA conversations, one question per record;
* ``posts.jsonl`` / ``posts_chat.jsonl``: description -> post pairs as Alpaca and chat records (the shapes of
  ``captionkit prepare``);
* ``dataset.csv``: a captionkit dataset (``id, media, content, username, likes, inferred company, date,
  platform``) that ``captionkit run`` reads;
* ``README.md``: the rules.

Splits come from a stable hash of the id (:func:`captionkit.prepare.is_validation`), so an image, its questions and
its post always share a split, and item ``i`` is the same scene whatever ``n`` is.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from captionkit.errors import ConfigError
from captionkit.io.writers import write_records
from captionkit.prepare import SYSTEM_PROMPT, default_instruction, is_validation

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 50, 170),
    "orange": (245, 140, 30),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
BACKGROUNDS: tuple[str, ...] = COLOURS  # a shape never has its background's colour
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
ROWS: tuple[str, ...] = ("top", "center", "bottom")
COLS: tuple[str, ...] = ("left", "center", "right")
WORDS: tuple[str, ...] = ("SALE", "NEW", "OPEN", "FREE", "HELLO", "WOW", "HOT", "DEAL", "GIFT", "LOVE")
WORD_PROBABILITY = 0.3
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DARK_BACKGROUNDS = frozenset({"blue", "purple", "black", "red", "green"})  # words on them are white, else black

BRANDS: dict[str, str] = {  # brand -> its sign-off
    "Acme": "Shop now.",
    "Nimbus": "Stay tuned.",
    "Orbit": "Link in bio.",
    "Pixel": "See you there.",
    "Zenith": "Thanks for reading.",
}
PLATFORMS: tuple[str, ...] = ("x", "instagram", "linkedin")
EMOJI: dict[str, str] = {
    "red": "🔴", "green": "🟢", "blue": "🔵", "yellow": "🟡",
    "purple": "🟣", "orange": "🟠", "white": "⚪", "black": "⚫",
}
LIKES_BUCKETS: dict[str, tuple[int, int]] = {"low": (3, 99), "mid": (100, 999), "high": (1000, 20000)}
HIGH_LIKES = 1000
HIGH_LIKES_PHRASE = "Don't miss it!"
START_DATE = datetime(2023, 1, 1, 9, 0, 0)
ID_PREFIX = "synth"

PARAPHRASES: tuple[str, ...] = (
    "an image of {body}",
    "a picture showing {list} on a plain {bg} background{word}",
    "{count_phrase} on {a_bg} backdrop{word}",
    "a simple drawing: {list}, {bg} background{word}",
    "{a_bg} background with {list}{word}",
    "{list} drawn on {bg}{word}",
)
# Files under out_dir, in the order they are described.
IMAGES_DIR = "images"
CAPTIONS_FILE = "captions.jsonl"
COCO_FILE = "coco_captions.json"
VQA_FILE = "vqa.jsonl"
POSTS_FILE = "posts.jsonl"
POSTS_CHAT_FILE = "posts_chat.jsonl"
DATASET_FILE = "dataset.csv"
README_FILE = "README.md"


# ------------------------------------------------------------------------------------------------ scenes


@dataclass(frozen=True)
class Shape:
    kind: str  # circle, square, triangle
    colour: str
    row: int  # 0..2, top to bottom
    col: int  # 0..2, left to right

    @property
    def position(self) -> str:
        return position_name(self.row, self.col)


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[Shape, ...]  # in reading order (row, then column)
    word: str | None = None
    word_row: int | None = None  # the grid row the word is written across (no shape there)

    def to_dict(self) -> dict[str, Any]:
        return {
            "background": self.background,
            "shapes": [
                {"shape": s.kind, "colour": s.colour, "position": s.position, "row": s.row, "col": s.col}
                for s in self.shapes
            ],
            "word": self.word,
            "word_row": self.word_row,
        }


def position_name(row: int, col: int) -> str:
    """``top left`` ... ``bottom right``; the middle cell is ``center``, its neighbours ``center left`` etc."""
    if row == 1 and col == 1:
        return "center"
    return f"{ROWS[row]} {COLS[col]}"


def position_phrase(row: int, col: int) -> str:
    return "in the center" if (row, col) == (1, 1) else f"at the {position_name(row, col)}"


def make_scene(rng: random.Random) -> Scene:
    """One random scene; the word (30 %) takes a whole grid row so that it never covers a shape."""
    background = rng.choice(BACKGROUNDS)
    word = word_row = None
    if rng.random() < WORD_PROBABILITY:
        word = rng.choice(WORDS)
        word_row = rng.randrange(3)
    cells = [(r, c) for r in range(3) for c in range(3) if r != word_row]
    count = rng.randint(1, 3)
    chosen = sorted(rng.sample(cells, count))
    colours = [c for c in COLOURS if c != background]
    if rng.random() < 0.3:  # same kind and colour: "two red circles"
        kind, colour = rng.choice(SHAPES), rng.choice(colours)
        shapes = tuple(Shape(kind, colour, r, c) for r, c in chosen)
    else:
        shapes = tuple(Shape(rng.choice(SHAPES), rng.choice(colours), r, c) for r, c in chosen)
    return Scene(background, shapes, word, word_row)


# ------------------------------------------------------------------------------------------------ drawing


def cell_box(size: int, row: int, col: int) -> tuple[int, int, int, int]:
    """The pixel box ``(x0, y0, x1, y1)`` (exclusive ends) of a grid cell."""
    return (col * size // 3, row * size // 3, (col + 1) * size // 3, (row + 1) * size // 3)


def cell_center(size: int, row: int, col: int) -> tuple[int, int]:
    x0, y0, x1, y1 = cell_box(size, row, col)
    return ((x0 + x1) // 2, (y0 + y1) // 2)


def draw_scene(scene: Scene, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), PALETTE[scene.background])
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        x0, y0, x1, y1 = cell_box(size, shape.row, shape.col)
        cx, cy = cell_center(size, shape.row, shape.col)
        half = max(3, (min(x1 - x0, y1 - y0) * 7 // 10) // 2)  # the shape fills ~70 % of its cell
        box = (cx - half, cy - half, cx + half, cy + half)
        fill = PALETTE[shape.colour]
        if shape.kind == "circle":
            draw.ellipse(box, fill=fill)
        elif shape.kind == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=fill)
    if scene.word is not None and scene.word_row is not None:
        _draw_word(draw, scene, size)
    return image


def _draw_word(draw: ImageDraw.ImageDraw, scene: Scene, size: int) -> None:
    assert scene.word is not None and scene.word_row is not None
    _, y0, _, y1 = cell_box(size, scene.word_row, 0)
    font_size = max(8, size // 5)
    while True:
        font = _font(font_size)
        left, top, right, bottom = draw.textbbox((0, 0), scene.word, font=font)
        if (right - left <= size - 4 and bottom - top <= y1 - y0) or font_size <= 6:
            break
        font_size -= 1
    x = (size - (right - left)) // 2 - left
    y = (y0 + y1 - (bottom - top)) // 2 - top
    colour = "white" if scene.background in DARK_BACKGROUNDS else "black"
    draw.fontmode = "1"  # no anti-aliasing: every pixel of the image is a palette colour
    draw.text((x, y), scene.word, fill=PALETTE[colour], font=font)


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


# ------------------------------------------------------------------------------------------------ text


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _plural(kind: str, count: int) -> str:
    return kind if count == 1 else f"{kind}s"


def _groups(scene: Scene) -> list[tuple[str, str, int]]:
    """``(colour, kind, count)`` in first-seen order."""
    counts = Counter((s.colour, s.kind) for s in scene.shapes)
    seen: list[tuple[str, str]] = []
    for s in scene.shapes:
        if (s.colour, s.kind) not in seen:
            seen.append((s.colour, s.kind))
    return [(colour, kind, counts[(colour, kind)]) for colour, kind in seen]


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _word_suffix(scene: Scene) -> str:
    return f" with the word {scene.word}" if scene.word else ""


def shape_list(scene: Scene) -> str:
    """``two red circles`` when all shapes are alike, else ``a red circle at the top left and ...``."""
    groups = _groups(scene)
    if len(groups) == 1 and groups[0][2] > 1:
        colour, kind, count = groups[0]
        return f"{NUMBER_WORDS[count]} {colour} {_plural(kind, count)}"
    return _join([f"{_a(s.colour)} {s.kind} {position_phrase(s.row, s.col)}" for s in scene.shapes])


def caption_of(scene: Scene) -> str:
    """The canonical caption, by a fixed grammar: ``<shape list> on a/an <bg> background[ with the word W]``."""
    return f"{shape_list(scene)} on {_a(scene.background)} background{_word_suffix(scene)}"


def references_of(scene: Scene, rng: random.Random) -> list[str]:
    """The canonical caption, then 2-4 paraphrases from :data:`PARAPHRASES` (distinct, in template order)."""
    count = len(scene.shapes)
    groups = _groups(scene)
    kinds = Counter(s.kind for s in scene.shapes)
    count_phrase = (
        f"{NUMBER_WORDS[count]} {_plural('shape', count)}: {_join([f'{n} {c} {_plural(k, n)}' for c, k, n in groups])}"
        if len(kinds) > 1 or len(groups) > 1
        else f"{NUMBER_WORDS[count]} {groups[0][0]} {_plural(groups[0][1], count)}"
    )
    word = f", with the word {scene.word} written on it" if scene.word else ""
    values = {
        "body": caption_of(scene),
        "list": shape_list(scene),
        "bg": scene.background,
        "a_bg": _a(scene.background),
        "count_phrase": count_phrase,
        "word": word,
    }
    picked = sorted(rng.sample(range(len(PARAPHRASES)), rng.randint(2, 4)))
    refs = [caption_of(scene)]
    for index in picked:
        text = PARAPHRASES[index].format(**values)
        if text not in refs:
            refs.append(text)
    return refs


def questions_of(scene: Scene, rng: random.Random) -> list[tuple[str, str]]:
    """Question/answer pairs with exact-match answers (lower-case words; the word itself in capitals)."""
    qa = [("how many shapes are there?", NUMBER_WORDS[len(scene.shapes)])]
    qa.append(("what colour is the background?", scene.background))
    kinds = Counter(s.kind for s in scene.shapes)
    for s in scene.shapes:
        if kinds[s.kind] == 1:
            qa.append((f"what colour is the {s.kind}?", s.colour))
        else:
            qa.append((f"what colour is the {s.kind} {position_phrase(s.row, s.col)}?", s.colour))
        qa.append((f"what shape is {position_phrase(s.row, s.col)}?", s.kind))
    taken = {(s.row, s.col) for s in scene.shapes}
    empty = [(r, c) for r in range(3) for c in range(3) if (r, c) not in taken]
    r, c = rng.choice(empty)
    qa.append((f"what shape is {position_phrase(r, c)}?", "nothing"))
    for kind in SHAPES:
        qa.append((f"how many {kind}s are there?", NUMBER_WORDS[kinds[kind]]))
    qa.append(("what word is written?", scene.word or "none"))
    return qa


def dominant(scene: Scene) -> tuple[str, str]:
    """``(colour, kind)``: the most frequent colour and shape kind; ties go to the first in reading order."""
    colours = Counter(s.colour for s in scene.shapes)
    kinds = Counter(s.kind for s in scene.shapes)
    colour = max((s.colour for s in scene.shapes), key=lambda c: colours[c])  # max keeps the first of ties
    kind = max((s.kind for s in scene.shapes), key=lambda k: kinds[k])
    return colour, kind


def post_of(caption: str, scene: Scene, brand: str, likes: int, platform: str) -> str:
    """The post, by the rules in the README (see :data:`RULES`)."""
    colour, kind = dominant(scene)
    text = f"{brand}: {caption[0].upper()}{caption[1:]}!"
    if likes >= HIGH_LIKES:
        text += f" {HIGH_LIKES_PHRASE}"
    text += f" {EMOJI[colour]} {BRANDS[brand]}"
    if platform == "x":
        text += f" #{kind.capitalize()}s #{brand}"
    elif platform == "instagram":
        text += f" #{kind.capitalize()}s #{colour.capitalize()} #{brand}"
    return text  # linkedin: no hashtags


RULES = f"""\
Post = `<Brand>: <Caption, first letter capitalised>!` then, in order:

1. ` {HIGH_LIKES_PHRASE}` when Expected Likes >= {HIGH_LIKES} (nothing otherwise);
2. a space and the emoji of the dominant colour ({', '.join(f'{c} {e}' for c, e in EMOJI.items())});
3. a space and the brand's sign-off ({'; '.join(f'{b}: "{s}"' for b, s in BRANDS.items())});
4. hashtags by platform (the platform is also the suffix of the username, `<brand>_<platform>`):
   x: ` #<Shape>s #<Brand>`; instagram: ` #<Shape>s #<Colour> #<Brand>`; linkedin: none.

The dominant colour (shape) is the most frequent colour (shape kind) among the shapes; ties go to the first shape
in reading order (top row first, left to right). `<Shape>` and `<Colour>` are capitalised (`#Circles`, `#Red`).
"""


# ------------------------------------------------------------------------------------------------ dataset


@dataclass
class SynthInfo:
    """Where :func:`make_synthetic` wrote what, and how much."""

    out_dir: Path
    images_dir: Path
    captions: Path
    coco: Path
    vqa: Path
    posts: Path
    posts_chat: Path
    dataset: Path
    readme: Path
    n_images: int = 0
    n_train: int = 0
    n_val: int = 0
    n_questions: int = 0
    n_posts: int = 0
    seed: int = 0
    size: int = 64
    seconds: float = 0.0
    splits: dict[str, int] = field(default_factory=dict)


@dataclass
class _Example:
    id: str
    image: str
    scene: Scene
    caption: str
    references: list[str]
    qa: list[tuple[str, str]]
    brand: str
    likes: int
    platform: str
    date: str
    post: str
    split: str


def _example(index: int, seed: int, val_fraction: float) -> _Example:
    rng = random.Random(f"captionkit-synth:{seed}:{index}")  # per item: item i is the same whatever n is
    item_id = f"{ID_PREFIX}-{index:06d}"
    scene = make_scene(rng)
    caption = caption_of(scene)
    references = references_of(scene, rng)
    qa = questions_of(scene, rng)
    brand = rng.choice(tuple(BRANDS))
    platform = rng.choice(PLATFORMS)
    low, high = LIKES_BUCKETS[rng.choice(tuple(LIKES_BUCKETS))]
    likes = rng.randint(low, high)
    date = (START_DATE + timedelta(days=rng.randrange(365), minutes=rng.randrange(0, 24 * 60, 15)))
    return _Example(
        id=item_id,
        image=f"{IMAGES_DIR}/{item_id}.png",
        scene=scene,
        caption=caption,
        references=references,
        qa=qa,
        brand=brand,
        likes=likes,
        platform=platform,
        date=date.strftime("%Y-%m-%d %H:%M:%S"),
        post=post_of(caption, scene, brand, likes, platform),
        split="val" if is_validation(item_id, val_fraction) else "train",
    )


def username_of(brand: str, platform: str) -> str:
    return f"{brand.lower()}_{platform}"


def post_input(ex: _Example) -> str:
    """The Alpaca ``input``, as ``captionkit prepare`` builds it for the adobe platform."""
    return "\n".join(
        [
            f"Caption: {ex.caption}",
            f"Expected Likes: {ex.likes}",
            f"Username: {username_of(ex.brand, ex.platform)}",
            f"Company Name: {ex.brand}",
            f"Date Time: {ex.date}",
        ]
    )


def make_synthetic(
    out_dir: str | Path, n: int = 1000, seed: int = 0, size: int = 64, val_fraction: float = 0.1
) -> SynthInfo:
    """Write the synthetic dataset of ``n`` scenes (``size``×``size`` PNGs) under ``out_dir``; see the module doc.

    Raises :class:`ConfigError` for ``n < 1``, ``size < 24`` or ``val_fraction`` outside [0, 1]. Existing files
    of the same names are replaced; other files in ``out_dir`` are left alone.
    """
    if n < 1:
        raise ConfigError(f"--n must be at least 1 (got {n})")
    if size < 24:
        raise ConfigError(f"--size must be at least 24 pixels, so that shapes and words fit (got {size})")
    if not 0.0 <= val_fraction <= 1.0:
        raise ConfigError(f"--val-fraction must be between 0 and 1 (got {val_fraction})")
    started = time.perf_counter()
    out = Path(out_dir).expanduser()
    images = out / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    examples = [_example(i, seed, val_fraction) for i in range(n)]
    for ex in examples:
        draw_scene(ex.scene, size).save(out / ex.image, format="PNG")

    info = SynthInfo(
        out_dir=out, images_dir=images, captions=out / CAPTIONS_FILE, coco=out / COCO_FILE, vqa=out / VQA_FILE,
        posts=out / POSTS_FILE, posts_chat=out / POSTS_CHAT_FILE, dataset=out / DATASET_FILE,
        readme=out / README_FILE, seed=seed, size=size,
    )
    write_records(
        ({"id": ex.id, "image": ex.image, "caption": ex.caption, "references": ex.references, "split": ex.split,
          "scene": ex.scene.to_dict()} for ex in examples),
        info.captions,
    )
    _write_coco(examples, info.coco, size, seed)
    info.n_questions = write_records(_vqa_records(examples), info.vqa)
    instruction = default_instruction("adobe")
    info.n_posts = write_records(
        ({"id": ex.id, "instruction": instruction, "input": post_input(ex), "output": ex.post, "split": ex.split}
         for ex in examples),
        info.posts,
    )
    write_records(
        ({"id": ex.id, "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"{instruction}\n\n{post_input(ex)}"},
            {"role": "assistant", "content": ex.post},
        ], "split": ex.split} for ex in examples),
        info.posts_chat,
    )
    write_records(
        ({"id": ex.id, "date": ex.date, "likes": ex.likes, "content": ex.post,
          "username": username_of(ex.brand, ex.platform), "media": ex.image, "inferred company": ex.brand,
          "platform": ex.platform, "split": ex.split} for ex in examples),
        info.dataset,
    )
    info.n_images = len(examples)
    info.n_val = sum(ex.split == "val" for ex in examples)
    info.n_train = info.n_images - info.n_val
    info.splits = {"train": info.n_train, "val": info.n_val}
    _write_text(info.readme, _readme(info, val_fraction))
    info.seconds = time.perf_counter() - started
    return info


def _vqa_records(examples: list[_Example]) -> Any:
    for ex in examples:
        for k, (question, answer) in enumerate(ex.qa):
            yield {
                "id": f"{ex.id}-q{k}",
                "image": ex.image,
                "conversations": [
                    {"from": "human", "value": f"<image>\n{question}"},
                    {"from": "gpt", "value": answer},
                ],
                "split": ex.split,
            }


def _write_coco(examples: list[_Example], path: Path, size: int, seed: int) -> None:
    images, annotations = [], []
    for image_id, ex in enumerate(examples, start=1):
        images.append({"id": image_id, "file_name": ex.image, "width": size, "height": size, "item_id": ex.id,
                       "split": ex.split})
        for k, text in enumerate(ex.references):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "caption": text,
                                "canonical": k == 0})
    data = {
        "info": {"description": f"captionkit synthetic shapes, seed {seed}", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
    }
    _write_text(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8", newline="\n")
    temporary.replace(path)


def _readme(info: SynthInfo, val_fraction: float) -> str:
    return f"""\
# captionkit synthetic shapes dataset

Made by `captionkit synth --n {info.n_images} --seed {info.seed} --size {info.size} --val-fraction {val_fraction}`.
The same arguments give byte-identical files. {info.n_images} images ({info.n_train} train, {info.n_val} val),
{info.n_questions} questions, {info.n_posts} posts. The split of an id is a stable hash of it
(`captionkit.prepare.is_validation(id, {val_fraction})`); an image, its questions and its post share a split.

## Scenes

`images/<id>.png`, {info.size}×{info.size}: a plain background ({', '.join(BACKGROUNDS)}), 1-3 shapes
({', '.join(SHAPES)}) in distinct cells of a 3×3 grid, each coloured from the palette (never the background's
colour). Cells are named `top left`, `top center`, `top right`, `center left`, `center`, `center right`,
`bottom left`, `bottom center`, `bottom right`. In {WORD_PROBABILITY:.0%} of scenes a word
({', '.join(WORDS)}) is written (no anti-aliasing) across a whole row that holds no shape, white on
{', '.join(sorted(DARK_BACKGROUNDS))} backgrounds and black on the others. Colours (RGB):
{', '.join(f'{name} {rgb}' for name, rgb in PALETTE.items())}. Each shape fills about 70 % of its cell and
covers the cell's centre pixel.

## Captions (`captions.jsonl`, `coco_captions.json`)

Canonical caption: `<shapes> on a/an <background> background[ with the word <WORD>]`, where `<shapes>` is
`<number> <colour> <shape>s` when all shapes have the same kind and colour (two or three of them), else
`a/an <colour> <shape> at the <cell>` for each shape in reading order (`in the center` for the centre cell), joined
with `, ` and ` and `. `references` holds the canonical caption first, then 2-4 paraphrases from templates.
`scene` in `captions.jsonl` gives the truth: background, shapes with cell row/col, word and its row.
`coco_captions.json` has integer image ids (`item_id` names the item) and one annotation per reference
(`canonical: true` on the canonical one).

## Questions (`vqa.jsonl`, LLaVA conversations)

`how many shapes are there?` (number word), `what colour is the background?`, for each shape `what colour is the
<shape>?` (or `... the <shape> at the <cell>?` when that kind appears more than once) and `what shape is at the
<cell>?`, one empty cell (answer `nothing`), `how many <shape>s are there?` for every kind, and `what word is
written?` (the word, or `none`). Answers are exact-match.

## Posts (`posts.jsonl` Alpaca, `posts_chat.jsonl` chat, `dataset.csv` content)

Input lines as `captionkit prepare` writes them: `Caption`, `Expected Likes`, `Username`, `Company Name`,
`Date Time` (the date plays no part). Likes are drawn from three buckets: {LIKES_BUCKETS}.

{RULES}
`dataset.csv` is a captionkit dataset (`id, date, likes, content, username, media, inferred company, platform,
split`); `captionkit run {DATASET_FILE}` reads it (media paths are relative to the file).
"""
