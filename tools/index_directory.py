"""Index many videos at once: ``sleuth index DIR`` at the machine's limit.

With ``decode_workers=0`` (or a single video to build) videos are indexed
one after the other, each by ``build_frame_index``, whose threads share the
cores between decoding and the model. With ``decode_workers=N`` (the
default: every core, or every core but one where the model runs on an
accelerator) N processes decode different videos at once
(``tools.decode_worker``) and one embedding thread per device takes their
batches, several videos' frames to one model call, up to ``embed_batch``
frames. Memory stays bounded: each decoder waits on its pipe
while the model is behind, the embedding threads hold one group each, and a
video's pixels are let go as soon as they are embedded.

Every engine ends in ``assemble_index`` and ``FrameSearcher.store``, so the
cache entries are the ones ``sleuth index VIDEO`` writes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from sleuth.errors import SleuthError
from tools.cores import available_cores
from tools.decode_worker import DecodeSettings
from tools.frame_index import assemble_index
from tools.search import FrameSearcher, IndexOutcome
from tools.video import VideoError, VideoMeta

DEFAULT_EMBED_BATCH_GPU = 256  # frames per model call on an accelerator: enough to keep it busy


@dataclass
class VideoResult:
    """One video's result: an index outcome, or the one-line reason it has none."""

    number: int  # its position in the list asked for
    path: Path
    outcome: IndexOutcome | None = None
    error: str | None = None
    rebuilt_reason: str | None = None  # why its entry on disk was not trusted


@dataclass
class DirectoryRun:
    results: list[VideoResult]
    frames_built: int
    build_seconds: float  # wall time from the first video opened to the last index written
    startup_seconds: float = 0.0  # before that: decoding processes starting (imports), not indexing


FramesCallback = Callable[[int, int], None]  # (frames just embedded, frames just added to the total)
ResultCallback = Callable[[VideoResult], None]


def default_decode_workers(device: str, cores: int | None = None) -> int:
    """Decoding processes where the user chose none: every core but one on an accelerator (that one feeds
    it), every core on a CPU (the model's threads and the decoders then share them; measured faster over a
    folder than one video at a time, whose first batch decodes and last embeds alone). 0 on one core."""
    cores = cores or available_cores()
    if device != "cpu":
        return max(1, cores - 1)
    return cores if cores >= 2 else 0


def embedding_devices(device: str) -> list[str]:
    """One embedding device per GPU where the model runs on CUDA without a device number, else ``device``."""
    if device != "cuda":
        return [device]
    import torch

    count = torch.cuda.device_count()
    return [f"cuda:{k}" for k in range(count)] if count > 1 else [device]


def index_videos(
    searcher: FrameSearcher,
    videos: list[Path],
    *,
    decode_workers: int = 0,
    embed_batch: int | None = None,
    on_result: ResultCallback | None = None,
    on_frames: FramesCallback | None = None,
    encoders: list | None = None,
) -> DirectoryRun:
    """Index ``videos`` (cache hits are only loaded); a video that fails is a result with an error, not a stop."""
    if decode_workers < 0:
        raise SleuthError(f"decode workers must be 0 (in-process) or more, got {decode_workers}")
    report = on_result or (lambda result: None)
    results, pending = split_cached(searcher, videos, report)
    frames_built = 0
    firsts = [group[0] for group in pending.values()]
    if firsts:
        searcher.encoder  # loaded before the clock starts: loading a model is not indexing speed
    build_started = time.perf_counter()
    startup = 0.0
    if firsts and (decode_workers == 0 or len(firsts) == 1):  # one video: its own pipeline is the fastest
        frames_built = _in_process(searcher, firsts, report, on_frames)
    elif firsts:
        encoders = encoders or _encoders(searcher)
        if not encoders[0].pixel_prep.supported:  # a model whose preprocessing needs PIL: the in-process path
            frames_built = _in_process(searcher, firsts, report, on_frames)
        else:
            build_started = time.perf_counter()
            engine = _ProcessEngine(searcher, encoders, firsts, decode_workers, embed_batch, report, on_frames)
            frames_built = engine.run()
            if engine.first_video_at is not None:
                startup = engine.first_video_at - build_started
                build_started = engine.first_video_at
    build_seconds = time.perf_counter() - build_started if firsts else 0.0
    finish_duplicates(searcher, pending, report)
    return DirectoryRun(results, frames_built, build_seconds, startup)


def split_cached(
    searcher: FrameSearcher, videos: list[Path], report: ResultCallback
) -> tuple[list[VideoResult], dict[str, list[VideoResult]]]:
    """Results for every video, those already indexed (or unreadable) reported; the rest grouped by cache key.

    In each group the first video is the one to build; the others have the same content.
    """
    results: list[VideoResult] = []
    pending: dict[str, list[VideoResult]] = {}
    for number, video in enumerate(videos):
        result = VideoResult(number, Path(video))
        results.append(result)
        try:
            path, key, outcome, reason = searcher.cached(video)
        except VideoError as exc:
            result.error = str(exc)
            report(result)
            continue
        if outcome is not None:
            result.outcome = outcome
            report(result)
            continue
        result.path, result.rebuilt_reason = path, reason
        pending.setdefault(key, []).append(result)
    return results, pending


def finish_duplicates(searcher: FrameSearcher, pending: dict[str, list[VideoResult]], report: ResultCallback) -> None:
    """Videos with the same content as one just built: their index is now in memory."""
    for group in pending.values():
        for result in group[1:]:
            if group[0].error is not None:
                result.error = group[0].error
            else:
                try:
                    result.outcome = searcher.ensure_index(result.path)
                except VideoError as exc:
                    result.error = str(exc)
            report(result)


def _encoders(searcher: FrameSearcher) -> list:
    from tools.clip import load_clip

    first = searcher.encoder
    devices = embedding_devices(first.device)
    if len(devices) == 1:
        return [first]
    return [first] + [load_clip(searcher.config.model_copy(update={"device": d})) for d in devices[1:]]


def _in_process(searcher, firsts: list[VideoResult], report: ResultCallback, on_frames) -> int:
    built = 0
    for result in firsts:
        seen = {"done": 0, "total": 0}

        def progress(done: int, total: int) -> None:
            if on_frames is not None:
                on_frames(done - seen["done"], total - seen["total"])
            seen.update(done=done, total=total)

        try:
            result.outcome = searcher.ensure_index(result.path, progress=progress)
        except VideoError as exc:
            result.error = str(exc)
        else:
            if result.outcome.source == "built":
                built += len(result.outcome.index)
        report(result)
    return built


JOBS_AHEAD = 2  # videos given to a decoder at once: the next is waiting when it finishes one


@dataclass
class _Decoder:
    process: object
    tasks: object  # its own task queue
    reader: object  # the reading end of its own pipe back
    held: deque[int] = field(default_factory=deque)  # videos given to it and not finished, in its order


@dataclass
class _Job:
    result: VideoResult
    key: str = ""
    started: float = 0.0
    meta: dict | None = None
    decoder: str = ""
    total: int = 0
    pid: int | None = None
    sent: int | None = None  # batches the decoder sent, known at its "end"
    parts: dict[int, tuple[list[float], np.ndarray | None, list]] = field(default_factory=dict)
    closed: bool = False


class _ProcessEngine:
    """Decoding processes feeding one embedding thread per device; see the module docstring."""

    def __init__(self, searcher, encoders, firsts, workers, embed_batch, report, on_frames):
        self.searcher = searcher
        self.encoders = encoders
        self.jobs = {k: _Job(result) for k, result in enumerate(firsts)}
        self.workers = max(1, min(workers, len(firsts)))
        on_device = not encoders[0].device == "cpu"
        self.embed_batch = embed_batch or (DEFAULT_EMBED_BATCH_GPU if on_device else searcher.config.batch_size)
        self.report = report
        self.on_frames = on_frames or (lambda done, total: None)
        self.lock = threading.Lock()
        self.failure: list[BaseException] = []
        self.frames_built = 0
        self.first_video_at: float | None = None
        config = searcher.config
        self.settings = DecodeSettings(config.fps, config.max_frames, config.batch_size, "auto",
                                       config.decode_threads, searcher.keep_frames)

    # -- the run

    def run(self) -> int:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # torch's threads in this process make fork unsafe
        self.context = context
        self.backlog: deque[int] = deque(self.jobs)
        # Each decoder has its own task queue, at most JOBS_AHEAD videos given to it, and its own pipe
        # back: a decoder that dies (even halfway through a message) ends only its own pipe, and the
        # videos it held are known: the first fails, the others go to its replacement. A pipe holds
        # little, so a decoder waits while the model is behind: memory stays bounded.
        self.decoders = [self._start_decoder() for _ in range(self.workers)]
        work: queue.Queue = queue.Queue(maxsize=len(self.encoders))
        threads = [
            threading.Thread(target=self._embed, args=(encoder, work), name=f"sleuth-embed-{k}", daemon=True)
            for k, encoder in enumerate(self.encoders)
        ]
        for thread in threads:
            thread.start()
        try:
            self._collect(work)
        finally:
            for _ in threads:
                work.put(None)
            for thread in threads:
                thread.join()
            self._stop_decoders()
        if self.failure:
            raise self.failure[0]
        return self.frames_built

    def _start_decoder(self) -> _Decoder:
        from tools import decode_worker

        tasks = self.context.Queue()
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=decode_worker.run,
            args=(tasks, writer, self.encoders[0].pixel_prep, self.settings),
            name="sleuth-decode",
            daemon=True,
        )
        process.start()
        writer.close()  # the decoder holds the only writing end: its death is the pipe's end
        decoder = _Decoder(process, tasks, reader)
        self._feed(decoder)
        return decoder

    def _feed(self, decoder: _Decoder) -> None:
        while self.backlog and len(decoder.held) < JOBS_AHEAD:
            job_id = self.backlog.popleft()
            decoder.held.append(job_id)
            decoder.tasks.put((job_id, str(self.jobs[job_id].result.path)))

    def _released(self, job_id: int) -> None:
        """The decoder holding ``job_id`` is done with it: give it the next video."""
        for decoder in self.decoders:
            if decoder.held and decoder.held[0] == job_id:
                decoder.held.popleft()
                self._feed(decoder)
                return

    def _stop_decoders(self) -> None:
        for decoder in self.decoders:
            decoder.tasks.put(None)
        deadline = time.monotonic() + 10
        for decoder in self.decoders:
            decoder.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if decoder.process.is_alive():
                decoder.process.terminate()
                decoder.process.join(timeout=5)
            decoder.tasks.cancel_join_thread()
            decoder.reader.close()

    def _open_jobs(self) -> int:
        with self.lock:
            return sum(1 for job in self.jobs.values() if not job.closed)

    def _collect(self, work: queue.Queue) -> None:
        """Take the decoders' messages, group batches for the model, notice dead decoders."""
        from multiprocessing.connection import wait

        group: list[tuple[int, int, list[int], list[float], np.ndarray, list]] = []
        frames = 0
        while self._open_jobs() and not self.failure:
            readers = {decoder.reader: decoder for decoder in self.decoders}
            ready = wait(list(readers), timeout=0.2 if not group else 0.005)
            if not ready:
                if group:  # nothing more right now: the model should not wait for a full group
                    work.put(group)
                    group, frames = [], 0
                continue
            for reader in ready:
                try:
                    message = reader.recv()
                except (EOFError, OSError):
                    self._replace(readers[reader])
                    continue
                if message[0] == "batch" and message[5] is not None:
                    group.append(message[1:])
                    frames += len(message[3])
                    if frames >= self.embed_batch:
                        work.put(group)
                        group, frames = [], 0
                else:
                    self._handle(message)
        if group and not self.failure:
            work.put(group)

    def _handle(self, message: tuple) -> None:
        kind, job_id = message[0], message[1]
        job = self.jobs[job_id]
        if kind == "start":
            _, _, job.pid, job.meta, job.total, job.decoder = message
            job.started = time.perf_counter()
            if self.first_video_at is None:
                self.first_video_at = job.started
            self.on_frames(0, job.total)
        elif kind == "batch":  # only skipped frames: nothing to embed
            _, _, seq, _, timestamps, _, skipped = message
            self._record(job_id, seq, timestamps, None, skipped)
        elif kind == "end":
            self._released(job_id)
            with self.lock:
                job.sent = message[2]
            self._maybe_finish(job_id)
        elif kind == "error":
            self._released(job_id)
            self._fail(job_id, message[2])

    def _replace(self, decoder: _Decoder) -> None:
        """A decoder whose pipe ended died (killed, crashed in a native library): its video fails, a new one starts."""
        decoder.process.join(timeout=5)
        held = list(decoder.held)
        decoder.held.clear()
        decoder.tasks.cancel_join_thread()
        decoder.reader.close()
        if held:
            code = decoder.process.exitcode
            self._fail(held[0], f"the decoding process exited (code {code}): {self.jobs[held[0]].result.path}")
            self.backlog.extendleft(reversed(held[1:]))
        self.decoders[self.decoders.index(decoder)] = self._start_decoder()

    # -- embedding

    def _embed(self, encoder, work: queue.Queue) -> None:
        import torch

        while (group := work.get()) is not None:
            if self.failure:
                continue
            try:
                pixels = torch.from_numpy(np.concatenate([item[4] for item in group]))
                if encoder.device.startswith("cuda"):
                    pixels = pixels.pin_memory()
                embeddings = encoder.encode_pixels(pixels)
            except BaseException as exc:  # the model failing stops the run, as in build_frame_index
                self.failure.append(exc)
                continue
            offset = 0
            for job_id, seq, indices, timestamps, _, skipped in group:
                self._record(job_id, seq, timestamps, embeddings[offset : offset + len(indices)], skipped)
                offset += len(indices)

    def _record(self, job_id: int, seq: int, timestamps, embeddings, skipped) -> None:
        with self.lock:
            job = self.jobs[job_id]
            if job.closed:
                return
            job.parts[seq] = (list(timestamps), embeddings, list(skipped))
        self.on_frames(len(timestamps) + len(skipped), 0)
        self._maybe_finish(job_id)

    def _maybe_finish(self, job_id: int) -> None:
        with self.lock:
            job = self.jobs[job_id]
            if job.closed or job.sent is None or len(job.parts) < job.sent:
                return
            job.closed = True
        times = [t for seq in range(job.sent) for t in job.parts[seq][0]]
        arrays = [job.parts[seq][1] for seq in range(job.sent) if job.parts[seq][1] is not None]
        skipped = [s for seq in range(job.sent) for s in job.parts[seq][2]]
        job.parts.clear()
        result = job.result
        try:
            key = self.searcher.cache_key(result.path)
            index = assemble_index(
                VideoMeta.model_validate(job.meta),
                self.encoders[0],
                np.asarray(times, dtype=np.float64),
                np.concatenate(arrays) if arrays else np.zeros((0, 0), dtype=np.float32),
                [tuple(s) for s in skipped],
                fps=self.searcher.config.fps,
                max_frames=self.searcher.config.max_frames,
                decoder=job.decoder,
                build_s=time.perf_counter() - job.started,
                meta_extra=self.searcher.meta_extra(result.path, key),
            )
            result.outcome = self.searcher.store(
                result.path, key, index, time.perf_counter() - job.started, result.rebuilt_reason
            )
        except VideoError as exc:
            result.error = str(exc)
        except BaseException as exc:  # writing the cache failed: stop, as the one-video path would
            self.failure.append(exc)
            return
        if result.outcome is not None and result.outcome.source == "built":
            with self.lock:
                self.frames_built += len(result.outcome.index)
        self.report(result)

    def _fail(self, job_id: int, message: str) -> None:
        with self.lock:
            job = self.jobs[job_id]
            if job.closed:
                return
            job.closed = True
            job.parts.clear()
        job.result.error = message
        self.report(job.result)
