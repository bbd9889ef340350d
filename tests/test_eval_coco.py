"""COCO caption metrics and the pure-Python PTB tokenizer against pycocoevalcap itself.

The reference side is pycocoevalcap run as COCOEvalCap runs it: its PTBTokenizer (Stanford CoreNLP 3.4.1 in
Java) once over all references and once over all predictions, then Bleu(4), Rouge(), Cider() and Meteor().
Java starts slowly, so the corpus is tokenised and scored once per session (``reference`` fixture) and every
comparison reads from it. Without Java (or without pycocoevalcap) those comparisons skip with the reason;
the tests that need neither always run.
"""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from captionkit.errors import ConfigError
from captionkit.eval import coco
from captionkit.eval.coco import (
    JAVA_MISSING,
    CiderD,
    bleu,
    cider_d,
    cider_d_scorer,
    coco_scores,
    meteor,
    rouge_l,
    tokenize_pairs,
)
from captionkit.eval.ptb import PUNCTUATIONS, ptb_tokenize, ptb_tokens

TOL = 1e-6
HAVE_JAVA = shutil.which("java") is not None
needs_java = pytest.mark.skipif(
    not HAVE_JAVA, reason="java not found: the reference side runs pycocoevalcap's Java PTBTokenizer and "
    "METEOR jar (apt-get install default-jre-headless)")

# ---------------------------------------------------------------------------------------------------------
# The corpus: hand-written captions (each a known trap) + random recombinations of caption-like pieces
# ---------------------------------------------------------------------------------------------------------

SEEDS = [
    "A man riding a wave on top of a surfboard.",
    "a man riding a wave on top of a surfboard",
    "Two dogs play in the snow!",
    "A close-up of a plate of food: broccoli, rice & chicken.",
    "A woman (in a red dress) holds an umbrella.",
    "[Photo] {caption} <b>bold</b> <a href=\"x y\">link</a>",
    "He's sure they're fine; I'll say we'd go, you've seen I'm here.",
    "Don't, can't, won't, shouldn't, ain't, isn't it?",
    "Cannot gonna wanna gotta lemme gimme 'tis 'twas",
    "\"Hello,\" she said. 'Quoted' text ``latex'' “curly” ‘single’ «guillemets» „low”",
    "The U.S. Army. The U.S. The u.s. flag, etc. and Mr. Smith, Dr. Who and St. Louis",
    "It costs $3.50, or 1,000,000 dollars, or 3.14, -5, +7 at 10:30 on 12/25/2014; 1/2 and 5 7/8",
    "A well-known state-of-the-art co-ed e-mail x-ray T-shirt for a 3-year-old",
    "Wait... what.... Ok . . . fine… really?! no!!! yes?? ok.",
    "Café über naïve jalapeño résumé São Paulo Ärger Øl straße İstanbul ΣΟΦΙΑ Привет",
    "a 🐶 dog 😀 smiling 👍🏽 at the 🇫🇷 flag ❤️",
    "中文 字幕 日本語のテキスト 한국어 ไทย עברית عربي",
    "A -- B — C – D ---- E - F",
    "email me at foo@bar.com or visit http://www.example.com/path?x=1 or www.google.com today",
    "#hashtag @user & &amp; 50% a+b a/b and/or x*y x=y ~ ^ | \\ _under_",
    "'90s rock 'n' roll o'clock y'all ma'am O'Neill d'Artagnan",
    "C++ and C# code in foo.txt and photo.jpg, :) ;-) :D ^_^ (^_^)",
    "Jan. 5, Inc. profits; No. 5 and fig. 3 on p. 10 a.m. to 5 p.m.",
    "phone 555-123-4567 or (555) 123-4567 or 123.456.7890",
    "½ ¼ ¾ ⅓ £3 €5 ¥100 ¢50 US$ 30°C × ÷ ± § ™ © ®",
    "   leading and trailing spaces   ",
    "ALL CAPS CAPTION OF A STREET SIGN",
    "tabs\tbetween\twords and\u00a0non-breaking\u3000spaces",
    "soft\u00adhyphen and zero\u200bwidth",
    "",
    ".",
    "...",
    "!!!",
    "(",
    "-",
    "a",
    "A",
    "a, a. a! a? a; a: a' a\" a- a( a)",
    "The man's hat and the men's hats; the boss' car.",
    "A photo of a cat sitting on a laptop keyboard next to a mug of coffee on a wooden desk in a sunny "
    "room with plants, books, a lamp and a window overlooking the city at dusk while it rains outside",
    "Kids 'n' adults 'em 'cause 'til nor'easter c'mon li'l",
    "x A.", "A.M. The sun", "U.S.A. A flag", "e.g. The", "Calif. Sun", "Mass. Ave.",
    "1st 2nd 3rd 4th 1990s '99 '90s 1080p 4K H2O CO2 MP3 iPhone",
    "x--y x---y a_b snake_case CamelCase __init__",
    "What?! Really?? Yes... No!!!",
    "Hi!How are you?Fine.Thanks",
]

PIECES = [
    "a", "man", "woman", "dog", "cat", "is", "on", "the", "The", "A", "two", "red", "sitting", "next to",
    "U.S.", "e.g.", "etc.", "Mr.", "St.", "no.", "5", "3.5", "1,000", "10:30", "1/2", "-5",
    "don't", "can't", "he's", "it's", "they're", "I'll", "we'd", "o'clock", "'90s", "rock'n'roll", "y'all",
    "cannot", "gonna", '"', "'", "“", "”", "‘", "’", "(", ")", "[", "]", "{", "}", "<", ">", "&", "&amp;",
    "-", "--", "—", "–", "...", "…", ".", ",", ";", ":", "?", "!", "?!", "/", "*", "=", "+", "%", "$", "#",
    "@", "_", "$5", "€5", "½", "well-known", "x-ray", "T-shirt", "AT&T", "a/b", "C++", "foo.com",
    "bar@baz.org", "@user", "#tag", ":)", "café", "über", "naïve", "İstanbul", "ΣΟΦΙΑ", "Привет", "中文",
    "日本語", "한국어", "😀", "🐶", "👍🏽", "★", "©", "°", "×", "\t", "\u00a0", "\u00ad", "Ph.D.", "a.m.",
    "Jan.", "Inc.", "vs.", "O'Neill", "'em", "snake_case", "iPhone", "1080p", "H2O",
]
WORDS = ("a an the man woman dog cat is are was sitting standing on in of with and to at near by two three "
         "red blue green white black large small young old people person table street car bus train photo "
         "view").split()
SEPARATORS = [" "] * 12 + ["", "  ", " , ", ". ", "-", "/", "'", '"']


def _random_caption(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.choice([0, 1, 2, 4, 6, 8, 10, 12, 16, 24])):
        word = rng.choice(WORDS) if rng.random() < 0.5 else rng.choice(PIECES)
        roll = rng.random()
        word = word.upper() if roll < 0.1 else word.capitalize() if roll < 0.25 else word
        parts += [word, rng.choice(SEPARATORS)]
    text = "".join(parts)
    if rng.random() < 0.3:
        text += rng.choice([".", "!", "?", "...", " ."])
    return text.strip() if rng.random() < 0.7 else text


def _corpus(n_items: int = 300, seed: int = 1234):
    rng = random.Random(seed)
    pool = SEEDS + [_random_caption(rng) for _ in range(600)]
    gts, res = {}, {}
    for k in range(n_items):
        refs = [pool[(k * 5 + j) % len(pool)] if rng.random() < 0.4 else rng.choice(pool)
                for j in range(rng.randint(1, 5))]
        gts[f"img{k:04d}"] = refs
        roll = rng.random()
        res[f"img{k:04d}"] = ("" if roll < 0.05 else rng.choice(refs) if roll < 0.25 else
                              " ".join(rng.choice(refs).split()[:rng.randint(1, 8)]) if roll < 0.45 else
                              _random_caption(rng))
    # every seed at least once as a prediction (they are the tokenizer's hard cases)
    for k, seed_text in enumerate(SEEDS):
        res[f"img{k:04d}"] = seed_text
    return gts, res


GTS, RES = _corpus()


# ---------------------------------------------------------------------------------------------------------
# pycocoevalcap, run once per session
# ---------------------------------------------------------------------------------------------------------

def _as_coco(d):
    return {k: [{"caption": c} for c in (v if isinstance(v, list) else [v])] for k, v in d.items()}


@pytest.fixture(scope="session")
def reference():
    """pycocoevalcap's own results on GTS/RES: tokenised text, every scorer's corpus and per-item output."""
    if not HAVE_JAVA:
        pytest.skip("java not found: pycocoevalcap's PTBTokenizer and METEOR need it")
    pytest.importorskip("pycocoevalcap.tokenizer.ptbtokenizer", reason="pycocoevalcap is not installed")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts_tok = tokenizer.tokenize(_as_coco(GTS))  # one Java call for all references ...
    res_tok = tokenizer.tokenize(_as_coco(RES))  # ... and one for all predictions, as COCOEvalCap does
    out = {"gts": gts_tok, "res": res_tok}
    out["BLEU"] = Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
    out["ROUGE-L"] = Rouge().compute_score(gts_tok, res_tok)
    out["CIDEr"] = Cider().compute_score(gts_tok, res_tok)
    scorer = Meteor()
    out["METEOR"] = scorer.compute_score(gts_tok, res_tok)
    del scorer
    return out


@pytest.fixture(scope="session")
def ours():
    return coco_scores(GTS, RES)


def _close(a, b) -> bool:
    return abs(float(a) - float(b)) <= TOL


# ---------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------

@needs_java
def test_ptb_tokenize_equals_java_tokenizer(reference):
    refs = [r for k in GTS for r in GTS[k]]
    mine_refs = ptb_tokenize(refs)
    theirs_refs = [t for k in GTS for t in reference["gts"][k]]
    assert len(refs) > 500
    bad = [(raw, m, t) for raw, m, t in zip(refs, mine_refs, theirs_refs) if m != t]
    assert not bad, bad[:5]
    mine_preds = ptb_tokenize([RES[k] for k in GTS])
    theirs_preds = [reference["res"][k][0] for k in GTS]
    bad = [(raw, m, t) for raw, m, t in zip([RES[k] for k in GTS], mine_preds, theirs_preds) if m != t]
    assert not bad, bad[:5]


# Outputs of pycocoevalcap's PTBTokenizer (taken from the jar), so the tokenizer is tested without Java too.
KNOWN = [
    ("A man (in a red shirt) is riding a horse.", "a man -lrb- in a red shirt -rrb- is riding a horse"),
    # lower-cased after escaping, so "-lrb-" & co. are not the "-LRB-" of pycocoevalcap's punctuation list
    ("[brackets] and {braces} <angle>", "-lsb- brackets -rsb- and -lcb- braces -rcb- <angle>"),
    ("He's not going, they're sure I'll we'd you've I'm don't can't won't cannot gonna",
     "he 's not going they 're sure i 'll we 'd you 've i 'm do n't ca n't wo n't can not gon na"),
    ('"Hello," she said. \'Quoted\' text', "hello she said quoted text"),
    ("The U.S. army. The U.S. The u.s. flag etc. and so on Mr. Smith",
     "the u.s. army the u.s. the u.s. flag etc. and so on mr. smith"),
    ("It costs $3.50 or 1,000,000 dollars at 10:30 on 12/25/2014 1/2 5 7/8",
     "it costs $ 3.50 or 1,000,000 dollars at 10:30 on 12/25/2014 1/2 5\u00a07/8"),
    ("well-known state-of-the-art co-ed e-mail", "well-known state-of-the-art co-ed e-mail"),
    ("Wait... what.... Ok . . . fine…", "wait what ok fine"),
    ("Café über naïve", "café über naïve"),
    ("a 🐶 dog 😀 smiling", "a dog smiling"),
    ("中文 字幕 한국어", "中文 字幕 한국어"),
    ("A -- B — C – D ---- E - F", "a b c d e f"),
    ("email foo@bar.com or http://www.example.com/path?x=1",
     "email foo@bar.com or http://www.example.com/path?x=1"),
    ("#hashtag @user & &amp; 50% a+b a/b", "#hashtag @user & & 50 % a + b a/b"),
    ("'90s rock 'n' roll o'clock y'all", "'90s rock 'n' roll o'clock y' all"),
    ("?!?! !!! ??", "?!?! !!! ??"),
    ("C++ and C# :) ^_^ foo.txt", "c++ and c# :-rrb- ^_^ foo.txt"),
    ("x A. The end", "x a the end"),
    ("", ""),
    ("...", ""),
]


@pytest.mark.parametrize(("text", "expected"), KNOWN)
def test_ptb_tokenize_known_outputs(text, expected):
    assert ptb_tokenize([text]) == [expected]


def test_ptb_tokenize_keeps_alignment_on_other_line_breaks():
    # pycocoevalcap shifts every later caption by one line here (Java starts a new line at \r, U+2028 ...);
    # the twin treats them as spaces instead.
    texts = ["a\rb", "c\u2028d", "e\x0bf\x0cg\u2029h", "i\nj", "last one"]
    assert ptb_tokenize(texts) == ["a b", "c d", "e f g h", "i j", "last one"]


def test_ptb_tokenize_batch_context_and_end_of_input():
    # The texts are one stream, as in pycocoevalcap: ":)" and "'99" need a character after them to be tokens,
    # which the last text of the batch does not have.
    assert ptb_tokenize(["a :) in '99", "x"]) == ["a :-rrb- in '99", "x"]
    assert ptb_tokenize(["x", "a :) in '99"]) == ["x", "a :-rrb- in 99"]
    assert ptb_tokenize(["x", "a :)"]) == ["x", "a -rrb-"]
    assert ptb_tokens("Two dogs (running).") == ["two", "dogs", "-lrb-", "running", "-rrb-", "."]
    assert not any(t in PUNCTUATIONS for t in ptb_tokenize(SEEDS)[0].split())


# ---------------------------------------------------------------------------------------------------------
# Metrics against pycocoevalcap on the same raw inputs
# ---------------------------------------------------------------------------------------------------------

@needs_java
@pytest.mark.parametrize("metric", ["BLEU", "ROUGE-L", "CIDEr", "METEOR"])
def test_coco_scores_equal_pycocoevalcap(reference, ours, metric):
    corpus, per_item, unavailable = ours
    assert unavailable == {}
    ids = list(GTS)
    score, scores = reference[metric]
    if metric == "BLEU":
        for k in range(4):
            name = f"BLEU-{k + 1}"
            assert _close(corpus[name], score[k]), (name, corpus[name], score[k])
            bad = [(i, per_item[name][i], s) for i, s in zip(ids, scores[k])
                   if not _close(per_item[name][i], s)]
            assert not bad, bad[:5]
    else:
        assert _close(corpus[metric], score), (corpus[metric], score)
        bad = [(i, per_item[metric][i], s) for i, s in zip(ids, list(scores))
               if not _close(per_item[metric][i], s)]
        assert not bad, bad[:5]


@needs_java
def test_metric_functions_on_raw_and_tokenized_text(reference):
    b, b_items = bleu(GTS, RES)
    assert all(_close(x, y) for x, y in zip(b, reference["BLEU"][0]))
    assert all(_close(x, y) for x, y in zip(b_items[3], reference["BLEU"][1][3]))
    r, r_items = rouge_l(reference["gts"], reference["res"], tokenized=True)
    assert _close(r, reference["ROUGE-L"][0]) and np.allclose(r_items, reference["ROUGE-L"][1], atol=TOL)
    c, c_items = cider_d(reference["gts"], reference["res"], tokenized=True)
    assert _close(c, reference["CIDEr"][0]) and np.allclose(c_items, reference["CIDEr"][1], atol=TOL)


@needs_java
def test_cider_d_reward_equals_cider_scorer(reference):
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    gts, res = reference["gts"], reference["res"]
    ids = list(gts)
    # Same document-frequency corpus as the evaluated set: pycocoevalcap's numbers.
    scorer = cider_d_scorer([gts[i] for i in ids])
    values = scorer.score([res[i][0] for i in ids], [gts[i] for i in ids])
    assert np.allclose(values, reference["CIDEr"][1], atol=TOL)
    # Training-corpus document frequencies, scoring a few items (the SCST reward): an item's CiderScorer score
    # depends only on the corpus and that item, so score the whole corpus there and pick the same items.
    theirs = CiderScorer(n=4, sigma=6.0)
    for i in ids:
        theirs += (res[i][0], gts[i])
    _, all_scores = theirs.compute_score()
    picked = ids[10:40]
    mine = scorer.score([res[i][0] for i in picked], [gts[i] for i in picked])
    assert np.allclose(mine, [all_scores[ids.index(i)] for i in picked], atol=TOL)
    # and from raw references, tokenised on the way in
    raw_scorer = cider_d_scorer([GTS[i] for i in ids], tokenize=True)
    assert raw_scorer.ref_len == scorer.ref_len and raw_scorer.document_frequency == scorer.document_frequency


@needs_java
def test_meteor_function_reuses_a_process(reference):
    with coco.MeteorScorer() as scorer:
        score, scores = meteor(reference["gts"], reference["res"], tokenized=True, scorer=scorer)
        again, _ = meteor({"a": ["a dog runs"]}, {"a": "a dog runs"}, scorer=scorer)
    assert _close(score, reference["METEOR"][0]) and np.allclose(scores, reference["METEOR"][1], atol=TOL)
    assert again == pytest.approx(1.0, abs=0.01)


# ---------------------------------------------------------------------------------------------------------
# Metric ports against pycocoevalcap's scorers on random tokenised text (pure Python, no Java)
# ---------------------------------------------------------------------------------------------------------

_token = st.sampled_from(["a", "man", "dog", "the", "on", "red", "two", "sits", "-lrb-", "é", "中文", "'s",
                          "x"])
_caption = st.lists(_token, min_size=0, max_size=14).map(" ".join)
_items = st.lists(st.tuples(st.lists(_caption, min_size=1, max_size=5), _caption), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_items)
def test_ports_equal_pycocoevalcap_scorers(items):
    pytest.importorskip("pycocoevalcap.bleu.bleu", reason="pycocoevalcap is not installed")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {k: refs for k, (refs, _) in enumerate(items)}
    res = {k: [pred] for k, (_, pred) in enumerate(items)}
    b, b_items = bleu(gts, res, tokenized=True)
    tb, tb_items = Bleu(4).compute_score(gts, res, verbose=0)
    assert np.allclose(b, tb, atol=TOL) and np.allclose(b_items, tb_items, atol=TOL)
    r, r_items = rouge_l(gts, res, tokenized=True)
    tr, tr_items = Rouge().compute_score(gts, res)
    assert _close(r, tr) and np.allclose(r_items, tr_items, atol=TOL)
    c, c_items = cider_d(gts, res, tokenized=True)
    if any(ref.split() for refs, _ in items for ref in refs):  # else pycocoevalcap raises (no df at all)
        tc, tc_items = Cider().compute_score(gts, res)
        assert _close(c, tc) and np.allclose(c_items, tc_items, atol=TOL)
    else:
        assert c == 0.0 and c_items == [0.0] * len(items)


# ---------------------------------------------------------------------------------------------------------
# Edge cases (no Java, no pycocoevalcap needed)
# ---------------------------------------------------------------------------------------------------------

def test_empty_predictions_and_references_do_not_crash(monkeypatch):
    monkeypatch.setattr(coco.shutil, "which", lambda name: None)  # METEOR off: this test runs anywhere
    gts = {"a": ["a dog runs", "a dog is running"], "b": [""], "c": ["..."], "d": [], "e": ["two cats"]}
    res = {"a": "a dog runs", "b": "", "c": "", "d": "anything", "e": None}
    corpus, per_item, unavailable = coco_scores(gts, res)
    assert unavailable == {"METEOR": JAVA_MISSING}
    assert set(corpus) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}
    for name, values in per_item.items():
        assert list(values) == list(gts), name
        assert values["d"] == 0.0 and values["e"] == 0.0, name  # no reference / empty prediction
    # pycocoevalcap's ROUGE-L: an empty prediction against an empty reference is one "" token each -> 1.0
    assert per_item["ROUGE-L"]["b"] == 1.0 and per_item["ROUGE-L"]["c"] == 1.0
    assert per_item["BLEU-1"]["a"] == pytest.approx(1.0)
    # "d" (no reference) stays out of the corpus figures: they equal the run without it
    without_d = coco_scores({k: v for k, v in gts.items() if k != "d"},
                            {k: v for k, v in res.items() if k != "d"})
    assert without_d[0] == corpus


def test_metric_functions_skip_items_without_references():
    gts = {"a": [], "b": ["a dog runs"], "c": ["two cats"]}
    res = {"a": "a dog", "b": "a dog runs", "c": "a cat"}
    b, b_items = bleu(gts, res)
    assert [len(x) for x in b_items] == [3] * 4 and b_items[0][0] == 0.0
    assert b == bleu({k: gts[k] for k in "bc"}, {k: res[k] for k in "bc"})[0]
    assert rouge_l(gts, res)[1][0] == 0.0 and cider_d(gts, res)[1][0] == 0.0
    assert rouge_l(gts, res)[0] == rouge_l({k: gts[k] for k in "bc"}, {k: res[k] for k in "bc"})[0]


def test_all_references_empty_gives_zero_cider():
    corpus, per_item, _ = coco_scores({"a": [""], "b": ["!!"]}, {"a": "x", "b": ""},
                                      metrics=("CIDEr", "BLEU"))
    assert corpus["CIDEr"] == 0.0 and per_item["CIDEr"] == {"a": 0.0, "b": 0.0}
    assert set(corpus) == {"CIDEr", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"}


def test_bad_arguments_are_reported():
    with pytest.raises(ConfigError, match="same ids"):
        coco_scores({"a": ["x"]}, {"b": "x"})
    with pytest.raises(ConfigError, match="unknown SPICE"):
        coco_scores({"a": ["x"]}, {"a": "x"}, metrics=("SPICE",))
    with pytest.raises(ConfigError, match="2 candidates"):
        CiderD([["a b"]]).score(["a", "b"], [["a"]])
    assert coco_scores({}, {}) == ({}, {}, {})


def test_meteor_without_java_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(coco.shutil, "which", lambda name: None)
    assert meteor({"a": ["a dog"]}, {"a": "a dog"}) == (None, JAVA_MISSING)


def test_tokenize_pairs_batches_like_cocoevalcap():
    gts, res = tokenize_pairs({"x": ["A Dog.", "The dog!"], "y": ["Cats (two)"]}, {"x": "a DOG", "y": None})
    assert gts == {"x": ["a dog", "the dog"], "y": ["cats -lrb- two -rrb-"]}
    assert res == {"x": ["a dog"], "y": [""]}


def test_cider_d_reward_is_fast_and_cached():
    corpus = [[f"a dog number {i} runs on the grass", f"the dog {i} plays"] for i in range(2000)]
    scorer = CiderD(corpus)
    cands = [f"a dog {i} runs" for i in range(2000)]
    values = scorer.score(cands, corpus)
    assert values.shape == (2000,) and np.all(values > 0)
    assert np.array_equal(values, scorer.score(cands, corpus))  # second pass hits the reference cache
