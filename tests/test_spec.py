"""The run specification: built from flags or a file, recorded in the run directory, enough to rebuild the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.spec import RunSpec, load_spec_file, make_spec
from tests.cli_helpers import mmrv_dataset, run_cli
from sleuth.errors import ConfigError
from tests.fake_openai import Text

SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"


def test_a_yaml_spec_runs_and_its_record_reruns_the_same_run(fake_openai, synthetic_video, tmp_path, capsys):
    data, videos = mmrv_dataset(tmp_path, synthetic_video, 4, "q.json")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"benchmark: mmr_v\ndata: {data}\nvideos: {videos}\nmethod: uniform\nframes: 3\nlimit: 2\n"
        f"backend:\n  model: fake-model\n  base_url: {fake_openai.base_url}\n  max_retries: 0\n"
        f"out: {tmp_path / 'run'}\n", encoding="utf-8")
    fake_openai.responder = lambda body: Text("[[A]]")
    code, _, err = run_cli(["eval", "--config", str(config), "--api-key", "sk-spec-secret", "--no-progress"], capsys)
    assert code == 0, err
    assert len(fake_openai.requests) == 2
    assert all(len(body["messages"][0]["content"]) == 1 + 3 for body in fake_openai.requests)  # text + 3 frames
    recorded = tmp_path / "run" / "spec.json"
    spec = json.loads(recorded.read_text())
    assert spec["frames"] == 3 and spec["limit"] == 2 and spec["backend"]["model"] == "fake-model"
    assert "sk-spec-secret" not in recorded.read_text() and spec["backend"]["api_key_set"] is True

    # the recorded spec rebuilds the run: a flag on the command line overrides it (here: two more questions)
    code, out, err = run_cli(["eval", "--config", str(recorded), "--limit", "4", "--no-progress", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["already_done"], summary["ran"]) == (2, 2)


def test_spec_validation_names_the_setting(tmp_path):
    base = {"videos": str(tmp_path), "out": str(tmp_path / "o"), "backend": {"model": "m"}}
    assert make_spec(base).agent.max_frames == 32
    assert make_spec({**base, "frames": 12}).agent.overview_frames == 3  # a quarter of the budget
    with pytest.raises(ConfigError, match="invalid setting concurrency"):
        make_spec({**base, "concurrency": 0})
    with pytest.raises(ConfigError, match="differs from frames"):
        make_spec({**base, "frames": 8, "agent": {"max_frames": 16}})
    spec = make_spec({**base, "videos": "~/clips"})
    assert spec.videos == Path.home() / "clips"
    assert isinstance(RunSpec.model_validate_json(spec.model_dump_json()), RunSpec)


def test_a_bad_config_file_is_one_line(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("frames: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid yaml"):
        load_spec_file(bad)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="a mapping of settings"):
        load_spec_file(listing)
