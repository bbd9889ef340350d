"""Server settings: the ``serve:`` section of the run config file, with ``captionkit serve`` flags laid over it.

One YAML file configures both the pipeline (the same keys as ``captionkit run``) and the server::

    caption: {model: blip-base}
    write: {platform: instagram}
    serve:
      host: 127.0.0.1
      port: 8000
      api_key_file: /etc/captionkit/keys   # one key per line; also $CAPTIONKIT_API_KEYS (comma-separated)
      max_upload_mb: 50
      queue_size: 8
      request_timeout_s: 120
      cors_origins: [https://studio.example.com]

API keys are never read from the YAML itself (config files get committed): use ``api_key_file`` or the
environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captionkit.config import RunConfig, read_yaml_mapping
from captionkit.errors import ConfigError

KEYS_ENV = "CAPTIONKIT_API_KEYS"  # comma-separated API keys
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def default_jobs_dir() -> Path:
    """``$CAPTIONKIT_CACHE_DIR/jobs``, else ``~/.cache/captionkit/jobs``."""
    root = os.environ.get("CAPTIONKIT_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "captionkit") / "jobs"


@dataclass
class ServeSettings:
    """``serve:`` in YAML; each field is also a ``captionkit serve`` flag (named in errors)."""

    host: str = "127.0.0.1"  # loopback only: other machines cannot connect unless you say so
    port: int = 8000
    api_key_file: str | None = None  # one key per line (# comments allowed); with $CAPTIONKIT_API_KEYS
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # programmatic use; never from YAML
    max_upload_mb: float = 50.0  # one media upload (describe, posts) or one file of a job
    max_job_upload_mb: float = 500.0  # a whole job request: dataset plus its media files
    max_job_items: int = 100_000
    max_duration_s: float = 600.0  # longest video accepted, in seconds
    max_candidates: int = 10  # most posts one request may ask for
    concurrency: int = 1  # --workers: requests using the models at once (CPU: 1; the models are shared)
    queue_size: int = 8  # requests waiting for a worker; one more gets 503 with Retry-After
    request_timeout_s: float = 120.0  # queue wait plus work; then 504 (the model call finishes in the background)
    allow_private_urls: bool = False  # fetch URLs on loopback/private networks (SSRF guard off)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API; none: CORS off
    allowed_hosts: tuple[str, ...] = ()  # Host headers accepted; default: loopback names when bound to loopback
    jobs_dir: str | None = None  # batch jobs (uploads, results, state); default ~/.cache/captionkit/jobs
    ui: bool = True  # mount the web UI at /ui
    warmup: bool = True  # run one small image through the pipeline at start-up
    shutdown_timeout_s: float = 30.0  # running requests get this long to finish on shutdown, then are cancelled

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535 (got {self.port!r})")
        for name, flag in (("max_upload_mb", "--max-upload-mb"), ("max_job_upload_mb", "--max-job-upload-mb"),
                           ("max_duration_s", "--max-duration"), ("request_timeout_s", "--request-timeout"),
                           ("shutdown_timeout_s", "--shutdown-timeout")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{flag} (serve.{name}) must be a positive number (got {value!r})")
        for name, flag, low in (("concurrency", "--workers", 1), ("queue_size", "--queue-size", 0),
                                ("max_candidates", "serve.max_candidates", 1), ("max_job_items", "serve.max_job_items", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{flag} must be an integer >= {low} (got {value!r})")
        for name in ("cors_origins", "allowed_hosts", "api_keys"):
            value = getattr(self, name)
            setattr(self, name, (value,) if isinstance(value, str) else tuple(str(v) for v in value))
        if any(not k.strip() or any(c.isspace() for c in k) for k in self.api_keys):
            raise ConfigError("API keys must be non-empty and contain no whitespace")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_job_upload_bytes(self) -> int:
        return int(self.max_job_upload_mb * 2**20)

    @property
    def jobs_path(self) -> Path:
        return Path(self.jobs_dir).expanduser() if self.jobs_dir else default_jobs_dir()

    @property
    def loopback(self) -> bool:
        """True when only this machine can connect."""
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    def trusted_hosts(self) -> list[str]:
        """Host headers to accept. On loopback only loopback names, so a web page cannot reach the server
        through DNS rebinding (evil.example resolving to 127.0.0.1); elsewhere any, unless configured."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        return [*LOOPBACK_NAMES, self.host] if self.loopback else ["*"]

    def resolve_api_keys(self) -> tuple[str, ...]:
        """Every configured key: ``api_keys``, the lines of ``api_key_file`` and ``$CAPTIONKIT_API_KEYS``."""
        keys = list(self.api_keys)
        if self.api_key_file:
            path = Path(self.api_key_file).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"--api-key-file {path}: cannot read it ({exc.strerror or exc})") from None
            lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
            found = [line for line in lines if line]
            if not found:
                raise ConfigError(f"--api-key-file {path}: holds no key (one key per line)")
            keys += found
        keys += [k.strip() for k in os.environ.get(KEYS_ENV, "").split(",") if k.strip()]
        if any(any(c.isspace() for c in k) for k in keys):
            raise ConfigError("API keys must not contain whitespace")
        return tuple(dict.fromkeys(keys))

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with the given (non-None) fields replaced: how flags override the YAML section."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "serve") -> ServeSettings:
        data = dict(data or {})
        if "api_keys" in data:
            raise ConfigError(f"{source}: api_keys cannot be written in a config file; use api_key_file or ${KEYS_ENV}")
        known = {f.name for f in dataclasses.fields(cls)} - {"api_keys"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def load_config_file(path: str | Path) -> tuple[RunConfig, ServeSettings]:
    """The pipeline settings and the ``serve:`` section of one YAML file."""
    data = read_yaml_mapping(path)
    serve = data.pop("serve", None)
    if serve is not None and not isinstance(serve, dict):
        raise ConfigError(f"{path}: serve must be a mapping, not {type(serve).__name__}")
    return RunConfig.from_dict(data, source=str(path)), ServeSettings.from_dict(serve, source=f"{path}: serve")
