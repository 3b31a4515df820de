"""Does index building hold memory in proportion to a video's length? Build the same index again and again.

    python -m tools.bench_memory [--fps 0.2 1] [--rebuilds 4] [--video PATH]

Each build of the 5-minute 720p benchmark clip (or ``--video``) prints the
process's resident memory before it and the most it reached during it. With
a bounded queue, the figures do not grow with the number of frames sampled
(``--fps``), and a process indexing many videos does not creep upwards.
Random CLIP weights: memory and speed only.
"""

from __future__ import annotations

import argparse
import json

from tools.bench_index import _reset_peak_rss, _rss_mb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--video", help="Video to index (default: the 5-minute 720p synthetic benchmark clip).")
    parser.add_argument("--fps", type=float, nargs="+", default=[0.2, 1.0], help="Sampling rates to build at.")
    parser.add_argument("--rebuilds", type=int, default=4, help="Builds per sampling rate.")
    parser.add_argument("--clip-model", default=None, help="open_clip architecture (default: sleuth's).")
    parser.add_argument("--json", action="store_true", help="One JSON object per build instead of a line.")
    args = parser.parse_args(argv)

    from pathlib import Path

    from tools.clip import load_clip
    from tools.frame_index import build_frame_index, default_workers
    from tools.options import DEFAULT_CLIP_MODEL, make_index_config
    from tools.synthetic_footage import cached_footage
    from tools.video import open_video

    settings = make_index_config(clip_model=args.clip_model or DEFAULT_CLIP_MODEL, pretrained=None,
                                 random_weights=True, max_frames=1_000_000)
    video = Path(args.video) if args.video else cached_footage(
        settings.resolved_cache_dir() / "footage", minutes=5, size=(1280, 720)
    )
    if _rss_mb("VmRSS") is None or not _reset_peak_rss():
        raise SystemExit("error: needs Linux /proc to read resident memory")
    encoder = load_clip(settings)
    workers = default_workers(encoder.device)
    print(f"{video.name} · {encoder.model_id} · batch {settings.batch_size} · queue {settings.queue_depth} · "
          f"{workers} worker(s); MB resident", flush=True)
    for fps in args.fps:
        for build in range(1, args.rebuilds + 1):
            with open_video(video) as opened:
                before = _rss_mb("VmRSS")
                _reset_peak_rss()
                index = build_frame_index(
                    opened, encoder, fps=fps, max_frames=settings.max_frames, batch_size=settings.batch_size,
                    queue_depth=settings.queue_depth, workers=workers, decode_threads=settings.decode_threads,
                )
                peak = _rss_mb("VmHWM")
            row = {"fps": fps, "build": build, "frames": len(index), "rss_before_mb": round(before),
                   "peak_mb": round(peak), "peak_over_before_mb": round(peak - before)}
            print(json.dumps(row) if args.json else
                  f"fps {fps:g} build {build}: {len(index)} frames, before {before:.0f}, "
                  f"peak {peak:.0f} (+{peak - before:.0f})", flush=True)


if __name__ == "__main__":
    main()
