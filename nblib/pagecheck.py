"""Load every page of the built book in headless Chromium and report what a reader would
find broken: a page that does not load, an image that did not render, an internal link
that leads nowhere, a JavaScript error, maths left as raw TeX, a block that scrolls sideways
in a laptop's 1280-px window — and, before the build, what
an executed chapter must not show (`output_defects`: raw reprs, warnings, setting names).

The pages are served from a local HTTP server (as a web host would serve them, so that
scripts behave as they do online), to a browser whose network is cut off from every other
host: the book must work offline, so a page that needs a CDN (MathJax from one, say)
shows its formulas as raw TeX, and that is reported. A resource from another host that
fails without consequence (a web font) is not this book's to check.
Needs Debian's ``chromium`` and ``chromium-driver`` (``ci/system-packages.sh``).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

# Records what fails while a page loads, before any of the page's own scripts run.
_RECORDER = """
window.__nblibProblems = [];
window.addEventListener('error', function (e) {
  if (e instanceof ErrorEvent) {
    window.__nblibProblems.push(['script', e.message + ' (' + e.filename + ':' + e.lineno + ')']);
  } else if (e.target && (e.target.src || e.target.href)) {
    window.__nblibProblems.push(['resource', e.target.src || e.target.href]);
  }
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__nblibProblems.push(['script', 'unhandled promise rejection: ' + e.reason]);
});
"""

# Once MathJax has typeset the page (or failed to load), the formulas still shown as raw TeX.
_RAW_TEX = r"""
const done = arguments[arguments.length - 1];
const raw = () => Array.from(document.querySelectorAll('.math')).filter(
  e => !e.querySelector('mjx-container') && /\\\(|\\\[|\$\$/.test(e.textContent)).length;
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
  MathJax.startup.promise.then(() => done(raw()), () => done(raw()));
} else {
  done(raw());
}
"""

# What scrolls sideways in a 1280-px window: the page itself, or a block of the article
# (code, output, a table, an equation) wider than its column. A reader on a laptop should
# never have to scroll sideways to read a line.
_SIDEWAYS = r"""
const out = [];
const doc = document.documentElement;
if (doc.scrollWidth > doc.clientWidth + 1) {
  out.push('the page itself (' + doc.scrollWidth + ' px in a ' + doc.clientWidth + '-px window)');
}
const article = document.querySelector('article') || document.body;
const seen = new Set();
for (const el of article.querySelectorAll('*')) {
  const overflow = getComputedStyle(el).overflowX;
  if ((overflow === 'auto' || overflow === 'scroll') && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
    const text = (el.innerText || '').trim().replace(/\s+/g, ' ').slice(0, 50);
    if (!seen.has(text)) {
      seen.add(text);
      out.push(el.tagName.toLowerCase() + ' ' + el.scrollWidth + ' px in ' + el.clientWidth
               + ' (' + JSON.stringify(text) + ')');
    }
  }
}
return out;
"""

_PAGE_STATE = """
return {
  ready: document.readyState,
  images: Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth]),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  text: document.body ? document.body.innerText.length : 0,
  problems: window.__nblibProblems || [],
};
"""


# What a reader must never see in a chapter's outputs (a plain-text result, or printed text):
# the page shows prose, tables and figures. Printed to stderr is not checked: the book
# removes it (``nb_output_stderr: remove``).
_RAW_OUTPUTS = [
    (re.compile(r"^[\[{(]"), "a raw list, dict or tuple"),
    (re.compile(r"^(True|False|None)$"), "a bare True/False/None"),
    (re.compile(r"\bnp\.(float|int|bool_)\w*\("), "a NumPy scalar's repr"),
    (re.compile(r"(^|\n)(Name: .*, )?dtype: \w+$"), "a pandas Series footer (Name/dtype)"),
    (re.compile(r"^<[\w.]+ object at 0x"), "an object's repr"),
]
_PRINTED = [(re.compile(r"\w+Warning\b"), "a warning"), (re.compile(r"\d+%\|"), "a progress bar")]
# a setting's name where its number belongs: S["epochs"], S['sweep'], and in prose a
# constant the notebook assigns (`NOISE_LEVEL = 0.15`) named as `NOISE_LEVEL`
_PARAMETER_NAME = re.compile(r"""\bS\[["'][\w-]+["']\]""")
_CONSTANT = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=", re.MULTILINE)
_BACKTICKED = re.compile(r"`([A-Z][A-Z0-9_]*)`")
# a table cell (or row label) that shows a missing value or a flag as Python prints it
_RAW_CELL = re.compile(r"<t[dh][^>]*>\s*(nan%?|NaN%?|NaT|&lt;NA&gt;|None|True|False)\s*</t[dh]>")


def _transparent(png_base64) -> bool:
    """Whether a figure's corner is see-through: on the book's dark theme its black text and
    axes would then stand on a dark page."""
    import base64
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode("".join(png_base64))))
    return "A" in image.getbands() and image.getchannel("A").getpixel((0, 0)) < 255


def output_defects(notebook: dict) -> list[str]:
    """What an executed chapter (a notebook's JSON) would show a reader that it must not:
    raw reprs as results, NaN or True/False in a table's cells, warnings or progress bars
    printed to the page, errors, setting names in prose where their numbers belong, and
    figures with a transparent background (unreadable on the dark theme). One line each,
    naming the cell."""
    problems = []
    code_cells = 0
    constants = {name for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"
                 for name in _CONSTANT.findall("".join(cell.get("source", "")))}

    def names_in(text: str) -> list[str]:
        return _PARAMETER_NAME.findall(text) + [f"`{n}`" for n in _BACKTICKED.findall(text) if n in constants]

    for cell in notebook.get("cells", []):
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            prose = source.split("Things to try")[0]  # there a setting's name is what the reader edits
            problems += [f"markdown {source.strip()[:40]!r}: the setting name {name} where its number belongs"
                         for name in names_in(prose)]
            continue
        if cell.get("cell_type") != "code" or "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        code_cells += 1
        where = f"code cell {code_cells} ({source.strip().splitlines()[0][:40] if source.strip() else ''!r})"
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "error":
                problems.append(f"{where}: an error ({out.get('ename')})")
            elif kind == "stream" and out.get("name") == "stdout":
                text = "".join(out.get("text", ""))
                problems += [f"{where}: {what} printed on the page" for pattern, what in _PRINTED
                             if pattern.search(text)]
            elif kind in ("execute_result", "display_data"):
                data = out.get("data", {})
                if "image/png" in data and _transparent(data["image/png"]):
                    problems.append(f"{where}: a figure with a transparent background (dark text on the dark "
                                    "theme's page: give it a face colour)")
                shown = "".join(data.get("text/markdown", "")) + "".join(data.get("text/plain", ""))
                problems += [f"{where}: the setting name {name} where its number belongs"
                             for name in names_in(shown)]
                problems += [f"{where}: {value} in a table cell (say what it means: na_rep, a word)"
                             for value in sorted(set(_RAW_CELL.findall("".join(data.get("text/html", "")))))]
                if set(data) == {"text/plain"}:  # no figure, table or rendered text: the repr is the page
                    text = "".join(data["text/plain"]).strip()
                    problems += [f"{where}: {what} as its result ({text[:30]!r})"
                                 for pattern, what in _RAW_OUTPUTS if pattern.search(text)]
    return problems


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed."""


@dataclass
class Problem:
    page: str
    what: str

    def __str__(self) -> str:
        return f"{self.page}: {self.what}"


def pages(html_dir: Path) -> list[Path]:
    """Every HTML page of the built book (not the theme's or Sphinx's static files)."""
    skip = {"_static", "_sources", "_images", "_downloads"}
    return sorted(p for p in html_dir.rglob("*.html") if not skip & set(p.relative_to(html_dir).parts))


def expected_pages(root: Path) -> list[str]:
    """The pages the table of contents promises: ``book/intro.html``, each chapter, …"""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [entry["file"] for entry in part.get("chapters", [])]
    return [f"{Path(f).with_suffix('')}.html" for f in files]


def find_browser() -> tuple[str, str]:
    """Paths of the Chromium binary and of chromedriver, or `BrowserMissing` saying how to install them."""
    browser = next(filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome"])), None)
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        raise BrowserMissing("the page check needs Chromium and chromedriver: install Debian's 'chromium' "
                             "and 'chromium-driver' (bash ci/system-packages.sh as root does), "
                             "or build with 'nblib book --no-page-check'")
    return browser, driver


@contextlib.contextmanager
def _serve(html_dir: Path):
    """An HTTP server for `html_dir` on a free local port, for the duration of the block."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per request would bury the report
        pass


@contextlib.contextmanager
def _chromium():
    """Headless Chromium driven by selenium, with a fresh profile and no background traffic
    (this machine's closed network refuses it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = find_browser()
    with tempfile.TemporaryDirectory(prefix="nblib-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,1024",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline, but for the book
                     f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        try:
            session.set_page_load_timeout(60)
            session.set_script_timeout(30)
            session.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _RECORDER})
            yield session
        finally:
            session.quit()


def _ids(path: Path, cache: dict) -> set[str]:
    """The element ids (and old-style anchor names) of a built page."""
    if path not in cache:
        text = path.read_text(errors="replace") if path.is_file() else ""
        cache[path] = set(re.findall(r'\b(?:id|name)="([^"]+)"', text))
    return cache[path]


def _link_problem(href: str, base: str, html_dir: Path, ids: dict) -> str | None:
    """Why an internal link leads nowhere (None if it leads somewhere)."""
    url = urllib.parse.urlsplit(href)
    if not href.startswith(base):
        return None  # another host, mailto:, javascript: — not ours to check
    target = html_dir / urllib.parse.unquote(url.path[len(urllib.parse.urlsplit(base).path):])
    if target.is_dir():
        target = target / "index.html"
    if not target.exists():
        return f"link to a missing page: {href}"
    fragment = urllib.parse.unquote(url.fragment)
    if fragment and target.suffix == ".html" and fragment not in _ids(target, ids):
        return f"link to a missing anchor: {href}"
    return None


def _wait_for_images(session, timeout: float = 15.0) -> dict:
    """The page's state once it has loaded and every image has finished (or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        state = session.execute_script(_PAGE_STATE)
        settled = state["ready"] == "complete" and all(done for _, done, _ in state["images"])
        if settled or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def check_site(html_dir: Path, required: list[str] = ()) -> list[Problem]:
    """Load every page under `html_dir` in Chromium; the problems a reader would meet.

    `required` lists pages (relative paths) that must exist, e.g. `expected_pages(root)`.
    """
    html_dir = Path(html_dir).resolve()
    if not (html_dir / "index.html").exists():
        raise FileNotFoundError(f"no built book in {html_dir} (index.html missing); run 'nblib book' first")
    problems = [Problem(name, "page missing from the built book") for name in required
                if not (html_dir / name).exists()]
    ids: dict = {}
    with _serve(html_dir) as base, _chromium() as session:
        for page in pages(html_dir):
            name = page.relative_to(html_dir).as_posix()
            try:
                session.get(base + urllib.parse.quote(name))
            except Exception as error:  # a timeout or a crashed tab: the reader gets no page
                problems.append(Problem(name, f"did not load: {str(error).splitlines()[0]}"))
                continue
            state = _wait_for_images(session)
            if state["text"] == 0:
                problems.append(Problem(name, "page is empty"))
            for src, done, width in state["images"]:
                if not done or width == 0:
                    problems.append(Problem(name, f"image did not render: {src}"))
            raw = session.execute_async_script(_RAW_TEX)
            if raw:
                problems.append(Problem(name, f"{raw} formula(s) shown as raw TeX: MathJax did not typeset them "
                                              "(it must load from the book itself, not a CDN)"))
            for what in session.execute_script(_SIDEWAYS):
                problems.append(Problem(name, f"scrolls sideways at 1280 px: {what}"))
            for kind, what in state["problems"]:
                if kind == "script":
                    problems.append(Problem(name, f"JavaScript error: {what}"))
                elif what.startswith(base) and what not in {src for src, _, _ in state["images"]}:
                    problems.append(Problem(name, f"resource did not load: {what}"))  # images: above
            for href in sorted(set(state["links"])):
                why = _link_problem(href, base, html_dir, ids)
                if why:
                    problems.append(Problem(name, why))
    for problem in problems:  # the server's port changes from run to run; the paths are what matter
        problem.what = problem.what.replace(base, "/")
    return problems
