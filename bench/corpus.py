"""A benchmark/precision corpus any machine can build: the Python sources of
pip packages (timm, pytorch-lightning, torchvision, torch).

Wheels are fetched with `pip download --no-deps` (no install, nothing
imported) into a cache directory and their ``.py`` files unpacked once.
"""

import argparse
import glob
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

CACHE = Path(os.environ.get("LINTORCH_BENCH_CACHE", Path.home() / ".cache" / "lintorch-bench"))
# distribution name -> import package directory inside the wheel
PACKAGES = {
    "timm": "timm",
    "pytorch-lightning": "pytorch_lightning",
    "torchvision": "torchvision",
    "torch": "torch",
}
DEFAULT = ("timm", "pytorch-lightning", "torchvision", "torch")


def _wheel_for(dist: str, wheels: Path) -> Path:
    stem = dist.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-*.whl"))
    if found:
        return found[-1]
    local = sorted(glob.glob(f"/opt/wheels/{stem}-*.whl"))  # the offline torch wheel, if present
    if local:
        return Path(local[-1])
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels), dist],
        check=True,
    )
    found = sorted(wheels.glob(f"{stem}-*.whl"))
    if not found:
        raise SystemExit(f"pip download produced no wheel for {dist}")
    return found[-1]


def package_sources(dist: str) -> Path:
    """Directory with the package's .py files, unpacked once."""
    target = CACHE / "src" / dist
    marker = target / ".complete"
    if marker.exists():
        return target / PACKAGES[dist]
    wheel = _wheel_for(dist, CACHE / "wheels")
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith(".py") and name.startswith(PACKAGES[dist] + "/"):
                archive.extract(name, target)
    marker.write_text(wheel.name)
    return target / PACKAGES[dist]


def files(dists=DEFAULT) -> Dict[str, List[Path]]:
    return {dist: sorted(package_sources(dist).rglob("*.py")) for dist in dists}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("packages", nargs="*", default=list(DEFAULT))
    args = parser.parse_args()
    for dist, paths in files(args.packages).items():
        lines = sum(p.read_bytes().count(b"\n") for p in paths)
        print(f"{dist}: {len(paths)} files, {lines} lines under {package_sources(dist)}")


if __name__ == "__main__":
    main()
