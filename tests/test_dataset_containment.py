"""Dataset video paths stay inside the videos folder (``--videos``), decided on the text alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eval.benchmarks.mmr_v import load_questions
from eval.dataset import Question, relative_video_path, resolve_video

LEAVES = "leaves the videos folder; dataset video fields must be relative to --videos"


def _record(video: str, **extra) -> dict:
    options = ["(A) a", "(B) b"]
    return {"video": video, "question": f"What about {video}?", "options": options, "correctAnswer": "A", **extra}


def _load(tmp_path: Path, videos: Path | None, *names: str):
    data = tmp_path / "q.json"
    data.write_text(json.dumps([_record(name, question_idx=str(i)) for i, name in enumerate(names)]), "utf-8")
    return load_questions(data, videos)


@pytest.fixture
def videos(tmp_path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "inside.mp4").write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.mp4").write_bytes(b"x")
    return folder


@pytest.mark.parametrize(
    "video",
    [
        "/etc/passwd",
        "C:\\x",
        "C:x.mp4",  # drive-relative: still another drive
        "\\\\server\\share\\x.mp4",
        "\\x.mp4",  # rooted on Windows
        "../outside/secret.mp4",
        "a/../../x.mp4",
        "..",
        "a\\..\\..\\x.mp4",  # escapes where backslash separates
        "a\\b/../../x.mp4",  # escapes where it does not
    ],
)
def test_paths_leaving_the_folder_are_row_errors(tmp_path, videos, video):
    dataset = _load(tmp_path, videos, "inside.mp4", video)
    assert [q.video for q in dataset.questions] == ["inside.mp4"]
    (problem,) = dataset.invalid
    assert problem.index == 1 and problem.key == "1"
    assert f"video path {video!r} {LEAVES}" in str(problem)
    with pytest.raises(ValueError, match="leaves the videos folder"):
        resolve_video(videos, video)


def test_the_rule_holds_without_a_videos_folder(tmp_path):
    dataset = _load(tmp_path, None, "../outside/secret.mp4", "/etc/passwd", "fine.mp4")
    assert [q.video_file() for q in dataset.questions] == [Path("fine.mp4")]
    assert len(dataset.invalid) == 2


def test_paths_naming_the_folder_itself_or_holding_nul_are_row_errors(tmp_path, videos):
    dataset = _load(tmp_path, videos, "a/..", "./", "x\0.mp4")
    reasons = [problem.reason for problem in dataset.invalid]
    assert reasons == [
        "video path 'a/..' names the videos folder itself, not a file in it",
        "video path './' names the videos folder itself, not a file in it",
        "video path 'x\\x00.mp4' contains a NUL character",
    ]


def test_dot_dot_that_stays_inside_is_normalised(tmp_path, videos):
    (videos / "sub").mkdir()
    dataset = _load(tmp_path, videos, "sub/../inside.mp4", "./sub/./x.mp4")
    assert not dataset.invalid
    assert [q.video for q in dataset.questions] == ["sub/../inside.mp4", "./sub/./x.mp4"]  # as the record gives it
    assert [q.video_file() for q in dataset.questions] == [videos / "inside.mp4", videos / "sub" / "x.mp4"]


def test_symlinks_placed_inside_the_folder_keep_working(tmp_path, videos):
    # The user's own links (e.g. into another disk) are trusted: only the record's text is checked.
    os.symlink(tmp_path / "outside" / "secret.mp4", videos / "linked.mp4")
    os.symlink(tmp_path / "outside", videos / "linked_dir")
    dataset = _load(tmp_path, videos, "linked.mp4", "linked_dir/secret.mp4")
    assert not dataset.invalid
    paths = [q.video_file() for q in dataset.questions]
    assert paths == [videos / "linked.mp4", videos / "linked_dir" / "secret.mp4"]
    assert all(p.exists() for p in paths)


def test_dot_dot_after_a_symlink_does_not_step_out_through_it(tmp_path, videos):
    # The OS would read "linked_dir/../secret.mp4" as outside/../secret.mp4 = tmp_path/secret.mp4;
    # resolved on the text first, it means videos/secret.mp4.
    os.symlink(tmp_path / "outside", videos / "linked_dir")
    (tmp_path / "secret.mp4").write_bytes(b"outside the folder")
    assert resolve_video(videos, "linked_dir/../secret.mp4") == videos / "secret.mp4"


def test_nested_videos_layout_is_still_found(tmp_path, videos):
    (videos / "videos").mkdir()
    (videos / "videos" / "deep.mp4").write_bytes(b"x")
    assert resolve_video(videos, "./deep.mp4") == videos / "videos" / "deep.mp4"


def test_a_question_cannot_be_built_with_an_escaping_video():
    fields = {"question_id": "q", "question": "?", "options": ["(A) a"], "letters": ["A"], "answer": "A"}
    with pytest.raises(ValueError, match="leaves the videos folder"):
        Question(video="../x.mp4", **fields)
    assert Question(video="a/../x.mp4", **fields).video_file() == Path("x.mp4")


@pytest.mark.parametrize(
    ("video", "relative"),
    [
        ("clip.mp4", "clip.mp4"),
        ("a/./b/../c.mp4", "a/c.mp4"),
        ("UFO Attack ｜ Sci-Fi.mp4", "UFO Attack ｜ Sci-Fi.mp4"),
        ("..hidden.mp4", "..hidden.mp4"),  # a name that starts with two dots is not a parent
    ],
)
def test_relative_video_path(video, relative):
    assert relative_video_path(video) == relative
