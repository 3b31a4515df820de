"""The indexing benchmark script runs end to end and reports consistent figures (not timings: those vary)."""

from __future__ import annotations

import hashlib
import json

import pytest

from tools import bench_index

HEADLINE = ("decode_fps", "embed_fps", "sequential_fps", "pipeline_fps", "bound_fps", "cached_search_s", "peak_rss_mb")


def run(capsys, args: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        bench_index.main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def base_args(video, tiny_clip_model, tmp_path) -> list[str]:
    return ["--minutes", "0", "--no-bundled", "--no-search", "--video", str(video), "--clip-model", tiny_clip_model,
            "--fps", "5", "--cache-dir", str(tmp_path / "cache")]


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_json_has_every_headline_figure_and_rounds(capsys, synthetic_video, tiny_clip_model, tmp_path):
    code, out, _ = run(capsys, ["--json", "--repeat", "2", *base_args(synthetic_video, tiny_clip_model, tmp_path)])
    assert code == 0
    records = json_lines(out)
    # each figure is printed as it is measured: the model load, 4 stages x 2 rounds, the video, then the summary
    assert [r["measure"] for r in records] == ["model_load"] + ["stage"] * 8 + ["video", "summary"]
    assert [(r["stage"], r["round"]) for r in records[1:9]] == [
        (stage, k) for k in (1, 2) for stage in ("decode", "embed", "sequential", "pipeline")
    ]
    result = records[-1]
    assert records[-2] == {"measure": "video", **result["videos"][0]}
    assert set(HEADLINE) <= set(result)
    assert result["cached_search_s"] is None  # --no-search
    row = result["videos"][0]
    assert row["frames"] == 20  # 4 s at 5 fps
    assert row["rounds"] == 2
    assert all(len(values) == 2 for values in row["rounds_fps"].values())
    assert len(row["pipeline_vs_sequential_rounds"]) == 2
    # The pipeline builds the same embeddings as decode-then-embed, every round.
    assert row["pipeline_matches_sequential"] is True
    for key in ("decode_fps", "embed_fps", "sequential_fps", "pipeline_fps"):
        assert row[key] > 0
        assert row[key] == max(row["rounds_fps"][key.removesuffix("_fps")])  # best of the rounds
    assert row["bound_fps"] == min(row["decode_fps"], row["embed_fps"])
    assert row["pipeline_vs_sequential"] == pytest.approx(row["pipeline_fps"] / row["sequential_fps"], rel=0.01)
    assert result["labels"] == ["random-weights"]
    assert result["settings"]["repeat"] == 2
    # each stage line is the round's own figure; the video's figure is the best of them
    decode_lines = [r["fps"] for r in records if r.get("stage") == "decode"]
    assert decode_lines == row["rounds_fps"]["decode"]


def test_a_folder_is_measured_as_a_whole_against_its_bound(capsys, tmp_path, tiny_clip_model):
    from tests.video_fixtures import make_synthetic_video

    folder = tmp_path / "videos"
    for k in range(3):
        make_synthetic_video(folder / f"v{k}.mp4", n_frames=30 + 10 * k)
    args = ["--json", "--minutes", "0", "--no-bundled", "--no-search", "--dir", str(folder), "--clip-model",
            tiny_clip_model, "--fps", "5", "--cache-dir", str(tmp_path / "cache"), "--decode-workers", "0",
            "--decode-workers", "1"]
    code, out, _ = run(capsys, args)
    assert code == 0
    records = json_lines(out)
    assert [r["measure"] for r in records] == [
        "model_load", "directory_decode", "directory_embed", "directory_pipeline", "directory_pipeline",
        "directory", "summary",
    ]
    folder_figures = records[-2]
    assert records[-1]["directory"] == folder_figures and records[-1]["videos"] == []
    assert records[1]["frames"] == folder_figures["frames"] == 15 + 20 + 25  # 3, 4 and 5 s at 5 fps
    assert [p["decode_workers"] for p in folder_figures["pipelines"]] == [0, 1]
    assert all(p["frames"] == 60 and p["failed"] == 0 for p in folder_figures["pipelines"])
    # on a CPU the bound is the core-sharing one, computed from the CPU seconds both stages took alone
    assert folder_figures["bound"] == "core" and folder_figures["device"] == "cpu"
    cpu_ms = folder_figures["decode_cpu_ms_per_frame"] + folder_figures["embed_cpu_ms_per_frame"]
    assert folder_figures["core_bound_fps"] == pytest.approx(1000 * folder_figures["cores"] / cpu_ms, rel=0.01)
    for figures in folder_figures["pipelines"]:
        assert figures["vs_bound"] == pytest.approx(figures["fps"] / folder_figures["bound_fps"], rel=0.01)


def test_table_labels_random_weights(capsys, synthetic_video, tiny_clip_model, tmp_path):
    code, out, _ = run(capsys, base_args(synthetic_video, tiny_clip_model, tmp_path))
    assert code == 0
    assert "RANDOM WEIGHTS" in out
    assert "pipe/seq" in out and "synthetic.mp4" in out


def test_cached_search_reads_the_index_from_disk(synthetic_video, tiny_clip_model, tmp_path):
    from tools.clip import load_clip
    from tools.options import IndexConfig

    config = IndexConfig(clip_model=tiny_clip_model, pretrained=None, random_weights=True, cache_dir=tmp_path)
    figures = bench_index.measure_cached_search(load_clip(config), config, synthetic_video, repeats=3)
    assert figures["frames"] == 4
    assert len(figures["cached_search_s_all"]) == 3
    assert 0 < figures["cached_load_s"] <= figures["cached_search_s"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "1280x7"], "invalid --size"),
        (["--decoder", "fast"], "invalid --decoder"),
        (["--minutes", "0", "--no-bundled"], "nothing to measure"),
        (["--minutes", "0", "--no-bundled", "--video", "/no/such/clip.mp4"], "video not found"),
        (["--minutes", "0", "--no-bundled", "--dir", "/no/such/folder"], "is not a folder"),
    ],
)
def test_bad_input_is_one_line(capsys, args, message, tiny_clip_model, tmp_path):
    code, _, err = run(capsys, [*args, "--no-search", "--clip-model", tiny_clip_model, "--cache-dir", str(tmp_path)])
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_bundled_clips_are_distinct_files():
    clips = bench_index.bundled_clips()
    assert clips, "the example clip ships with the package"
    digests = [hashlib.sha256(clip.read_bytes()).hexdigest() for clip in clips]
    assert len(set(digests)) == len(digests)


def test_memory_probe_prints_one_row_per_build(capsys, synthetic_video, tiny_clip_model):
    from tools import bench_memory

    bench_memory.main(["--video", str(synthetic_video), "--fps", "1", "5", "--rebuilds", "2",
                       "--clip-model", tiny_clip_model, "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()[1:]]
    assert [(r["fps"], r["build"], r["frames"]) for r in rows] == [(1, 1, 4), (1, 2, 4), (5, 1, 20), (5, 2, 20)]
    assert all(r["peak_mb"] >= r["rss_before_mb"] > 0 for r in rows)


def test_quick_is_one_round_without_bundled_clips_or_search(capsys, tmp_path, tiny_clip_model):
    from tests.video_fixtures import make_synthetic_video

    folder = tmp_path / "videos"
    for k in range(2):
        make_synthetic_video(folder / f"v{k}.mp4", n_frames=20)
    code, out, _ = run(capsys, ["--quick", "--json", "--repeat", "3", "--minutes", "0", "--dir", str(folder),
                                "--clip-model", tiny_clip_model, "--fps", "5", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    records = json_lines(out)
    summary = records[-1]
    assert summary["settings"]["repeat"] == 1 and summary["videos"] == [] and summary["search"] is None
    assert [r["round"] for r in records if r["measure"] == "directory_pipeline"] == [1]
