"""``--engine ray``: the same :class:`Pipeline` on a Ray cluster, through Ray Data.

The :class:`~captionkit.pipeline.runner.Runner` stays in charge on the driver (this process): it reads the
dataset, skips what ``state.sqlite`` says is finished, and commits every result the moment it comes back,
exactly as with the local engine. This engine only decides where ``Pipeline.process`` runs::

    driver                                         Ray cluster
    Runner: dataset -> skip finished -> Pending --> _Feed (async actor) --> one streaming read task
                                                                             | rows {seq, item JSON}
                                                                             v
                                                  actor pool: _PipelineWorker, one Pipeline (models) per
                                                  actor, Pipeline.process(batch) -> rows {seq, result JSON}
    Runner: commit to state.sqlite, results.jsonl <-- iter_batches, streaming, in any order

Design choices:

- **Streaming with a bounded window.** The driver feeds at most ``window`` items that have no result yet, so a
  dataset of any size costs the memory of a window, and Ray Data's blocks are one row each so that nothing
  waits for a block to fill. Items cross as ``Item.to_dict()`` JSON, results as ``ItemResult.to_dict()`` JSON
  (without the item, which the driver still holds): plain strings, so metadata of any shape fits one schema.
  The dataset file is read by the driver only; the cluster needs the media (paths or URLs), not the file.
- **The whole pipeline runs in each actor**, media decoding included, instead of CPU tasks that decode and
  model actors that caption. Stages hand decoded frames and *local file paths* to later stages through
  ``Work.scratch`` (transcribe re-reads the file that media fetched); on a cluster that path exists only on
  the node that fetched it, and shipping decoded frames costs more object-store traffic than decoding them
  where they are used. Keeping ``Pipeline.process`` whole also keeps results identical to the local engine.
  To keep a GPU busy while its actor decodes, give it two actors (``--ray-gpus 0.5``).
- **A worker that dies on an item fails that item only.** Ray Data restarts a dead actor and retries its
  task without limit. A small ledger actor records which batch (and, on a retry, which item) each actor
  started: a batch that was started before without finishing is redone one item at a time, and an item that
  was started alone before without finishing is not run again but failed (stage ``worker``) with the reason.
  So an item that kills its worker costs two restarts and the run goes on.
- **Errors that stop a local run stop this one**: a stage's setup error (a model that cannot load) is sent
  back with the first batch and raised on the driver as itself. A cluster that stops answering for
  ``ray.connect_timeout`` seconds ends the run with :class:`ClusterLostError`; everything committed stays,
  and rerunning (on either engine) resumes. An ``--address`` where nothing answers is named before Ray is
  asked to connect (which would wait for minutes).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import pickle
import queue
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from captionkit.config import RunConfig
from captionkit.errors import CaptionkitError, ConfigError, MissingExtraError
from captionkit.extras import available, require
from captionkit.pipeline.core import Pipeline
from captionkit.pipeline.runner import Pending
from captionkit.records import Item, ItemResult, StageError

ray = require("ray", "ray", "--engine ray")
require("ray.data", "ray", "--engine ray")
from ray.data import ActorPoolStrategy  # noqa: E402
from ray.data.block import BlockMetadata  # noqa: E402
from ray.data.datasource import Datasource, ReadTask  # noqa: E402

log = logging.getLogger("captionkit")

CPU_STAGES = frozenset({"media", "facts"})  # stages that never want a GPU; any other stage may load a model
WINDOW_PER_ACTOR = 4  # batches in flight per actor: one running, the rest queued so that no actor waits
POLL_S = 0.1  # how often the driver looks at the cluster while it waits for results
CRASH_STAGE = "worker"
CRASH_REASON = ("the Ray worker process died while processing this item, also when it was retried alone "
                "(a crash in native code, os._exit, or out of memory); the worker logs of the Ray cluster say more")
# Ray Data's advice to split the input: the read is one streaming task on purpose, the window feeds every actor.
warnings.filterwarnings("ignore", message="The minimum number of concurrent actors", category=UserWarning)


class ClusterLostError(CaptionkitError):
    """The Ray cluster stopped answering during a run."""


class RayEngine:
    """Runs the pipeline of ``config`` on Ray actors; see the module docstring. Use as a context manager."""

    def __init__(self, config: RunConfig, pipeline: Pipeline | None = None) -> None:
        self.config = config
        self.settings = config.ray
        # Built here so that a bad stage name or setting fails at once, before any cluster is involved. It is
        # sent to each actor unloaded (setup runs there), so stages defined in the driver's script travel too.
        self.pipeline = pipeline or Pipeline.from_config(config)
        self._notices: list[str] = []
        self._started = False  # whether this engine called ray.init (then it also shuts Ray down)
        self._probe: tuple[str, int] | None = None  # where to check that the cluster is still there

    # --- connection ---------------------------------------------------------------------------------------
    def __enter__(self) -> RayEngine:
        if ray.is_initialized():  # connected already (a notebook, a test): that cluster it is
            self._probe = _gcs_endpoint()
            return self
        given = self.settings.address
        address = _resolve(given)
        label = given or (f"{address} (from $RAY_ADDRESS)" if os.environ.get("RAY_ADDRESS") else address)
        endpoint = _endpoint(label, address)
        if endpoint is not None:
            _check_reachable(label, endpoint, self.settings.connect_timeout)
        try:
            # Ray Client's server starts a process per connection first: seconds on a busy head node.
            floor = 60.0 if address.startswith("ray://") else 30.0
            _init(address, label, max(floor, 3 * self.settings.connect_timeout))
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--address {label}: cannot connect to a Ray cluster there: "
                              f"{_first_line(exc).rstrip('.')}.{_auth_hint()}") from None
        self._started = True
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-dataset INFO lines; our bar says more
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": ours run
        self._probe = endpoint if address.startswith("ray://") else _gcs_endpoint()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._started = False
            if isinstance(exc[1], ClusterLostError):
                return  # shutting down would wait for the dead cluster; the process exit cleans up
            ray.shutdown()

    @property
    def notices(self) -> list[str]:
        return list(self._notices)

    # --- the work -----------------------------------------------------------------------------------------
    def plan(self) -> dict[str, Any]:
        """Actors, their resources and the batch size, from the settings and what the cluster has."""
        s = self.settings
        resources = ray.cluster_resources()
        models = any(stage.name not in CPU_STAGES for stage in self.pipeline.stages)
        gpus = s.num_gpus if s.num_gpus is not None else (1.0 if models and resources.get("GPU", 0) >= 1 else 0.0)
        if s.actors is not None:
            actors = s.actors
        elif gpus > 0:
            actors = max(1, int(resources.get("GPU", 0) // gpus))
        else:
            actors = max(1, int(resources.get("CPU", 1) // max(s.num_cpus, 1.0)))
        if gpus > resources.get("GPU", 0):
            raise ConfigError(f"--ray-gpus {gpus:g}: the Ray cluster has {resources.get('GPU', 0):g} GPUs, so no actor "
                              f"could start; use --ray-gpus 0 to run on CPUs, or start the GPU nodes first")
        batch = s.batch_size or self.pipeline.batch_size
        return {"actors": actors, "num_gpus": gpus, "num_cpus": s.num_cpus, "batch_size": batch,
                "window": max(2 * batch, batch * actors * WINDOW_PER_ACTOR)}

    def results(self, pending: Iterator[Pending]) -> Iterator[list[tuple[Pending, ItemResult]]]:
        first = next(pending, None)
        if first is None:  # all finished already: no actors to start
            return
        pending = itertools.chain([first], pending)
        plan = self.plan()
        feed = ray.remote(num_cpus=0)(_Feed).remote()
        ledger = ray.remote(num_cpus=0)(_CrashLedger).remote()
        out: queue.Queue = queue.Queue()
        helpers = [feed, ledger]
        if ray.util.client.ray.is_connected():
            # Through Ray Client this process is no Ray worker, and Ray Data's executor needs one: an actor on the
            # cluster runs the dataset, and a thread here relays its messages.
            remote = ray.remote(num_cpus=0)(_RemoteResults).remote(feed, ledger, self.pipeline, plan, _captionkit_env())
            helpers.append(remote)
            consumer = threading.Thread(target=_relay, args=(remote, out), name="captionkit-ray-results", daemon=True)
        else:
            ds = _dataset(feed, ledger, self.pipeline, plan, _captionkit_env())
            consumer = threading.Thread(target=_consume, args=(ds, out), name="captionkit-ray-results", daemon=True)
        consumer.start()
        lost = False
        try:
            yield from self._exchange(pending, feed, out, plan["window"], plan["batch_size"])
        except ClusterLostError:
            lost = True  # nothing left to stop or wait for
            raise
        finally:
            if not lost:
                for handle in helpers:  # ends the read task, and with it the dataset's execution
                    try:
                        ray.kill(handle, no_restart=True)
                    except Exception:  # never hide the error that brought us here
                        log.debug("could not stop a helper actor", exc_info=True)
                consumer.join(timeout=5)

    def _exchange(self, pending: Iterator[Pending], feed: Any, out: queue.Queue, window: int,
                  chunk: int) -> Iterator[list[tuple[Pending, ItemResult]]]:
        """Feed pending items while fewer than ``window`` are out; yield results as they arrive."""
        in_flight: dict[int, Pending] = {}
        exhausted = False
        silent_since: float | None = None
        last_probe = time.monotonic()
        while True:
            while not exhausted and len(in_flight) < window:
                rows = []
                for p in pending:
                    in_flight[p.seq] = p
                    rows.append((p.seq, json.dumps(p.item.to_dict(), ensure_ascii=False)))
                    if len(rows) >= chunk or len(in_flight) >= window:
                        break
                else:
                    exhausted = True
                if rows:
                    self._put(feed, rows)
                if exhausted:
                    self._put(feed, None)  # the read task ends; the last partial batches go out
            try:
                kind, value = out.get(timeout=POLL_S)
            except queue.Empty:
                now = time.monotonic()
                if now - last_probe >= 1.0:
                    last_probe = now
                    silent_since = None if self._cluster_answers() else (silent_since or now)
                    if silent_since is not None and now - silent_since >= self.settings.connect_timeout:
                        raise ClusterLostError(self._lost_message(now - silent_since)) from None
                continue
            if kind == "error":
                raise self._failure(value)
            if kind == "end":
                break
            # A row Ray delivered twice (a retried task) finds its item no longer in flight: the first one counts.
            group = [(p, self._result(p, payload)) for seq, payload in value if (p := in_flight.pop(seq, None))]
            if group:
                yield group
        if in_flight:  # not expected: every row gets a result row; never drop an item silently
            yield [(p, _failed(p, "the Ray engine returned no result for this item")) for p in in_flight.values()]

    def _put(self, feed: Any, rows: list[tuple[int, str]] | None) -> None:
        """Hand rows to the read task; bounded in time, since a dead cluster would leave ray.get waiting."""
        while True:
            try:
                ray.get(feed.put.remote(rows), timeout=self.settings.connect_timeout)
                return
            except ray.exceptions.GetTimeoutError:
                if not self._cluster_answers():
                    raise ClusterLostError(self._lost_message(self.settings.connect_timeout)) from None
            except ray.exceptions.RayError as exc:  # e.g. the feed actor is gone
                raise self._failure(exc) from None

    def _failure(self, exc: BaseException) -> BaseException:
        """What to raise for an error from Ray: the cluster's loss when it stopped answering (a dead cluster
        shows up as actors or tasks that failed), else the error itself."""
        if isinstance(exc, (CaptionkitError, KeyboardInterrupt)) or isinstance(getattr(exc, "cause", None), CaptionkitError):
            return _engine_error(exc)
        start = time.monotonic()
        while not self._cluster_answers():
            if time.monotonic() - start >= self.settings.connect_timeout:
                return ClusterLostError(self._lost_message(time.monotonic() - start))
            time.sleep(0.5)
        return _engine_error(exc)

    def _result(self, p: Pending, payload: str) -> ItemResult:
        data = json.loads(payload)
        for notice in data.get("notices", []):
            if notice not in self._notices:
                self._notices.append(notice)
        if fatal := data.get("fatal"):
            raise _exception_from(fatal)
        err = data.get("error")
        return ItemResult(id=p.item.id, item=p.item, outputs=data.get("outputs") or {}, timings=data.get("timings") or {},
                          error=StageError(**err) if err else None, attempts=p.attempt)

    def _cluster_answers(self) -> bool:
        return _answers(self._probe)

    def _lost_message(self, silent: float) -> str:
        where = f"{self._probe[0]}:{self._probe[1]}" if self._probe else "its address"
        prefix = f"--address {self.settings.address}: the Ray cluster" if self.settings.address else f"the Ray cluster at {where}"
        return (f"{prefix} stopped answering during the run (no answer for {silent:.0f} s). Every result received "
                f"before was saved; rerun the same command to resume, with --engine local or once the cluster is back.")


# --- on the cluster ---------------------------------------------------------------------------------------
class _Feed:
    """The driver's pending items on their way to the read task. Async, so that a waiting take() never
    holds up a put()."""

    def __init__(self) -> None:
        self.rows: asyncio.Queue = asyncio.Queue()

    async def put(self, rows: list[tuple[int, str]] | None) -> None:
        self.rows.put_nowait(rows)

    async def take(self) -> list[tuple[int, str]] | None:
        return await self.rows.get()


class _FeedSource(Datasource):
    """One streaming read task that yields the rows the driver puts on the feed, until it puts None."""

    def __init__(self, feed: Any) -> None:
        super().__init__()
        self.feed = feed

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(partial(_read_feed, self.feed), meta)]


def _read_feed(feed: Any) -> Iterator[pa.Table]:
    while (rows := ray.get(feed.take.remote())) is not None:
        yield pa.table({"seq": pa.array([s for s, _ in rows], pa.int64()), "item": pa.array([t for _, t in rows], pa.string())})


class _CrashLedger:
    """Which batches and items were started and not finished: what a worker was doing when it died."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def start(self, key: str) -> int:
        """Count a start of ``key``; return how many earlier starts never finished (= workers lost on it)."""
        n = self.open.get(key, 0)
        self.open[key] = n + 1
        return n

    def finish(self, key: str) -> None:
        self.open.pop(key, None)


class _PipelineWorker:
    """A Ray Data actor: one pipeline, set up once (its models load here), run on each batch of rows."""

    def __init__(self, pipeline: Pipeline, ledger: Any, env: dict[str, str]) -> None:
        os.environ.update(env)  # this process serves this actor only
        self.pipeline = pipeline
        self.ledger = ledger
        self.fatal: dict[str, str] | None = None
        self.told = False  # notices go back once per actor
        try:
            pipeline.setup()
        except Exception as exc:  # a local run stops on this error: send it to the driver to stop there too
            self.fatal = _encode_exception(exc)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seqs = [int(s) for s in batch["seq"]]
        items = [Item.from_dict(json.loads(text)) for text in batch["item"]]
        if self.fatal:
            payloads = [{"fatal": self.fatal}] * len(items)
        else:
            try:
                payloads = self._process(seqs, items)
            except Exception as exc:  # not a stage's (those fail their item): a bug that stops a local run too
                payloads = [{"fatal": _encode_exception(exc)}] * len(items)
        if not self.told and payloads:
            self.told = True
            payloads[0] = {**payloads[0], "notices": self.pipeline.notices}
        return {"seq": np.array(seqs, dtype=np.int64),
                "payload": np.array([json.dumps(p, ensure_ascii=False) for p in payloads], dtype=object)}

    def _process(self, seqs: list[int], items: list[Item]) -> list[dict[str, Any]]:
        key = "batch:" + ",".join(map(str, seqs))
        if not ray.get(self.ledger.start.remote(key)):
            payloads = [_payload(r) for r in self.pipeline.process(items)]
        else:  # a worker died on this batch before: find the item that kills, one at a time
            payloads = [self._alone(seq, item) for seq, item in zip(seqs, items)]
        ray.get(self.ledger.finish.remote(key))
        return payloads

    def _alone(self, seq: int, item: Item) -> dict[str, Any]:
        key = f"item:{seq}"
        if ray.get(self.ledger.start.remote(key)):
            log.warning("item %s killed its Ray worker twice: failed (pid %d)", item.id, os.getpid())
            payload = {"outputs": {}, "timings": {}, "error": {"stage": CRASH_STAGE, "reason": CRASH_REASON, "type": "WorkerCrashedError"}}
        else:
            [result] = self.pipeline.process([item])
            payload = _payload(result)
        ray.get(self.ledger.finish.remote(key))
        return payload


def _payload(result: ItemResult) -> dict[str, Any]:
    record = result.to_dict()
    return {"outputs": record["outputs"], "timings": record["timings"], "error": record["error"]}


def _dataset(feed: Any, ledger: Any, pipeline: Pipeline, plan: dict[str, Any], env: dict[str, str]) -> Any:
    """The read task on ``feed`` and the actor pool that runs ``pipeline`` on its rows."""
    ds = ray.data.read_datasource(_FeedSource(feed), num_cpus=0, override_num_blocks=1).map_batches(
        _PipelineWorker,
        fn_constructor_kwargs={"pipeline": pipeline, "ledger": ledger, "env": env},
        batch_size=plan["batch_size"],
        batch_format="numpy",
        compute=ActorPoolStrategy(size=plan["actors"]),
        num_cpus=plan["num_cpus"],
        num_gpus=plan["num_gpus"] or None,
    )
    ctx = ds.context
    ctx.target_max_block_size = 1  # a block per row: an item goes out (and its result comes back) at once
    ctx.enable_progress_bars = False  # the runner has its own
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    return ds


class _RemoteResults:
    """Runs the dataset on the cluster for a driver connected through Ray Client; ``next`` hands over the messages
    ``_consume`` has put on the queue since the last call (waiting up to ``timeout`` seconds for the first)."""

    def __init__(self, feed: Any, ledger: Any, pipeline: Pipeline, plan: dict[str, Any], env: dict[str, str]) -> None:
        self.out: queue.Queue = queue.Queue()
        ds = _dataset(feed, ledger, pipeline, plan, env)
        threading.Thread(target=_consume, args=(ds, self.out), name="captionkit-ray-results", daemon=True).start()

    def next(self, timeout: float) -> list[tuple[str, Any]]:
        messages = []
        try:
            messages.append(self.out.get(timeout=timeout))
            while True:
                messages.append(self.out.get_nowait())
        except queue.Empty:
            return messages


def _relay(remote: Any, out: queue.Queue) -> None:
    """Runs in a thread of a Ray Client driver: ``_RemoteResults``' messages onto ``out``, until the end."""
    try:
        while True:
            for message in ray.get(remote.next.remote(1.0)):
                out.put(message)
                if message[0] in ("end", "error"):
                    return
    except BaseException as exc:  # handed to the main thread, which raises it (or finds the cluster gone)
        out.put(("error", exc))


def _consume(ds: Any, out: queue.Queue) -> None:
    """Runs in a thread: the dataset's rows, as Ray returns them, onto ``out`` for the driver's main thread."""
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
            out.put(("rows", list(zip(batch["seq"].tolist(), batch["payload"].tolist()))))
        out.put(("end", None))
    except BaseException as exc:  # handed to the main thread, which raises it
        out.put(("error", exc))


# --- helpers ----------------------------------------------------------------------------------------------
def _resolve(address: str | None) -> str:
    """The address to connect to. Without one, as ray.init() does: $RAY_ADDRESS, else the cluster `ray start`
    left on this machine, else a new local one; ``auto`` insists on an existing cluster. Resolved here so that
    a cluster that is not there is named at once rather than waited for."""
    if address not in (None, "auto"):
        return address
    try:
        from ray._private.services import get_ray_address_from_environment  # what ray.init() itself uses

        found = get_ray_address_from_environment(address, None)
    except ConnectionError as exc:  # "auto" and nothing running
        raise ConfigError(f"--address auto: no Ray cluster runs on this machine ({_first_line(exc)}). Start one with "
                          f"`ray start --head`, give its address, or use --address local") from None
    except Exception:  # a Ray without that helper: let ray.init decide
        return address or "local"
    from_env = bool(os.environ.get("RAY_ADDRESS"))
    if found and address is None and not from_env and not found.startswith("ray://") and not _answers(_endpoint("", found)):
        log.warning("the Ray cluster recorded at %s does not answer (stopped?): starting a local one", found)
        return "local"
    return found or "local"


def _init(address: str, given: str, timeout: float) -> None:
    """ray.init, within ``timeout`` when joining an existing cluster: a port that answers without being Ray keeps
    ray.init waiting for minutes. A new local cluster starts in this thread: its processes die with the thread
    that starts them."""
    kwargs: dict[str, Any] = {"address": address, "log_to_driver": True, "logging_level": logging.WARNING}
    if address == "local":
        ray.init(include_dashboard=False, **kwargs)
        return
    if address.startswith("ray://") and not available("grpc"):
        raise MissingExtraError(f"--address {given}: Ray Client (ray://) needs 'grpc', which is not installed: "
                                f"pip install 'ray[client]', or run captionkit on the head node with --address HOST:6379")
    failed: list[BaseException] = []
    logging.getLogger("ray._private.worker").addFilter(_no_sigterm_note)

    def connect() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as exc:  # raised in the caller's thread below
            failed.append(exc)

    thread = threading.Thread(target=connect, name="captionkit-ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ConfigError(f"--address {given}: something answers there but no Ray cluster replied within {timeout:.0f} s. "
                          f"Give the head node's GCS port (HOST:6379 by default) or its Ray Client port "
                          f"(ray://HOST:10001 by default).{_auth_hint()}")
    if failed:
        raise failed[0]


def _auth_hint() -> str:
    """Recent Ray turns token authentication on for clusters `ray start --head` starts, and a client without the
    token is not refused but left waiting: say what to set, unless it is set."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    return (" If the cluster uses token authentication (the default for `ray start --head` in recent Ray), set "
            "RAY_AUTH_MODE=token and the token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token).")


def _no_sigterm_note(record: logging.LogRecord) -> bool:
    # ray.init outside the main thread says it leaves SIGTERM alone; the store makes that harmless.
    return "SIGTERM handler is not set" not in record.getMessage()


def _endpoint(given: str, address: str) -> tuple[str, int] | None:
    """(host, port) of an address, to check before ray.init, which waits a long time on silence."""
    if address in ("local", "auto"):
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"--address {given or address}: expected ray://HOST:PORT (Ray Client, port 10001 by default), "
                          f"HOST:PORT (the head node's GCS, port 6379 by default), auto or local")
    return host.strip("[]"), int(port)


def _answers(endpoint: tuple[str, int] | None, timeout: float = 1.0) -> bool:
    if endpoint is None:
        return True
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
        return True
    except OSError:
        return False


def _check_reachable(address: str, endpoint: tuple[str, int], timeout: float) -> None:
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConfigError(f"--address {address}: no Ray cluster answers at {endpoint[0]}:{endpoint[1]} ({reason}). "
                          f"Start one (`ray start --head`), check the address and port, or use --address local "
                          f"for a cluster on this machine.") from None


def _gcs_endpoint() -> tuple[str, int] | None:
    try:
        host, _, port = ray.get_runtime_context().gcs_address.rpartition(":")
        return host, int(port)
    except Exception:  # Ray Client connections have no GCS address here
        return None


def _captionkit_env() -> dict[str, str]:
    """The driver's CAPTIONKIT_* variables (e.g. the download cache), which the actors' processes lack when the
    cluster was started elsewhere. (Set in each actor: a runtime_env would cost a worker start per run.)"""
    return {k: v for k, v in os.environ.items() if k.startswith("CAPTIONKIT_")}


def _encode_exception(exc: BaseException) -> dict[str, str]:
    try:
        data = base64.b64encode(pickle.dumps(exc)).decode()
    except Exception:
        data = ""
    return {"type": type(exc).__name__, "message": str(exc), "pickle": data}


def _exception_from(fatal: dict[str, str]) -> BaseException:
    try:
        exc = pickle.loads(base64.b64decode(fatal["pickle"]))
        if isinstance(exc, BaseException):
            return exc
    except Exception:
        pass
    return CaptionkitError(f"a Ray worker failed: {fatal['type']}: {fatal['message']}")


def _engine_error(exc: BaseException) -> BaseException:
    """What to raise for an error from Ray Data: our own errors as they are, Ray's with its first line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, CaptionkitError):
        return cause
    if isinstance(exc, (CaptionkitError, KeyboardInterrupt)):
        return exc
    err = CaptionkitError(f"the Ray engine failed: {_first_line(exc)}. Every result received before was saved; "
                          f"rerun the same command to resume (--debug shows the full error).")
    err.__cause__ = exc
    return err


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:500]


def _failed(p: Pending, reason: str) -> ItemResult:
    return ItemResult(id=p.item.id, item=p.item, error=StageError(CRASH_STAGE, reason, "WorkerLostError"), attempts=p.attempt)
