"""The ``openai`` writer backend: any OpenAI-compatible chat-completions server over HTTP.

vLLM, TGI, Ollama, the llama.cpp server, LM Studio and hosted APIs all speak the same
``POST /v1/chat/completions``; this client talks to them with httpx directly (no ``openai`` package).

- The URL may be the server root (``http://host:8000``) or the API base (``.../v1``, ``.../v1beta/openai``);
  a path without a version segment gets ``/v1`` appended, and a pasted endpoint
  (``.../v1/chat/completions``) is cut back to its base.
- The key comes from the environment variable named by ``WriteSettings.api_key_env`` (default
  ``OPENAI_API_KEY``) when it is set, and is sent as ``Authorization: Bearer``. It is read at each request,
  never stored on the writer, logged or put in an error message.
- The model is ``WriteSettings.api_model``, else the first id listed by ``GET /v1/models`` (asked once),
  else ``"default"`` when the server lists none (llama.cpp and TGI serve one model and ignore the name).
- Decoding: ``max_tokens`` = max_new_tokens; greedy decoding is sent as ``temperature: 0``; sampling sends
  the temperature (1.0 when unset), top_p and seed. ``n`` candidates are asked for in one request; a server
  that answers with fewer choices, or rejects ``n`` (HTTP 400/422 naming it), gets separate requests for
  the rest (``seed + i`` when a seed is set), and is not asked for ``n > 1`` again.
  ``num_beams``, ``repetition_penalty`` and ``no_repeat_ngram_size`` have no portable API field and are not sent.
- Failures: timeouts, connection errors, HTTP 408/429 and 5xx are retried ``WriteSettings.retries`` times
  with exponential backoff plus jitter (a 429's ``Retry-After`` is honoured, capped); other 4xx are not.
  Prompts run in a thread pool of ``WriteSettings.concurrency``; :meth:`OpenAICompatWriter.write` keeps their
  order and raises :class:`WriterServerError` if any prompt fails (the pipeline then retries item by item,
  so only the failing item fails), with a one-line message naming the URL and the reason.
- Constructing the writer never contacts the server in a way that can fail: the run may start before the
  server does, and the first :meth:`~OpenAICompatWriter.write` reports a server that is still down.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from captionkit import __version__
from captionkit.backoff import JITTER, MAX_RETRY_AFTER, parse_retry_after, retry_delay
from captionkit.errors import CaptionkitError, ConfigError
from captionkit.models.options import GenerationOptions
from captionkit.writers.base import Prompt, register_writer

__all__ = ["BACKOFF", "JITTER", "MAX_RETRY_AFTER", "OpenAICompatWriter", "WriterServerError", "normalize_base_url"]

log = logging.getLogger(__name__)

#: Base delay between attempts: attempt ``n`` (0-based) waits ``BACKOFF * 2**n`` plus jitter.
BACKOFF = 0.5
#: Longest any single backoff grows to, in seconds.
MAX_BACKOFF = 30.0
#: How long the construction-time look at ``/models`` may take (it only fills in ``model_id`` early).
PROBE_TIMEOUT = 2.0
#: Model name sent when neither the settings nor the server name one.
DEFAULT_MODEL = "default"

_VERSION_SEGMENT = re.compile(r"^v\d+((alpha|beta)\d*)?$")
_ENDPOINT_SUFFIXES = ("/chat/completions", "/completions", "/models")
# An error text that names the ``n`` parameter: "n must be 1", "'n' is not supported", loc ["body", "n"].
_MENTIONS_N = re.compile(r"""(?<![\w\\])['"`]?n['"`]?(?!\w)""")


class WriterServerError(CaptionkitError):
    """An OpenAI-compatible server did not produce a completion; ``str()`` names the URL and the reason."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, when the server answered
        self.retryable = retryable  # True when it gave up on timeouts / connection errors / 408 / 429 / 5xx


class _Retryable(Exception):
    """One failed attempt worth another; ``reason`` completes "writer <url> ..." if none succeeds."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class _NRejected(Exception):
    """The server refused the ``n`` parameter (HTTP 400/422 naming it)."""


def normalize_base_url(url: str) -> str:
    """The API base for ``url``: ``http://h:1`` -> ``http://h:1/v1``; ``.../v1/chat/completions`` -> ``.../v1``.

    A path that already has a version segment (``/v1``, ``/v1beta/openai``, ``/api/v2``) is kept as is.
    """
    raw = url.strip()
    try:
        parsed = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(f"--writer: {url!r} is not a valid URL ({exc})") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"--writer: {url!r} is not an http(s) URL of an OpenAI-compatible server")
    path = parsed.path.rstrip("/")
    for suffix in _ENDPOINT_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)].rstrip("/")
            break
    if not any(_VERSION_SEGMENT.match(segment) for segment in path.split("/")):
        path = f"{path}/v1"
    return str(parsed.copy_with(path=path, query=None, fragment=None))


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _server_message(response: httpx.Response) -> str:
    """The error text of a failed response: OpenAI's ``error.message``, FastAPI's ``detail``, or the body."""
    try:
        body = response.json()
    except ValueError:
        return _one_line(response.text)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return _one_line(err["message"])
        if isinstance(err, str) and err:
            return _one_line(err)
        for key in ("message", "detail"):
            if body.get(key):
                return _one_line(body[key] if isinstance(body[key], str) else str(body[key]))
    return _one_line(response.text)


def _transport_reason(exc: httpx.TransportError, timeout: float) -> str:
    text = " ".join(str(exc).split())
    low = text.lower()
    if isinstance(exc, httpx.ConnectTimeout):
        return f"is unreachable (no connection within {_seconds(timeout)})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {_seconds(timeout)}"
    if isinstance(exc, httpx.ConnectError):
        if "refused" in low:
            detail = "connection refused"
        elif any(s in low for s in ("name or service not known", "nodename nor servname", "getaddrinfo", "no address")):
            detail = "cannot resolve its host name"
        else:
            detail = text or exc.__class__.__name__
        return f"is unreachable ({detail})"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return f"dropped the connection ({text or exc.__class__.__name__})"
    return f"failed ({exc.__class__.__name__}: {text})" if text else f"failed ({exc.__class__.__name__})"


@register_writer("openai")
class OpenAICompatWriter:
    """A :class:`~captionkit.writers.base.Writer` backed by an OpenAI-compatible chat-completions server.

    ``settings`` is a :class:`~captionkit.models.settings.WriteSettings` (``api_key_env``, ``api_model``,
    ``concurrency``, ``timeout``, ``retries``). ``backoff`` and ``max_retry_after`` (seconds) tune retry
    delays; ``client`` replaces the writer's own httpx client (the caller then owns and closes it).
    """

    backend = "openai"

    def __init__(
        self,
        url: str,
        settings: Any,
        *,
        backoff: float = BACKOFF,
        max_retry_after: float = MAX_RETRY_AFTER,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = normalize_base_url(url)
        self.api_key_env: str | None = getattr(settings, "api_key_env", "OPENAI_API_KEY") or None
        self.timeout = float(getattr(settings, "timeout", 60.0))
        self.retries = int(getattr(settings, "retries", 3))
        self.concurrency = int(getattr(settings, "concurrency", 4))
        if self.timeout <= 0:
            raise ConfigError(f"--timeout must be > 0 seconds (got {self.timeout:g})")
        if self.retries < 0:
            raise ConfigError(f"--retries must be >= 0 (got {self.retries})")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be >= 1 (got {self.concurrency})")
        self.backoff = float(backoff)
        self.max_retry_after = float(max_retry_after)
        self._model: str | None = getattr(settings, "api_model", None) or None
        self._model_lock = threading.Lock()
        self._n_supported = True  # turned off the first time the server ignores or rejects n > 1
        self._own_client = client is None
        self._client = client
        self._client_pid = os.getpid()
        self._client_lock = threading.Lock()
        if self._model is None:
            self._probe_model()

    # ---------------------------------------------------------------------------------------- identity

    @property
    def model(self) -> str | None:
        """The model name sent to the server; None until it is configured or discovered."""
        return self._model

    @property
    def model_id(self) -> str:
        """``"<base url> (<model>)"``; the model reads ``?`` while the server has not been reached yet."""
        return f"{self.url} ({self._model or '?'})"

    def __repr__(self) -> str:
        return f"OpenAICompatWriter({self.url!r}, model={self._model!r})"

    # ---------------------------------------------------------------------------------------- HTTP plumbing

    @property
    def client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None or (self._own_client and self._client_pid != os.getpid()):
                # Recreated after fork: pooled sockets must not be shared between processes.
                self._client = httpx.Client(
                    limits=httpx.Limits(max_connections=max(8, self.concurrency * 2),
                                        max_keepalive_connections=max(4, self.concurrency)),
                    follow_redirects=True,
                )
                self._client_pid = os.getpid()
            return self._client

    def close(self) -> None:
        """Close the writer's own HTTP client (a client passed in is left to its owner)."""
        with self._client_lock:
            if self._own_client and self._client is not None:
                self._client.close()
            self._client = None

    def __enter__(self) -> OpenAICompatWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"captionkit/{__version__}", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None,
              timeout: float | None = None) -> httpx.Response:
        """One request; transport failures become ``_Retryable`` (the body is read before returning)."""
        timeout = self.timeout if timeout is None else timeout
        try:
            return self.client.request(method, f"{self.url}{path}", json=body, headers=self._headers(),
                                       timeout=httpx.Timeout(timeout))
        except httpx.TransportError as exc:
            raise _Retryable(_transport_reason(exc, timeout)) from exc

    def _check_status(self, response: httpx.Response, path: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        phrase = f"HTTP {status} {response.reason_phrase or httpx.codes.get_reason_phrase(status)}".rstrip()
        message = _server_message(response)
        said = f" ({message})" if message else ""
        if status in (408, 429) or status >= 500:
            raise _Retryable(f"answered {phrase}{said}", status, parse_retry_after(response.headers.get("retry-after")))
        hint = ""
        if status in (401, 403):
            if not self.api_key_env:
                hint = ": the server wants an API key; name the environment variable holding it (api_key_env)"
            elif os.environ.get(self.api_key_env, "").strip():
                hint = f": check ${self.api_key_env} (the key it holds was refused)"
            else:
                hint = f": check ${self.api_key_env} (it is not set)"
        elif status == 404 and path == "/chat/completions":
            hint = f": is {self.url} an OpenAI-compatible API, and does it serve model {self._model!r}?"
        raise WriterServerError(f"writer {self.url} answered {phrase} to {path}{said}{hint}", status=status)

    def _with_retries(self, attempt: Any) -> Any:
        """Run ``attempt()`` until it succeeds, a non-retryable error is raised, or attempts run out."""
        attempts = self.retries + 1
        for i in range(attempts):
            try:
                return attempt()
            except _Retryable as exc:
                failure = exc
                if i + 1 < attempts:
                    delay = self._retry_delay(i, exc.retry_after)
                    log.info("writer %s %s; retrying in %.1f s (attempt %d of %d)",
                             self.url, exc.reason, delay, i + 2, attempts)
                    time.sleep(delay)
        gave_up = f"; gave up after {attempts} attempts" if attempts > 1 else ""
        raise WriterServerError(f"writer {self.url} {failure.reason}{gave_up}", status=failure.status, retryable=True)

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        return retry_delay(self.backoff, attempt, retry_after, max_retry_after=self.max_retry_after,
                           max_backoff=MAX_BACKOFF)

    # ---------------------------------------------------------------------------------------- model

    def _probe_model(self) -> None:
        """Look the model up once at construction, quietly: a server that is not up yet is fine here."""
        try:
            self._discover(timeout=min(self.timeout, PROBE_TIMEOUT))
        except (_Retryable, WriterServerError) as exc:
            log.debug("writer %s: model not discovered yet (%s)", self.url, exc)

    def _discover(self, timeout: float | None = None) -> str:
        """The model name: configured, else the first id from ``GET /models`` (cached), else ``"default"``."""
        if self._model is not None:
            return self._model
        with self._model_lock:
            if self._model is not None:
                return self._model
            response = self._send("GET", "/models", timeout=timeout)
            status = response.status_code
            if status in (401, 403, 408, 429) or status >= 500:
                self._check_status(response, "/models")  # raises: a key problem, or worth retrying
            model = DEFAULT_MODEL
            if 200 <= status < 300:
                try:
                    data = response.json().get("data") or []
                    first = data[0].get("id") if data and isinstance(data[0], dict) else None
                except (ValueError, AttributeError):
                    first = None
                if isinstance(first, str) and first.strip():
                    model = first
            # Other statuses (404 and the like): the server has no model list, so it serves just one.
            self._model = model
            log.info("writer %s: using model %r", self.url, model)
            return model

    # ---------------------------------------------------------------------------------------- completions

    def _body(self, prompt: Prompt, gen: GenerationOptions, n: int, seed: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": prompt.messages(), "max_tokens": gen.max_new_tokens}
        if gen.do_sample:
            body["temperature"] = gen.temperature if gen.temperature is not None else 1.0
            if gen.top_p is not None:
                body["top_p"] = gen.top_p
        else:
            body["temperature"] = 0.0
        if seed is not None:
            body["seed"] = seed
        if n > 1:
            body["n"] = n
        return body

    def _complete(self, prompt: Prompt, gen: GenerationOptions, n: int, seed: int | None) -> list[str]:
        """Up to ``n`` completions from one request, with retries; ``_NRejected`` if ``n`` is refused."""

        def attempt() -> list[str]:
            body = {"model": self._discover(), **self._body(prompt, gen, n, seed)}
            response = self._send("POST", "/chat/completions", body)
            if n > 1 and response.status_code in (400, 422) and _MENTIONS_N.search(_server_message(response)):
                raise _NRejected(_server_message(response))
            self._check_status(response, "/chat/completions")
            return self._texts(response)

        return self._with_retries(attempt)

    def _texts(self, response: httpx.Response) -> list[str]:
        try:
            choices = response.json()["choices"]
            ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
            texts = []
            for choice in ordered:
                message = choice.get("message") or {}
                content = message.get("content") if isinstance(message, dict) else None
                if content is None:
                    content = choice.get("text")  # servers that answer chat in completions shape
                texts.append(content if isinstance(content, str) else "")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WriterServerError(
                f"writer {self.url} answered /chat/completions with something that is not a chat completion "
                f"({_one_line(response.text, 120) or 'empty body'})"
            ) from exc
        if not texts:
            raise WriterServerError(f"writer {self.url} answered /chat/completions with no choices")
        return texts

    def _candidates(self, prompt: Prompt, gen: GenerationOptions, n: int) -> list[str]:
        """``n`` candidates for one prompt: one request asking for ``n``, topped up by single requests."""
        texts: list[str] = []
        if n > 1 and self._n_supported:
            try:
                texts = self._complete(prompt, gen, n, gen.seed)[:n]
            except _NRejected as exc:
                log.info("writer %s rejects n=%d (%s); asking once per candidate", self.url, n, exc)
                self._n_supported = False
            else:
                if len(texts) < n:
                    log.info("writer %s returned %d of %d choices; asking once per candidate from now on",
                             self.url, len(texts), n)
                    self._n_supported = False
        while len(texts) < n:
            i = len(texts)
            seed = gen.seed + i if gen.seed is not None else None
            texts.append(self._complete(prompt, gen, 1, seed)[0])
        return texts

    def write(self, prompts: Sequence[Prompt], gen: GenerationOptions, n: int = 1) -> list[list[str]]:
        """``n`` raw candidate texts per prompt, in prompt order.

        Prompts are sent ``concurrency`` at a time. Raises :class:`WriterServerError` if any prompt fails
        (the first failure in prompt order; prompts not started yet are not sent).
        """
        if n < 1:
            raise ConfigError(f"--num-candidates must be >= 1 (got {n})")
        prompts = list(prompts)
        if not prompts:
            return []
        if len(prompts) == 1 or self.concurrency == 1:
            return [self._candidates(p, gen, n) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts)),
                                thread_name_prefix="captionkit-openai") as pool:
            futures = [pool.submit(self._candidates, p, gen, n) for p in prompts]
            results: list[list[str]] = []
            try:
                for future in futures:
                    results.append(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return results
