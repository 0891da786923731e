"""Profiles, device choice, seeding and the project's directories.

A profile is the one knob that scales every chapter: ``smoke`` (seconds, for pytest),
``quick`` (the book on a 2-core laptop CPU, claims asserted) and ``full`` (paper scale,
on a GPU).
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads only when a chapter needs it, so `nblib --help` answers at once
    import torch

PROFILES = ("smoke", "quick", "full")
DEBIAN_DATASETS = Path("/usr/share/datasets")  # Debian's data packages (dataset-fashion-mnist)
ASSERTING_PROFILES = ("quick", "full")


def check_profile(profile: str) -> str:
    """Return `profile` if it is known, else raise a ValueError listing the valid ones."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    return profile


def pick_device(preferred: str | None = None) -> torch.device:
    """CUDA > MPS > CPU; ``preferred``, ``$NBLIB_DEVICE`` or the device given to `setup`
    overrides. A device this machine does not have is a ValueError naming where it came from."""
    import torch

    if preferred:
        return checked_device(preferred, "device")
    if os.environ.get("NBLIB_DEVICE"):
        return checked_device(os.environ["NBLIB_DEVICE"], "$NBLIB_DEVICE")
    if _current is not None:  # the device `setup` chose for the running chapter
        return _current.device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def checked_device(name, origin: str = "device") -> torch.device:
    """``torch.device(name)`` if this machine has it, else a ValueError that names `origin`
    (the argument or variable it came from) and the devices there are."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{origin}={name!r} is not a device ({error}); use cpu, cuda, cuda:N or mps") from None
    have = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())] + (
        ["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])
    missing = ((device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count())
               or (device.type == "mps" and "mps" not in have))
    if missing:
        raise ValueError(f"{origin}={name!r}, but this machine has no such device (it has {', '.join(have)})")
    return device


def check_seed(seed) -> int:
    """`seed` if it is an int in [0, 2³²) (NumPy's range), else TypeError or ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    return seed


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file beside `path`, flush it to disk, then rename it
    onto `path`: an interrupted write or a crash never leaves a half-written file, and the
    temporary file is removed. The file gets the mode the umask gives any new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from the group
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def project_root() -> Path:
    """The book's root: ``$NBLIB_ROOT``, else the folder holding ``_toc.yml`` above this
    package or the working directory, else the working directory."""
    if os.environ.get("NBLIB_ROOT"):
        return Path(os.environ["NBLIB_ROOT"]).resolve()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "_toc.yml").exists():
                return folder
    return Path.cwd().resolve()


CACHE_MARKER = ".nblib-cache"


def cache_dir(create: bool = True) -> Path:
    """Trained models and prepared data tensors: ``$NBLIB_CACHE`` or ``~/.cache/nblib``.
    A folder nblib makes (or finds empty) is marked as its own, so that ``nblib clean
    --cache`` never deletes a folder someone else filled."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nblib"
    path = Path(os.environ.get("NBLIB_CACHE") or default)
    if create and not (path / CACHE_MARKER).exists():
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"the cache folder {path} ($NBLIB_CACHE) is a file")
        path.mkdir(parents=True, exist_ok=True)
        if not any(path.iterdir()):
            (path / CACHE_MARKER).write_text("made by nblib; `nblib clean --cache` may delete this folder\n")
    return path



PATH_VARIABLES = ("NBLIB_ROOT", "NBLIB_RESULTS", "NBLIB_CACHE", "NBLIB_DATA")


def absolute_paths(env: dict) -> dict:
    """`env` with the folders nblib reads from it (`PATH_VARIABLES`) made absolute, relative
    to the working directory now: a chapter's kernel runs in ``notebooks/``, where a relative
    ``$NBLIB_RESULTS`` would name another folder."""
    return env | {name: os.path.abspath(env[name]) for name in PATH_VARIABLES if env.get(name)}


def is_book(root: Path) -> bool:
    """Whether `root` is this book's folder: ``_toc.yml``, ``_config.yml`` and chapter notebooks."""
    return ((root / "_toc.yml").is_file() and (root / "_config.yml").is_file()
            and any((root / "notebooks").glob("[0-9][0-9]_*.ipynb")))


def data_dir() -> Path | None:
    """A folder of raw data sets the user provides (``$NBLIB_DATA``), or None."""
    path = os.environ.get("NBLIB_DATA")
    return Path(path) if path else None


def results_dir(root: Path | None = None) -> Path:
    """The published claims, one file per chapter, that `nblib book` reads:
    ``$NBLIB_RESULTS``, else ``results/`` in the book's `root` (default `project_root()`).
    Only `nblib run` writes here."""
    path = Path(os.environ.get("NBLIB_RESULTS") or (root or project_root()) / "results")
    path.mkdir(parents=True, exist_ok=True)
    return path


def claims_dir() -> Path:
    """Where a running chapter records its claims: the staging folder `nblib run` names in
    ``$NBLIB_CLAIMS_DIR``, else (a chapter run by hand, e.g. in JupyterLab)
    ``results_dir()/interactive``, which the book never publishes."""
    staged = os.environ.get("NBLIB_CLAIMS_DIR")
    path = Path(staged) if staged else results_dir() / "interactive"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Setup:
    chapter: str
    profile: str
    seed: int
    device: torch.device

    @property
    def asserts_claims(self) -> bool:
        return self.profile in ASSERTING_PROFILES


_current: Setup | None = None
_data_used: dict[str, dict] = {}


def note_data(provenance: dict) -> None:
    """Remember a data set the running chapter uses (`nblib.data` calls this on load)."""
    _data_used[provenance["name"]] = provenance


def data_used() -> list[dict]:
    """Provenance of every data set the running chapter has loaded or subsampled so far."""
    return list(_data_used.values())


def setup(chapter: str, profile: str = "quick", seed: int = 0, device: str | None = None) -> Setup:
    """Start a chapter: check the profile, pick the device, seed everything, print one line
    (`nblib.setup` also applies the book's figure style).

    The returned object is also remembered, so that `nblib.claims.claim` knows which
    chapter and profile it is recording for.
    """
    import torch

    global _current
    check_profile(profile)
    check_seed(seed)
    _data_used.clear()
    _current = Setup(chapter, profile, seed, pick_device(device))
    seed_everything(seed)
    threads = torch.get_num_threads()
    print(f"{chapter}: profile={profile} seed={seed} device={_current.device} "
          f"torch={torch.__version__} threads={threads}")
    return _current


def current() -> Setup:
    """The Setup of the running chapter (`setup` must have been called)."""
    if _current is None:
        raise RuntimeError("call nblib.setup(chapter, profile, seed) at the top of the notebook first")
    return _current


def interactive() -> bool:
    """True in a live kernel (JupyterLab); False under ``nblib run``, which sets
    ``$NBLIB_BATCH=1`` so that chapters show static figures instead of widgets."""
    return os.environ.get("NBLIB_BATCH") != "1"
