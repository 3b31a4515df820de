"""Make the README's example grid report: ``python -m tests.make_grid_example docs/grid-example``.

Eight real MMR-V questions over a synthetic clip, CLIP with random weights and
the scripted server (``tests/fake_openai.py``) as the model. The scripted
model picks letters by a hash of the question and the run, so the numbers
show the report's form, not any model's accuracy; the report says which
runs used random weights.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import open_clip
import yaml

from sleuth.cli import main
from tests.cli_helpers import mmrv_dataset
from tests.fake_openai import Call, FakeOpenAIServer, Text, ToolCalls
from tests.video_fixtures import _TINY_CLIP_CONFIG, TINY_CLIP_MODEL, make_synthetic_video


def letter(body: dict, salt: str) -> str:
    """A letter of the question's options, chosen by a hash (a scripted guess, not a judgement)."""
    text = json.dumps(body["messages"][:2], sort_keys=True)[:4000]
    return "ABCD"[int(hashlib.sha256((text + salt).encode()).hexdigest(), 16) % 4]


def scripted(body: dict):
    tools = {t["function"]["name"] for t in body.get("tools") or []}
    said = [m for m in body["messages"] if m["role"] == "tool"]
    if not tools:  # a uniform request or a captioning call
        images = sum(1 for m in body["messages"] if isinstance(m["content"], list)
                     for p in m["content"] if p["type"] == "image_url")
        return Text(f"[[{letter(body, str(images))}]]" if "Options" in json.dumps(body) else "a striped scene")
    if "judge_answer" in tools:
        sure = 3 if said else 2
        return ToolCalls([Call("judge_answer", {"answer": letter(body, "c"), "confidence": sure, "rationale": "r",
                                                "evidence": [], "query": "white bands", "start": 0.5, "end": 3.5})])
    if not said:
        return ToolCalls([Call("search_frames", {"query": "white bands", "k": 3}),
                          Call("view_frames", {"timestamps": [1.0, 2.0, 3.0]})])
    return ToolCalls([Call("answer", {"option": letter(body, "p"), "rationale": "seen", "evidence": [1.0]})])


def make(out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer() as server:
        tmp = Path(tmp)
        config = tmp / f"{TINY_CLIP_MODEL}.json"
        config.write_text(json.dumps(_TINY_CLIP_CONFIG))
        open_clip.add_model_config(config)
        video = make_synthetic_video(tmp / "clip.mp4", n_frames=40, fps=10.0)
        data, videos = mmrv_dataset(tmp, video, 8)
        server.responder = scripted
        grid = {
            "out": str(tmp / "grid"),
            "base": {"data": str(data), "videos": str(videos),
                     "backend": {"model": "scripted", "base_url": server.base_url, "max_retries": 0},
                     "index": {"clip_model": TINY_CLIP_MODEL, "random_weights": True, "cache_dir": str(tmp / "cache")}},
            "grid": [{"method": "uniform", "frames": [2, 4, 8]},
                     {"method": "agent", "strategy": ["planner", "captions", "confidence"], "frames": 8}],
        }
        (tmp / "grid.yaml").write_text(yaml.safe_dump(grid), encoding="utf-8")
        try:
            main(["grid", str(tmp / "grid.yaml")])
        except SystemExit as exc:
            if exc.code:
                raise
        out.mkdir(parents=True, exist_ok=True)
        report = tmp / "grid" / "report"
        for name in ("report.md", "accuracy_vs_frames.png", "accuracy_by_category.png"):
            shutil.copy(report / name, out / name)
        # the report names the temporary folders it was made in; the example names them plainly
        text = (out / "report.md").read_text(encoding="utf-8").replace(str(tmp), "example")
        text = text.replace(" Every question, with its reasoning trace: [run browser](browser/index.html).", "")
        (out / "report.md").write_text(text, encoding="utf-8")
    return out / "report.md"


if __name__ == "__main__":
    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/grid-example")))
