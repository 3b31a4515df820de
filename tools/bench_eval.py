"""Where a question's time goes outside the model: ``python -m tools.bench_eval`` (from a source checkout).

A scripted OpenAI-compatible server (the test suite's, ``tests/fake_openai.py``,
in a process of its own as a real server would be) answers every request
after a fixed ``--delay``, so everything else a
question takes is sleuth's own overhead. For the uniform method (one request
with the official frames) and the agent (search, view two frames, answer:
three requests after an 8-frame overview), over four questions per video as
MMR-V asks, it reports per question: wall time, model time (requests x
delay), the overhead and its share of the wall time, broken down by stage
(decoding, JPEG encoding, CLIP text encoding, opening videos, the rest).

Each configuration runs side by side: ``fresh`` opens the video and decodes
its frames anew for every question (what each question cost before the
run-wide frame store), ``store`` shares one ``FrameStore`` across the run, and
for the agent ``store+prefetch`` also renders the two best search hits in the
background while the model reads them (``prefetch_hits``; the stage figures
then include work done in the background, while the model was busy).
``kept, first run`` adds a shelf of kept frames on disk (``--keep-frames``,
the default of ``sleuth eval``): the frames a run renders are written there,
and for the agent the index build has kept every frame it sampled and
the overview, so search hits and the first look are there already; ``kept, later run`` is the same run again,
every frame now on the shelf (a second model, strategy or prompt on the
same videos). The frame index is built before timing (a warm cache, as on
any run after the first). Both methods show frames at full resolution, as
``sleuth eval`` does for MMR-V. ``--concurrency`` adds throughput runs
against the server's capacity, ``concurrency / (requests per question x
delay)`` questions/s, with the run's store and with a warm shelf; at
concurrency 1 also without the next video's frames decoded ahead (the
runner asks a method to ``prefetch`` them while this video's questions run).
Beside them, ``requests alone`` sends each question's request bodies as
sleuth sends them and does nothing else: the ceiling the scripted server
and the machine leave to any method (bodies with 32 full-resolution frames
are megabytes each, and both ends share the same cores).

Videos: the bundled clip and a 5-minute 720p synthetic clip (``--minutes``;
made once by ``tools.synthetic_footage`` and cached).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS_PER_VIDEO = 4
STAGES = ("decode", "jpeg", "kept_frames", "text_encoding", "video_open")


class StageClock:
    """Seconds spent in each instrumented stage, summed over threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def patched(self) -> Any:
        from tools import frame_shelf, frame_store, rendering, search, video

        targets = [
            (video.Video, "iter_frames", "decode", True),
            (video.Video, "_read_in_parallel", "decode", False),  # several readers at once
            (rendering, "encode_jpeg", "jpeg", False),  # every image a model gets is encoded here
            (frame_shelf.FrameShelf, "get", "kept_frames", False),
            (frame_shelf.FrameShelf, "put", "kept_frames", False),
            (search.FrameSearcher, "embed_text", "text_encoding", False),
            (frame_store, "open_video", "video_open", False),
            (video, "open_video", "video_open", False),
        ]
        saved = []
        for owner, name, stage, generator in targets:
            original = owner.__dict__[name]
            saved.append((owner, name, original))
            setattr(owner, name, self._timed(original, stage, generator))
        try:
            yield self
        finally:
            for owner, name, original in reversed(saved):
                setattr(owner, name, original)

    def _timed(self, original: Any, stage: str, generator: bool) -> Any:
        func = original.__func__ if isinstance(original, classmethod) else original

        def add(seconds: float) -> None:
            with self._lock:
                self.seconds[stage] += seconds

        if generator:
            def timed_gen(*args: Any, **kwargs: Any) -> Any:
                iterator = func(*args, **kwargs)
                while True:
                    started = time.perf_counter()
                    try:
                        item = next(iterator)
                    except StopIteration:
                        add(time.perf_counter() - started)
                        return
                    add(time.perf_counter() - started)
                    yield item
            return timed_gen

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                add(time.perf_counter() - started)

        return classmethod(timed) if isinstance(original, classmethod) else timed


class FreshStore:
    """A frame store that shares nothing: every question opens and decodes anew (the cost before the store)."""

    @contextlib.contextmanager
    def video(self, path: Any) -> Any:
        from tools.frame_store import FrameStore

        store = FrameStore()
        try:
            with store.video(path) as video:
                yield video
        finally:
            store.close()

    def render(self, video: Any, indices: Any, renderer: Any) -> Any:
        from tools.frame_store import FrameStore

        return FrameStore().render(video, indices, renderer)  # nothing rendered is kept for the next call

    def thumbnail(self, video: Any, frame: Any, renderer: Any, max_side: int) -> Any:
        return frame.image.thumbnail(max_side)

    def render_ahead(self, *args: Any) -> None:
        return None

    def decode_ahead(self, *args: Any) -> None:
        return None


def _questions(videos: list[Path]) -> list[Any]:
    from eval.dataset import Question

    options = ["(A) a red ball", "(B) a blue car", "(C) a person", "(D) nothing"]
    return [
        Question(question_id=f"{video.stem}-{i}", video=video.name, video_path=video,
                 question=f"What moves in scene {i}?", options=options, letters=list("ABCD"), answer="A")
        for video in videos for i in range(QUESTIONS_PER_VIDEO)
    ]


def _agent_script(body: dict) -> Any:
    """Search, look at the two best hits (as an agent usually does), answer."""
    from tests.fake_openai import Call, ToolCalls

    results = [m["content"] for m in body["messages"] if m.get("role") == "tool"]
    if not results:  # each question searches for its own thing, so its hits are its own
        question = next(p["text"] for p in body["messages"][1]["content"] if p.get("type") == "text")
        scene = question.split("scene ", 1)[1].split("?", 1)[0] if "scene " in question else "0"
        return ToolCalls([Call("search_frames", {"query": f"a red ball rolling in scene {scene}", "k": 4})])
    if len(results) == 1:
        hits, _ = json.JSONDecoder().raw_decode(results[0])
        return ToolCalls([Call("view_frames", {"timestamps": [hit["t"] for hit in hits[:2]] or [1.0]})])
    return ToolCalls([Call("answer", {"option": "A", "rationale": "seen", "evidence": [1.0]})])


def _serve(delay: float, ready: Any, stop: Any) -> None:
    """The scripted server's own process: an agent's request (it offers tools) gets ``_agent_script``'s
    reply, the uniform method's a letter, each after ``delay``."""
    from tests.fake_openai import FakeOpenAIServer, Text

    with FakeOpenAIServer() as server:
        def answer(body: dict) -> Any:
            server.requests.clear()  # keep memory flat: the bodies carry every image
            time.sleep(delay)
            return _agent_script(body) if body.get("tools") else Text("[[A]]")

        server.responder = answer
        ready.put(server.base_url)
        stop.wait()


@contextlib.contextmanager
def scripted_server(delay: float) -> Any:
    """The base URL of a scripted server in a process of its own, so that parsing requests (every image,
    base64) takes none of the measured process's time, as with a real server."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(delay, ready, stop), daemon=True, name="scripted-server")
    process.start()
    try:
        yield ready.get(timeout=120)
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.terminate()


def _requests_of(method: Any, backend: Any, questions: list[Any]) -> list[list[dict]]:
    """The request bodies each question sends, as the backend sends them (captured while the questions run)."""
    sent: list[list[dict]] = []
    original = backend._send

    def capture(request: dict, settings: Any) -> Any:
        sent[-1].append((request, settings))
        return original(request, settings)

    backend._send = capture
    try:
        for question in questions:
            sent.append([])
            method.run(question)
    finally:
        del backend._send  # the class's method again
    return sent


def _replay(backend: Any, bodies: list[list[tuple[dict, Any]]], concurrency: int, rounds: int) -> float:
    """Questions per second when a question is nothing but its requests: the ceiling the scripted server and
    this machine leave to any method (every question sent ``rounds`` times, ``concurrency`` at once)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(requests: list[tuple[dict, Any]]) -> None:
        for request, settings in requests:
            backend._send(request, settings)

    work = [requests for _ in range(rounds) for requests in bodies]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, work))
    return len(work) / (time.perf_counter() - started)


def measure(*, delay: float, minutes: float, concurrency: list[int], cache_dir: Path, rounds: int = 4,
            emit: Any = lambda row: None) -> dict[str, Any]:
    """Every figure, each passed to ``emit`` as soon as it is measured (a run cut short keeps what it had)."""
    sys.path.insert(0, str(ROOT))
    from agent.backends import create_backend
    from agent.backends.config import BackendConfig
    from agent.config import AgentConfig
    from agent.strategies import get_strategy
    from eval.benchmarks.mmr_v import MMRV
    from eval.methods.agent import AgentMethod
    from eval.methods.uniform import UniformMethod
    from eval.runner import run_evaluation
    from tools.frame_shelf import FrameShelf
    from tools.frame_store import FrameStore
    from tools.options import IndexConfig
    from tools.search import FrameSearcher
    from tools.synthetic_footage import cached_footage

    videos = [ROOT / "sleuth" / "examples" / "bigbuckbunny.mp4"]
    if minutes > 0:
        videos.append(cached_footage(Path.home() / ".cache" / "sleuth" / "footage", minutes=minutes, size=(1280, 720)))
    agent_config = AgentConfig(max_frames=32, overview_frames=8, max_steps=4, image_max_side=None)
    # the index build keeps the frames it samples, as sleuth eval's does
    searcher = FrameSearcher(IndexConfig(clip_model="ViT-B-32-256", pretrained=None, random_weights=True,
                                         cache_dir=cache_dir / "index"),
                             keep_frames=get_strategy("planner").kept_frames(agent_config, cache_dir / "index"))
    for video in videos:  # warm: the index exists before any question is timed
        searcher.index(video)
    shelves = {"agent": FrameShelf.in_cache(cache_dir / "index"), "uniform": FrameShelf.in_cache(cache_dir / "uniform")}
    results: dict[str, Any] = {"delay_s": delay, "videos": [v.name for v in videos], "runs": []}

    with scripted_server(delay) as base_url:
        backend = create_backend(BackendConfig(model="fake-model", base_url=base_url, api_key="k", max_retries=0))
        requests_per_question = {"uniform": 1, "agent": 3}

        def method(kind: str, store: Any, prefetch: bool = True) -> Any:
            if kind == "uniform":
                return UniformMethod(MMRV(), backend, frames=32, frame_store=store)
            config = agent_config.model_copy(update={"prefetch_hits": 2 if prefetch else 0})
            return AgentMethod(backend, searcher, config=config, frame_store=store)

        def store_for(kind: str, mode: str) -> Any:
            if mode == "fresh":
                return FreshStore()
            return FrameStore(shelf=shelves[kind] if mode.startswith("kept") else None)

        modes = {"uniform": ("fresh", "store", "kept, first run", "kept, later run"),
                 "agent": ("fresh", "store", "store+prefetch", "kept, first run", "kept, later run")}
        for video in videos:
            questions = _questions([video])
            for kind in ("uniform", "agent"):
                for mode in modes[kind]:
                    store = store_for(kind, mode)
                    clock = StageClock()
                    with tempfile.TemporaryDirectory() as out, clock.patched():
                        started = time.perf_counter()
                        summary = run_evaluation(questions, method(kind, store, prefetch=mode != "store"), out,
                                                 progress=False, model="fake-model", handle_signals=False,
                                                 benchmark=MMRV())
                        wall = time.perf_counter() - started
                    n = summary.ran
                    if summary.errors:
                        raise RuntimeError(f"{kind} ({mode}) on {video.name}: {summary.errors} of {n} questions failed")
                    model = n * requests_per_question[kind] * delay
                    overhead = wall - model
                    stages = {s: round(clock.seconds.get(s, 0.0) / n, 3) for s in STAGES}
                    results["runs"].append(row := {
                        "video": video.name, "method": kind, "frames": mode, "questions": n, "errors": summary.errors,
                        "wall_s": round(wall / n, 3), "model_s": round(model / n, 3),
                        "overhead_s": round(overhead / n, 3), "overhead_share": round(overhead / wall, 3),
                        "stages_s": {**stages, "other": round(overhead / n - sum(stages.values()), 3)},
                    })
                    emit(row)

        for kind in ("uniform", "agent"):
            # several rounds of every video's questions, each its own question: a steady state at every concurrency
            questions = [q.model_copy(update={"question_id": f"{q.question_id}-r{r}"})
                         for r in range(rounds) for q in _questions(videos)]
            # at concurrency 1 also without the next video's frames decoded ahead, side by side
            runs = [(1, False, False)] * (1 in concurrency) + [(k, True, kept) for k in concurrency
                                                                for kept in (False, True)]
            bodies = _requests_of(method(kind, FrameStore(shelf=shelves[kind])), backend, _questions(videos))
            for k in concurrency:  # the harness alone: each question only its requests, as sleuth sends them
                rate = _replay(backend, bodies, k, rounds)
                results["runs"].append(row := {
                    "method": kind, "concurrency": k, "ceiling": True, "questions": len(bodies) * rounds,
                    "questions_per_s": round(rate, 3), "capacity_per_s": round(k / (requests_per_question[kind] * delay), 3),
                    "share_of_capacity": round(rate / (k / (requests_per_question[kind] * delay)), 3),
                })
                emit(row)
            for k, ahead, kept in runs:
                chosen = method(kind, FrameStore(shelf=shelves[kind] if kept else None))
                if not ahead:
                    chosen.prefetch = None  # the runner then decodes each video when its first question starts
                with tempfile.TemporaryDirectory() as out:
                    started = time.perf_counter()
                    summary = run_evaluation(questions, chosen, out, progress=False,
                                             model="fake-model", concurrency=k, handle_signals=False, benchmark=MMRV())
                    wall = time.perf_counter() - started
                capacity = k / (requests_per_question[kind] * delay)
                results["runs"].append(row := {
                    "method": kind, "concurrency": k, "next_video_ahead": ahead, "kept_frames": kept,
                    "questions": summary.ran,
                    "questions_per_s": round(summary.ran / wall, 3), "capacity_per_s": round(capacity, 3),
                    "share_of_capacity": round(summary.ran / wall / capacity, 3),
                })
                emit(row)
    return results


def main(
    delay: Annotated[float, typer.Option("--delay", help="Seconds the server takes per request.")] = 0.5,
    minutes: Annotated[float, typer.Option("--minutes", help="Length of the synthetic 720p clip (0: none).")] = 5.0,
    concurrency: Annotated[list[int], typer.Option("--concurrency", help="Throughput runs (repeatable).")] = [1, 4, 8],
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, help="Throughput runs: each video's questions this many times.")
    ] = 4,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each figure as one JSON line as soon as it is measured.")
    ] = False,
) -> None:
    """Per-question overhead by stage, before and with the frame store, and throughput against capacity."""
    emit = (lambda row: typer.echo(json.dumps({"delay_s": delay, **row}))) if as_json else (lambda row: None)
    with tempfile.TemporaryDirectory(prefix="sleuth-bench-eval-") as tmp:
        results = measure(delay=delay, minutes=minutes, concurrency=concurrency, cache_dir=Path(tmp), rounds=rounds,
                          emit=emit)
    if as_json:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"per question, model delay {delay:g} s")
    for column in ("video", "method", "frames", "wall s", "model s", "overhead s", "overhead %", *STAGES, "other"):
        table.add_column(column, justify="right")
    throughput = Table(title="throughput")
    for column in ("method", "concurrency", "next video ahead", "kept frames", "questions/s", "capacity/s", "share"):
        throughput.add_column(column, justify="right")
    for row in results["runs"]:
        if row.get("ceiling"):
            throughput.add_row(row["method"], str(row["concurrency"]), "requests alone", "-",
                               f"{row['questions_per_s']:.2f}", f"{row['capacity_per_s']:.2f}",
                               f"{row['share_of_capacity']:.2f}")
            continue
        if "concurrency" in row:
            throughput.add_row(row["method"], str(row["concurrency"]), "yes" if row["next_video_ahead"] else "no",
                               "warm" if row["kept_frames"] else "no", f"{row['questions_per_s']:.2f}",
                               f"{row['capacity_per_s']:.2f}", f"{row['share_of_capacity']:.2f}")
            continue
        stages = row["stages_s"]
        table.add_row(row["video"], row["method"], row["frames"], f"{row['wall_s']:.2f}", f"{row['model_s']:.2f}",
                      f"{row['overhead_s']:.2f}", f"{100 * row['overhead_share']:.0f}",
                      *(f"{stages[s]:.2f}" for s in (*STAGES, "other")))
    console = Console()
    console.print(table)
    console.print(throughput)


if __name__ == "__main__":
    typer.run(main)
