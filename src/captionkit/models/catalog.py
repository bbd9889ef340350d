"""Models captionkit knows by short name: what they are, where they come from, and their licence.

Data, not code: a backend is picked by ``backend`` and loads ``source`` (a hub id) with its own classes.
Any other hub id or local folder works too; these names are conveniences and the defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from captionkit.models.options import ModelOptions


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    task: str  # captioner | speech | writer | ocr
    backend: str
    source: str  # hub id ("" for models that need no download)
    licence: str
    params: str
    default: bool = False  # the model used when the user names none
    extra: dict[str, Any] = field(default_factory=dict)  # backend settings merged into ModelOptions.extra
    note: str = ""

    def apply(self, options: ModelOptions) -> ModelOptions:
        """Options with this entry's backend settings, the user's own taking precedence."""
        return dataclasses.replace(options, extra={**self.extra, **options.extra}) if self.extra else options

    @property
    def downloadable(self) -> bool:
        return "/" in self.source


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("florence-2-base", "captioner", "florence2", "florence-community/Florence-2-base", "MIT", "0.23B",
                 default=True, note="caption, detailed caption and OCR task prompts; good on CPU"),
    CatalogEntry("florence-2-large", "captioner", "florence2", "florence-community/Florence-2-large", "MIT", "0.77B"),
    CatalogEntry("blip-base", "captioner", "blip", "Salesforce/blip-image-captioning-base", "BSD-3-Clause", "0.25B"),
    CatalogEntry("blip-large", "captioner", "blip", "Salesforce/blip-image-captioning-large", "BSD-3-Clause", "0.47B"),
    CatalogEntry("blip2-opt-2.7b", "captioner", "blip2", "Salesforce/blip2-opt-2.7b", "MIT", "3.9B", note="GPU advised"),
    CatalogEntry("git-base", "captioner", "git", "microsoft/git-base-coco", "MIT", "0.18B"),
    CatalogEntry("git-large", "captioner", "git", "microsoft/git-large-coco", "MIT", "0.39B"),
    CatalogEntry("vit-gpt2", "captioner", "vision_encoder_decoder", "nlpconnect/vit-gpt2-image-captioning",
                 "Apache-2.0", "0.24B"),
    CatalogEntry("smolvlm", "captioner", "chat_vlm", "HuggingFaceTB/SmolVLM-256M-Instruct", "Apache-2.0", "0.26B",
                 note="chat VLM: prompts, questions, several frames per prompt"),
    CatalogEntry("qwen2-vl-2b", "captioner", "chat_vlm", "Qwen/Qwen2-VL-2B-Instruct", "Apache-2.0", "2.2B"),
    CatalogEntry("qwen2.5-vl-7b", "captioner", "chat_vlm", "Qwen/Qwen2.5-VL-7B-Instruct", "Apache-2.0", "8.3B",
                 note="GPU advised"),
    CatalogEntry("qwen3-vl-4b", "captioner", "chat_vlm", "Qwen/Qwen3-VL-4B-Instruct", "Apache-2.0", "4.4B",
                 note="GPU advised"),
    CatalogEntry("llava-1.5-7b", "captioner", "chat_vlm", "llava-hf/llava-1.5-7b-hf", "Llama 2 Community", "7.1B",
                 note="GPU advised"),
    CatalogEntry("paligemma-3b", "captioner", "chat_vlm", "google/paligemma-3b-mix-224", "Gemma (gated)", "2.9B"),
    CatalogEntry("deepseek-vl-1.3b", "captioner", "chat_vlm", "deepseek-community/deepseek-vl-1.3b-chat",
                 "DeepSeek Model", "2.0B"),
    CatalogEntry("basic", "captioner", "basic", "", "Apache-2.0 (no model)", "-",
                 note="model-free: media facts, colours, faces, OCR text; needs no download"),
    CatalogEntry("rapidocr", "ocr", "rapidocr", "(ships with rapidocr-onnxruntime)", "Apache-2.0", "-", default=True),
    CatalogEntry("tesseract", "ocr", "tesseract", "(Debian package tesseract-ocr)", "Apache-2.0", "-"),
    CatalogEntry("qwen2.5-0.5b-instruct", "writer", "local", "Qwen/Qwen2.5-0.5B-Instruct", "Apache-2.0", "0.49B",
                 default=True, note="small instruct model; fine on CPU"),
    CatalogEntry("smollm2-360m-instruct", "writer", "local", "HuggingFaceTB/SmolLM2-360M-Instruct", "Apache-2.0",
                 "0.36B"),
    CatalogEntry("qwen2.5-1.5b-instruct", "writer", "local", "Qwen/Qwen2.5-1.5B-Instruct", "Apache-2.0", "1.5B"),
    CatalogEntry("llama-3.2-1b-instruct", "writer", "local", "meta-llama/Llama-3.2-1B-Instruct",
                 "Llama 3.2 Community (gated)", "1.2B"),
    CatalogEntry("template", "writer", "template", "", "Apache-2.0 (no model)", "-",
                 note="model-free: fills the platform's post pattern from the description and metadata"),
    CatalogEntry("whisper-base", "speech", "whisper", "openai/whisper-base", "MIT", "74M", default=True),
    CatalogEntry("whisper-tiny", "speech", "whisper", "openai/whisper-tiny", "MIT", "39M"),
    CatalogEntry("whisper-small", "speech", "whisper", "openai/whisper-small", "MIT", "244M"),
    CatalogEntry("whisper-large-v3-turbo", "speech", "whisper", "openai/whisper-large-v3-turbo", "MIT", "809M",
                 note="GPU advised"),
)


def lookup(name: str, task: str | None = None) -> CatalogEntry | None:
    for entry in CATALOG:
        if entry.name == name and (task is None or entry.task == task):
            return entry
    return None


def default(task: str) -> CatalogEntry:
    return next(e for e in CATALOG if e.task == task and e.default)


def default_for_backend(backend: str) -> CatalogEntry | None:
    """The first catalogue model of a backend, so that ``--captioner blip`` means BLIP base."""
    return next((e for e in CATALOG if e.backend == backend and e.downloadable), None)


def entries(task: str | None = None) -> list[CatalogEntry]:
    return [e for e in CATALOG if task is None or e.task == task]


def is_cached(entry: CatalogEntry) -> bool | None:
    """True when the hub cache holds the model's config (None: not a hub model)."""
    if not entry.downloadable:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(entry.source, "config.json")
    return isinstance(found, str)


def pull(entry: CatalogEntry) -> str:
    """Download a catalogue model into the hub cache; returns the local folder."""
    from captionkit.errors import ModelUnavailableError
    from captionkit.extras import require
    from captionkit.models.hf import hub_reachable

    hub = require("huggingface_hub", "models", "downloading models")
    if not hub_reachable():
        raise ModelUnavailableError(f"models pull {entry.name}: the model hub is not reachable from here "
                                    "(offline, or HF_HUB_OFFLINE=1); run it where the hub is reachable")
    try:
        return hub.snapshot_download(entry.source)
    except Exception as exc:  # gated repos, typos upstream, disk full: the hub's own words
        raise ModelUnavailableError(f"models pull {entry.name}: downloading {entry.source} failed: {exc}") from None
