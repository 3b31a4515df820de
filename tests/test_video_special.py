"""Opening videos safely: special files never block a reader; native decoder noise stays off the terminal."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tools.native_output import capture_native_stderr, is_native_line
from tools.video import DecodeError, NotAVideoError, open_video
from tools.video_scan import ScanUnavailable, SequentialScan

ROOT = Path(__file__).resolve().parents[1]
BLOCK_LIMIT_S = 5.0  # a check that works answers in milliseconds; a regression would block forever
FIFO_LIMIT_S = 1.0  # open_video's own check: one stat, nothing imported


def _in_thread(call, timeout: float = BLOCK_LIMIT_S, unblock: Path | None = None):
    """Run ``call`` in a thread; returns the exception it raised (or None). Fails if it blocks.

    ``unblock``: a FIFO to open for writing if it did block, so the stuck thread can end.
    """
    outcome: dict[str, BaseException] = {}

    def target():
        try:
            call()
        except BaseException as exc:  # handed to the test
            outcome["exc"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if unblock is not None:
            os.close(os.open(unblock, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"still blocked after {timeout}s")
    return outcome.get("exc")


# --------------------------------------------------------------------------- special files


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "stream.mp4"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("reader", ["auto", "decord", "pyav"])
def test_fifo_fails_at_once(fifo, reader):
    error = _in_thread(lambda: open_video(fifo, reader=reader), FIFO_LIMIT_S, unblock=fifo)
    assert isinstance(error, NotAVideoError)
    assert str(error) == f"not a regular file (a FIFO): {fifo}"


def test_symlink_to_a_fifo_is_a_fifo(tmp_path, fifo):
    link = tmp_path / "link.mp4"
    link.symlink_to(fifo)
    error = _in_thread(lambda: open_video(link), FIFO_LIMIT_S, unblock=fifo)
    assert str(error) == f"not a regular file (a FIFO): {link}"


def test_socket_and_character_device_fail_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative name: socket paths are limited to ~100 bytes
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("s.mp4")
        with pytest.raises(NotAVideoError, match=r"^not a regular file \(a socket\): s.mp4$"):
            open_video("s.mp4")
    with pytest.raises(NotAVideoError, match=r"^not a regular file \(a character device\): /dev/null$"):
        open_video("/dev/null")


def test_scan_refuses_a_fifo_at_once(fifo):
    error = _in_thread(lambda: SequentialScan(fifo), unblock=fifo)
    assert isinstance(error, ScanUnavailable) and "not a regular file (a FIFO)" in str(error)


def test_fallback_to_pyav_does_not_open_a_fifo_put_in_the_files_place(tmp_path, synthetic_video, monkeypatch):
    import decord

    class OnlyFirstFrame(decord.VideoReader):  # decord opens and probes, then fails: auto wants PyAV
        def get_batch(self, indices):
            raise RuntimeError("cannot decode")

        def __getitem__(self, i):
            if i > 0:
                raise RuntimeError("cannot decode")
            return super().__getitem__(i)

    monkeypatch.setattr(decord, "VideoReader", OnlyFirstFrame)
    path = tmp_path / "clip.mp4"
    shutil.copyfile(synthetic_video, path)
    with open_video(path) as video:
        assert video.reader == "decord"
        path.unlink()
        os.mkfifo(path)
        error = _in_thread(lambda: video.sample_window(1.0, 3.0, 3), unblock=path)
        assert isinstance(error, DecodeError) and video.reader == "decord"


# --------------------------------------------------------------------------- capturing fd 2


def _fd2() -> tuple[int, int]:
    info = os.fstat(2)
    return info.st_dev, info.st_ino


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


NATIVE = b"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55e04fe029c0] moov atom not found\n"
DECORD = b"[09:53:33] /github/workspace/src/video/video_reader.cc:83: ERROR opening: x.mp4, Invalid data\n"


def test_capture_takes_native_lines_and_passes_the_rest_on(capfd):
    before = _fd2()
    with capture_native_stderr() as native:
        os.write(2, NATIVE + DECORD + b"a warning from another thread\n")
        assert _fd2() != before
        assert "moov atom not found" in native.text  # readable while the block runs
        os.write(2, b"[h264 @ 0x1] error while decoding MB 3 4\nno newline")
    assert _fd2() == before
    assert capfd.readouterr().err == "a warning from another thread\nno newline"
    assert native.text == (NATIVE + DECORD + b"a warning from another thread\n").decode() + (
        "[h264 @ 0x1] error while decoding MB 3 4\nno newline"
    )
    assert native.detail == "moov atom not found"  # FFmpeg's first complaint


def test_nested_captures_restore_fd2_once(capfd):
    before, fds = _fd2(), _open_fds()
    with capture_native_stderr() as outer:
        os.write(2, b"[mov @ 0x1] outer\n")
        with capture_native_stderr() as inner:
            os.write(2, b"[h264 @ 0x2] inner\n")
        assert _fd2() != before  # the outer block still holds it
        os.write(2, b"[mov @ 0x1] after\n")
    assert _fd2() == before and _open_fds() == fds
    assert inner.text == "[h264 @ 0x2] inner\n"
    assert outer.text == "[mov @ 0x1] outer\n[h264 @ 0x2] inner\n[mov @ 0x1] after\n"
    assert capfd.readouterr().err == ""


def test_concurrent_captures_share_one_redirection(capfd):
    before, fds = _fd2(), _open_fds()
    inside = threading.Barrier(4)
    texts: dict[int, str] = {}

    def worker(n: int) -> None:
        with capture_native_stderr() as native:
            inside.wait()  # all four inside at once
            os.write(2, f"[h264 @ 0x{n}] thread {n}\n".encode())
            inside.wait()  # all written before any ends
        texts[n] = native.text

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BLOCK_LIMIT_S)
    assert _fd2() == before and _open_fds() == fds
    assert all(f"thread {n}" in texts[n] for n in range(4))
    assert capfd.readouterr().err == ""


def test_fd2_is_restored_when_the_block_raises():
    before = _fd2()
    with pytest.raises(KeyError):
        with capture_native_stderr():
            raise KeyError("boom")
    assert _fd2() == before


@pytest.mark.parametrize(
    ("line", "native"),
    [
        (NATIVE.decode(), True),
        (DECORD.decode(), True),
        ("[bt] (0) /usr/lib/libdecord.so(+0x1234) [0x7f]", True),
        ("Traceback (most recent call last):", False),
        ("[12:00] a log line of the user's own", False),
    ],
)
def test_is_native_line(line, native):
    assert is_native_line(line) is native


# --------------------------------------------------------------------------- broken files, from outside


CHILD = """
import sys
from tools.video import VideoError, open_video
try:
    with open_video(sys.argv[1]) as video:
        print("opened", video.reader)
except VideoError as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
"""


def _run_child(code: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def random_mp4(tmp_path) -> Path:
    path = tmp_path / "random bytes.mp4"
    # Seeded: now and then random bytes send FFmpeg's probe elsewhere, with other messages.
    path.write_bytes(random.Random(0).randbytes(20_000))
    return path


@pytest.fixture
def truncated_mp4(tmp_path, synthetic_video) -> Path:
    data = synthetic_video.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])  # PyAV writes the index (moov) last: it is gone
    return path


def test_decord_alone_is_noisy_on_a_broken_file(random_mp4):
    # The premise of the test below: without sleuth's capture, the terminal gets these lines.
    child = "import sys, decord\ntry: decord.VideoReader(sys.argv[1])\nexcept Exception: pass"
    stderr = _run_child(child, random_mp4).stderr
    assert "moov atom not found" in stderr and "video_reader.cc" in stderr


@pytest.mark.parametrize("fixture", ["random_mp4", "truncated_mp4"])
def test_broken_file_prints_only_sleuths_one_line(request, fixture):
    path = request.getfixturevalue(fixture)
    result = _run_child(CHILD, path)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "NotAVideoError: not a readable video "
        f"(Invalid data found when processing input; FFmpeg: moov atom not found): {path}"
    ]


def test_good_file_prints_nothing(synthetic_video):
    result = _run_child(CHILD, synthetic_video)
    assert (result.stdout, result.stderr) == ("opened decord\n", "")
