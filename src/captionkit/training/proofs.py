"""``make proofs``: each trainer learns, from a random small model, on the synthetic dataset.

    python -m captionkit.training.proofs --out out/proofs --docs docs/proofs.md [--only writer]

Each proof measures held-out metrics before and after training with the same greedy decoding, records the
command, the settings and the time, and appends its section to ``docs/proofs.md``. Budget: at most 10
minutes per trainer on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _split(path: Path, out: Path) -> tuple[Path, Path]:
    train, val = out / "posts.train.jsonl", out / "posts.val.jsonl"
    with path.open(encoding="utf-8") as src, train.open("w", encoding="utf-8") as t, val.open("w", encoding="utf-8") as v:
        for line in src:
            (v if json.loads(line)["split"] == "val" else t).write(line)
    return train, val


def _score(model: Any, tok: Any, val: list, device: str = "cpu") -> dict[str, float]:
    from captionkit.eval.coco import coco_scores
    from captionkit.training.writer import generate

    preds = generate(model, tok, val, max_new_tokens=64, batch_size=16, device=device)
    refs = {ex.id: [ex.response] for ex in val}
    corpus = coco_scores(refs, {k: v or "." for k, v in preds.items()}, metrics=("BLEU", "ROUGE-L", "CIDEr"))[0]
    exact = sum(preds[ex.id].strip() == ex.response.strip() for ex in val) / len(val)
    return {"CIDEr": corpus["CIDEr"], "BLEU-4": corpus["BLEU-4"], "ROUGE-L": corpus["ROUGE-L"], "exact_match": exact,
            "example": {"prediction": preds[val[0].id], "reference": val[0].response}}


def prove_writer(out: Path, n: int = 600, max_steps: int = 1200, seed: int = 0) -> dict[str, Any]:
    """Full fine-tuning of a random 3-layer Qwen2-architecture LM on synthetic description -> post pairs."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from captionkit.training.scratch import build_scratch_lm
    from captionkit.training.synth import make_synthetic
    from captionkit.training.writer import WriterTrainConfig, read_examples, train_writer

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    info = make_synthetic(out / "synth", n=n, seed=seed, size=32)
    train, val = _split(info.posts, out)
    texts = [line for path in (train,) for line in path.read_text(encoding="utf-8").splitlines()]
    lm = build_scratch_lm(out / "scratch-lm", texts, seed=seed)
    val_examples = read_examples(val)
    torch.manual_seed(seed)
    before = _score(AutoModelForCausalLM.from_pretrained(lm).eval(), AutoTokenizer.from_pretrained(lm), val_examples)
    cfg = WriterTrainConfig.from_preset(
        None, data=str(train), val_data=str(val), model=str(lm), method="full", output_dir=str(out / "run"),
        max_steps=max_steps, batch_size=16, lr=1e-3, warmup_ratio=0.05, scheduler="cosine", max_length=384,
        eval_every_epoch=False, seed=seed, save_total_limit=1, progress=False,
    )
    result = train_writer(cfg)
    final = Path(result.final)
    after = _score(AutoModelForCausalLM.from_pretrained(final).eval(), AutoTokenizer.from_pretrained(final), val_examples)
    return {"trainer": "writer", "before": before, "after": after, "seconds": time.perf_counter() - start,
            "train_items": len(read_examples(train)), "val_items": len(val_examples), "steps": result.steps,
            "settings": {"model": "random Qwen2 architecture, hidden 192, 3 layers, BPE vocab 1200 trained on the data",
                         "method": "full fine-tuning, lr 1e-3, cosine", "batch_size": 16}}


def _caption_scores(folder: Path, pairs: list, images: list, max_new_tokens: int) -> dict[str, Any]:
    """Held-out metrics of the captioner saved in ``folder``, run by the describe stage's own backend."""
    from captionkit.eval.coco import coco_scores
    from captionkit.models.options import GenerationOptions
    from captionkit.training.captioner import CaptionModel, make_captioner

    cm = CaptionModel(str(folder), "cpu")
    cm.model.eval()
    captioner = make_captioner(cm, folder)
    texts: list[str] = []
    for start in range(0, len(images), 64):
        texts += captioner.caption(images[start:start + 64], gen=GenerationOptions(max_new_tokens=max_new_tokens))
    preds = {p.id: t.strip() or "." for p, t in zip(pairs, texts)}
    corpus = coco_scores({p.id: p.references for p in pairs}, preds, metrics=("BLEU", "ROUGE-L", "CIDEr"))[0]
    exact = sum(_norm(preds[p.id]) == _norm(p.caption) for p in pairs) / len(pairs)
    return {"CIDEr": corpus["CIDEr"], "BLEU-4": corpus["BLEU-4"], "ROUGE-L": corpus["ROUGE-L"], "exact_match": exact,
            "example": {"prediction": preds[pairs[0].id], "reference": pairs[0].caption}}


def _norm(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".").split())


def prove_captioner(out: Path, n: int = 2000, ce_steps: int = 1200, scst_steps: int = 200,
                    seed: int = 0) -> dict[str, Any]:
    """A random ViT + GPT-2 captioner: cross-entropy from scratch, then self-critical training (CIDEr-D reward)
    from the cross-entropy model."""
    from captionkit.training.captioner import CaptionerTrainConfig, load_images, read_pairs, train_captioner
    from captionkit.training.scratch import build_scratch_captioner
    from captionkit.training.synth import make_synthetic

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    info = make_synthetic(out / "synth", n=n, seed=seed, size=48)
    pairs = read_pairs(info.captions)
    train = [p for p in pairs if p.split != "val"]
    val, val_images, _ = load_images([p for p in pairs if p.split == "val"], info.captions.parent)
    model = build_scratch_captioner(out / "scratch", [r for p in train for r in p.references], seed=seed)
    max_new = 48
    common = dict(data=str(info.captions), batch_size=32, max_length=max_new, eval_every_epoch=False, seed=seed,
                  save_total_limit=1, progress=False, targets="references")
    before = _caption_scores(model, val, val_images, max_new)
    t0 = time.perf_counter()
    ce = train_captioner(CaptionerTrainConfig.from_preset(
        None, model=str(model), output_dir=str(out / "ce"), max_steps=ce_steps, lr=1e-3, warmup_ratio=0.05,
        scheduler="cosine", **common))
    ce_seconds = time.perf_counter() - t0
    after_ce = _caption_scores(ce.final, val, val_images, max_new)
    # Control: the same number of further steps at the same learning rate with cross-entropy, so that the SCST
    # column's gain is not just "more training".
    more_ce = train_captioner(CaptionerTrainConfig.from_preset(
        None, model=str(ce.final), output_dir=str(out / "ce-more"), max_steps=scst_steps, lr=5e-5,
        scheduler="constant", **common))
    after_more_ce = _caption_scores(more_ce.final, val, val_images, max_new)
    t0 = time.perf_counter()
    scst = train_captioner(CaptionerTrainConfig.from_preset(
        None, model=str(ce.final), output_dir=str(out / "scst"), max_steps=scst_steps, lr=5e-5, scheduler="constant",
        scst=True, scst_samples=5, scst_top_p=1.0, scst_max_new_tokens=max_new, **common))
    scst_seconds = time.perf_counter() - t0
    after = _caption_scores(scst.final, val, val_images, max_new)
    note = ("Cross-entropy trains on a random one of each image's references per epoch (as COCO training does), "
            "so greedy decoding mixes their phrasings; self-critical training with a CIDEr-D reward then moves the "
            "model toward the consensus wording, which is what CIDEr-D rewards. The control column continues "
            "cross-entropy from the same start for as many steps at the same learning rate.")
    return {"trainer": "captioner", "note": note, "before": before, "after_ce": after_ce, "after_more_ce": after_more_ce,
            "after": after,
            "seconds": time.perf_counter() - start, "ce_seconds": ce_seconds, "scst_seconds": scst_seconds,
            "train_items": len(train), "val_items": len(val), "steps": ce.steps + more_ce.steps + scst.steps,
            "settings": {"model": "random ViT (48 px, patch 8, 2 layers) + GPT-2 (2 layers), hidden 128, "
                                  "BPE vocab trained on the captions",
                         "method": f"cross-entropy on a random reference per image and epoch ({ce.steps} steps, "
                                   f"lr 1e-3, {ce_seconds / 60:.1f} min), then self-critical sequence training "
                                   f"from that model: CIDEr-D reward, greedy baseline, 5 samples per image "
                                   f"({scst.steps} steps, lr 5e-5, {scst_seconds / 60:.1f} min)",
                         "batch_size": 32}}


def _vlm_scores(folder: Path, captions: list, vqa: list, max_new_tokens: int) -> dict[str, Any]:
    """Held-out caption metrics and VQA exact match of a saved Llava folder, through the chat_vlm backend that
    ``captionkit describe/ask --captioner FOLDER`` uses."""
    from collections import defaultdict

    from PIL import Image

    from captionkit.captioners.base import available_backends
    from captionkit.eval.coco import coco_scores
    from captionkit.models.options import GenerationOptions, ModelOptions
    from captionkit.training.projector import normalize_answer

    vlm = available_backends()["chat_vlm"].factory(str(folder), ModelOptions(device="cpu", dtype="float32"))
    gen = GenerationOptions(max_new_tokens=max_new_tokens)
    images = [Image.open(s.image).convert("RGB") for s in captions]
    texts: list[str] = []
    for start in range(0, len(images), 32):
        texts += vlm.caption(images[start:start + 32], gen=gen)
    preds = {s.id: t.strip() or "." for s, t in zip(captions, texts)}
    corpus = coco_scores({s.id: s.references for s in captions}, preds, metrics=("BLEU", "ROUGE-L", "CIDEr"))[0]
    by_question = defaultdict(list)
    for s in vqa:
        by_question[s.turns[0].question].append(s)
    per_question: dict[str, float] = {}
    for question, group in by_question.items():
        hits = 0
        for start in range(0, len(group), 32):
            chunk = group[start:start + 32]
            answers = vlm.ask([Image.open(s.image).convert("RGB") for s in chunk], question,
                              GenerationOptions(max_new_tokens=8))
            hits += sum(normalize_answer(a) == normalize_answer(s.turns[0].answer) for s, a in zip(chunk, answers))
        per_question[f"exact_match: {question}"] = hits / len(group)
    total = sum(per_question[f"exact_match: {q}"] * len(g) for q, g in by_question.items())
    return {"CIDEr": corpus["CIDEr"], "BLEU-4": corpus["BLEU-4"], "ROUGE-L": corpus["ROUGE-L"],
            "caption_exact_match": sum(_norm(preds[s.id]) == _norm(s.references[0]) for s in captions) / len(captions),
            "vqa_exact_match": total / len(vqa), **dict(sorted(per_question.items())),
            "example": {"prediction": preds[captions[0].id], "reference": captions[0].references[0]}}


GLOBAL_QUESTIONS = ("what colour is the background?", "how many shapes are there?", "what word is written?")


def prove_projector(out: Path, n: int = 1200, lm_steps: int = 1200, stage1_steps: int = 1200, stage2_steps: int = 1500,
                    seed: int = 0) -> dict[str, Any]:
    """LLaVA-style: a random CLIP vision tower (frozen) + a projector + a random Qwen2-architecture LM that first
    learns the captions' and answers' language from text alone; stage 1 trains the projector on captions, stage 2
    LoRA + projector on questions."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from captionkit.training.projector import (
        ProjectorTrainConfig,
        caption_instruction,
        read_samples,
        train_projector,
    )
    from captionkit.training.scratch import build_scratch_lm
    from captionkit.training.synth import make_synthetic
    from captionkit.training.writer import WriterTrainConfig, train_writer

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    info = make_synthetic(out / "synth", n=n, seed=seed, size=32)
    captions = read_samples(info.captions, 1)
    # Stage 2 data, as LLaVA's instruction mix: questions about the whole image (the per-shape ones need more steps
    # than the budget allows for a 3-layer LM trained from scratch) plus "describe the image" conversations.
    instruct = out / "instruct.jsonl"
    with info.vqa.open(encoding="utf-8") as src, instruct.open("w", encoding="utf-8") as dst:
        for line in src:
            if json.loads(line)["conversations"][0]["value"].split("\n", 1)[-1] in GLOBAL_QUESTIONS:
                dst.write(line)
        for s in captions:
            image = Path(s.image).relative_to(info.vqa.parent).as_posix()
            dst.write(json.dumps({"id": f"{s.id}-caption", "image": image, "split": s.split, "conversations": [
                {"from": "human", "value": f"<image>\n{caption_instruction()}"},
                {"from": "gpt", "value": s.references[0]}]}) + "\n")
    vqa = [s for s in read_samples(instruct, 2, image_root=str(info.vqa.parent)) if not s.id.endswith("-caption")]
    val_captions = [s for s in captions if s.split == "val"]
    val_vqa = [s for s in vqa if s.split == "val"]

    # The pretrained LM that LLaVA starts from already describes and answers from text. Stand-in: from text alone,
    # the LM learns to caption and answer from a text description of the scene put where the image will go
    # (before the instruction); stage 1 then has to map image features into that text's embedding space.
    text = out / "lm_text.jsonl"
    scene = {s.image: s.references[0] for s in captions}
    with text.open("w", encoding="utf-8") as fh:
        pairs = [(s.image, caption_instruction(), random.Random(s.id).choice(s.references))
                 for s in captions if s.split != "val"]
        pairs += [(s.image, s.turns[0].question, s.turns[0].answer) for s in vqa if s.split != "val"]
        for image, question, answer in pairs:
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"{scene[image]}\n{question}"},
                                              {"role": "assistant", "content": answer}]}) + "\n")
    lm = build_scratch_lm(out / "scratch-lm", text.read_text(encoding="utf-8").splitlines(), seed=seed)
    lm_run = train_writer(WriterTrainConfig.from_preset(
        None, data=str(text), model=str(lm), method="full", output_dir=str(out / "lm"), max_steps=lm_steps,
        batch_size=16, lr=1e-3, warmup_ratio=0.05, scheduler="cosine", max_length=128, eval_every_epoch=False,
        seed=seed, save_total_limit=1, progress=False))
    lm_seconds = time.perf_counter() - start

    vision = out / "clip-vision"
    torch.manual_seed(seed)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                                     image_size=32, patch_size=8)).save_pretrained(vision)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(vision)

    common = dict(batch_size=16, warmup_ratio=0.05, scheduler="cosine", max_length=256, eval_every_epoch=False,
                  seed=seed, save_total_limit=1, progress=False, device="cpu")
    t1 = time.perf_counter()
    stage1 = train_projector(ProjectorTrainConfig(
        data=str(info.captions), output_dir=str(out / "stage1"), stage=1, vision=str(vision), lm=str(lm_run.final),
        max_steps=stage1_steps, lr=3e-3, **common))
    stage1_seconds = time.perf_counter() - t1
    # "untrained": the same assembled model, its projector as initialised (stage 1's step 0).
    from captionkit.training.projector import assemble_llava, save_llava

    untrained = save_llava(*assemble_llava(str(vision), str(lm_run.final), seed=seed), out / "untrained")
    max_new = 48
    before = _vlm_scores(untrained, val_captions, val_vqa, max_new)
    after_stage1 = _vlm_scores(Path(stage1.final), val_captions, val_vqa, max_new)
    t2 = time.perf_counter()
    stage2 = train_projector(ProjectorTrainConfig(
        data=str(instruct), image_root=str(info.vqa.parent), output_dir=str(out / "stage2"), stage=2,
        init=str(stage1.final), max_steps=stage2_steps, lr=2e-3, lora_r=16, lora_alpha=32, lora_dropout=0.0,
        **common))
    stage2_seconds = time.perf_counter() - t2
    after = _vlm_scores(Path(stage2.final), val_captions, val_vqa, max_new)
    note = ("LLaVA starts from a pretrained LM; no weights can be downloaded here, so a 3-layer LM first learns, "
            "from text alone, to caption and answer from a description of the scene written where the image goes. "
            "The vision tower stays random and frozen throughout. Stage 1 trains only the projector on captions, "
            "so its model captions when asked a question (question exact match falls); stage 2 (LoRA + projector "
            "on captions and whole-image questions) learns both. Questions about single shapes (`what colour is "
            "the circle?`, `what shape is at the top left?`) are left out: this small LM needs more steps for "
            "them than the 10-minute budget gives.")
    return {"trainer": "projector", "note": note, "before": before, "after_stage1": after_stage1, "after": after,
            "seconds": time.perf_counter() - start, "train_items": len(captions) - len(val_captions),
            "val_items": len(val_captions), "val_questions": len(val_vqa),
            "steps": lm_run.steps + stage1.steps + stage2.steps,
            "settings": {"model": "random CLIP vision tower (32 px, patch 8, 2 layers, frozen) + MLP projector + "
                                  "random Qwen2 architecture LM (hidden 192, 3 layers) first trained on text: captions and answers "
                                  "written from a text description of the scene in place of the image",
                         "method": f"LM on text first ({lm_run.steps} steps, {lm_seconds / 60:.1f} min; the writer "
                                   f"trainer), then `train projector`: stage 1 projector only on captions "
                                   f"({stage1.steps} steps, lr 3e-3, {stage1_seconds / 60:.1f} min), stage 2 LoRA r16 "
                                   f"+ projector on captions and the whole-image questions ({', '.join(GLOBAL_QUESTIONS)}; "
                                   f"{stage2.steps} steps, lr 2e-3, {stage2_seconds / 60:.1f} min)",
                         "batch_size": 16}}


PROOFS = {"writer": prove_writer, "captioner": prove_captioner, "projector": prove_projector}


# Per proof: the result keys that hold scores, in table order, with their column titles.
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "writer": [("before", "untrained"), ("after", "trained")],
    "captioner": [("before", "untrained"), ("after_ce", "cross-entropy"),
                  ("after_more_ce", "+ cross-entropy, same steps as SCST (control)"),
                  ("after", "+ self-critical (SCST)")],
    "projector": [("before", "untrained projector"), ("after_stage1", "stage 1"), ("after", "stage 2")],
}


def _section(r: dict[str, Any], command: str) -> str:
    columns = COLUMNS[r["trainer"]]
    metrics = [k for k, v in r["before"].items() if isinstance(v, (int, float))]
    rows = ["| " + " | ".join([k, *(f"{r[key][k]:.3f}" for key, _ in columns)]) + " |" for k in metrics]
    extra = f", {r['val_questions']} held-out questions" if "val_questions" in r else ""
    return "\n".join([
        f"## {r['trainer']}", "",
        f"- command: `{command}`",
        f"- data: `captionkit synth` ({r['train_items']} train / {r['val_items']} held-out items{extra})",
        f"- model: {r['settings']['model']}",
        f"- training: {r['settings']['method']}; batch {r['settings']['batch_size']}; {r['steps']} steps in all",
        f"- time: {r['seconds'] / 60:.1f} min on {platform.machine()} with {_cores()} cores "
        f"({datetime.now(timezone.utc):%Y-%m-%d})", "",
        "| held-out metric | " + " | ".join(title for _, title in columns) + " |",
        "|---|" + "---|" * len(columns), *rows, "",
        f"Example (held out): prediction `{r['after']['example']['prediction']}`  ",
        f"reference `{r['after']['example']['reference']}`", "",
        *([r["note"], ""] if r.get("note") else []),
    ])


def _cores() -> int:
    import os

    return os.cpu_count() or 0


HEAD = ("# Learning proofs\n\nEach trainer starts from a random small model and trains on the synthetic dataset of "
        "`captionkit synth`; the metrics are on held-out items, with the same greedy decoding before and after, "
        "through the backends that `captionkit describe` / `write` use. Rerun with `make proofs` (or one of the "
        "commands below).\n\n")


def _merge(docs: Path, sections: dict[str, str]) -> str:
    """docs/proofs.md with ``sections`` (name -> text) replacing those proofs' old sections; others are kept."""
    kept: dict[str, str] = {}
    if docs.is_file():
        for part in docs.read_text(encoding="utf-8").split("\n## ")[1:]:
            name = part.split("\n", 1)[0].strip()
            kept[name] = "## " + part.rstrip() + "\n"
    kept.update(sections)
    return HEAD + "\n".join(kept[name] for name in PROOFS if name in kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/proofs"))
    parser.add_argument("--docs", type=Path, default=Path("docs/proofs.md"))
    parser.add_argument("--only", choices=sorted(PROOFS), action="append")
    args = parser.parse_args()
    sections = {}
    for name in args.only or list(PROOFS):
        print(f"==> proof: {name} (at most 10 minutes)", flush=True)
        result = PROOFS[name](args.out / name)
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(json.dumps({k: result[k] for k, _ in COLUMNS[name]} | {"seconds": result["seconds"]}, indent=2),
              flush=True)
        sections[name] = _section(result, f"python -m captionkit.training.proofs --only {name}")
    args.docs.parent.mkdir(parents=True, exist_ok=True)
    args.docs.write_text(_merge(args.docs, sections), encoding="utf-8")
    print(f"wrote {args.docs}")


if __name__ == "__main__":
    main()
