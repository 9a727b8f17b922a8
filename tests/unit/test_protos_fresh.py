"""The committed gRPC stubs in clients/python/lyra/v1 must match what protos/ generates.

If this fails, run ``python scripts/gen_protos.py`` and commit the result.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "clients" / "python"


def _load_gen_protos():
    spec = importlib.util.spec_from_file_location("_lyra_gen_protos", REPO_ROOT / "scripts" / "gen_protos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _generated(root: Path, gen) -> dict[str, bytes]:
    pkg = root / gen.PACKAGE_DIR
    return {p.name: p.read_bytes() for p in sorted(pkg.iterdir()) if p.is_file() and gen._is_generated(p)}


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    gen = _load_gen_protos()
    gen.generate(tmp_path)
    fresh = _generated(tmp_path, gen)
    committed = _generated(COMMITTED, gen)
    assert fresh, "gen_protos produced no files"

    missing = sorted(set(fresh) - set(committed))
    extra = sorted(set(committed) - set(fresh))
    differ = sorted(name for name in set(fresh) & set(committed) if fresh[name] != committed[name])
    problems = (
        [f"missing (not generated/committed): clients/python/lyra/v1/{n}" for n in missing]
        + [f"stale (no .proto generates it any more): clients/python/lyra/v1/{n}" for n in extra]
        + [f"stale (differs from protos/): clients/python/lyra/v1/{n}" for n in differ]
    )
    assert not problems, "stubs out of date; run `python scripts/gen_protos.py`:\n" + "\n".join(problems)


def test_package_init_files_present() -> None:
    for init in (COMMITTED / "lyra" / "__init__.py", COMMITTED / "lyra" / "v1" / "__init__.py"):
        assert init.is_file(), f"missing {init.relative_to(REPO_ROOT)}"


def test_every_service_importable() -> None:
    import importlib

    gen = _load_gen_protos()
    names = [Path(f).stem for f in gen.proto_files()]
    assert {"auth", "orders", "portfolio", "strategies", "risk", "marketdata", "admin", "common"} <= set(names)
    for name in names:
        importlib.import_module(f"lyra.v1.{name}_pb2")
        importlib.import_module(f"lyra.v1.{name}_pb2_grpc")
