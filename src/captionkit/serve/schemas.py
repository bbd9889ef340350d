"""Request and response shapes of the HTTP API (pydantic models; they also make the OpenAPI schema).

Form fields and JSON bodies go through the same models, so ``brand`` means the same thing whether it came
from a multipart form, a JSON body or the web UI.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from captionkit.errors import ConfigError
from captionkit.prompts.platforms import get_platform

URL_MAX = 2048


class DescribeRequest(BaseModel):
    """JSON body of ``POST /v1/describe`` (or the ``url`` form field next to no ``file``)."""

    model_config = ConfigDict(extra="forbid")
    url: Optional[str] = Field(None, max_length=URL_MAX, description="http(s) URL of an image, GIF or video.")


class PostOptions(BaseModel):
    """How to write the posts: the item's metadata (brand, handle, date, expected likes) and the voice."""

    model_config = ConfigDict(extra="forbid")
    brand: Optional[str] = Field(None, max_length=120, description="Brand or company name (metadata.company).")
    handle: Optional[str] = Field(None, max_length=64, description="The brand's handle, with or without @ (metadata.username).")
    date: Optional[str] = Field(None, max_length=40, description="Posting date, e.g. 2026-06-01.")
    platform: Optional[str] = Field(None, max_length=20, description="x, instagram, linkedin, facebook, alt-text or adobe.")
    tone: Optional[str] = Field(None, max_length=40, description="Voice of the post, e.g. friendly, playful, professional.")
    language: Optional[str] = Field(None, max_length=16, description="Language code of the post, e.g. en.")
    expected_likes: Optional[int] = Field(None, ge=0, le=10**12, description="Likes the post is expected to get (metadata.likes).")
    num_candidates: Optional[int] = Field(None, ge=1, le=50, description="How many posts to write (at most the server's max_candidates).")
    hashtags: Optional[int] = Field(None, ge=0, le=30, description="Hashtags per post.")
    emoji: Optional[bool] = Field(None, description="Allow emoji.")
    call_to_action: Optional[str] = Field(None, max_length=200, description="Call to action to include.")

    @field_validator("platform")
    @classmethod
    def _known_platform(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return None
        try:
            return get_platform(value).name
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("--platform: ")) from None

    @field_validator("brand", "handle", "date", "tone", "language", "call_to_action")
    @classmethod
    def _one_line(cls, value: Optional[str]) -> Optional[str]:
        value = " ".join(value.split()) if value is not None else None
        return value or None

    def metadata(self) -> dict[str, Any]:
        """Item metadata under the names the prompts read (company, username, date, likes)."""
        meta = {"company": self.brand, "username": self.handle.lstrip("@") if self.handle else None,
                "date": self.date, "likes": self.expected_likes}
        return {k: v for k, v in meta.items() if v is not None}

    def write_overrides(self) -> dict[str, Any]:
        """Write settings this request changes (the item metadata carries brand, handle, date and likes)."""
        fields = ("platform", "tone", "language", "num_candidates", "hashtags", "emoji", "call_to_action")
        return {name: getattr(self, name) for name in fields if getattr(self, name) is not None}


class PostsRequest(PostOptions):
    """JSON body of ``POST /v1/posts``: the media ``url`` and the post options."""

    url: Optional[str] = Field(None, max_length=URL_MAX, description="http(s) URL of an image, GIF or video.")


class JobOptions(PostOptions):
    """Form fields of ``POST /v1/jobs`` besides the files: the post options for every item, and column mapping."""

    map: list[str] = Field(default_factory=list, max_length=50,
                           description="FIELD=COLUMN, like `captionkit run --map` (e.g. media=image_url).")


class Post(BaseModel):
    text: str
    chars: int
    flags: list[Any] = []
    trimmed: bool = False


class DescribeResponse(BaseModel):
    id: str
    kind: Optional[str] = None
    description: Optional[str] = None
    ocr_text: Optional[str] = None
    transcript: Optional[str] = None
    language: Optional[str] = None
    facts: Optional[dict[str, Any]] = None
    models: dict[str, Any] = {}
    timings: dict[str, float] = {}
    details: dict[str, Any] = {}
    notices: list[str] = []


class PostsResponse(DescribeResponse):
    posts: list[Post] = []
    platform: Optional[str] = None


class ErrorResponse(BaseModel):
    error: str
    detail: Any = None


class JobLinks(BaseModel):
    self: str
    results_jsonl: str
    results_csv: str


class JobStatus(BaseModel):
    id: str
    status: str = Field(description="queued, running, done, failed or interrupted (resumed when the server starts).")
    name: str
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    total: int
    done: int
    failed: int
    pending: int
    progress: float
    error: Optional[str] = None
    notices: list[str] = []
    failures: list[dict[str, Any]] = []
    links: JobLinks
