"""Methods compare at equal frames and equal pixels: every frame any model sees goes at one size."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.cli_helpers import run_cli
from tests.fake_openai import Call, Text, ToolCalls

SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"


def image_sizes(requests: list[dict]) -> set[tuple[int, int]]:
    sizes = set()
    for body in requests:
        for message in body["messages"]:
            for part in message["content"] if isinstance(message["content"], list) else []:
                if part["type"] == "image_url":
                    data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                    sizes.add(Image.open(io.BytesIO(data)).size)
    return sizes


@pytest.mark.parametrize("extra, size", [((), (160, 120)), (("--image-max-side", "64"), (64, 48))])
def test_uniform_and_agent_send_frames_at_the_same_size(
    extra, size, fake_openai, synthetic_video, tiny_clip_model, tmp_path, capsys
):
    record = json.loads(SAMPLE.read_text(encoding="utf-8"))[0]
    videos = tmp_path / "videos"
    videos.mkdir()
    os.symlink(synthetic_video, videos / record["video"])  # 160x120 frames
    data = tmp_path / "q.json"
    data.write_text(json.dumps([record]), encoding="utf-8")
    common = ["eval", "--data", str(data), "--videos", str(videos), "--model", "fake-model", "--frames", "6",
              "--base-url", fake_openai.base_url, "--api-key", "sk-x", "--max-retries", "0", "--no-progress", *extra]

    fake_openai.responder = lambda body: Text("[[A]]")
    code, _, err = run_cli([*common, "--method", "uniform", "--out", str(tmp_path / "uniform")], capsys)
    assert code == 0, err
    uniform_sizes = image_sizes(fake_openai.requests)

    fake_openai.reset()
    fake_openai.responder = lambda body: ToolCalls(
        [Call("view_frames", {"timestamps": [1.0, 2.0]})] if not any(m["role"] == "tool" for m in body["messages"])
        else [Call("answer", {"option": "A", "rationale": "seen", "evidence": [1.0]})])
    code, _, err = run_cli([*common, "--method", "agent", "--out", str(tmp_path / "agent"), "--clip-model",
                            tiny_clip_model, "--random-weights", "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0, err
    assert uniform_sizes == image_sizes(fake_openai.requests) == {size}
    # rows record frames and pixels the same way for both methods: 6 frames, or 2 + 2 overview frames
    uniform_row, agent_row = (json.loads((tmp_path / run / "results.jsonl").read_text()) for run in ("uniform", "agent"))
    assert (uniform_row["frames"], uniform_row["pixels"]) == (6, 6 * size[0] * size[1])
    assert agent_row["pixels"] == agent_row["frames"] * size[0] * size[1] and agent_row["frames"] == 3
