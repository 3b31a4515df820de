"""``sleuth data download``: joining ``videos.tar.part.*`` and safe extraction, offline, on synthetic parts."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from eval.benchmarks.mmr_v.download import DownloadError, download_dataset, extract_parts, find_parts, join_parts
from sleuth.cli import main


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _split(data: bytes, folder: Path, suffixes: list[str]) -> list[Path]:
    """Cut ``data`` into len(suffixes) parts named videos.tar.part.<suffix>, like `split`."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // len(suffixes))
    parts = []
    for number, suffix in enumerate(suffixes):
        path = folder / f"videos.tar.part.{suffix}"
        path.write_bytes(data[number * size : (number + 1) * size])
        parts.append(path)
    return parts


VIDEOS = {
    "videos/One Small Step.f620.mp4": b"\x00\x01" * 5000,
    "videos/Heal.mp4": bytes(range(256)) * 40,
    "videos/UFO Attack ｜ Sci-Fi Comedy Animated Short Film.mp4": b"\x07" * 3000,
}


def test_parts_join_in_natural_order_and_extract(tmp_path):
    data = _tar_bytes(VIDEOS)
    # written out of order, with numeric suffixes that sort wrongly as text (2 < 10)
    parts = _split(data, tmp_path, ["1", "2", "10"])
    assert find_parts(tmp_path) == parts
    joined = join_parts(find_parts(tmp_path), tmp_path / "videos.tar")
    assert joined.read_bytes() == data

    written = extract_parts(parts, tmp_path / "out", progress=False)
    assert written == len(VIDEOS)
    for name, payload in VIDEOS.items():
        assert (tmp_path / "out" / name).read_bytes() == payload


def test_download_without_fetch_joins_extracts_and_verifies(tmp_path, capsys):
    root = tmp_path / "MMR-V"
    _split(_tar_bytes(VIDEOS), root, ["aa", "ab", "ac", "ad"])
    questions = [
        {"video": Path(name).name, "videoType": "art", "question": f"Q{i}?", "options": ["(A) a", "(B) b"],
         "correctAnswer": "(A)", "abilityType_L2": "Causal Reasoning", "abilityType_L3": "x"}
        for i, name in enumerate(VIDEOS)
    ]
    (root / "MMR-V.json").write_text(json.dumps(questions, ensure_ascii=False), encoding="utf-8")

    try:
        main(["data", "download", str(root), "--skip-fetch", "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["parts"] == ["videos.tar.part.aa", "videos.tar.part.ab", "videos.tar.part.ac", "videos.tar.part.ad"]
    assert outcome["extracted_files"] == 3 and outcome["video_files"] == 3
    assert outcome["videos_dir"] == str(root / "videos")
    assert outcome["referenced_videos"] == 3 and outcome["missing_videos"] == []

    # a question naming a video the archive lacks fails verification with a one-line reason
    questions.append({**questions[0], "video": "Not There.mp4", "question": "Q9?"})
    (root / "MMR-V.json").write_text(json.dumps(questions, ensure_ascii=False), encoding="utf-8")
    summary = download_dataset(root, fetch=False, extract=False, progress=False)
    assert summary.verify.missing == ["Not There.mp4"]
    try:
        main(["data", "download", str(root), "--skip-fetch"])
        code = 0
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "1 videos named by the questions are missing (e.g. Not There.mp4)" in err


@pytest.mark.parametrize("name", ["../escape.mp4", "/abs/escape.mp4", "videos/../../escape.mp4"])
def test_extraction_refuses_paths_outside_the_folder(tmp_path, name):
    parts = _split(_tar_bytes({"videos/ok.mp4": b"ok", name: b"evil"}), tmp_path / "parts", ["aa", "ab"])
    target = tmp_path / "deep" / "target"
    with pytest.raises(DownloadError, match="outside the target folder"):
        extract_parts(parts, target, progress=False)
    assert not (tmp_path / "deep" / "escape.mp4").exists() and not (tmp_path / "escape.mp4").exists()


def test_extraction_refuses_links(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("videos/link.mp4")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    parts = _split(buffer.getvalue(), tmp_path / "parts", ["aa"])
    with pytest.raises(DownloadError, match="is a link"):
        extract_parts(parts, tmp_path / "target", progress=False)


def test_corrupt_parts_and_no_parts(tmp_path):
    parts = _split(b"this is not a tar archive at all" * 40, tmp_path / "parts", ["aa", "ab"])
    with pytest.raises(DownloadError, match="not a readable tar archive"):
        extract_parts(parts, tmp_path / "target", progress=False)
    with pytest.raises(DownloadError, match="no videos.tar.part.* files"):
        find_parts(tmp_path / "target")


def test_hub_fetch_offline_fails_with_a_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        main(["data", "download", str(tmp_path / "MMR-V")])
        code = 0
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: could not download JokerJan/MMR-VBench from the Hugging Face Hub")
    assert "--skip-fetch" in err and len(err.splitlines()) == 1
