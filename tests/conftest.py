from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DT = REPO.parent / "shared" / "decodingtrust"


@pytest.fixture(scope="session")
def shared_dt() -> Path:
    if not (SHARED_DT / "data").is_dir():
        pytest.skip("../shared/decodingtrust is not present")
    return SHARED_DT


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from comptrust.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_model_no_system(tmp_path_factory) -> Path:
    from comptrust.testing import NO_SYSTEM_TEMPLATE, make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-nosys") / "tiny-nosys", chat_template=NO_SYSTEM_TEMPLATE)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never write the user's cache: COMPTRUST_CACHE (models/resolve.py's cache_dir, also
    read by every subprocess a test starts) points into this session's temp dir, whatever the
    developer's own setting. The embedded model's converted checkpoint is expensive (~30 s) to
    rebuild: COMPTRUST_TEST_MODEL_CACHE=DIR shares DIR/models across sessions (only that folder)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    cache = tmp_path_factory.mktemp("comptrust-cache")
    shared = os.environ.get("COMPTRUST_TEST_MODEL_CACHE")
    if shared:
        models = Path(shared).expanduser() / "models"
        models.mkdir(parents=True, exist_ok=True)
        (cache / "models").symlink_to(models, target_is_directory=True)
    os.environ["COMPTRUST_CACHE"] = str(cache)
    # builds record their wall time for the planner (compress/cost.py): not into the user's cache
    timings = tmp_path_factory.mktemp("timings")
    os.environ.setdefault("COMPTRUST_COMPRESS_TIMINGS", str(timings / "compress-timings.jsonl"))
    # the plan's throughput calibration (calibrate.py) would run a model in every sweep test:
    # off here, on in tests/test_calibrate.py, and never into the user's cache
    os.environ.setdefault("COMPTRUST_NO_CALIBRATION", "1")
    os.environ.setdefault("COMPTRUST_THROUGHPUT_CALIBRATION", str(tmp_path_factory.mktemp("calibration") / "throughput-calibration.json"))
    os.environ.setdefault("COMPTRUST_FINGERPRINT_MEMO", str(timings / "fingerprint-memo.json"))  # models/fingerprint.py
    yield
