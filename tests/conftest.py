import os
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="Chromium and chromedriver are not installed (bash ci/system-packages.sh as root installs them)")


BOOK_FIXTURES = {"smoke_book", "lab_book", "built_book"}
# the files whose tests start kernels, slowest first (benchmarks/tests.md: ~230 s and ~90 s of the ~450 s
# outside the book): started early, they run beside the book's chain instead of after it
SLOW_FILES = ["test_runner.py", "test_failsafe.py", "test_dann.py", "test_pagecheck.py", "test_data.py"]


def pytest_configure(config):
    """Under pytest-xdist, each worker's torch gets its share of the cores, as `nblib run --jobs`
    gives each chapter (`runner`): at torch's default, two workers and the book's chapters beside
    them ran more OpenMP threads than the machine has cores, and threads that wait for a
    descheduled partner spin."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def pytest_collection_modifyitems(items):
    """The smoke book's tests first, then the slowest files. pytest-xdist (pyproject's addopts:
    two workers, one test file at a time, in this order) then gives the book's file, which builds
    the book once, to one worker from the start, while the other runs the longest files first and
    the short ones fill in at the end, on whichever worker is free."""
    def rank(item):
        if BOOK_FIXTURES & set(getattr(item, "fixturenames", ())):
            return -1
        name = item.path.name
        return SLOW_FILES.index(name) if name in SLOW_FILES else len(SLOW_FILES)
    items.sort(key=rank)  # stable: each file's tests keep their order


def _copy_prepared_data(user_cache: Path, cache: Path) -> None:
    """Copies of the data sets that `make setup` prepared (``nblib data``: the tensors, and the
    files taken out of wheels) into the tests' fresh cache, when the user's cache has them: the
    smoke book's chapters and each worker would otherwise prepare them again (MNIST-M alone takes
    ~10 s). Copies, not links, so that no test can alter the user's files; trained models are
    not copied. The tests of preparing data sets use caches of their own, empty."""
    for folder in ("data", "raw"):
        if (user_cache / folder).is_dir() and user_cache.resolve() != cache.resolve():
            shutil.copytree(user_cache / folder, cache / folder, dirs_exist_ok=True)


@pytest.fixture(scope="session", autouse=True)
def isolated_dirs(tmp_path_factory):
    """Tests never touch the user's cache or the book's results: a fresh folder per session
    (with copies of the prepared data sets)."""
    from nblib import config

    base = tmp_path_factory.mktemp("nblib")
    user_cache = config.cache_dir(create=False)
    os.environ["NBLIB_CACHE"] = str(base / "cache")
    _copy_prepared_data(user_cache, config.cache_dir())  # made and marked as nblib's first
    os.environ["NBLIB_ROOT"] = str(base)  # claims recorded by hand land in base/results/interactive
    os.environ.pop("NBLIB_RESULTS", None)
    os.environ.pop("NBLIB_CLAIMS_DIR", None)
    os.environ.pop("NBLIB_DATA", None)
    os.environ.pop("NBLIB_DEVICE", None)
    os.environ["NBLIB_BATCH"] = "1"
    yield base


@pytest.fixture
def smoke(tmp_path, monkeypatch):
    """A chapter set up at smoke, recording its claims in this test's own folder."""
    import nblib
    monkeypatch.setenv("NBLIB_RESULTS", str(tmp_path / "results"))  # no claims left by other tests
    return nblib.setup("test_chapter", "smoke", 0, device="cpu")


@pytest.fixture
def quick(tmp_path, monkeypatch):
    """A chapter set up at quick, recording its claims in this test's own folder."""
    import nblib
    monkeypatch.setenv("NBLIB_RESULTS", str(tmp_path / "results"))
    return nblib.setup("test_chapter", "quick", 0, device="cpu")


@pytest.fixture(scope="session")
def fashion():
    import nblib
    return nblib.load("fashion-mnist")


@pytest.fixture(scope="session")
def classifier():
    """EfficientNet-Lite0 with its ImageNet weights, on the CPU."""
    from nblib import pretrained
    return pretrained.efficientnet_lite0("cpu")


@pytest.fixture(scope="session")
def photos():
    """The 20 labelled ImageNet photos at 224 × 224."""
    from nblib import data
    return data.imagenet_photos(224)


def make_notebook(path: Path, *sources: str) -> Path:
    """A chapter-shaped notebook: a parameters cell, then the given code cells. In a
    ``notebooks/`` folder, the folder above gets a book's ``_toc.yml`` and ``_config.yml``
    when it has none (the `nblib` command works only in a book's folder)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "quick"\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(s) for s in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    if path.parent.name == "notebooks":
        for name, text in [("_toc.yml", "format: jb-book\nroot: book/intro\n"), ("_config.yml", "title: test\n")]:
            if not (path.parent.parent / name).exists():
                (path.parent.parent / name).write_text(text)
    return path


def small_book_fixtures(make_book):
    """The `root` fixture of a module that tests the runner on a small book made by
    `make_book(folder)`: a fresh book per test, or, for a test marked `published`, a copy of
    it after ``nblib run 01`` at smoke ran once for the module (a kernel's start, ~3 s, saved
    per test). Returns (the module-scoped fixture, `root`); bind both in the module."""

    @pytest.fixture(scope="module")
    def _published_once(tmp_path_factory):
        from nblib import runner

        book = make_book(tmp_path_factory.mktemp("published"))
        assert runner.run(book, ["01"], "smoke", 300, False)[0].ok
        return book

    @pytest.fixture
    def root(tmp_path, request):
        if request.node.get_closest_marker("published"):
            shutil.copytree(request.getfixturevalue("_published_once"), tmp_path, dirs_exist_ok=True)
            return tmp_path
        return make_book(tmp_path)

    return _published_once, root


def book_copy(dest: Path) -> Path:
    """A copy of the book's sources (config, toc, pages, stylesheet, chapter notebooks, claims registry) at `dest`."""
    for name in ["_config.yml", "_toc.yml"]:
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "notebooks", dest / "notebooks")
    shutil.copytree(ROOT / "claims", dest / "claims")
    (dest / "book").mkdir()
    for page in (ROOT / "book").glob("*.md"):
        if page.name != "claims.md":
            shutil.copy(page, dest / "book" / page.name)
    shutil.copy(ROOT / "book" / "references.bib", dest / "book" / "references.bib")
    shutil.copytree(ROOT / "book" / "_ext", dest / "book" / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "_static", dest / "_static")  # the book's stylesheet: code wraps at 1280 px
    return dest
