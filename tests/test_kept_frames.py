"""Kept frames: rendered once, on disk beside the frame index, served again without decoding, byte for byte
what a fresh decode and render gives."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time

import numpy as np
import pytest

from tests.cli_helpers import mmrv_dataset, run_cli
from tests.fake_openai import Call, Text, ToolCalls
from tools.frame_shelf import FrameShelf, KeepFrames
from tools.frame_store import FrameStore
from tools.rendering import Rendering
from tools.video import uniform_indices


def plain_decode(path, index: int) -> np.ndarray:
    import decord

    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)[index].asnumpy()


def test_a_kept_frame_is_a_fresh_render_and_a_broken_one_is_rendered_again(synthetic_video, tmp_path):
    shelf, rendering = FrameShelf(tmp_path / "frames"), Rendering(32)
    store = FrameStore(shelf=shelf)
    with store.video(synthetic_video) as video:
        first = store.render(video, [5, 0, 39, 5], rendering)
    assert [f.index for f in first.frames] == [5, 0, 39, 5] and not first.skipped
    for frame in first.frames:
        assert frame.image.jpeg == rendering(plain_decode(synthetic_video, frame.index)).jpeg
        assert max(frame.image.width, frame.image.height) == 32
    assert store.rendered_from == {"memory": 0, "shelf": 0, "decoded": 3}

    kept = sorted(shelf.path(store._content(video), rendering.key, 0).parent.iterdir())
    assert [p.name for p in kept] == ["0.jpg", "39.jpg", "5.jpg"]
    broken = kept[1]
    broken.write_bytes(broken.read_bytes()[:-40])  # cut short, as a full disk or a crash might leave it

    later = FrameStore(shelf=shelf)
    with later.video(synthetic_video) as video:
        again = later.render(video, [5, 0, 39], rendering)
    assert [f.image.jpeg for f in again.frames] == [f.image.jpeg for f in first.frames[:3]]
    assert later.rendered_from == {"memory": 0, "shelf": 2, "decoded": 1}  # only the broken one decoded
    assert broken.read_bytes() == first.frames[2].image.jpeg  # and kept whole again


def test_a_shelf_that_cannot_be_written_is_switched_off_with_one_warning(synthetic_video, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the shelf's folder would go")
    store = FrameStore(shelf=FrameShelf(blocker))
    with caplog.at_level(logging.WARNING, logger="tools.frame_shelf"), store.video(synthetic_video) as video:
        batch = store.render(video, [1, 2, 3], Rendering(24))
        store.render(video, [4, 5], Rendering(24))
    assert len(batch.frames) == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "kept frames are not written" in warnings[0]


def test_the_index_build_keeps_its_frames_so_showing_a_search_hit_decodes_nothing(
        synthetic_video, tiny_clip_model, tmp_path):
    from agent.backends.base import ToolCall
    from agent.config import AgentConfig
    from agent.toolbox import Toolbox
    from tools.options import IndexConfig
    from tools.search import FrameSearcher

    cache = tmp_path / "cache"
    config = AgentConfig(image_max_side=48, search_k=3, min_gap_s=0.5)
    searcher = FrameSearcher(IndexConfig(clip_model=tiny_clip_model, pretrained=None, random_weights=True,
                                         cache_dir=cache, fps=5.0),
                             keep_frames=KeepFrames(cache, config.frame_rendering(), uniform=(4,)))
    index = searcher.index(synthetic_video)
    shelf = FrameShelf.in_cache(cache)
    store = FrameStore(shelf=shelf)
    with store.video(synthetic_video) as video:
        content = store._content(video)
        assert len(index) == 20  # 4 s at 5 frames/s: the overview's frames are kept, not indexed
        overview = uniform_indices(video.meta.n_frames, 4)
        assert overview == [0, 13, 26, 39]  # 13 and 39 are not among the index's even frames
        assert shelf.kept(content, config.frame_rendering().key) == 20 + 2
        for t in index.timestamps[::7]:  # the kept file is the render of a plain decode
            i = int(video.nearest_indices([t])[0])
            kept = shelf.get(content, config.frame_rendering().key, i)
            assert kept.jpeg == config.frame_rendering()(plain_decode(synthetic_video, i)).jpeg

        toolbox = Toolbox(video=video, video_path=synthetic_video, searcher=searcher, letters=["A", "B"],
                          config=config, frame_store=store)
        first_look = toolbox.look(overview)
        hits = toolbox.call(ToolCall(id="1", name="search_frames", arguments={"query": "bands"}), frames_left=8)
        shown = toolbox.call(ToolCall(id="2", name="view_frames", arguments={"timestamps": [f.t for f in hits.frames]}),
                             frames_left=8)
        _wait_for_background_work()
    assert [f.index for f in first_look.frames] == overview
    assert len(shown.images) == 3 and all(max(p.width, p.height) == 48 for p in shown.images)
    assert store.rendered_from["decoded"] == 0 and store.cache.stats()["misses"] == 0  # not one frame decoded


def _wait_for_background_work(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(t.name.startswith(("sleuth-prefetch", "sleuth-render-ahead")) for t in threading.enumerate()):
        assert time.monotonic() < deadline, "background decoding did not finish"
        time.sleep(0.01)


def _images_sent(server) -> list[bytes]:
    return [base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            for body in server.requests for message in body["messages"]
            for part in (message["content"] if isinstance(message["content"], list) else [])
            if part.get("type") == "image_url"]


def looker(body: dict):
    """View two moments, then answer."""
    if not any(m["role"] == "tool" for m in body["messages"]):
        return ToolCalls([Call("view_frames", {"timestamps": [0.5, 3.0]})])
    return ToolCalls([Call("answer", {"option": "A", "rationale": "seen", "evidence": [0.5]})])


@pytest.mark.parametrize("method", ["agent", "uniform"])
def test_a_later_run_sends_the_same_bytes_from_the_kept_frames(method, synthetic_video, fake_openai, tiny_clip_model,
                                                                tmp_path, capsys):
    data, videos = mmrv_dataset(tmp_path, synthetic_video, 2)
    fake_openai.responder = looker if method == "agent" else (lambda body: Text("[[A]]"))
    base = ["eval", "--data", str(data), "--videos", str(videos), "--method", method, "--model", "m",
            "--base-url", fake_openai.base_url, "--api-key", "sk-x", "--max-retries", "0", "--no-progress",
            "--frames", "8", "--clip-model", tiny_clip_model, "--random-weights"]
    sent = {}
    for run, extra in (("cold", []), ("warm", []), ("off", ["--no-keep-frames"])):
        cache = tmp_path / ("cache" if run != "off" else "cache-off")
        fake_openai.requests.clear()
        code, _, err = run_cli([*base, "--out", str(tmp_path / run), "--cache-dir", str(cache), *extra], capsys)
        assert code == 0, err
        sent[run] = _images_sent(fake_openai)
        rows = [json.loads(line) for line in (tmp_path / run / "results.jsonl").read_text().splitlines()]
        assert [r["status"] for r in rows] == ["ok", "ok"]
    assert len(sent["cold"]) >= 8 and sent["warm"] == sent["cold"] == sent["off"]
    kept = list((tmp_path / "cache" / "frames").rglob("*.jpg"))
    assert kept and {p.read_bytes() for p in kept} >= set(sent["cold"])  # every image sent is kept
    assert not (tmp_path / "cache-off" / "frames").exists()


def test_sleuth_index_keeps_frames_at_the_size_asked_or_none(synthetic_video, tiny_clip_model, tmp_path, capsys):
    common = ["index", str(synthetic_video), "--clip-model", tiny_clip_model, "--random-weights", "--fps", "2",
              "--json"]
    code, out, err = run_cli([*common, "--cache-dir", str(tmp_path / "a"), "--keep-frames", "40"], capsys)
    assert code == 0, err
    kept = list((tmp_path / "a" / "frames").rglob("*.jpg"))
    # 2 frames/s over 4 s, and the default 8-frame overview (linspace over 40 frames: 6 not among them)
    assert json.loads(out)["videos"][0]["frames"] == 8 and len(kept) == 8 + 6
    assert all("side40" in p.parent.name for p in kept)

    code, _, err = run_cli([*common, "--cache-dir", str(tmp_path / "b"), "--keep-frames", "none"], capsys)
    assert code == 0, err
    assert not (tmp_path / "b" / "frames").exists()

    code, _, err = run_cli([*common, "--cache-dir", str(tmp_path / "c"), "--keep-frames", "big"], capsys)
    assert code == 2 and "invalid --keep-frames 'big'" in err
