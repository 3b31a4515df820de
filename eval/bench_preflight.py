"""How fast a run that cannot work says so: ``python -m eval.bench_preflight`` (from a source checkout).

For each failure that used to be paid for question by question, it runs the
real ``sleuth eval`` command in a fresh process and times it to its exit
(Python start-up and imports included), and, side by side, times what the
same failure costs one question when it reaches the runner (the method
called directly, with the same retry settings), to show what a full MMR-V
run (1,257 questions) would have spent without the preflight:

- ``dead-url``: nothing listens at ``--base-url`` (default retries: 4);
- ``wrong-key``: the server answers 401;
- ``wrong-model``: the server does not serve ``--model`` (404);
- ``no-clip-weights``: the agent's CLIP weights are not cached and the hub
  cannot be reached;
- ``missing-videos``: 3 of 317 videos (MMR-V's count) are missing: the time
  to check all 317.

The scripted server is the test suite's (``tests/fake_openai.py``), which is
why this runs from a checkout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

MMRV_QUESTIONS = 1257
MMRV_VIDEOS = 317
ROOT = Path(__file__).resolve().parents[1]
CLIP = Path(__file__).resolve().parents[1] / "sleuth" / "examples" / "bigbuckbunny.mp4"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dataset(folder: Path, videos: int, missing: int) -> tuple[Path, Path]:
    """``videos`` video names (links to the bundled clip, ``missing`` of them absent), one question each."""
    video_dir = folder / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(videos):
        name = f"video-{i:03d}.mp4"
        if i >= missing:
            os.symlink(CLIP, video_dir / name)
        records.append({"video": name, "question": f"What happens in video {i}?", "question_idx": f"q{i}",
                        "options": ["(A) yes", "(B) no"], "correctAnswer": "(A)"})
    data = folder / "questions.json"
    data.write_text(json.dumps(records), encoding="utf-8")
    return data, video_dir


def _sleuth(args: list[str], env: dict[str, str] | None = None) -> tuple[int, float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sleuth", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)
    last = (done.stderr.strip().splitlines() or [""])[-1]
    return done.returncode, time.perf_counter() - started, last


def _one_question_cost(base_url: str, model: str, api_key: str, question: Any) -> float:
    """Seconds one question spends on the failure when it reaches the runner (default retries and backoff)."""
    from agent.backends import create_backend
    from agent.backends.config import BackendConfig
    from eval.benchmarks.mmr_v import MMRV
    from eval.methods.uniform import UniformMethod
    from sleuth.errors import SleuthError

    backend = create_backend(BackendConfig(model=model, base_url=base_url, api_key=api_key))
    started = time.perf_counter()
    try:
        UniformMethod(MMRV(), backend, frames=4).run(question)
    except SleuthError:
        pass
    return time.perf_counter() - started


def measure() -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from eval.benchmarks.mmr_v import load_questions
    from tests.fake_openai import FakeOpenAIServer

    results = []
    with tempfile.TemporaryDirectory(prefix="sleuth-bench-preflight-") as tmp, FakeOpenAIServer() as server:
        tmp_path = Path(tmp)
        data, videos = _dataset(tmp_path / "small", 3, 0)
        question = load_questions(data, videos).questions[0]
        common = ["--data", str(data), "--videos", str(videos), "--frames", "4", "--no-progress"]

        def case(name: str, args: list[str], per_question: float | None, env: dict[str, str] | None = None) -> None:
            code, seconds, last = _sleuth(["eval", *common, "--out", str(tmp_path / name), *args], env)
            results.append({
                "case": name, "exit_code": code, "preflight_s": round(seconds, 2), "message": last[:160],
                "one_question_s": None if per_question is None else round(per_question, 2),
                "full_run_s": None if per_question is None else round(per_question * MMRV_QUESTIONS),
            })

        dead = f"http://127.0.0.1:{_closed_port()}/v1"
        case("dead-url", ["--method", "uniform", "--model", "m", "--base-url", dead, "--api-key", "k"],
             _one_question_cost(dead, "m", "k", question))

        server.required_key = "sk-right"
        case("wrong-key", ["--method", "uniform", "--model", "fake-model", "--base-url", server.base_url,
                           "--api-key", "sk-wrong"],
             _one_question_cost(server.base_url, "fake-model", "sk-wrong", question))
        server.required_key = None

        server.unknown_models_status = 404
        case("wrong-model", ["--method", "uniform", "--model", "gpt-4o", "--base-url", server.base_url,
                             "--api-key", "k"],
             _one_question_cost(server.base_url, "gpt-4o", "k", question))
        server.unknown_models_status = None

        case("no-clip-weights", ["--method", "agent", "--model", "fake-model", "--base-url", server.base_url,
                                 "--api-key", "k", "--cache-dir", str(tmp_path / "cache")],
             None, env={"HF_HUB_OFFLINE": "1"})

        data, videos = _dataset(tmp_path / "mmrv-sized", MMRV_VIDEOS, 3)
        code, seconds, last = _sleuth(["eval", "--data", str(data), "--videos", str(videos), "--method", "uniform",
                                       "--model", "fake-model", "--base-url", server.base_url, "--api-key", "k",
                                       "--out", str(tmp_path / "videos-run"), "--no-progress"])
        results.append({"case": f"missing-videos ({MMRV_VIDEOS} checked)", "exit_code": code,
                        "preflight_s": round(seconds, 2), "message": last[:160],
                        "one_question_s": None, "full_run_s": None})
    return results


def main(as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False) -> None:
    """Time each preflight failure to the command's exit, beside what it costs per question without one."""
    results = measure()
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sleuth eval: time to a clear failure")
    for column in ("case", "exit", "preflight s", "one question s", f"x {MMRV_QUESTIONS} questions s", "message"):
        table.add_column(column, overflow="fold")
    for row in results:
        table.add_row(row["case"], str(row["exit_code"]), f"{row['preflight_s']:.2f}",
                      "-" if row["one_question_s"] is None else f"{row['one_question_s']:.2f}",
                      "-" if row["full_run_s"] is None else f"{row['full_run_s']:,}", row["message"])
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
