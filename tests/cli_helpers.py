"""Running the real ``sleuth`` command in-process, for tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sleuth.cli import main


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``sleuth ARGS``."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_resumes_with_nothing_to_do(args: list[str], capsys, server) -> dict:
    """Running a finished ``sleuth eval`` again asks nothing and writes nothing: every question is done."""
    before = len(server.requests)
    code, out, err = run_cli([*args, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ran"] == 0 and summary["already_done"] == summary["questions"] > 0, summary
    assert len(server.requests) == before
    return summary


MMRV_SAMPLE = Path(__file__).parent / "data" / "mmrv_sample_questions.json"


def mmrv_dataset(tmp_path: Path, video: Path, n: int, name: str = "questions.json") -> tuple[Path, Path]:
    """(dataset file, videos folder) for the first ``n`` real MMR-V sample records, every video a link to
    ``video``."""
    records = json.loads(MMRV_SAMPLE.read_text(encoding="utf-8"))[:n]
    videos = tmp_path / "videos"
    videos.mkdir(exist_ok=True)
    for record in records:
        if not (videos / record["video"]).exists():
            os.symlink(video, videos / record["video"])
    data = tmp_path / name
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return data, videos


def mmrv_sample(folder, video, n: int):
    """``(questions file, videos folder, records)``: ``mmrv_dataset`` with the records themselves."""
    data, videos = mmrv_dataset(Path(folder), video, n)
    return data, videos, json.loads(data.read_text(encoding="utf-8"))
