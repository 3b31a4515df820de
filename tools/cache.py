"""On-disk cache for frame indexes: content fingerprints, keys, atomic entries.

Layout under the cache directory::

    fingerprints/<sha1 of the absolute path>.json   memoised content hash per file (by size, mtime, inode)
    frame-index/<key[:2]>/<key>.npz                 timestamps + embeddings + meta + checksum
    frame-index/<key[:2]>/<key>.lock                cross-process build lock

An entry is one ``.npz`` file written to a temporary name and renamed into
place, so readers never see half a file. Every read checks shapes, dtypes and
a sha256 over the arrays and meta; anything off raises ``CacheEntryError`` and
the caller rebuilds the entry.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sleuth.errors import ConfigError, SleuthError

ENTRY_FORMAT = 1
_HASH_CHUNK = 1 << 20


class CacheEntryError(SleuthError):
    """A cache entry is missing pieces, truncated or does not match its checksum."""


# --------------------------------------------------------------------------- fingerprints

_memo_lock = threading.Lock()
_memo: dict[tuple[str, int, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ino)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path, memo_dir: Path | None = None) -> str:
    """sha256 of a file's bytes, memoised by (path, size, mtime_ns, inode).

    The memo lives in this process and, when ``memo_dir`` is given, in a small
    sidecar file there, so a later process skips re-reading a big file whose
    stat has not changed. A changed stat means the file is hashed again.
    """
    path = Path(path).expanduser().resolve()
    key = _stat_key(path)
    with _memo_lock:
        known = _memo.get(key)
    if known:
        return known
    sidecar = _sidecar_path(memo_dir, path) if memo_dir is not None else None
    if sidecar is not None:
        try:
            stored = json.loads(sidecar.read_text("utf-8"))
            if [stored["path"], stored["size"], stored["mtime_ns"], stored["inode"]] == list(key):
                digest = str(stored["sha256"])
                if len(digest) == 64:
                    with _memo_lock:
                        _memo[key] = digest
                    return digest
        except (OSError, ValueError, KeyError, TypeError):
            pass  # absent or unreadable memo: hash the file
    digest = _hash_file(path)
    if _stat_key(path) != key:  # changed while we read it: do not memoise
        return digest
    with _memo_lock:
        _memo[key] = digest
    if sidecar is not None:
        record = {"path": key[0], "size": key[1], "mtime_ns": key[2], "inode": key[3], "sha256": digest}
        try:
            atomic_write_bytes(sidecar, json.dumps(record).encode("utf-8"))
        except OSError:
            pass  # the memo is an optimisation only
    return digest


def _sidecar_path(memo_dir: Path, path: Path) -> Path:
    name = hashlib.sha1(str(path).encode("utf-8", "surrogatepass")).hexdigest()
    return Path(memo_dir) / "fingerprints" / f"{name}.json"


# --------------------------------------------------------------------------- keys and paths


def index_cache_key(*, content_sha256: str, model_id: str, fps: float, max_frames: int, preprocess: str) -> str:
    """Everything that changes the embeddings, hashed. (Batch size, device and queue depth do not.)"""
    parts = {
        "format": ENTRY_FORMAT,
        "content": content_sha256,
        "model": model_id,
        "fps": repr(float(fps)),
        "max_frames": int(max_frames),
        "preprocess": preprocess,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def entry_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "frame-index" / key[:2] / f"{key}.npz"


def ensure_writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cache directory {path} cannot be created ({exc.strerror or exc}); pass --cache-dir") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"cache directory {path} is not writable; pass --cache-dir")
    return path


# --------------------------------------------------------------------------- entries


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to a temporary name and rename it into place; ``durable`` syncs it to disk first (a
    cache whose readers check what they read can skip that: it costs milliseconds per file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp)
        raise


class _suppress_oserror:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, OSError)


def _checksum(timestamps: np.ndarray, embeddings: np.ndarray, meta_json: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(str(timestamps.shape).encode() + str(embeddings.shape).encode())
    digest.update(np.ascontiguousarray(timestamps).tobytes())
    digest.update(np.ascontiguousarray(embeddings).tobytes())
    digest.update(meta_json)
    return digest.hexdigest()


def write_entry(path: Path, timestamps: np.ndarray, embeddings: np.ndarray, meta: dict[str, Any]) -> None:
    """Write timestamps (N,) float64, embeddings (N, D) float32 and a JSON-able meta dict atomically."""
    timestamps = np.ascontiguousarray(timestamps, dtype=np.float64)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    meta_json = json.dumps(meta, sort_keys=True).encode("utf-8")
    buf = io.BytesIO()
    np.savez(
        buf,
        timestamps=timestamps,
        embeddings=embeddings,
        meta=np.frombuffer(meta_json, dtype=np.uint8),
        checksum=np.frombuffer(_checksum(timestamps, embeddings, meta_json).encode("ascii"), dtype=np.uint8),
    )
    atomic_write_bytes(path, buf.getvalue())


def read_entry(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read and verify an entry; ``CacheEntryError`` for anything that is not exactly what was written."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"timestamps", "embeddings", "meta", "checksum"} - set(data.files)
            if missing:
                raise CacheEntryError(f"cache entry {path} lacks {', '.join(sorted(missing))}")
            timestamps = data["timestamps"]
            embeddings = data["embeddings"]
            meta_json = data["meta"].tobytes()
            checksum = data["checksum"].tobytes().decode("ascii")
    except CacheEntryError:
        raise
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, KeyError) as exc:
        raise CacheEntryError(f"cache entry {path} is unreadable ({type(exc).__name__}: {exc})") from None
    if timestamps.dtype != np.float64 or timestamps.ndim != 1:
        raise CacheEntryError(f"cache entry {path} has malformed timestamps")
    if embeddings.dtype != np.float32 or embeddings.ndim != 2 or embeddings.shape[0] != timestamps.shape[0]:
        raise CacheEntryError(f"cache entry {path} has embeddings of shape {embeddings.shape} for {timestamps.shape[0]} timestamps")
    if checksum != _checksum(timestamps, embeddings, meta_json):
        raise CacheEntryError(f"cache entry {path} does not match its checksum")
    try:
        meta = json.loads(meta_json.decode("utf-8"))
    except ValueError as exc:
        raise CacheEntryError(f"cache entry {path} has unreadable meta ({exc})") from None
    if not isinstance(meta, dict):
        raise CacheEntryError(f"cache entry {path} has unreadable meta")
    return timestamps, embeddings, meta
