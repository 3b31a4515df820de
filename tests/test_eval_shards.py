"""``eval.shards``: an evaluation sharded over Ray workers against two scripted servers is one run.

The same rows as a local run; a worker killed mid-shard is retried and its
shard resumes; rows a stopped run's workers left are merged, never run again.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from eval.results import RESULTS_FILE
from eval.servers import choose_server, read_servers
from eval.spec import load_spec_file, make_spec
from sleuth.errors import ConfigError
from tests.cli_helpers import mmrv_sample, run_cli
from tests.fake_openai import FakeOpenAIServer, Text

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sleuth[ray]', or '.[test]')")
QUESTIONS = 7  # three videos: 2, 3 and 2 questions; shard 0 takes the video of 3


def answer(delay: float = 0.0):
    def responder(body: dict):
        time.sleep(delay)
        return Text("[[B]]", usage=(100, 5))

    return responder


@pytest.fixture
def servers():
    with FakeOpenAIServer(models=["fake-model"]) as first, FakeOpenAIServer(models=["fake-model"]) as second:
        first.responder = second.responder = answer()
        yield first, second


@pytest.fixture
def questions(tmp_path, synthetic_video):
    data, videos, _ = mmrv_sample(tmp_path, synthetic_video, QUESTIONS)
    return data, videos


def local_run(capsys, server, data, videos, out: Path) -> Path:
    args = ["eval", "--data", str(data), "--videos", str(videos), "--method", "uniform", "--out", str(out),
            "--model", "fake-model", "--base-url", server.base_url, "--frames", "4", "--max-retries", "0",
            "--timeout", "10", "--no-progress"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    return out


def spec_like(run_dir: Path, out: Path):
    """The local run's specification (its spec.json), writing to ``out``."""
    return make_spec({**load_spec_file(run_dir / "spec.json"), "out": str(out)})


def rows(run_dir: Path) -> dict[str, dict]:
    lines = (run_dir / RESULTS_FILE).read_text(encoding="utf-8").splitlines()
    found = [json.loads(line) for line in lines if line]
    assert len(found) == len({r["question_id"] for r in found})  # every question once
    return {r["question_id"]: {k: v for k, v in r.items() if k != "latency_s"} for r in found}


def test_a_sharded_run_gives_the_local_rows_and_spreads_over_healthy_servers(
    ray_session, capsys, tmp_path, servers, questions
):
    from eval.shards import SHARDS_DIR, run_sharded

    first, second = servers
    data, videos = questions
    local = local_run(capsys, first, data, videos, tmp_path / "local")
    first.requests.clear()
    dead = "http://127.0.0.1:9/v1"  # nothing listens there: the health check skips it
    spec = spec_like(local, tmp_path / "sharded")
    summary = run_sharded(spec, shards=2, servers=[first.base_url, dead, second.base_url])
    assert (summary.questions, summary.ran, summary.ok, summary.errors, summary.shards) == (QUESTIONS, QUESTIONS, QUESTIONS, 0, 2)
    assert sorted(summary.servers.values()) == sorted([first.base_url, second.base_url])
    assert first.requests and second.requests and len(first.requests) + len(second.requests) == QUESTIONS
    assert rows(tmp_path / "sharded") == rows(local)
    assert not (tmp_path / "sharded" / SHARDS_DIR).exists()  # merged
    assert json.loads((tmp_path / "sharded" / "spec.json").read_text())["out"] == str(tmp_path / "sharded")

    # the same command again: nothing left to ask
    again = run_sharded(spec, shards=2, servers=[first.base_url, second.base_url])
    assert (again.already_done, again.ran) == (QUESTIONS, 0)
    assert len(first.requests) + len(second.requests) == QUESTIONS


def test_a_killed_worker_is_retried_and_its_shard_resumes(ray_session, capsys, tmp_path, servers, questions):
    from eval.shards import run_sharded, shard_dir

    first, second = servers
    data, videos = questions
    local = local_run(capsys, first, data, videos, tmp_path / "local")
    first.requests.clear()
    first.responder = second.responder = answer(delay=0.4)
    run_dir = tmp_path / "sharded"
    killed: list[int] = []
    rows_at_kill: list[int] = []

    def kill_shard_zero_after_its_first_row() -> None:
        folder = shard_dir(run_dir, 0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            holder, results = folder / ".lock.holder.json", folder / RESULTS_FILE
            if holder.exists() and results.exists() and results.read_text().count("\n") >= 1:
                pid = json.loads(holder.read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                rows_at_kill.append(results.read_text().count("\n"))
            time.sleep(0.02)

    killer = threading.Thread(target=kill_shard_zero_after_its_first_row)
    killer.start()
    summary = run_sharded(spec_like(local, run_dir), shards=2, servers=[first.base_url, second.base_url])
    killer.join()
    assert killed, "shard 0 never wrote a row"
    assert rows_at_kill[0] < 3  # killed with questions of its shard still to run: the retry ran them
    assert (summary.ok, summary.errors) == (QUESTIONS, 0)
    assert rows(run_dir) == rows(local)
    # the retried worker resumed: the questions asked are the questions, plus at most the one in flight
    assert QUESTIONS <= len(first.requests) + len(second.requests) <= QUESTIONS + 1


def test_rows_a_stopped_run_left_in_its_shards_are_merged_not_asked_again(
    ray_session, capsys, tmp_path, servers, questions
):
    from eval.shards import run_shard, run_sharded, spec_for_workers

    first, second = servers
    data, videos = questions
    local = local_run(capsys, first, data, videos, tmp_path / "local")
    spec = spec_like(local, tmp_path / "sharded")
    first_ids = list(rows(local))[:3]
    run_shard(spec_for_workers(spec), 0, first_ids, [second.base_url])  # as a worker would, then stop
    second.requests.clear()
    summary = run_sharded(spec, shards=2, servers=[second.base_url])
    assert (summary.already_done, summary.ran, summary.ok) == (3, QUESTIONS - 3, QUESTIONS - 3)
    assert len(second.requests) == QUESTIONS - 3
    assert rows(tmp_path / "sharded") == rows(local)

    # another model in the same run directory is refused, as a local run refuses it
    results = tmp_path / "sharded" / RESULTS_FILE
    results.write_text("".join(results.read_text().splitlines(keepends=True)[:-1]))  # one question left to run
    other = spec.model_copy(update={"backend": spec.backend.model_copy(update={"model": "other-model"})})
    with pytest.raises(ConfigError, match="model='fake-model', not 'other-model'"):
        run_sharded(other, shards=1, servers=[second.base_url])


def test_eval_command_on_ray(ray_session, capsys, tmp_path, servers, questions):
    first, second = servers
    data, videos = questions
    pool = tmp_path / "servers.txt"
    pool.write_text(f"{first.base_url}\n{second.base_url}\n")
    args = ["eval", "--data", str(data), "--videos", str(videos), "--method", "uniform", "--out", str(tmp_path / "run"),
            "--model", "fake-model", "--frames", "4", "--max-retries", "0", "--timeout", "10", "--no-progress",
            "--engine", "ray", "--shards", "2", "--server", str(pool), "--json"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["ok"], summary["shards"], summary["exit_code"]) == (QUESTIONS, 2, 0)
    assert len(rows(tmp_path / "run")) == QUESTIONS and first.requests and second.requests
    code, _, err = run_cli([*args[:-7], "--engine", "spark"], capsys)
    assert code == 2 and "local or ray" in err


def test_server_pool_waits_with_back_off_and_then_gives_up(tmp_path):
    waits: list[float] = []
    up_after = iter([False, False, True])
    assert choose_server(["http://a/v1", "http://b/v1"], 1, check=lambda url, key: next(up_after),
                         sleep=waits.append) == "http://b/v1"
    assert waits == [1.0]  # both down once: one wait, then b answered (b is this worker's first)
    waits.clear()
    with pytest.raises(ConfigError, match="none of the 2 model servers"):
        choose_server(["http://a/v1", "http://b/v1"], 0, check=lambda url, key: False, sleep=waits.append, rounds=4)
    assert waits == [1.0, 2.0, 4.0]

    pool = tmp_path / "servers.txt"
    pool.write_text("# vLLM pool\nhttp://gpu1:8000/v1\n\nhttp://gpu2:8000/v1/  # the second\n")
    assert read_servers([str(pool), "http://gpu1:8000/v1"]) == ["http://gpu1:8000/v1", "http://gpu2:8000/v1"]
    with pytest.raises(ConfigError, match="not an http"):
        read_servers(["gpu3:8000"])
