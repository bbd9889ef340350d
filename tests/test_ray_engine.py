"""``--engine ray``: the local engine's end-to-end checks, on a Ray cluster this test starts on this machine.

One in-process cluster (2 CPUs) serves the module; the CLI tests start their own with ``--address local``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import test_runner as runner_tests  # noqa: E402  (its tests are run again below, on Ray)
from captionkit import api  # noqa: E402
from captionkit.config import RunConfig  # noqa: E402
from captionkit.errors import ConfigError, MissingExtraError  # noqa: E402
from captionkit.io.readers import read_dataset  # noqa: E402
from captionkit.pipeline import ray_engine  # noqa: E402
from captionkit.pipeline.runner import Runner, make_engine  # noqa: E402
from captionkit.pipeline.stage import ItemStage, register_stage  # noqa: E402
from conftest import CLI, write_csv  # noqa: E402

media_server = runner_tests.media_server  # a fixture one of the reused tests needs
CAPTIONED = {"stages": ["media", "facts", "caption"], "caption": {"model": "basic"}, "frames": {"n": 2}}
pytestmark = [  # Ray Data's own: it copies deprecated settings, and advises splitting a read that is one stream on purpose
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
    pytest.mark.filterwarnings("ignore:The minimum number of concurrent actors:UserWarning"),
]
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "1", "NO_COLOR": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def ray_cluster():
    """A local cluster started by the test (``address="local"``: never one that happens to run here)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in QUIET.items():
            mp.setenv(key, value)
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
                 log_to_driver=False, logging_level="ERROR")
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture
def on_ray(ray_cluster, monkeypatch):
    """``api.run`` with ``engine="ray"``, so that tests written for the local engine run on Ray unchanged."""
    monkeypatch.setattr(api, "run", functools.partial(api.run, engine="ray"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def committed(out: Path) -> int:
    try:
        with sqlite3.connect(out / "state.sqlite", timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def without_timings(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "timings"}


# --- the local engine's tests, on Ray ---------------------------------------------------------------------
@pytest.mark.parametrize("test", [
    runner_tests.test_run_records_each_item_and_its_error,
    runner_tests.test_rerun_skips_done_and_retries_failed_until_the_limit,
    runner_tests.test_a_half_written_line_is_repaired_on_resume,
    runner_tests.test_resuming_with_other_settings_is_refused,
    runner_tests.test_a_broken_jsonl_line_or_media_cell_fails_that_row_only,
    runner_tests.test_url_rows_download_once_and_a_404_fails_only_its_row,
], ids=lambda t: t.__name__.removeprefix("test_"))
def test_local_engine_end_to_end_tests_pass_on_ray(test, on_ray, request):
    test(**{name: request.getfixturevalue(name) for name in inspect.signature(test).parameters})


def test_ray_results_equal_local_results_and_resume_across_engines(ray_cluster, posts_csv, tmp_path):
    cfg = RunConfig.from_dict(CAPTIONED)
    local = api.run(posts_csv, tmp_path / "local", cfg)
    on_ray = api.run(posts_csv, tmp_path / "ray", cfg, engine="ray")
    want, got = read_jsonl(tmp_path / "local" / "results.jsonl"), read_jsonl(tmp_path / "ray" / "results.jsonl")
    assert [r["id"] for r in got] == ["a", "b", "c", "d", "e"]  # dataset order, whatever order Ray finished in
    assert [without_timings(r) for r in got] == [without_timings(r) for r in want]
    assert got[2]["outputs"]["caption"][0]["caption"].startswith("A 2-second video: a landscape image")
    assert got[3]["error"]["stage"] == "media" and "broken.jpg" in got[3]["error"]["reason"]
    assert set(got[0]["timings"]) == {"media", "facts", "caption"}
    assert (on_ray.done, on_ray.failed, on_ray.failures) == (local.done, local.failed, local.failures)
    assert (tmp_path / "ray" / "summary.md").read_text().count("FAILED in media") == 2
    # The local engine retries the failed items of the Ray run, counting attempts in the same store.
    again = api.run(posts_csv, tmp_path / "ray", cfg)
    assert (again.processed, again.skipped) == (2, 3)
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "ray" / "results.jsonl")}
    assert rows["d"]["attempts"] == 2 and rows["a"]["attempts"] == 1 and len(rows) == 5


def test_an_interrupted_ray_run_resumes_each_item_once_on_either_engine(ray_cluster, tmp_path, media_dir):
    n = 12
    rows = [{"id": f"i{k:02d}", "media": str(media_dir / ("red.jpg" if k % 2 else "blue.png"))} for k in range(n)]
    data = write_csv(tmp_path / "d.csv", rows)
    out = tmp_path / "out"
    # One actor, one item per call: at most 4 items are out at once, so when the reader is interrupted at the
    # 9th item, at least 5 have been committed and at most 8 have been handed out.
    cfg = RunConfig.from_dict({"stages": ["media", "facts"], "engine": "ray", "ray": {"actors": 1, "batch_size": 1}})

    def interrupted():
        for k, item in enumerate(read_dataset(data)):
            if k == 8:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        Runner(None, out, cfg, engine=make_engine(cfg), progress=False).run(interrupted(), total=n)
    first = committed(out)
    assert 5 <= first <= 8
    resumed = api.run(data, out, cfg)
    assert (resumed.skipped, resumed.processed, resumed.done) == (first, n - first, n)
    ids = [r["id"] for r in read_jsonl(out / "results.jsonl")]
    assert ids == [f"i{k:02d}" for k in range(n)]  # each exactly once, in dataset order
    local = api.run(data, out, dataclasses.replace(cfg, engine="local"))
    assert (local.processed, local.skipped) == (0, n)


@register_stage("test_crash_on_b")
class CrashOnB(ItemStage):
    """Kills its worker process on item ``b``, as a segfault in a model's native code would."""

    name = "test_crash_on_b"

    def __init__(self, config: RunConfig) -> None:
        pass

    def process_one(self, work):
        if work.item.id == "b":
            os._exit(1)
        return {"pid": os.getpid()}


def test_an_item_that_kills_its_worker_fails_alone(ray_cluster, posts_csv, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the stage travels with the pipeline
    try:
        cfg = RunConfig.from_dict({"stages": ["media", "facts", "test_crash_on_b"], "ray": {"batch_size": 3}})
        start = time.monotonic()
        summary = api.run(posts_csv, tmp_path / "out", cfg, engine="ray")
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert time.monotonic() - start < 60
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "results.jsonl")}
    assert rows["b"]["error"]["stage"] == "worker" and "died" in rows["b"]["error"]["reason"]
    assert rows["a"]["ok"] and rows["c"]["ok"]  # in the same batch as b, yet done
    assert rows["d"]["error"]["stage"] == rows["e"]["error"]["stage"] == "media"
    assert (summary.done, summary.failed) == (2, 3)


def test_a_stage_that_cannot_set_up_stops_the_run_as_it_does_locally(ray_cluster, posts_csv, tmp_path):
    cfg = RunConfig.from_dict({"stages": ["media", "caption"], "caption": {"model": str(tmp_path / "no-model")}})
    with pytest.raises(ConfigError) as local:
        api.run(posts_csv, tmp_path / "local", cfg)
    with pytest.raises(ConfigError) as on_ray:
        api.run(posts_csv, tmp_path / "ray", cfg, engine="ray")
    assert str(on_ray.value) == str(local.value) and "--captioner" in str(on_ray.value)


# --- configuration and connection ------------------------------------------------------------------------
def test_engine_settings_are_validated_and_stay_out_of_the_fingerprint():
    base = RunConfig.from_dict({"stages": ["media"]})
    ray_cfg = RunConfig.from_dict({"stages": ["media"], "engine": "ray", "ray": {"address": "auto", "actors": 2}})
    assert ray_cfg.fingerprint() == base.fingerprint()  # switching engine resumes the same run
    assert base.with_engine("ray", address="ray://h:10001", actors=3).ray.actors == 3
    with pytest.raises(ConfigError, match="--engine"):
        RunConfig.from_dict({"engine": "spark"})
    with pytest.raises(ConfigError, match="--ray-actors"):
        RunConfig.from_dict({"ray": {"actors": 0}})
    with pytest.raises(ConfigError, match="--address: only used by --engine ray"):
        base.with_engine(None, address="auto")
    with pytest.raises(ConfigError, match="--address nowhere: expected ray://HOST:PORT"):
        ray_engine._endpoint("nowhere", "nowhere")
    with pytest.raises(ConfigError, match=r"--address ray://127.0.0.1:1: no Ray cluster answers at 127.0.0.1:1"):
        ray_engine._check_reachable("ray://127.0.0.1:1", ("127.0.0.1", 1), timeout=2)


def test_the_plan_fits_the_cluster(ray_cluster):
    cpu_only = ray_engine.RayEngine(RunConfig.from_dict(CAPTIONED)).plan()
    assert (cpu_only["actors"], cpu_only["num_gpus"], cpu_only["batch_size"]) == (2, 0, 4)  # 2 CPUs; caption batch 4
    assert cpu_only["window"] == 2 * 4 * ray_engine.WINDOW_PER_ACTOR
    with pytest.raises(ConfigError, match="--ray-gpus 1: the Ray cluster has 0 GPUs"):
        ray_engine.RayEngine(RunConfig.from_dict({**CAPTIONED, "ray": {"num_gpus": 1}})).plan()


def test_without_ray_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an absent package looks like to import
    monkeypatch.delitem(sys.modules, "captionkit.pipeline.ray_engine")
    with pytest.raises(MissingExtraError, match=r"captionkit\[ray\]"):
        make_engine(RunConfig(stages=["media"], engine="ray"))


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, **QUIET}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_cli_names_an_unreachable_address_at_once(posts_csv, tmp_path):
    start = time.monotonic()
    res = run_cli("run", str(posts_csv), "--out", str(tmp_path / "out"), "--engine", "ray",
                  "--address", "ray://127.0.0.1:1", "--no-progress", timeout=60)
    assert res.returncode == 2, res.stderr
    assert "--address ray://127.0.0.1:1: no Ray cluster answers" in res.stderr
    assert time.monotonic() - start < 30
    assert not (tmp_path / "out").exists()  # nothing was started


def test_a_port_that_answers_without_being_ray_is_named_in_bounded_time():
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts connections, never says a word
        address = f"127.0.0.1:{server.getsockname()[1]}"
        code = f"from captionkit.pipeline.ray_engine import _init; _init({address!r}, {address!r}, timeout=3)"
        start = time.monotonic()
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, **QUIET})
    assert res.returncode == 1 and f"ConfigError: --address {address}: something answers there but no Ray" in res.stderr
    assert time.monotonic() - start < 30


def images_csv(tmp_path: Path, media_dir: Path, n: int) -> Path:
    rows = [{"id": f"i{k:03d}", "media": str(media_dir / ("red.jpg" if k % 2 else "blue.png"))} for k in range(n)]
    return write_csv(tmp_path / "many.csv", rows)


@contextlib.contextmanager
def run_until_committed(args: list[str], out: Path, commits: int):
    """`captionkit ARGS` in a subprocess, handed over (still running) once ``commits`` items are committed in
    ``out``; killed on the way out if it still runs."""
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **QUIET})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and committed(out) < commits:
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.stderr.read()[-2000:]}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_on_a_local_cluster_that_dies_mid_run_then_resumes(tmp_path, media_dir):
    """`--address local` through the real CLI; its cluster is killed after a few commits: the run ends with a
    clear error and keeps what it committed, and a rerun (here on the local engine) finishes the rest."""
    psutil = pytest.importorskip("psutil")
    n = 200
    data = images_csv(tmp_path, media_dir, n)
    (tmp_path / "run.yaml").write_text("ray: {connect_timeout: 2}\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["run", str(data), "--out", str(out), "--config", str(tmp_path / "run.yaml"), "--engine", "ray",
            "--address", "local", "--ray-actors", "1", "--stages", "media,facts", "--no-progress"]
    with run_until_committed(args, out, 5) as proc:
        for p in psutil.Process(proc.pid).children(recursive=True):  # GCS, raylet, workers: the whole cluster
            p.kill()
        lost_at = time.monotonic()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "error: --address local: the Ray cluster stopped answering during the run" in err
    assert time.monotonic() - lost_at < 20  # noticed after connect_timeout, then a bounded shutdown
    kept = committed(out)
    assert 5 <= kept < n
    again = api.run(data, out, RunConfig(stages=["media", "facts"]))
    assert (again.skipped, again.processed, again.done) == (kept, n - kept, n)
    ids = [r["id"] for r in read_jsonl(out / "results.jsonl")]
    assert ids == [f"i{k:03d}" for k in range(n)]  # each exactly once, in dataset order


def test_cli_driver_killed_mid_run_then_resumes_each_item_once(tmp_path, media_dir):
    """The local engine's kill -9 test, on Ray: SIGKILL the `captionkit run --engine ray` driver after some
    commits (its `--address local` cluster goes with it), rerun it on Ray: every item exactly once, in order."""
    psutil = pytest.importorskip("psutil")
    n = 300
    data = images_csv(tmp_path, media_dir, n)
    out = tmp_path / "out"
    args = ["run", str(data), "--out", str(out), "--engine", "ray", "--address", "local", "--ray-actors", "1",
            "--stages", "media,facts", "--no-progress"]
    with run_until_committed(args, out, 20) as proc:
        cluster = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, 9)
        proc.wait(timeout=30)
    for p in cluster:  # what Ray's own reaper would stop a moment later
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    kept = committed(out)
    assert 20 <= kept < n
    rerun = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **QUIET})
    assert rerun.returncode == 0, rerun.stderr
    ids = [r["id"] for r in read_jsonl(out / "results.jsonl")]
    assert ids == [f"i{k:03d}" for k in range(n)]  # each exactly once, in dataset order
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == kept and summary["processed"] == n - kept
