#!/usr/bin/env python3
"""Regenerate the Python gRPC stubs of the Lyra API from ``protos/``.

Usage::

    python scripts/gen_protos.py            # writes clients/python/lyra/v1/*
    python scripts/gen_protos.py --out DIR  # writes DIR/lyra/v1/* (used by the freshness test)

For every ``protos/lyra/v1/<name>.proto`` it writes ``lyra/v1/<name>_pb2.py``,
``<name>_pb2_grpc.py`` and ``<name>_pb2.pyi`` with ``grpc_tools.protoc`` (the protoc bundled
with grpcio-tools, so no system protoc is needed). Output is deterministic for a given
grpcio-tools version: files are passed in sorted order with paths relative to ``protos/``,
and stale generated files in the output package are removed first. The empty
``lyra/__init__.py`` and ``lyra/v1/__init__.py`` package files are created if missing and
never overwritten.

Exit status: 0 on success, 1 if protoc fails (its messages are on stderr).
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"
PACKAGE_DIR = Path("lyra") / "v1"
DEFAULT_OUT = REPO_ROOT / "clients" / "python"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")


def proto_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """Return the ``.proto`` files of package lyra.v1, relative to ``proto_root``, sorted."""
    return sorted(p.relative_to(proto_root).as_posix() for p in (proto_root / PACKAGE_DIR).glob("*.proto"))


def _is_generated(path: Path) -> bool:
    return path.name.endswith(GENERATED_SUFFIXES)


def generate(out_root: Path = DEFAULT_OUT, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Generate the stubs under ``out_root/lyra/v1`` and return the generated file paths, sorted.

    Raises:
        RuntimeError: protoc reported an error (message includes protoc's exit code).
        FileNotFoundError: no ``.proto`` file was found under ``proto_root/lyra/v1``.
    """
    from grpc_tools import protoc  # imported lazily: only needed when generating

    files = proto_files(proto_root)
    if not files:
        raise FileNotFoundError(f"no .proto files under {proto_root / PACKAGE_DIR}")
    out_root = Path(out_root)
    pkg = out_root / PACKAGE_DIR
    pkg.mkdir(parents=True, exist_ok=True)
    for init in (out_root / "lyra" / "__init__.py", pkg / "__init__.py"):
        if not init.exists():
            init.write_text("")
    for old in pkg.iterdir():
        if old.is_file() and _is_generated(old):
            old.unlink()

    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"--proto_path={proto_root}",
        f"--proto_path={well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *files,
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}")
    return sorted(p for p in pkg.iterdir() if p.is_file() and _is_generated(p))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output root (default: clients/python)")
    ns = parser.parse_args(argv)
    try:
        written = generate(ns.out)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"gen_protos: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
