"""Repack a wheel without some of its members (and their RECORD lines), to fit a transfer limit.

    python benchmarks/gpu/repack_wheel.py SRC.whl DEST_DIR ray/jars/ ray/rllib/ ...

Writes ``DEST_DIR/<same file name>``: every member whose path starts with one of the given
prefixes is left out, and ``*.dist-info/RECORD`` loses the same paths, so pip installs the
rest as usual. Used for Ray's wheel (75.7 MiB -> about 40 MiB), see docs/benchmarks.md.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path


def repack(src: Path, dest_dir: Path, prefixes: tuple[str, ...]) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    if dest.resolve() == src.resolve():
        raise SystemExit(f"repack_wheel: destination {dest} is the source; pick another folder")

    def dropped(name: str) -> bool:
        return name.startswith(prefixes)

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if dropped(info.filename):
                continue
            data = zin.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(
                    line for line in lines if not dropped(line.split(",", 1)[0])
                ).encode()
            zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return dest


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    src, dest_dir, prefixes = Path(argv[0]), Path(argv[1]), tuple(argv[2:])
    dest = repack(src, dest_dir, prefixes)
    mib = 2**20
    print(f"{src.name}: {src.stat().st_size / mib:.1f} MiB -> {dest.stat().st_size / mib:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
