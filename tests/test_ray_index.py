"""``sleuth index --engine ray``: a Ray Data pipeline in a local Ray session writes the local engine's entries."""

from __future__ import annotations

import json

import pytest

from tests.cli_helpers import run_cli
from tests.index_entries import assert_same_entries, built_entries, make_clip_dir, searcher_for
from tools.index_directory import index_videos

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sleuth[ray]', or '.[test]')")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return make_clip_dir(tmp_path_factory.mktemp("clips"))


def test_ray_writes_the_entries_the_local_engine_writes(ray_session, tmp_path, clip_dir, tiny_clip_model):
    from tools.ray_index import index_videos_ray

    videos = sorted(clip_dir.iterdir())
    local = index_videos(searcher_for(tmp_path, "local", tiny_clip_model), videos, decode_workers=0)
    frames = []
    on_ray = index_videos_ray(
        searcher_for(tmp_path, "ray", tiny_clip_model), videos, embed_batch=5,
        on_frames=lambda done, total: frames.append((done, total)),
    )
    assert on_ray.frames_built == local.frames_built == 32
    assert {r.path.name: r.error is None for r in on_ray.results} == {r.path.name: r.error is None for r in local.results}
    [failed] = [r for r in on_ray.results if r.error]
    assert failed.path.name == "broken.mp4" and "not a readable video" in failed.error
    assert_same_entries(built_entries(local), built_entries(on_ray))
    assert sum(d for d, _ in frames) == sum(t for _, t in frames) == 32

    # either engine reads the other's index: Ray on the local engine's cache finds every entry. Without
    # broken.mp4, which no cache holds: it would start the whole pipeline again (seconds) only to fail as above.
    readable = [video for video in videos if video.name != "broken.mp4"]
    again = index_videos_ray(searcher_for(tmp_path, "local", tiny_clip_model), readable)
    assert [r.outcome.source for r in again.results if r.outcome] == ["disk"] * 4 and again.frames_built == 0


def test_index_command_on_ray(ray_session, capsys, tmp_path, clip_dir, tiny_clip_model):
    opts = ["--clip-model", tiny_clip_model, "--random-weights", "--cache-dir", str(tmp_path / "cache"), "--fps", "2"]
    code, out, err = run_cli(["index", str(clip_dir), "--engine", "ray", "--json", *opts], capsys)
    assert code == 2, err  # broken.mp4
    result = json.loads(out)
    assert result["summary"]["built"] == 4 and result["summary"]["frames_built"] == 32
    assert [r["video"] for r in result["videos"]] == [str(p) for p in sorted(clip_dir.iterdir())]
    # the local engine finds what Ray wrote
    code, out, _ = run_cli(["index", str(clip_dir / "clip0.mp4"), "--json", *opts], capsys)
    assert code == 0 and json.loads(out)["videos"][0]["cache"] == "hit"
