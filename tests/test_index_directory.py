"""Directory indexing with decoding processes (``tools.index_directory``): the same entries as one video at a time."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tests.cli_helpers import run_cli
from tests.index_entries import assert_same_entries, built_entries, make_clip_dir, searcher_for
from tools.index_directory import index_videos


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return make_clip_dir(tmp_path_factory.mktemp("clips"))


def test_decoding_processes_write_the_entries_one_video_at_a_time_writes(tmp_path, clip_dir, tiny_clip_model):
    videos = sorted(clip_dir.iterdir())
    frames_seen = []
    lock = threading.Lock()

    def count(done: int, total: int) -> None:
        with lock:
            frames_seen.append((done, total))

    serial = index_videos(searcher_for(tmp_path, "serial", tiny_clip_model), videos, decode_workers=0)
    parallel = index_videos(
        searcher_for(tmp_path, "parallel", tiny_clip_model), videos, decode_workers=2, embed_batch=8, on_frames=count
    )
    for run in (serial, parallel):
        errors = {r.path.name: r.error for r in run.results if r.error}
        assert list(errors) == ["broken.mp4"] and "not a readable video" in errors["broken.mp4"]
        assert [r.number for r in run.results] == list(range(len(videos)))
        assert all(r.outcome.source == "built" for r in run.results if r.outcome)
    assert serial.frames_built == parallel.frames_built == 12 + 9 + 6 + 5
    assert_same_entries(built_entries(serial), built_entries(parallel))
    # progress covers the whole directory: every frame counted once, as done and in the total
    assert sum(d for d, _ in frames_seen) == sum(t for _, t in frames_seen) == parallel.frames_built

    # a second run finds every entry: nothing decoded, the model is not needed
    again = index_videos(searcher_for(tmp_path, "parallel", tiny_clip_model), videos, decode_workers=2)
    assert [r.outcome.source for r in again.results if r.outcome] == ["disk"] * 4 and again.frames_built == 0


def test_a_killed_decoding_process_fails_its_video_and_the_others_finish(tmp_path, clip_dir, tiny_clip_model, monkeypatch):
    import tools.index_directory as engine

    videos = sorted(p for p in clip_dir.iterdir() if p.name != "broken.mp4")
    killed = []
    real_handle = engine._ProcessEngine._handle

    def handle_and_kill(self, message):
        # Kill the first decoder as soon as it announces a video: one video fails, the rest are built.
        real_handle(self, message)
        if message[0] == "start" and not killed:
            killed.append(message[2])
            os.kill(message[2], signal.SIGKILL)

    monkeypatch.setattr(engine._ProcessEngine, "_handle", handle_and_kill)
    run = index_videos(searcher_for(tmp_path, "killed", tiny_clip_model), videos, decode_workers=2, embed_batch=8)
    errors = [r for r in run.results if r.error]
    assert killed and len(errors) == 1 and "decoding process exited (code -9)" in errors[0].error
    assert sum(1 for r in run.results if r.outcome is not None) == len(videos) - 1


def test_decode_workers_must_not_be_negative(tmp_path, clip_dir, tiny_clip_model):
    from sleuth.errors import SleuthError

    with pytest.raises(SleuthError, match="decode workers"):
        index_videos(searcher_for(tmp_path, "bad", tiny_clip_model), [], decode_workers=-1)


def sleuth(capsys, *args) -> tuple[int, str, str]:
    return run_cli([str(a) for a in args], capsys)


def test_index_command_with_decoding_processes(capsys, tmp_path, clip_dir, tiny_clip_model):
    import json

    opts = ["--clip-model", tiny_clip_model, "--random-weights", "--cache-dir", tmp_path / "cache", "--fps", "2"]
    code, out, err = sleuth(capsys, "index", clip_dir, "--json", "--decode-workers", "2", *opts)
    assert code == 2  # broken.mp4
    result = json.loads(out)
    assert [r["video"] for r in result["videos"]] == [str(p) for p in sorted(clip_dir.iterdir())]
    assert result["summary"]["built"] == 4 and result["summary"]["failed"] == 1
    assert result["summary"]["frames_built"] == 32 and result["summary"]["frames_per_s"] > 0
    assert "5/5" in err and "32/32" in err  # videos and frames over the whole directory


def test_engine_must_be_local_or_ray(capsys, tmp_path, clip_dir):
    code, _, err = sleuth(capsys, "index", clip_dir, "--engine", "spark", "--cache-dir", tmp_path / "cache")
    assert code == 2 and "--engine" in err and "local or ray" in err
