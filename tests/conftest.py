"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real market data pack: ``$LYRA_SHARED_DATA`` or ``<repo>/../shared/data``.

    Fails (does not skip) when the folder is missing: tests on real data must run.
    """
    path = Path(os.environ.get("LYRA_SHARED_DATA", str(REPO_ROOT.parent / "shared" / "data"))).resolve()
    if not path.is_dir():
        pytest.fail(
            f"shared market data folder {path} not found: set LYRA_SHARED_DATA to the folder that "
            "holds candles/, trades/ ... (see ../shared/data/README.md)",
            pytrace=False,
        )
    return path
