"""Build the Python code for protos/ into build/gen (git-ignored) and make it importable.

Run by `make protos`. Output: build/gen/hongling/<service>/v1/*_pb2.py, *_pb2_grpc.py and .pyi stubs,
plus a `hongling-protos.pth` in the virtualenv's site-packages so `import hongling.intake.v1.intake_pb2`
works from anywhere (the same mechanism an editable install uses).
"""

from __future__ import annotations

import shutil
import site
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "build" / "gen"
BIN = Path(sys.executable).parent


def main() -> int:
    files = sorted(PROTOS.rglob("*.proto"))
    if not files:
        print("no .proto files under protos/", file=sys.stderr)
        return 1
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    include = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--mypy_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        *[str(f) for f in files],
    ]
    rc = protoc.main(args)
    if rc != 0:
        print(f"protoc failed with exit code {rc}", file=sys.stderr)
        return rc
    for d in [OUT / "hongling", *(p for p in (OUT / "hongling").rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    (OUT / "hongling" / "py.typed").touch()
    pth = Path(site.getsitepackages()[0]) / "hongling-protos.pth"
    pth.write_text(f"{OUT}\n", encoding="utf-8")
    print(f"[protos] {len(files)} .proto files -> {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
