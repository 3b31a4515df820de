"""The local Ray session the Ray engines' tests run in (``tests/test_ray_index.py``, ``tests/test_eval_shards.py``).

``ray_session`` (re-exported by ``tests/conftest.py``) starts one session for
the test modules that use it, on first use: starting Ray costs seconds, and
the workers one module started are reused by the next. ``shut_down_after_last_user``
(called by ``tests/conftest.py`` after every test) ends it as soon as no later
test uses it, so that the tests in between and after run without Ray.

Every worker of the session can build the tiny test CLIP architecture: its
config is added to open_clip when a worker first imports open_clip. Only the
workers that load the model import it (the embedding actors); the decoding
and evaluation workers never pay for open_clip's import (seconds per process).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

import pytest

from tests.video_fixtures import TINY_CLIP_MODEL, tiny_clip_config_file

__all__ = ["ray_session"]  # the fixture; conftest imports shut_down_after_last_user by name

ROOT = Path(__file__).resolve().parents[1]


def _add_tiny_clip(open_clip) -> None:
    if TINY_CLIP_MODEL not in open_clip.list_models():
        open_clip.add_model_config(tiny_clip_config_file())


class _AddTinyClipAfterImport(importlib.abc.MetaPathFinder):
    """Finds open_clip as usual, and adds the tiny architecture once the module has run."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "open_clip":
            return None
        sys.meta_path.remove(self)  # once; and so that the search below finds the real module
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            run_module = spec.loader.exec_module

            def run_then_add(module) -> None:
                run_module(module)
                _add_tiny_clip(module)

            spec.loader.exec_module = run_then_add
        return spec


def register_tiny_clip_on_import() -> None:
    """Ray's ``worker_process_setup_hook``: the tiny architecture in this worker, as ``tiny_clip_model`` adds it
    in the test process."""
    if "open_clip" in sys.modules:
        _add_tiny_clip(sys.modules["open_clip"])
    elif not any(isinstance(finder, _AddTinyClipAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AddTinyClipAfterImport())


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sleuth[ray]', or '.[test]')")
    ray.init(
        num_cpus=2,
        object_store_memory=100 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": str(ROOT)},
            "worker_process_setup_hook": register_tiny_clip_on_import,
        },
    )
    yield ray
    ray.shutdown()


def shut_down_after_last_user(item: pytest.Item) -> None:
    """Shut the shared session down when ``item`` is the last test of this run that uses it."""
    ray = sys.modules.get("ray")
    if ray is None or "ray_session" not in getattr(item, "fixturenames", ()):
        return
    later = item.session.items[item.session.items.index(item) + 1 :] if item in item.session.items else []
    if not any("ray_session" in getattr(other, "fixturenames", ()) for other in later):
        ray.shutdown()  # the fixture's own shutdown at the end of the run is then a no-op
