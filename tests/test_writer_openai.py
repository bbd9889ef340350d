"""The ``openai`` writer against real servers.

- A real OpenAI-compatible server: ``python -m llama_cpp.server`` serving a tiny random Llama that the test
  builds (SentencePiece tokenizer trained here, converted with llama.cpp's ``convert_hf_to_gguf.py``). It
  needs llama-cpp-python with its server extras and the converter under ``.cache/``: both come from
  ``scripts/llama-cpp-wheel.sh`` (``make test`` runs it); without them those tests skip and say so.
- Failure behaviour: small real HTTP servers (``http.server`` on 127.0.0.1, in a thread) that answer 500,
  429, 401, sleep past the timeout, check the key ... and a closed port.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from captionkit.models.options import GenerationOptions
from captionkit.models.settings import WriteSettings
from captionkit.writers.base import Prompt, available_writers, load_writer, writer_backend_for
from captionkit.writers.openai_compat import OpenAICompatWriter, WriterServerError, normalize_base_url

ROOT = Path(__file__).resolve().parents[1]
TEST_CACHE = Path(__file__).resolve().parent / ".cache"
# Where scripts/llama-cpp-wheel.sh keeps the sdist, wheels and converter (outside the checkout, shared by clones).
BUILD_CACHE = Path(os.environ.get("CAPTIONKIT_BUILD_CACHE")
                   or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "captionkit-build")
SERVER_START_DEADLINE = 60.0  # seconds for llama_cpp.server to load the model and answer /v1/models
KEY_VAR = "CAPTIONKIT_TEST_WRITER_KEY"
GREEDY = GenerationOptions(max_new_tokens=12, seed=3)
PROMPTS = [
    Prompt("You write short posts.", "A sunny beach photo with friends."),
    Prompt(None, "Our team launch video for the new product."),
    Prompt("Be brief.", "Coffee in the city at night."),
]


def settings(**kw: Any) -> WriteSettings:
    """Test settings: fast failures, no key unless a test sets one."""
    base: dict[str, Any] = {"api_key_env": KEY_VAR, "timeout": 10.0, "retries": 2, "concurrency": 2}
    return WriteSettings(**{**base, **kw})


def make_writer(url: str, **kw: Any) -> OpenAICompatWriter:
    return OpenAICompatWriter(url, settings(**kw), backoff=0.01, max_retry_after=5.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ============================================================================================
# The tiny GGUF and the real llama.cpp server
# ============================================================================================


def _llama_cpp_missing() -> str | None:
    """Why the llama.cpp server cannot run here, or None."""
    for module in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return (f"{module} is not installed: scripts/llama-cpp-wheel.sh installs llama-cpp-python[server] "
                    "(make test runs it)")
    for module in ("torch", "transformers", "sentencepiece", "safetensors"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (needed to build the tiny GGUF): pip install -e '.[models]'"
    return None


def _converter() -> Path:
    """``convert_hf_to_gguf.py`` for the installed llama-cpp-python, unpacked from the cached sdist if needed."""
    version = importlib.metadata.version("llama-cpp-python")
    folder = BUILD_CACHE / "llama-cpp-convert" / version
    script = folder / "convert_hf_to_gguf.py"
    if script.is_file() and (folder / "gguf-py" / "gguf").is_dir() and (folder / "conversion").is_dir():
        return script
    sdist = BUILD_CACHE / "sdist" / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.is_file():
        pytest.skip(f"no HF->GGUF converter for llama-cpp-python {version} under {BUILD_CACHE} "
                    "(run scripts/llama-cpp-wheel.sh)")
    top = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    wanted = ("convert_hf_to_gguf.py", "gguf-py/", "conversion/")
    staging = folder.with_name(f".{version}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            rel = member.name[len(top):] if member.name.startswith(top) else ""
            if rel.startswith(wanted) and (member.isfile() or member.isdir()):
                member.name = rel
                if hasattr(tarfile, "data_filter"):  # Python 3.10.12+/3.11.4+
                    tar.extract(member, staging, filter="data")
                else:
                    tar.extract(member, staging)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return script


def _build_tiny_gguf(out: Path, converter: Path) -> Path:
    """A 2-layer random Llama with a 64-wide hidden state and a ~400-piece SentencePiece vocabulary.

    The tokenizer has byte fallback: llama.cpp's SPM tokenizer aborts on a newline (the chat template has
    some) when there are no byte tokens. The LM head is scaled up so every position has a clear favourite,
    and its rows for special and byte tokens are zero, so the model practically never emits EOS or a broken
    UTF-8 sequence: greedy answers are never empty.
    """
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    work = out.parent / f".{out.stem}-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = random.Random(0)
    words = ("sunny beach photo team launch product coffee morning city night mountain river friends happy "
             "new week great video image share today love the a of with and our your this that is in on "
             "for summer sale brand story light colour smile welcome join us").split()
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(400)))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(work / "sp"), vocab_size=400, model_type="bpe", byte_fallback=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
    )
    (work / "tok").mkdir()
    shutil.copy(work / "sp.model", work / "tok" / "tokenizer.model")
    tokenizer = LlamaTokenizer.from_pretrained(str(work / "tok"))
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    hf = work / "hf"
    tokenizer.save_pretrained(str(hf))
    shutil.copy(work / "sp.model", hf / "tokenizer.model")  # the converter reads the SentencePiece model
    sp = spm.SentencePieceProcessor(model_file=str(work / "sp.model"))
    vocab = sp.vocab_size()
    never = [i for i in range(vocab) if sp.IsControl(i) or sp.IsUnknown(i) or sp.IsByte(i)]
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=3,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 1.0)
        model.lm_head.weight[never] = 0.0
    model.save_pretrained(str(hf))
    tmp = out.with_suffix(".part")
    done = subprocess.run(
        [sys.executable, str(converter), str(hf), "--outfile", str(tmp), "--outtype", "f32"],
        capture_output=True, text=True, timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    tmp.replace(out)
    shutil.rmtree(work, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def tiny_gguf() -> Path:
    """The tiny GGUF, built once and cached under tests/.cache/ keyed by the builder's code and versions."""
    reason = _llama_cpp_missing()
    if reason:
        pytest.skip(reason)
    converter = _converter()
    key = hashlib.sha256(
        "\n".join([
            inspect.getsource(_build_tiny_gguf),
            importlib.metadata.version("llama-cpp-python"),
            importlib.metadata.version("transformers"),
            importlib.metadata.version("sentencepiece"),
        ]).encode()
    ).hexdigest()[:16]
    out = TEST_CACHE / "tiny-gguf" / key / "tiny-llama.gguf"
    if not out.is_file():
        for stale in out.parent.parent.glob("*"):  # models built by earlier versions of the builder
            if stale != out.parent:
                shutil.rmtree(stale, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        _build_tiny_gguf(out, converter)
        print(f"built {out} in {time.monotonic() - started:.1f} s")
    return out


@pytest.fixture(scope="session")
def llama_server(tiny_gguf: Path, tmp_path_factory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free port serving the tiny model as ``tiny-llama``; yields its root URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_gguf), "--model_alias", "tiny-llama",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--n_threads", "1", "--n_batch", "128",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_DEADLINE
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within {SERVER_START_DEADLINE:g} s:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


# --------------------------------------------------------------------------------------------
# Against the real server
# --------------------------------------------------------------------------------------------


def test_real_server_writes_each_prompt_in_order(llama_server):
    with make_writer(llama_server, concurrency=3) as writer:
        together = writer.write(PROMPTS, GREEDY)
        alone = [writer.write([p], GREEDY)[0] for p in PROMPTS]
    assert [len(c) for c in together] == [1, 1, 1]
    assert all(isinstance(t, str) and t.strip() for c in together for t in c)
    assert together == alone  # greedy: each prompt's own answer, in its own place


def test_real_server_model_discovered_from_models_endpoint(llama_server):
    for url in (llama_server, f"{llama_server}/v1", f"{llama_server}/v1/"):
        with make_writer(url) as writer:
            assert writer.url == f"{llama_server}/v1"
            assert writer.model == "tiny-llama"
            assert writer.model_id == f"{llama_server}/v1 (tiny-llama)"
            assert writer.write(PROMPTS[:1], GREEDY)[0][0].strip()


def test_real_server_two_candidates(llama_server):
    sampled = GenerationOptions(max_new_tokens=10, do_sample=True, temperature=0.9, top_p=0.95, seed=11)
    with make_writer(llama_server) as writer:
        out = writer.write(PROMPTS[:2], sampled, n=2)
    assert [len(c) for c in out] == [2, 2]  # llama.cpp ignores n: topped up with one request per candidate
    assert all(isinstance(t, str) for c in out for t in c)


def test_real_server_greedy_is_deterministic(llama_server):
    with make_writer(llama_server) as writer:
        first = writer.write(PROMPTS, GREEDY)
        second = writer.write(PROMPTS, GREEDY)
    assert first == second


def test_real_server_concurrency(llama_server):
    prompts = [Prompt(None, f"post number {i} about the beach") for i in range(6)]
    with make_writer(llama_server, concurrency=4) as parallel, make_writer(llama_server, concurrency=1) as serial:
        assert parallel.write(prompts, GREEDY) == serial.write(prompts, GREEDY)


# ============================================================================================
# Small real HTTP servers for failure behaviour
# ============================================================================================

Responder = Callable[[dict[str, Any]], "tuple[int, Any, dict[str, str]] | None"]


def completion(*texts: str) -> dict[str, Any]:
    return {
        "id": "cmpl-1", "object": "chat.completion", "model": "fake-model",
        "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                    for i, t in enumerate(texts)],
    }


class FakeServer:
    """An HTTP server in a thread; ``respond(request)`` returns (status, json-or-text body, headers) or None.

    None means: GET /v1/models lists ``fake-model``, POST /v1/chat/completions answers "ok".
    ``requests`` records every request (method, path, headers, json body).
    """

    def __init__(self, respond: Responder | None = None, port: int = 0) -> None:
        self.respond = respond or (lambda req: None)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                req = {"method": self.command, "path": self.path, "headers": dict(self.headers),
                       "json": json.loads(raw) if raw else None}
                with fake.lock:
                    fake.requests.append(req)
                    req["count"] = sum(1 for r in fake.requests if r["method"] == req["method"])
                answer = fake.respond(req) or fake.default(req)
                status, body, headers = answer
                data = body if isinstance(body, bytes) else (
                    body.encode() if isinstance(body, str) else json.dumps(body).encode())
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @staticmethod
    def default(req: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if req["method"] == "GET" and req["path"] == "/v1/models":
            return 200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}, {}
        if req["method"] == "POST" and req["path"] == "/v1/chat/completions":
            return 200, completion("ok"), {}
        return 404, {"error": {"message": f"no route {req['path']}"}}, {}

    def posts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["method"] == "POST"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def start(respond: Responder | None = None, port: int = 0) -> FakeServer:
        servers.append(FakeServer(respond, port))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv(KEY_VAR, raising=False)


ONE = [Prompt(None, "hello")]


def test_registered_and_loaded_for_urls(serve):
    server = serve()
    assert "openai" in available_writers()
    assert writer_backend_for(server.url) == "openai"
    writer = load_writer(server.url, settings(writer=server.url))
    assert isinstance(writer, OpenAICompatWriter)
    assert writer.backend == "openai"
    assert writer.model_id == f"{server.url}/v1 (fake-model)"
    assert writer.write(ONE, GREEDY) == [["ok"]]


def test_url_normalisation():
    assert normalize_base_url("http://h:8000") == "http://h:8000/v1"
    assert normalize_base_url("http://h:8000/") == "http://h:8000/v1"
    assert normalize_base_url("http://h:8000/v1") == "http://h:8000/v1"
    assert normalize_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert normalize_base_url("http://h:8000/v1/chat/completions") == "http://h:8000/v1"
    assert normalize_base_url("https://h/openai") == "https://h/openai/v1"
    assert normalize_base_url("https://g.example/v1beta/openai/") == "https://g.example/v1beta/openai"
    with pytest.raises(Exception, match="not an http"):
        normalize_base_url("ftp://h/v1")


def test_request_body_and_model_from_models(serve):
    server = serve()
    writer = make_writer(server.url)
    assert writer.model_id == f"{server.url}/v1 (fake-model)"
    assert writer.write([Prompt("sys", "user text")], GenerationOptions(max_new_tokens=7, seed=5)) == [["ok"]]
    body = server.posts()[0]["json"]
    assert body["model"] == "fake-model"
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "user text"}]
    assert body["max_tokens"] == 7 and body["temperature"] == 0 and body["seed"] == 5 and "n" not in body
    sampled = GenerationOptions(do_sample=True, temperature=0.7, top_p=0.9)
    writer.write(ONE, sampled)
    body = server.posts()[1]["json"]
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and "seed" not in body
    models_asked = [r for r in server.requests if r["path"] == "/v1/models"]
    assert len(models_asked) == 1  # cached


def test_api_model_setting_wins_and_missing_models_endpoint_means_default(serve):
    server = serve()
    named = make_writer(server.url, api_model="my-model")
    named.write(ONE, GREEDY)
    assert server.posts()[-1]["json"]["model"] == "my-model" and not any(r["method"] == "GET" for r in server.requests)
    bare = serve(lambda req: (404, "not found", {}) if req["path"] == "/v1/models" else None)
    writer = make_writer(bare.url)
    assert writer.write(ONE, GREEDY) == [["ok"]]
    assert bare.posts()[0]["json"]["model"] == "default" and writer.model_id.endswith("(default)")


def test_500_twice_then_success_is_retried(serve):
    server = serve(lambda req: (500, {"error": {"message": "boom"}}, {})
                   if req["method"] == "POST" and req["count"] <= 2 else None)
    assert make_writer(server.url, retries=3).write(ONE, GREEDY) == [["ok"]]
    assert len(server.posts()) == 3


def test_always_500_gives_up_naming_url_and_attempts(serve):
    server = serve(lambda req: (503, {"error": {"message": "overloaded"}}, {}) if req["method"] == "POST" else None)
    with pytest.raises(WriterServerError) as err:
        make_writer(server.url, retries=2).write(ONE, GREEDY)
    message = str(err.value)
    assert f"writer {server.url}/v1" in message
    assert "HTTP 503" in message and "overloaded" in message and "gave up after 3 attempts" in message
    assert err.value.retryable and err.value.status == 503
    assert len(server.posts()) == 3


def test_slow_server_times_out(serve):
    def slow(req):
        if req["method"] == "POST":
            time.sleep(1.5)
        return None

    server = serve(slow)
    writer = make_writer(server.url, timeout=0.3, retries=1)
    started = time.monotonic()
    with pytest.raises(WriterServerError, match=r"timed out after 0\.3 s; gave up after 2 attempts"):
        writer.write(ONE, GREEDY)
    assert time.monotonic() - started < 1.4
    assert len(server.posts()) == 2


def test_401_is_not_retried_and_names_the_key_variable(serve, monkeypatch):
    server = serve(lambda req: (401, {"error": {"message": "Invalid API key"}}, {}))
    with pytest.raises(WriterServerError) as err:
        make_writer(server.url, retries=3).write(ONE, GREEDY)
    message = str(err.value)
    assert "HTTP 401" in message and f"${KEY_VAR}" in message and "not set" in message
    assert not err.value.retryable
    assert len(server.posts()) == 0  # the /models lookup already got the 401: no completion was attempted
    monkeypatch.setenv(KEY_VAR, "sk-wrong-secret")
    with pytest.raises(WriterServerError) as err:
        make_writer(server.url, retries=3, api_model="m").write(ONE, GREEDY)
    assert f"${KEY_VAR}" in str(err.value) and "refused" in str(err.value)
    assert "sk-wrong-secret" not in str(err.value)
    assert len(server.posts()) == 1


def test_other_4xx_not_retried(serve):
    server = serve(lambda req: (400, {"error": {"message": "prompt too long for context"}}, {})
                   if req["method"] == "POST" else None)
    with pytest.raises(WriterServerError, match=r"HTTP 400.*prompt too long"):
        make_writer(server.url, retries=3).write(ONE, GREEDY)
    assert len(server.posts()) == 1


def test_429_retry_after_is_honoured_and_capped(serve):
    server = serve(lambda req: (429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
                   if req["method"] == "POST" and req["count"] == 1 else None)
    started = time.monotonic()
    assert make_writer(server.url).write(ONE, GREEDY) == [["ok"]]
    assert time.monotonic() - started >= 0.95
    assert len(server.posts()) == 2

    greedy = serve(lambda req: (429, "busy", {"Retry-After": "3600"}) if req["method"] == "POST" and req["count"] == 1 else None)
    writer = OpenAICompatWriter(greedy.url, settings(), backoff=0.01, max_retry_after=0.2)
    started = time.monotonic()
    assert writer.write(ONE, GREEDY) == [["ok"]]
    assert time.monotonic() - started < 2


def test_unreachable_server_fails_clearly_but_loads(serve):
    port = free_port()  # nothing listens here
    writer = make_writer(f"http://127.0.0.1:{port}", retries=2)  # constructing does not fail
    assert writer.model_id == f"http://127.0.0.1:{port}/v1 (?)"
    with pytest.raises(WriterServerError) as err:
        writer.write(ONE, GREEDY)
    assert str(err.value) == (f"writer http://127.0.0.1:{port}/v1 is unreachable (connection refused); "
                              "gave up after 3 attempts")
    # The server comes up later: the same writer now works and finds the model.
    server = serve(port=port)
    assert writer.write(ONE, GREEDY) == [["ok"]]
    assert writer.model_id == f"{server.url}/v1 (fake-model)"


def test_key_sent_as_bearer_only_when_set(serve, monkeypatch):
    server = serve()
    make_writer(server.url).write(ONE, GREEDY)
    assert all("Authorization" not in r["headers"] for r in server.requests)
    monkeypatch.setenv(KEY_VAR, "sk-test-123")
    writer = make_writer(server.url)
    writer.write(ONE, GREEDY)
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in repr(writer) and "sk-test-123" not in repr(vars(writer))


def test_n_in_one_request_when_supported(serve):
    server = serve(lambda req: (200, completion(*[f"c{i}" for i in range(req["json"].get("n", 1))]), {})
                   if req["method"] == "POST" else None)
    assert make_writer(server.url).write(ONE, GREEDY, n=3) == [["c0", "c1", "c2"]]
    assert len(server.posts()) == 1 and server.posts()[0]["json"]["n"] == 3


def test_n_rejected_falls_back_to_one_request_per_candidate_with_seeds(serve):
    def no_n(req):
        if req["method"] != "POST":
            return None
        body = req["json"]
        if body.get("n", 1) > 1:
            return 400, {"error": {"message": "n must be 1 for this model", "param": "n"}}, {}
        return 200, completion(f"seed={body.get('seed')}"), {}

    server = serve(no_n)
    writer = make_writer(server.url)
    seeded = GenerationOptions(max_new_tokens=5, seed=40)
    assert writer.write(ONE, seeded, n=3) == [["seed=40", "seed=41", "seed=42"]]
    assert len(server.posts()) == 4
    writer.write(ONE, seeded, n=2)  # remembered: no n > 1 request again
    assert len(server.posts()) == 6 and all("n" not in r["json"] for r in server.posts()[4:])


def test_order_preserved_with_concurrency_and_one_failure_fails_the_call(serve):
    def echo(req):
        if req["method"] != "POST":
            return None
        text = req["json"]["messages"][-1]["content"]
        time.sleep(random.uniform(0, 0.05))
        if text == "bad":
            return 400, {"error": {"message": "refused this one"}}, {}
        return 200, completion(text.upper()), {}

    server = serve(echo)
    writer = make_writer(server.url, concurrency=4)
    prompts = [Prompt(None, f"p{i}") for i in range(12)]
    assert writer.write(prompts, GREEDY) == [[f"P{i}"] for i in range(12)]
    with pytest.raises(WriterServerError, match="refused this one"):
        writer.write([*prompts[:3], Prompt(None, "bad"), *prompts[3:5]], GREEDY)
    assert writer.write([], GREEDY) == []


def test_invalid_completion_json_is_a_clear_error(serve):
    server = serve(lambda req: (200, "<html>proxy page</html>", {}) if req["method"] == "POST" else None)
    with pytest.raises(WriterServerError, match=r"not a chat completion.*proxy page"):
        make_writer(server.url).write(ONE, GREEDY)
