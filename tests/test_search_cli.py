"""``sleuth index`` and ``sleuth search``: JSON output, tables, labels, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from sleuth.cli import main
from tests.video_fixtures import UNICODE_VIDEO_NAME


def run_cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), out, err


@pytest.fixture
def cli_opts(tmp_path, tiny_clip_model):
    return ["--clip-model", tiny_clip_model, "--random-weights", "--cache-dir", tmp_path / "cache"]


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_index_json_miss_then_hit(capsys, cli_opts, synthetic_video, tiny_clip_model):
    code, out, _ = run_cli(capsys, "index", synthetic_video, "--json", *cli_opts)
    assert code == 0
    first = json.loads(out)
    assert first["model"] == f"{tiny_clip_model}/random-weights"
    assert first["labels"] == ["random-weights"]
    (row,) = first["videos"]
    assert row["video"] == str(synthetic_video)
    assert (row["frames"], row["cache"], row["source"], row["reader"]) == (4, "miss", "built", "decord")
    assert row["skipped"] == [] and row["seconds"] >= 0
    assert os.path.isfile(row["cache_path"])

    code, out, _ = run_cli(capsys, "index", synthetic_video, "--json", *cli_opts)
    assert code == 0
    again = json.loads(out)["videos"][0]
    assert (again["cache"], again["source"], again["cache_path"]) == ("hit", "disk", row["cache_path"])


def test_index_table_and_progress(capsys, cli_opts, synthetic_video, unicode_video_dir):
    unicode_video = unicode_video_dir / UNICODE_VIDEO_NAME
    code, out, err = run_cli(capsys, "index", synthetic_video, unicode_video, "--fps", "2", *cli_opts)
    assert code == 0
    assert "RANDOM WEIGHTS" in out and "synthetic.mp4" in out and "miss" in out
    assert "8/8" in err  # the progress bar reached the end (4 s at 2 fps)


def test_index_batch_continues_past_bad_videos(capsys, cli_opts, synthetic_video, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    missing = tmp_path / "missing.mp4"
    code, out, err = run_cli(capsys, "index", missing, bad, synthetic_video, "--json", *cli_opts)
    assert code == 2
    rows = json.loads(out)["videos"]
    assert [("error" in r) for r in rows] == [True, True, False]
    assert rows[0]["error"] == f"video not found: {missing}"
    assert "not a readable video" in rows[1]["error"]
    assert rows[2]["frames"] == 4
    errors = _error_lines(err)
    assert len(errors) == 2 and str(missing) in errors[0] and "broken.mp4" in errors[1]
    assert "Traceback" not in err


def test_search_json(capsys, cli_opts, synthetic_video, tiny_clip_model):
    code, out, _ = run_cli(capsys, "search", synthetic_video, "white bars", "-k", "3", "--min-gap", "0", "--json", *cli_opts)
    assert code == 0
    result = json.loads(out)
    assert result["labels"] == ["random-weights"] and result["model"] == f"{tiny_clip_model}/random-weights"
    assert result["query"] == "white bars" and result["k"] == 3 and result["cache"] == "miss"
    hits = result["hits"]
    assert len(hits) == 3
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert {h["t"] for h in hits} <= {0.0, 1.0, 2.0, 3.0}

    code, out, _ = run_cli(capsys, "search", synthetic_video, "white bars", "-k", "5", "--start", "1", "--end", "3.5",
                           "--json", *cli_opts)
    assert code == 0
    result = json.loads(out)
    times = [h["t"] for h in result["hits"]]
    assert result["cache"] == "hit" and result["min_gap_s"] == 2.0
    assert all(1.0 <= t <= 3.5 for t in times)
    assert all(abs(a - b) >= 2.0 for i, a in enumerate(times) for b in times[i + 1 :])


def test_search_table(capsys, cli_opts, unicode_video_dir):
    code, out, _ = run_cli(capsys, "search", unicode_video_dir / UNICODE_VIDEO_NAME, "a flying saucer", "-k", "2", *cli_opts)
    assert code == 0
    assert "RANDOM WEIGHTS" in out and "a flying saucer" in out
    assert "0:0" in out  # m:ss.ss times
    assert "rank" in out and "score" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "{missing}", "x"], "video not found: {missing}"),
        (["search", "{video}", "x", "--start", "100", "--end", "200"], "outside the video"),
        (["search", "{video}", "x", "-k", "0"], "k must be a positive integer"),
        (["search", "{video}", "   "], "search text must not be empty"),
        (["search", "{video}", "x", "--min-gap", "-1"], "invalid --min-gap"),
        (["index", "{video}", "--fps", "0"], "invalid --fps (fps) 0.0: Input should be greater than 0"),
        (["index", "{video}", "--clip-device", "tpu"], "device"),
        (["index", "{video}", "--clip-checkpoint", "{missing}"], "CLIP checkpoint not found"),
        (["index", "{video}", "--clip-model", "ViT-Nope-1"], "unknown CLIP model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, cli_opts, synthetic_video, tmp_path, args, message):
    missing = tmp_path / "missing.mp4"
    fill = {"missing": missing, "video": synthetic_video}
    args = [a.format(**fill) for a in args]
    opts = list(cli_opts)
    if "--clip-model" in args:
        opts = opts[2:]
    if "--clip-checkpoint" in args:
        opts.remove("--random-weights")
    code, out, err = run_cli(capsys, *args, *opts)
    assert code == 2
    errors = _error_lines(err)
    assert len(errors) == 1, err
    assert message.format(**fill) in errors[0]
    assert "Traceback" not in err and out == ""


def test_checkpoint_and_random_weights_exclude_each_other(capsys, cli_opts, synthetic_video, tmp_path):
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"x")
    code, _, err = run_cli(capsys, "index", synthetic_video, "--clip-checkpoint", checkpoint, *cli_opts)
    assert code == 2 and "exclude each other" in _error_lines(err)[0]


def test_cache_dir_from_environment(capsys, tmp_path, synthetic_video, tiny_clip_model, monkeypatch):
    monkeypatch.setenv("SLEUTH_CACHE_DIR", str(tmp_path / "env-cache"))
    code, out, _ = run_cli(capsys, "index", synthetic_video, "--json", "--clip-model", tiny_clip_model, "--random-weights")
    assert code == 0
    assert json.loads(out)["videos"][0]["cache_path"].startswith(str(tmp_path / "env-cache"))


@pytest.mark.parametrize("command", ["index", "search"])
def test_help(capsys, command):
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    for flag in ("--json", "--clip-model", "--pretrained", "--clip-checkpoint", "--random-weights", "--fps",
                 "--max-frames", "--cache-dir", "--clip-device"):
        assert flag in out
    if command == "search":
        assert "--min-gap" in out and "--start" in out and "--end" in out


def test_console_command_prints_one_line_error(tmp_path):
    """The installed entry point: no traceback, just the reason, exit 2."""
    missing = tmp_path / "UFO Attack ｜ missing.mp4"
    env = {**os.environ, "SLEUTH_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "sleuth", "search", str(missing), "ufo", "--random-weights"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: video not found: {missing}"
    assert result.stdout == ""


def test_bundled_example_is_indexable(capsys, cli_opts):
    from pathlib import Path

    import sleuth

    example = Path(sleuth.__file__).parent / "examples" / "bigbuckbunny.mp4"
    question = json.loads((example.parent / "question.json").read_text("utf-8"))
    assert question["video"] == example.name
    letters = [opt[1] for opt in question["options"]]
    assert letters == [chr(ord("A") + i) for i in range(len(letters))] and question["correctAnswer"] == "(D)"
    assert (example.parent / "LICENSE.md").read_text("utf-8").count("Blender Foundation") >= 1
    code, out, _ = run_cli(capsys, "index", example, "--json", *cli_opts)
    assert code == 0 and json.loads(out)["videos"][0]["frames"] == 6
    shutil.rmtree(cli_opts[-1])
