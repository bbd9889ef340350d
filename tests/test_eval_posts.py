"""Post-quality checks of captionkit.eval.posts on hand-made posts."""

from __future__ import annotations

import pytest

from captionkit.eval.posts import (
    METRICS,
    distinct_n,
    post_checks,
    repeated_phrase,
    self_bleu,
    sentence_bleu,
    tokens,
)


def test_keys_and_counts():
    result = post_checks({"a": ["one post", "another post"], "b": "a single post", "c": []}, "instagram")
    assert set(METRICS) <= set(result)
    assert set(result["per_item"]) == set(METRICS)
    assert result["posts"] == 3 and result["items"] == 2
    assert result["platform"] == "instagram" and result["max_chars"] == 2200


def test_length_against_the_platform_limit():
    result = post_checks({"a": ["x" * 281, "x" * 280], "b": ["y" * 100]}, "x")
    assert result["over_limit"] == pytest.approx(1 / 3)
    assert result["per_item"]["over_limit"] == {"a": 0.5, "b": 0.0}
    assert result["mean_chars"] == pytest.approx((281 + 280 + 100) / 3)
    assert result["per_item"]["mean_chars"]["a"] == 280.5
    assert post_checks({"a": "é" * 280}, "twitter")["over_limit"] == 0.0  # code points, alias of x
    assert post_checks({"a": "x" * 281}, "instagram")["over_limit"] == 0.0


def test_hashtags_and_mentions_counted():
    posts = {
        "a": ["Summer sale today #deals #Summer with @acme and <mention> #1 fan, mail me@example.com",
              "No tags here"],
    }
    result = post_checks(posts, "x")
    # '#1' is no hashtag (no letter), 'me@example.com' no mention
    assert result["per_item"]["hashtags"]["a"] == 1.0 and result["hashtags"] == 1.0
    assert result["mentions"] == 1.0


def test_ocr_contradictions_counted():
    posts = {"a": ["Everything is $20 this week!", "Everything is $25 this week!"],
             "b": ["No price mentioned"], "c": ["Now $99"]}
    result = post_checks(posts, "x", ocr_text={"a": "BIG SALE $25", "b": "SALE $25", "c": None})
    assert result["per_item"]["ocr_contradictions"] == {"a": 0.5, "b": 0.0}  # c has no OCR text: not counted
    assert result["ocr_contradictions"] == pytest.approx(1 / 3)
    assert post_checks(posts, "x")["ocr_contradictions"] is None


def test_distinct_n_exact_values():
    texts = ["The cat the", "cat sat."]
    # unigrams: the cat the cat sat -> 3 unique of 5; bigrams: (the cat) (cat the) (cat sat) -> 3 of 3
    assert tokens(texts[0]) == ["the", "cat", "the"]
    assert distinct_n(texts, 1) == pytest.approx(3 / 5)
    assert distinct_n(texts, 2) == 1.0
    result = post_checks({"a": [texts[0]], "b": [texts[1]]}, "x")
    assert result["distinct-1"] == pytest.approx(0.6) and result["distinct-2"] == 1.0
    assert result["per_item"]["distinct-1"] == {"a": pytest.approx(2 / 3), "b": 1.0}
    assert distinct_n(["word"], 2) is None


def test_self_bleu_high_for_identical_low_for_different():
    same = ["A red car parked on the quiet road at night"] * 3
    different = ["A red car parked on the quiet road at night", "Two dogs play in fresh snow",
                 "Quarterly results beat every forecast"]
    assert self_bleu(same) == pytest.approx(1.0)
    assert self_bleu(different) < 0.2
    assert self_bleu(["only one"]) is None
    result = post_checks({"same": same, "diff": different, "single": ["just one"]}, "x")
    assert set(result["per_item"]["self-BLEU"]) == {"same", "diff"}  # one candidate: no pair, no value
    assert result["self-BLEU"] == pytest.approx((1.0 + self_bleu(different)) / 2)
    assert post_checks({"a": ["one"], "b": "two"}, "x")["self-BLEU"] is None


def test_sentence_bleu_equals_sacrebleu_add_one():
    sacrebleu = pytest.importorskip("sacrebleu")
    hyp = tokens("The red car is parked on the road today")
    refs = [tokens("a red car on the road"), tokens("the car is red")]
    bleu = sacrebleu.metrics.BLEU(tokenize="none", smooth_method="add-k", smooth_value=1, effective_order=False)
    expected = bleu.sentence_score(" ".join(hyp), [" ".join(r) for r in refs]).score / 100
    assert sentence_bleu(hyp, refs) == pytest.approx(expected)
    assert sentence_bleu([], refs) == 0.0
    assert sentence_bleu(["zzz"], refs) == 0.0


@pytest.mark.parametrize("text", [
    "the the the best coffee in town",
    "Buy now buy now buy now!",
    "a man in a suit a man in a suit a man in a suit",
    "great coffee and pastries, great coffee and music, great coffee and friends",  # 3-gram 3 times, not in a row
    "🔥🔥🔥 new drop",
])
def test_looping_output_flagged(text):
    assert repeated_phrase(text) is not None


@pytest.mark.parametrize("text", [
    "Fresh coffee and warm pastries every morning at our corner shop. Come say hi! #coffee",
    "<mention> <mention> <mention> thanks for a great launch <hyperlink>",  # placeholders are not a loop
    "so so good",  # twice is emphasis, not a loop
])
def test_normal_output_not_flagged(text):
    assert repeated_phrase(text) is None


def test_repetition_share():
    result = post_checks({"a": ["the the the end", "a fine post"], "b": ["another fine post"]}, "x")
    assert result["repetition"] == pytest.approx(1 / 3)
    assert result["per_item"]["repetition"] == {"a": 0.5, "b": 0.0}
    assert result["repeated"] == {"a": ["the", None]}
