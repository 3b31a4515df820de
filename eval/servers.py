"""A pool of OpenAI-compatible model servers shared by evaluation workers: health checks and back-off.

A worker asks ``choose_server`` for a server: it starts at its own place in
the pool (so workers spread over the servers), takes the first one whose
``GET /models`` answers, and where none does, waits (1 s, 2 s, 4 s, ...)
and asks again, so a server that is restarting is waited for rather than
failing the shard. A pool is given as URLs or as files of URLs, one a line.
"""

from __future__ import annotations

import time
from pathlib import Path

from sleuth.errors import ConfigError
from sleuth.redact import redact

HEALTH_TIMEOUT_S = 5.0


def read_servers(values: list[str]) -> list[str]:
    """URLs as given; a value that is a file holds URLs, one a line (``#`` starts a comment)."""
    servers: list[str] = []
    for value in values:
        path = Path(value).expanduser()
        if not value.startswith(("http://", "https://")) and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    servers.append(_checked(line, f"{path}"))
        else:
            servers.append(_checked(value, "--server"))
    return list(dict.fromkeys(servers))


def _checked(url: str, where: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: {redact(url)!r} is not an http(s) URL of an OpenAI-compatible server")
    return url.rstrip("/")


def healthy(url: str, api_key: str | None = None, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """The server answers ``GET /models`` (a refused key still proves it is up)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{url}/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def choose_server(
    servers: list[str], place: int, *, api_key: str | None = None, rounds: int = 5, first_wait_s: float = 1.0,
    check=healthy, sleep=time.sleep,
) -> str:
    """The first healthy server from ``place`` on (round robin); waits and retries, doubling the wait."""
    if not servers:
        raise ConfigError("no model server to use: give --base-url or --server")
    start = place % len(servers)
    order = servers[start:] + servers[:start]
    wait = first_wait_s
    for attempt in range(rounds):
        for url in order:
            if check(url, api_key):
                return url
        if attempt < rounds - 1:
            sleep(wait)
            wait *= 2
    names = ", ".join(redact(url) for url in order)
    raise ConfigError(f"none of the {len(servers)} model servers answered GET /models ({names})")
