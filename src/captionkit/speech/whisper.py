"""Speech to text with Whisper (transformers): one :class:`Transcriber` per model, loaded once per process.

* Up to 30 s of audio is one window: ``generate`` is called once (``force_unique_generate_call``),
  without timestamps, as Whisper's short-form transcription does.
* Longer audio goes whole to transformers' sequential long-form generation (``truncation=False``,
  ``padding="longest"``, the attention mask, timestamps on); the transcript then has segments with
  start and end times. Audio past ``max_seconds`` is dropped and the transcript says so (``truncated``).
  Should long-form decoding stop making progress (degenerate timestamp predictions), the audio is
  transcribed again window by window, without timestamps.
* The language is the one asked for, or the one Whisper detects from the first 30 s, reported as an
  ISO 639-1 code ("en"). English-only checkpoints (``*.en``) always report "en".
* Silent or empty audio gives an empty transcript without running the model (Whisper makes up text
  for silence).

torch and transformers are imported when a model is loaded, never at import time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from captionkit.errors import ConfigError
from captionkit.models import catalog
from captionkit.models.hf import load_model, load_processor, read_config, resolve_device
from captionkit.models.options import ModelOptions
from captionkit.speech.audio import SAMPLE_RATE

log = logging.getLogger(__name__)

FLAG = "--speech-model"
LANGUAGE_FLAG = "--speech-language"
WINDOW_SECONDS = 30.0  # Whisper's context: longer audio needs long-form generation
SILENCE_PEAK = 1e-3  # -60 dBFS: quieter than this everywhere is silence, not speech
MAX_STALLS = 3  # long-form windows in a row that do not move forward before giving up on it
MAX_WINDOWS_PER_30S = 10  # long-form windows allowed per 30 s of audio before giving up on it


@dataclass
class Transcript:
    """What was said: the text, its language (ISO code), the audio's length and whether it was cut."""

    text: str
    language: str | None
    duration: float  # seconds of audio in the source (not only the part transcribed)
    truncated: bool = False  # the audio was longer than max_seconds and only its start was transcribed
    segments: list[dict[str, Any]] | None = None  # long-form only: {"start", "end", "text"} in seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _LongFormStalled(Exception):
    """Long-form generation is not moving through the audio; decode window by window instead."""


class Transcriber:
    """A Whisper checkpoint ready to transcribe 16 kHz mono float32 audio; build with :func:`load_transcriber`."""

    def __init__(self, model: Any, processor: Any, model_id: str, max_seconds: float | None = None) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.feature_extractor = processor.feature_extractor
        self.model_id = model_id
        self.max_seconds = max_seconds
        self.sample_rate = int(getattr(self.feature_extractor, "sampling_rate", SAMPLE_RATE))
        _complete_generation_config(model.generation_config, self.tokenizer)
        gc = model.generation_config
        self.lang_to_id: dict[str, int] = dict(getattr(gc, "lang_to_id", None) or {})
        self.multilingual = bool(getattr(gc, "is_multilingual", bool(self.lang_to_id))) and bool(self.lang_to_id)
        self.id_to_lang = {v: k.strip("<|>") for k, v in self.lang_to_id.items()}

    # ---- languages

    @property
    def languages(self) -> list[str]:
        """ISO codes this model can be told to transcribe (["en"] for English-only checkpoints)."""
        return sorted(self.id_to_lang.values()) if self.multilingual else ["en"]

    def language_code(self, language: str | None) -> str | None:
        """``language`` (ISO code, Whisper token or English name) as this model's ISO code; None stays None."""
        if language is None or not str(language).strip():
            return None
        from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

        wanted = str(language).strip().lower()
        if wanted.startswith("<|") and wanted.endswith("|>"):
            wanted = wanted[2:-2]
        code = TO_LANGUAGE_CODE.get(wanted, wanted)
        if code in self.languages:
            return code
        known = ", ".join(self.languages[:30]) + (" ..." if len(self.languages) > 30 else "")
        raise ConfigError(f"{LANGUAGE_FLAG} {language!r}: {self.model_id} does not know this language; "
                          f"give one of: {known} (or leave it out to detect it)")

    def detect_language(self, audio: np.ndarray) -> str | None:
        """The language Whisper hears in the first 30 s of ``audio`` (ISO code); None for silence."""
        audio = _mono(audio)
        if not self.multilingual:
            return "en"
        if _is_silent(audio):
            return None
        features, _ = self._features(audio[: int(WINDOW_SECONDS * self.sample_rate)])
        return self._detect(features)

    # ---- transcription

    def transcribe(
        self,
        audio: np.ndarray,
        language: str | None = None,
        *,
        max_seconds: float | None = None,
        source_duration: float | None = None,
    ) -> Transcript:
        """Transcribe mono float32 ``audio`` at the model's sample rate (16 kHz).

        ``language`` None: detected. ``max_seconds`` (default: the transcriber's) caps what is
        transcribed. ``source_duration``: the length of the whole track when ``audio`` is already a
        cut (``load_audio(max_seconds=...)``); it makes ``duration`` and ``truncated`` tell the truth.
        """
        audio = _mono(audio)
        limit = max_seconds if max_seconds is not None else self.max_seconds
        duration = max(float(source_duration or 0.0), audio.size / self.sample_rate)
        truncated = limit is not None and duration > limit + 1e-3
        if limit is not None:
            audio = audio[: round(limit * self.sample_rate)]
        code = self.language_code(language)
        if _is_silent(audio):
            return Transcript(text="", language=code, duration=duration, truncated=truncated)
        if not self.multilingual:
            code = "en"
        long_form = audio.size > WINDOW_SECONDS * self.sample_rate
        features, mask = self._features(audio, long_form=long_form)
        if not long_form:  # generate detects the language itself: it is the token after <|startoftranscript|>
            ids = self._generate_window(features, code)[0]
            if code is None:
                code = next((self.id_to_lang[t] for t in ids[:4].tolist() if t in self.id_to_lang), None)
            return Transcript(text=self._decode(ids), language=code, duration=duration, truncated=truncated)
        if code is None:
            code = self._detect(features)  # from the first 30 s, as long-form generate would
        try:
            text, segments = self._generate_long(features, mask, code)
        except _LongFormStalled:
            log.warning("%s: long-form decoding stalled; transcribing 30 s windows without timestamps", self.model_id)
            text, segments = self._generate_windows(audio, code), None
        return Transcript(text=text, language=code, duration=duration, truncated=truncated, segments=segments)

    # ---- internals

    def _features(self, audio: np.ndarray, long_form: bool = False) -> tuple[Any, Any]:
        kw: dict[str, Any] = {"sampling_rate": self.sample_rate, "return_tensors": "pt"}
        if long_form:
            kw.update(truncation=False, padding="longest", return_attention_mask=True)
        inputs = self.feature_extractor(audio, **kw)
        features = inputs.input_features.to(self.model.device, dtype=self.model.dtype)
        mask = inputs.get("attention_mask")
        return features, (mask.to(self.model.device) if mask is not None else None)

    def _detect(self, features: Any) -> str | None:
        import torch

        with torch.inference_mode():
            ids = self.model.detect_language(input_features=features)
        return self.id_to_lang.get(int(ids[0]))

    def _language_kwargs(self, code: str | None) -> dict[str, Any]:
        """``language``/``task`` for generate: none for English-only checkpoints (they refuse both)."""
        if not self.multilingual:
            return {}
        return {"language": code, "task": "transcribe"} if code else {"task": "transcribe"}

    def _generate_window(self, features: Any, code: str | None) -> Any:
        """One call to generate on one ≤ 30 s window (no timestamps): the token ids of the whole sequence."""
        import torch

        with torch.inference_mode():
            return self.model.generate(features, force_unique_generate_call=True, **self._language_kwargs(code))

    def _generate_long(self, features: Any, mask: Any, code: str | None) -> tuple[str, list[dict[str, Any]]]:
        import torch

        total = int(mask.sum()) if mask is not None else features.shape[-1]
        frames_per_window = self.feature_extractor.nb_max_frames
        guard = _ProgressGuard(max_windows=MAX_WINDOWS_PER_30S * math.ceil(total / frames_per_window) + MAX_STALLS)
        with torch.inference_mode():
            out = self.model.generate(
                features, attention_mask=mask, return_timestamps=True, return_segments=True,
                monitor_progress=guard, **self._language_kwargs(code),
            )
        segments = []
        for seg in out["segments"][0]:
            text = self._decode(seg["tokens"])
            segments.append({"start": round(float(seg["start"]), 2), "end": round(float(seg["end"]), 2), "text": text})
        return self._decode(out["sequences"]), segments

    def _generate_windows(self, audio: np.ndarray, code: str | None) -> str:
        """Fallback for long audio: each 30 s window transcribed on its own, texts joined."""
        step = int(WINDOW_SECONDS * self.sample_rate)
        texts = []
        for start in range(0, audio.size, step):
            window = audio[start : start + step]
            if _is_silent(window):
                continue
            features, _ = self._features(window)
            texts.append(self._decode(self._generate_window(features, code)))
        return " ".join(t for t in texts if t)

    def _decode(self, ids: Any) -> str:
        if hasattr(ids, "dim") and ids.dim() == 2:
            ids = ids[0]
        text = self.tokenizer.decode(ids.tolist() if hasattr(ids, "tolist") else ids, skip_special_tokens=True)
        return " ".join(text.split())


class _ProgressGuard:
    """``monitor_progress`` for long-form generate: stops it when it stalls or runs far too many windows."""

    def __init__(self, max_windows: int) -> None:
        self.max_windows = max_windows
        self.windows = 0
        self.stalls = 0
        self.last: list[int] | None = None

    def __call__(self, progress: Any) -> None:  # progress: (batch, 2) tensor of (seek, max_frames)
        seek = progress[:, 0].tolist()
        self.windows += 1
        self.stalls = self.stalls + 1 if seek == self.last else 0
        self.last = seek
        if self.stalls >= MAX_STALLS or self.windows > self.max_windows:
            raise _LongFormStalled


def _mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:  # (channels, samples) or (samples, channels): average the channels
        audio = audio.mean(axis=0 if audio.shape[0] <= audio.shape[1] else 1)
    if audio.ndim != 1:
        raise ValueError(f"audio must be a 1-D array of mono samples (got shape {audio.shape})")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _is_silent(audio: np.ndarray) -> bool:
    return audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK


def _complete_generation_config(gc: Any, tokenizer: Any) -> None:
    """Fill what transformers' Whisper generate needs and old or fine-tuned checkpoints often lack
    (``lang_to_id``, ``task_to_id``, ``no_timestamps_token_id``...) from the tokenizer's special tokens."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = tokenizer.get_vocab()

    def token_id(token: str) -> int | None:
        return vocab.get(token)

    if not getattr(gc, "lang_to_id", None) and getattr(gc, "is_multilingual", None) is not False:
        langs = {f"<|{code}|>": vocab[f"<|{code}|>"] for code in LANGUAGES if f"<|{code}|>" in vocab}
        if langs:
            gc.lang_to_id = langs
    if not getattr(gc, "task_to_id", None):
        tasks = {t: token_id(f"<|{t}|>") for t in ("transcribe", "translate")}
        if all(v is not None for v in tasks.values()):
            gc.task_to_id = tasks
    if getattr(gc, "no_timestamps_token_id", None) is None and token_id("<|notimestamps|>") is not None:
        gc.no_timestamps_token_id = token_id("<|notimestamps|>")
    if getattr(gc, "prev_sot_token_id", None) is None and token_id("<|startofprev|>") is not None:
        gc.prev_sot_token_id = token_id("<|startofprev|>")
    if getattr(gc, "decoder_start_token_id", None) is None and token_id("<|startoftranscript|>") is not None:
        gc.decoder_start_token_id = token_id("<|startoftranscript|>")
    if getattr(gc, "is_multilingual", None) is None and getattr(gc, "lang_to_id", None):
        gc.is_multilingual = len(gc.lang_to_id) > 1 or "<|en|>" not in gc.lang_to_id


# --------------------------------------------------------------------------------------------
# Loading, once per process

_CACHE: dict[tuple[Any, ...], Transcriber] = {}


def resolve_spec(spec: str | None) -> str:
    """A catalogue name (``whisper-base``) as its hub id; hub ids and folders as given; None: the default."""
    spec = str(spec if spec is not None else catalog.default("speech").name).strip()
    if not spec:
        raise ConfigError(f"{FLAG} must name a Whisper model (e.g. whisper-base), a hub id or a folder")
    entry = catalog.lookup(spec, "speech")
    if entry is not None:
        return entry.source
    other = catalog.lookup(spec)
    if other is not None:
        names = ", ".join(e.name for e in catalog.entries("speech"))
        raise ConfigError(f"{FLAG} {spec}: is a {other.task} model, not a speech model; speech models: {names}")
    return spec


def load_transcriber(spec: str | None = None, options: ModelOptions | None = None) -> Transcriber:
    """The :class:`Transcriber` for ``spec`` (catalogue name, hub id or local folder; None: the catalogue's
    default), loaded once per process.

    Raises :class:`ConfigError` naming ``--speech-model`` when the model cannot be found or loaded, or is
    not a Whisper model (:class:`ModelUnavailableError` when it is not cached and the hub is unreachable).
    """
    options = options or ModelOptions()
    spec = spec if spec is not None else catalog.default("speech").name
    source = resolve_spec(spec)
    key = (source, resolve_device(options), *options.cache_key())
    if key not in _CACHE:
        config = read_config(source, options, flag=FLAG)
        model_type = config.get("model_type")
        if model_type != "whisper":
            raise ConfigError(
                f"{FLAG} {spec}: is a {model_type or 'unknown'!s} model, not Whisper; give a Whisper checkpoint "
                f"({', '.join(e.name for e in catalog.entries('speech'))}, a hub id or a folder)"
            )
        processor = load_processor(source, options, "WhisperProcessor", flag=FLAG)
        model = load_model(source, "WhisperForConditionalGeneration", options, flag=FLAG)
        _CACHE[key] = Transcriber(model, processor, model_id=spec)
    return _CACHE[key]


def clear_cache() -> None:
    """Forget loaded transcribers (tests; freeing memory)."""
    _CACHE.clear()
