"""Running the real ``sleuth`` command in-process, for tests."""

from __future__ import annotations

import json

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
