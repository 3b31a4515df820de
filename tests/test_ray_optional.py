"""Ray is optional: without it the local engines work and ``--engine ray`` is a one-line error naming the extra."""

from __future__ import annotations

import sys

import pytest

from tests.cli_helpers import mmrv_sample, run_cli
from tests.index_entries import make_clip_dir


@pytest.fixture
def no_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed


def test_index_on_ray_without_ray(no_ray, capsys, tmp_path, tiny_clip_model):
    clips = make_clip_dir(tmp_path / "clips")
    code, _, err = run_cli(["index", str(clips), "--engine", "ray", "--clip-model", tiny_clip_model,
                            "--random-weights", "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 2 and "pip install 'sleuth[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "cache" / "frame-index").exists()
    # the local engine needs no Ray
    code, _, err = run_cli(["index", str(clips / "clip3.mp4"), "--clip-model", tiny_clip_model, "--random-weights",
                            "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0, err


def test_eval_on_ray_without_ray(no_ray, capsys, tmp_path, synthetic_video):
    data, videos, _ = mmrv_sample(tmp_path, synthetic_video, 2)
    code, _, err = run_cli(["eval", "--data", str(data), "--videos", str(videos), "--model", "m", "--out",
                            str(tmp_path / "run"), "--engine", "ray", "--no-progress"], capsys)
    assert code == 2 and "pip install 'sleuth[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "results.jsonl").exists()
