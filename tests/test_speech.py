"""Speech: audio decoding with PyAV, Whisper transcription and the ``transcribe`` stage.

No model hub: a tiny random-weight Whisper (1 layer, d_model 16) is built once per session, with a
byte-level tokenizer that carries Whisper's special tokens (three languages, tasks, <|notimestamps|>,
the 1501 timestamp tokens) and a generation config with ``lang_to_id``/``task_to_id``, so that
language detection, short-form and long-form generation all run offline. Its text is gibberish;
the tests check that our code gives exactly what transformers' own ``generate`` gives.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

import captionkit.stages.transcribe  # noqa: F401  (registers the stage until stages/__init__ imports it)
from captionkit import api
from captionkit.config import RunConfig
from captionkit.errors import ConfigError, MediaError, ModelUnavailableError
from captionkit.media.generate import write_video
from captionkit.models.settings import SpeechSettings
from captionkit.speech import whisper as whisper_mod
from captionkit.speech.audio import load_audio
from captionkit.speech.whisper import Transcriber, load_transcriber
from captionkit.stages.transcribe import TranscribeStage
from conftest import write_csv

SR = 16_000
LANGS = ("en", "de", "fr")
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{c}|>" for c in LANGS), "<|translate|>",
            "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]


def _build_tiny_whisper(folder: Path) -> Path:
    from tokenizers import AddedToken
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    tokenizer = WhisperTokenizer(vocab={c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}, merges=[])
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS], special_tokens=True)
    tokenizer.add_tokens([AddedToken("<|%.2f|>" % (i * 0.02), special=False, normalized=False) for i in range(1501)])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=128, pad_token_id=eot, bos_token_id=eot,
        eos_token_id=eot, decoder_start_token_id=sot, begin_suppress_tokens=[eot], suppress_tokens=[],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    # A fresh GenerationConfig, not the model's: one derived from the model config is saved with
    # "_from_model_config": true, and transformers 5 then drops lang_to_id & co. when loading it.
    model.generation_config = GenerationConfig(
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, decoder_start_token_id=sot, max_length=128,
        begin_suppress_tokens=[eot], suppress_tokens=[], is_multilingual=True,
        lang_to_id={f"<|{c}|>": ids[f"<|{c}|>"] for c in LANGS},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        max_initial_timestamp_index=50,
    )
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy CPU (parallel test runs) spinning
    OpenMP threads make them 10-100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    return _build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="session")
def transcriber(tiny_whisper) -> Transcriber:
    return load_transcriber(str(tiny_whisper))


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("speech-media")
    write_video(d / "talk.mp4", seconds=2.0, fps=8, size=(64, 48), with_audio=True)
    write_video(d / "long.mp4", seconds=3.0, fps=4, size=(32, 32), with_audio=True)
    write_video(d / "mute.mp4", seconds=1.0, fps=8, size=(64, 48), with_audio=False)
    write_video(d / "talk.webm", seconds=1.0, fps=8, size=(32, 32), with_audio=True)
    write_video(d / "talk.mkv", seconds=1.0, fps=8, size=(32, 32), with_audio=True)
    return d


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def reference_text(tr: Transcriber, features: torch.Tensor, **kw) -> tuple[torch.Tensor, str]:
    """transformers' own generate + decode, called directly."""
    with torch.inference_mode():
        out = tr.model.generate(features, **kw)
    seq = out["sequences"] if isinstance(out, dict) else out
    return seq, " ".join(tr.processor.batch_decode(seq, skip_special_tokens=True)[0].split())


# --------------------------------------------------------------------------------------------
# load_audio


@pytest.mark.parametrize(("name", "seconds"), [("talk.mp4", 2.0), ("talk.webm", 1.0), ("talk.mkv", 1.0)])
def test_load_audio_gives_16k_mono_float32(videos, name, seconds):
    samples, duration = load_audio(videos / name)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert duration == pytest.approx(seconds, abs=0.1)  # AAC adds ~20 ms of priming
    assert samples.size == pytest.approx(seconds * SR, abs=0.1 * SR)
    assert 0.1 < np.abs(samples).max() <= 1.0  # the 0.2-amplitude tone survived the round trip


def test_load_audio_without_track_is_none_and_max_seconds_cuts(videos):
    assert load_audio(videos / "mute.mp4") is None
    samples, duration = load_audio(videos / "long.mp4", max_seconds=1.0)
    assert samples.size == SR and duration == pytest.approx(3.0, abs=0.1)  # the whole track's length


def test_load_audio_errors_name_the_file(videos, tmp_path):
    bad = tmp_path / "bad-audio.mp4"  # a good container whose every AAC packet is garbage
    shutil.copy(videos / "talk.mp4", bad)
    import av

    with av.open(str(bad)) as c:
        spans = [(p.pos, p.size) for p in c.demux(c.streams.audio[0]) if p.size and p.pos is not None and p.pos >= 0]
    data = bytearray(bad.read_bytes())
    rng = np.random.default_rng(0)
    for pos, size in spans:
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    bad.write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"cannot decode audio: .*bad-audio\.mp4.*corrupt"):
        load_audio(bad)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video at all" * 40)
    with pytest.raises(MediaError, match=r"junk\.mp4"):
        load_audio(junk)
    with pytest.raises(MediaError, match="file not found"):
        load_audio(tmp_path / "nope.mp4")


# --------------------------------------------------------------------------------------------
# Transcriber


def test_transcript_matches_transformers_generate(transcriber, videos):
    samples, duration = load_audio(videos / "talk.mp4")
    features = transcriber.processor(samples, sampling_rate=SR, return_tensors="pt").input_features
    for language in ("en", "de"):
        _, expected = reference_text(transcriber, features, language=language, task="transcribe",
                                     force_unique_generate_call=True)
        got = transcriber.transcribe(samples, language)
        assert (got.text, got.language, got.truncated) == (expected, language, False)
        assert got.text  # the random model says something: the comparison is not "" == ""
    assert got.duration == pytest.approx(duration)


def test_language_is_detected_as_an_iso_code(transcriber):
    audio = tone(2.0, hz=300.0)
    features = transcriber.processor(audio, sampling_rate=SR, return_tensors="pt").input_features
    expected = transcriber.tokenizer.convert_ids_to_tokens(int(transcriber.model.detect_language(features)[0]))
    got = transcriber.transcribe(audio)
    assert got.language in LANGS and f"<|{got.language}|>" == expected
    assert transcriber.detect_language(audio) == got.language
    # what generate does itself when no language is given: the same text
    _, text = reference_text(transcriber, features, task="transcribe", force_unique_generate_call=True)
    assert got.text == text


def test_language_names_and_codes(transcriber):
    assert transcriber.languages == sorted(LANGS)
    assert [transcriber.language_code(x) for x in ("de", "German", "<|fr|>", None)] == ["de", "de", "fr", None]
    with pytest.raises(ConfigError, match="--speech-language 'ja'"):
        transcriber.language_code("ja")


def test_long_audio_goes_through_long_form_and_is_capped(transcriber):
    audio = tone(45.0)
    inputs = transcriber.processor(audio, sampling_rate=SR, return_tensors="pt", truncation=False,
                                   padding="longest", return_attention_mask=True)
    assert inputs.input_features.shape[-1] == 4500  # > 3000 frames: long-form
    _, expected = reference_text(transcriber, inputs.input_features, attention_mask=inputs.attention_mask,
                                 language="en", task="transcribe", return_timestamps=True)
    got = transcriber.transcribe(audio, "en")
    assert got.text == expected and not got.truncated and got.duration == pytest.approx(45.0)
    assert got.segments and all(s["end"] >= s["start"] >= 0 for s in got.segments)
    cut = transcriber.transcribe(audio, "en", max_seconds=20)
    assert cut.truncated and cut.duration == pytest.approx(45.0) and cut.segments is None  # 20 s: one window
    # load_audio already cut the samples: source_duration says how long the track really was
    assert transcriber.transcribe(audio[: 10 * SR], "en", max_seconds=10, source_duration=45.0).truncated


def test_stalled_long_form_falls_back_to_windows(transcriber, monkeypatch):
    monkeypatch.setattr(whisper_mod, "MAX_STALLS", 0)  # the guard stops long-form at its first window
    audio = tone(35.0)
    got = transcriber.transcribe(audio, "fr")
    parts = [transcriber.transcribe(audio[:30 * SR], "fr").text, transcriber.transcribe(audio[30 * SR:], "fr").text]
    assert got.segments is None and got.text == " ".join(p for p in parts if p)


def test_silence_and_empty_audio_give_empty_text(transcriber):
    for audio in (np.zeros(0, np.float32), np.zeros(SR, np.float32), np.zeros((2, SR), np.float32)):
        got = transcriber.transcribe(audio)
        assert got.text == "" and got.language is None and not got.truncated
    assert transcriber.transcribe(np.zeros(SR, np.float32), "de").language == "de"


def test_loading_is_cached_and_checks_the_model(tiny_whisper, transcriber, tmp_path):
    assert load_transcriber(str(tiny_whisper)) is transcriber
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match=r"--speech-model .*bert.*not Whisper"):
        load_transcriber(str(bert))
    with pytest.raises(ConfigError, match="--speech-model blip-base: is a captioner model"):
        load_transcriber("blip-base")
    with pytest.raises(ConfigError, match="--speech-model"):
        load_transcriber(str(tmp_path / "missing"))
    assert whisper_mod.resolve_spec("whisper-tiny") == "openai/whisper-tiny"


def test_outdated_generation_config_is_completed_from_the_tokenizer(tiny_whisper, tmp_path):
    old = shutil.copytree(tiny_whisper, tmp_path / "old")
    (old / "generation_config.json").unlink()  # as in old or fine-tuned checkpoints: no lang_to_id & co.
    tr = load_transcriber(str(old))
    assert tr.languages == sorted(LANGS)
    assert tr.transcribe(tone(1.0), "fr").language == "fr"


# --------------------------------------------------------------------------------------------
# The transcribe stage


def test_stage_end_to_end(tiny_whisper, videos, media_dir, tmp_path):
    data = write_csv(tmp_path / "posts.csv", [
        {"id": "talk", "media": str(videos / "talk.mp4")},
        {"id": "mute", "media": str(videos / "mute.mp4")},
        {"id": "photo", "media": str(media_dir / "red.jpg")},
    ])
    config = RunConfig(stages=["media", "transcribe"], speech=SpeechSettings(model=str(tiny_whisper), language="en"))
    summary = api.run(data, tmp_path / "out", config)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert (summary.done, summary.failed) == (3, 0)
    [talk] = rows["talk"]["outputs"]["transcribe"]
    assert set(talk) == {"text", "language", "duration", "truncated", "model"}
    assert talk["text"] and talk["language"] == "en" and talk["truncated"] is False
    assert talk["duration"] == pytest.approx(2.0, abs=0.1) and talk["model"] == str(tiny_whisper)
    assert rows["mute"]["outputs"]["transcribe"] == [{"skipped": "no audio track"}]
    assert rows["photo"]["outputs"]["transcribe"] == [{"skipped": "not a video"}]

    off = api.run(data, tmp_path / "off", RunConfig(stages=["media", "transcribe"], speech=SpeechSettings(model="none")))
    assert off.done == 3
    first = json.loads((tmp_path / "off" / "results.jsonl").read_text().splitlines()[0])
    assert first["outputs"]["transcribe"] is None


def test_stage_truncates_at_max_seconds(tiny_whisper, videos):
    stage = TranscribeStage(RunConfig(speech=SpeechSettings(model=str(tiny_whisper), language="de", max_seconds=1.0)))
    stage.setup()
    from captionkit.media.loader import load_media

    [out] = stage.process_one(captionkit_work(load_media(videos / "long.mp4")))
    assert out["truncated"] is True and out["duration"] == pytest.approx(3.0, abs=0.1) and out["language"] == "de"


def test_stage_setup_errors_and_default_fallback(tiny_whisper, monkeypatch, caplog):
    with pytest.raises(ConfigError, match="--speech-language"):
        TranscribeStage(RunConfig(speech=SpeechSettings(model=str(tiny_whisper), language="klingon"))).setup()
    with pytest.raises(ConfigError, match="max_seconds"):
        TranscribeStage(RunConfig(speech=SpeechSettings(max_seconds=0)))

    def offline(spec=None, options=None):
        raise ModelUnavailableError(f"--speech-model {spec}: not in the local model cache, and the hub is not reachable")

    monkeypatch.setattr(whisper_mod, "load_transcriber", offline)
    stage = TranscribeStage(RunConfig())  # the default model: skipped with a notice
    with caplog.at_level(logging.WARNING, logger="captionkit"):
        stage.setup()
    assert stage.process_one(captionkit_work(None)) is None
    assert "whisper-base" in stage.notice and stage.notice in caplog.text
    named = TranscribeStage(RunConfig(speech=SpeechSettings(model="whisper-base")))  # named by the user: must load
    with pytest.raises(ModelUnavailableError, match="--speech-model whisper-base"):
        named.setup()


def captionkit_work(media):
    from captionkit.pipeline.stage import Work
    from captionkit.records import Item

    work = Work(Item(id="x"))
    if media is not None:
        work.scratch["media"] = [media]
    return work
