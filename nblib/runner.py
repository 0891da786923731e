"""Execute chapter notebooks with papermill, and build the book from the executed copies.

Each chapter runs in its own papermill process under a wall-clock limit. Output goes to a
hidden temporary file that is renamed into ``book/chapters/`` only when the chapter
succeeded; a failed chapter is kept as ``<chapter>.failed.ipynb`` (error visible) and
blocks ``nblib book`` until it passes, so a broken chapter is never published silently.

However a run ends — a failed cell, Ctrl-C, SIGTERM or SIGHUP (CI cancelling, `timeout`),
the wall-clock limit — papermill and the kernel (which runs in a session of its own) are
killed, temporary files are removed, and the last good notebook and claims stay. One run
at a time per checkout: a second `nblib run` or `nblib book` refuses while one is running.

A run killed outright (SIGKILL, the OOM killer) cannot clean up after itself, so nothing it
leaves can reach a later run: papermill dies with its runner (Linux's parent-death
signal) and the kernel with papermill (ipykernel's parent poller); the lock file records
the processes each run started, and the next run kills any still alive; every run stages
its claims and the kernels' connection files in a folder of its own, removed by the next.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import claims, config, ledger


class Stopped(KeyboardInterrupt):
    """`nblib run` received SIGTERM or SIGHUP: stop as Ctrl-C does."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class Busy(RuntimeError):
    """Another `nblib run` or `nblib book` holds this checkout."""


@dataclass
class Result:
    chapter: str
    ok: bool
    seconds: float
    passed: int = 0
    failed: int = 0
    error: str = ""
    unchanged: bool = False  # not executed: nothing that made its published copy changed


def notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def resolve(root: Path, names: list[str]) -> list[Path]:
    """Chapter notebooks for names like ``01`` or ``01_function_fitting`` (all if none),
    in the order given, each once."""
    every = notebooks(root)
    if not every:
        raise ValueError(f"no chapters in {root / 'notebooks'} (looked for NN_name.ipynb); "
                         "is --root the book's folder?")
    if not names:
        return every
    chosen = {}  # an ordered set
    for name in names:
        stem = Path(name).stem
        match = [nb for nb in every if nb.stem == stem or nb.stem.split("_", 1)[0] == stem]
        if not match:
            raise ValueError(f"unknown chapter {name!r}; valid chapters: {', '.join(nb.stem for nb in every)}")
        chosen.update(dict.fromkeys(match))
    return list(chosen)


@dataclass
class RunLock:
    """This checkout's run lock, held: the lock file says which run holds it and which
    processes it started, so that the next run can kill them if this one dies."""

    file: object
    started: dict = field(default_factory=dict)  # pid → create time

    def _write(self) -> None:
        self.file.seek(0)
        self.file.truncate(0)
        self.file.write(json.dumps({"pid": os.getpid(), "since": time.strftime("%H:%M:%S"),
                                    "started": [[pid, t] for pid, t in self.started.items()]}))
        self.file.flush()

    def record(self, proc: subprocess.Popen) -> None:
        """Add papermill (`proc`) and its descendants (the kernel) to the processes on record."""
        import psutil

        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        new = {}
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.pid not in self.started:
                    new[p.pid] = p.create_time()
        if new:
            self.started |= new
            self._write()


def _holder(text: str) -> str:
    """'pid 123, since 10:04' from a lock file's contents."""
    try:
        held = json.loads(text)
        return f"pid {held['pid']}, since {held['since']}"
    except (ValueError, TypeError, KeyError):
        return text.strip() or "pid unknown"


def _kill_leftovers(text: str) -> list[int]:
    """Kill the processes a dead run recorded in the lock file that are still alive (a pid
    counts as the same process only with the same start time); return their pids."""
    import psutil

    try:  # a lock file from an older nblib, or damaged: nothing on record
        started = [(int(pid), float(t)) for pid, t in json.loads(text).get("started", [])]
    except (ValueError, TypeError, AttributeError):
        return []
    killed = []
    for pid, create_time in started:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process = psutil.Process(pid)
            if abs(process.create_time() - create_time) < 0.01 and process.status() != psutil.STATUS_ZOMBIE:
                process.kill()
                killed.append(process)
    psutil.wait_procs(killed, timeout=10)
    return [p.pid for p in killed]


@contextlib.contextmanager
def exclusive(root: Path):
    """Hold this checkout's run lock (released by the OS if the process dies) and yield a
    `RunLock`, or raise Busy. Processes left running by a run that died are killed first."""
    lock = config.results_dir(root) / ".run.lock"
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise Busy(f"another nblib run or book is working in {root} ({_holder(f.read())}); "
                       "wait for it to finish, or stop it") from None
        f.seek(0)
        killed = _kill_leftovers(f.read())
        if killed:
            print(f"stopped {len(killed)} process(es) left running by an earlier run that was killed "
                  f"(pid {', '.join(map(str, killed))})", flush=True)
        held = RunLock(f)
        held._write()
        try:
            yield held
        finally:
            f.seek(0)
            f.truncate(0)


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGTERM and SIGHUP into `Stopped` in the main thread, so that they end a run
    the way Ctrl-C does (children killed, temporary files removed)."""
    def stop(signum, frame):
        raise Stopped(signum)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT, SIGTERM and SIGHUP until the block is done (they are delivered after)."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _kill_tree(proc: subprocess.Popen) -> str:
    """Kill papermill, its process group and every descendant (the kernel runs in a
    session of its own, so the group alone would leave it running); reap papermill and
    return what it printed."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(family, timeout=10)
    return proc.communicate()[0] or ""


def _remove_stale_files(root: Path) -> None:
    """Temporary notebooks and the staging folders (claims, kernel connection files) of
    runs that were killed outright (SIGKILL, power loss); called with the lock held, after
    the processes those runs left were killed, so no live run owns them."""
    for leftover in [*(root / "book" / "chapters").glob(".*.running.ipynb"),
                     *config.results_dir(root).glob("seed-*/chapters/.*.running.ipynb")]:
        leftover.unlink(missing_ok=True)
    for leftover in _staging_root(root).glob("*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)


def _staging_root(root: Path) -> Path:
    return config.results_dir(root) / ".staging"


@contextlib.contextmanager
def staging_folder(root: Path):
    """A folder of this run's own under ``results/.staging/`` for the claims its chapters
    record and their kernels' connection files, removed when the run ends: a kernel left
    over from a killed run writes only into its own run's folder, never into this one's."""
    folder = _staging_root(root) / f"run-{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _die_with_parent(parent: int) -> Callable[[], None]:
    """For `Popen(preexec_fn=...)`: on Linux the child gets SIGKILL when `parent` dies, even
    by SIGKILL (prctl PR_SET_PDEATHSIG), so papermill never outlives its runner."""
    def arm():
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the runner died before the signal was armed
                os._exit(1)
    return arm


def environment_fingerprint() -> str:
    """A hash of what every chapter's results depend on besides its notebook: nblib's code,
    the installed packages and their versions, the data sources (the files of
    ``$NBLIB_DATA``, Debian's Fashion-MNIST and the copies taken out of wheels, by path,
    size and modification time) and ``$NBLIB_DEVICE``."""
    from importlib import metadata

    h = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        h.update(f"{path.relative_to(package)}\n".encode() + path.read_bytes())
    metadatas = (d.metadata for d in metadata.distributions())  # parsed anew at each access of .metadata
    versions = sorted(f"{m['Name']}=={m['Version']}" for m in metadatas if m["Name"])
    h.update("\n".join(versions).encode())
    folders = [config.data_dir(), config.DEBIAN_DATASETS / "fashion-mnist", config.cache_dir(create=False) / "raw"]
    for folder in filter(None, folders):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file():
                stat = path.stat()
                h.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    h.update(f"device={os.environ.get('NBLIB_DEVICE', '')}".encode())
    return h.hexdigest()


def chapter_key(notebook: Path, profile: str, environment: str, seed: int = 0) -> str:
    """What made a chapter's published copy: its notebook, its claims registry, the profile,
    the seed and the environment (`environment_fingerprint`). A chapter whose key has not
    changed is not run again."""
    registry = claims.registry_file(notebook.stem, notebook.parent.parent)
    registered = registry.read_bytes() if registry.exists() else b""
    settings = f"\n{profile}\n{seed}\n{environment}".encode()
    return hashlib.sha256(notebook.read_bytes() + registered + settings).hexdigest()


def published(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Where a run at chapter seed `seed` publishes: the folder of executed chapters and the
    folder of claims (with keys and timings). Seed 0's are the book's (``book/chapters/``,
    `config.results_dir`); another seed's are kept apart, in ``results/seed-<N>/``."""
    results = config.results_dir(root)
    if seed == 0:
        return root / "book" / "chapters", results
    return results / f"seed-{seed}" / "chapters", results / f"seed-{seed}"


def _key_file(root: Path, chapter: str, seed: int = 0) -> Path:
    return published(root, seed)[1] / f"{chapter}.key"


def _unchanged(root: Path, notebook: Path, key: str, seed: int = 0) -> bool:
    """Whether the chapter's published notebook and claims were made under `key` and are all there."""
    chapters = published(root, seed)[0]
    key_file = _key_file(root, notebook.stem, seed)
    return (all(p.exists() for p in (chapters / f"{notebook.stem}.ipynb", key_file))
            and not (chapters / f"{notebook.stem}.failed.ipynb").exists() and key_file.read_text().strip() == key)


def _first_error(notebook: Path) -> tuple[str, bool]:
    """'code cell N: Error: message' for the first cell with an error output (or still
    running), and whether that says what went wrong (an error output does; a cell that
    was still running, or a notebook without one, leaves the cause to papermill's log)."""
    try:
        nb = json.loads(notebook.read_text())
    except (OSError, ValueError):
        return "no output notebook was written", False
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"
                  and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for i, cell in enumerate(code_cells, 1):
        first_line = "".join(cell["source"]).strip().split("\n")[0][:60]
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"code cell {i} ({first_line!r}): {out['ename']}: {out['evalue']}", True
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
            return f"code cell {i} ({first_line!r}) was still running", False
    return "papermill failed before any cell ran", False


def kernel_env(staging: Path, root: Path, interactive: bool = False) -> dict:
    """The environment of the chapter's kernel: this Python first on PATH (so the
    ``python3`` kernelspec resolves to it), the book's `root` (whose claims registry the
    chapter reads), batch mode unless `interactive` (the branch a JupyterLab reader runs:
    explorers as widgets), where to record claims, and the run's
    own temporary folder (``TMPDIR``: the kernel's connection file, the chapter's temporary
    files), removed with the run's staging folder even when a kernel was killed."""
    env = config.absolute_paths(dict(os.environ))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NBLIB_ROOT"] = str(root.resolve())
    env.pop("NBLIB_BATCH", None)
    if not interactive:
        env["NBLIB_BATCH"] = "1"
    env["NBLIB_CLAIMS_DIR"] = str(staging)
    env["TMPDIR"] = env["JUPYTER_RUNTIME_DIR"] = str(staging / "tmp")
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return env


def _wait(proc: subprocess.Popen, timeout: float, lock: RunLock | None) -> str:
    """papermill's output once it ends, recording its processes in `lock` as they start;
    `subprocess.TimeoutExpired` after `timeout` seconds."""
    deadline = time.perf_counter() + timeout
    while True:
        if lock is not None:
            lock.record(proc)
        try:
            return proc.communicate(timeout=max(0.0, min(1.0, deadline - time.perf_counter())))[0] or ""
        except subprocess.TimeoutExpired:
            if time.perf_counter() >= deadline:
                raise


@dataclass
class _Launched:
    """A chapter's papermill process and the files it writes and publishes."""

    notebook: Path
    proc: subprocess.Popen
    staging: Path
    tmp: Path  # the notebook as it executes
    final: Path
    failed: Path
    seed: int
    key: str | None
    start: float
    log: Path | None = None  # papermill's output, when it goes to a file (chapters side by side)


def _launch(notebook: Path, root: Path, profile: str, staging: Path, interactive: bool = False,
            key: str | None = None, seed: int = 0, env: dict | None = None, log: Path | None = None) -> _Launched:
    """Start papermill on one chapter, its claims recorded in `staging`; `env` adds to the
    kernel's environment; papermill's output goes to `log` (a pipe when None)."""
    out_dir = published(root, seed)[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in staging.glob("*.json"):
        leftover.unlink()
    (staging / "tmp").mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{notebook.stem}.running.ipynb"
    command = [sys.executable, "-m", "nblib._papermill", str(notebook), str(tmp), "-p", "profile", profile,
               "-p", "seed", str(config.check_seed(seed)), "-k", "python3", "--cwd", str(notebook.parent),
               "--no-progress-bar"]
    stdout = subprocess.PIPE if log is None else open(log, "w")  # noqa: SIM115 (closed once Popen has it)
    try:
        proc = subprocess.Popen(command, env=kernel_env(staging, root, interactive) | (env or {}), stdout=stdout,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                preexec_fn=_die_with_parent(os.getpid()))
    finally:
        if log is not None:
            stdout.close()
    return _Launched(notebook, proc, staging, tmp, out_dir / f"{notebook.stem}.ipynb",
                     out_dir / f"{notebook.stem}.failed.ipynb", seed, key, time.perf_counter(), log=log)


def _finish(root: Path, profile: str, run: _Launched, log: str, error: str, cause_known: bool) -> Result:
    """Publish a chapter that ended (its notebook, claims and key together, only when it
    succeeded; else keep it as ``.failed.ipynb``) and say how it went."""
    notebook, staging, seed = run.notebook, run.staging, run.seed
    tmp, final, failed = run.tmp, run.final, run.failed
    staged, recorded = staging / f"{notebook.stem}.json", published(root, seed)[1] / f"{notebook.stem}.json"
    seconds = time.perf_counter() - run.start
    try:
        records = claims.read_file(staged)
    except claims.ClaimsFileCorrupt as corrupt:  # written by the chapter's own kernel: its failure
        records, error = [], error or f"its claims could not be read back: {corrupt}"
    if not error and not records and config.check_profile(profile) in config.ASSERTING_PROFILES:
        error = (f"recorded no claims under its own name: does its nblib.setup() say {notebook.stem!r}? "
                 f"(claims recorded under other names are not published)")
    if not error:
        _one_parameters_cell(tmp)
        with _signals_held():  # the notebook, its claims and its key are published together or not at all
            _key_file(root, notebook.stem, seed).unlink(missing_ok=True)
            os.replace(tmp, final)
            failed.unlink(missing_ok=True)
            if staged.exists():
                os.replace(staged, recorded)
            else:
                recorded.unlink(missing_ok=True)
            if run.key is not None:
                _key_file(root, notebook.stem, seed).write_text(run.key + "\n")
    elif tmp.exists():  # a failed chapter blocks `nblib book` until it passes
        os.replace(tmp, failed)
    else:
        failed.write_text(json.dumps({"error": error}))
    if error and seed != 0 and records:  # a replicate's verdicts count, held or not (`compare`)
        _key_file(root, notebook.stem, seed).unlink(missing_ok=True)
        os.replace(staged, recorded)
    if error and not cause_known and "DeadKernelError" in log:  # no cell could say why: say what happened
        error = f"the kernel died (a crash, os._exit or the OOM killer), not an error in the code: {error}"
    if error and log and not cause_known:
        error += "\n" + log[-2000:]
    passed = sum(r["passed"] for r in records)
    return Result(notebook.stem, not error, seconds, passed, len(records) - passed, error)


def _one_parameters_cell(executed: Path) -> None:
    """Show the page one parameters cell: the values the chapter ran with (papermill's
    injected cell), the notebook's defaults hidden (tagged ``remove-cell``)."""
    nb = json.loads(executed.read_text())
    cells = nb.get("cells", [])
    if not any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells):
        return
    for cell in cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    executed.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _outcome(run: _Launched) -> tuple[str, bool]:
    """The error of a papermill that ended ('' when it succeeded) and whether it says why."""
    if run.proc.returncode == 0:
        return "", True
    error, cause_known = _first_error(run.tmp)
    if run.proc.returncode < 0:  # e.g. the OOM killer: papermill had no chance to say why
        error += f"; papermill was killed by {signal.Signals(-run.proc.returncode).name}"
    return error, cause_known


_NEVER_STARTED = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")


def _never_started(error: str, log: str) -> bool:
    """Whether a chapter failed because its kernel never came up (it ran no cell): a
    start-up race between kernels launched side by side, worth one more try."""
    return bool(error) and any(sign in log for sign in _NEVER_STARTED)


def run_chapter(notebook: Path, root: Path, profile: str, timeout: float, interactive: bool = False,
                staging: Path | None = None, lock: RunLock | None = None, key: str | None = None,
                seed: int = 0) -> Result:
    """Execute one chapter at chapter seed `seed` into ``<root>/book/chapters/`` (another
    seed: `published`); never leaves a partial file there.

    The executed notebook and its claims (recorded in the run's `staging` folder while it
    runs; a fresh one when not given) replace the previous ones together, and only when
    the chapter succeeded: after a failure or an interruption the last good notebook and
    its claims stay as they were. `lock` records the processes it starts; `key`
    (`chapter_key`) is published with them, so that an unchanged chapter is not run again.
    A kernel that never started (`_never_started`) gets one more try."""
    if staging is None:
        with staging_folder(root) as staging:
            return run_chapter(notebook, root, profile, timeout, interactive, staging, lock, key, seed)
    for attempt in range(2):
        run = _launch(notebook, root, profile, staging, interactive, key, seed)
        try:
            log = _wait(run.proc, timeout, lock)
            error, cause_known = _outcome(run)
        except subprocess.TimeoutExpired:
            log = _kill_tree(run.proc)
            error, cause_known = f"timed out after {timeout:.0f} s; {_first_error(run.tmp)[0]}", True
        except BaseException:  # Ctrl-C, SIGTERM, SIGHUP: stop the kernel, leave nothing half-written
            _kill_tree(run.proc)
            run.tmp.unlink(missing_ok=True)
            raise
        if attempt == 0 and _never_started(error, log):
            print(f"  {notebook.stem}: its kernel did not start; trying once more", flush=True)
            continue
        return _finish(root, profile, run, log, error, cause_known)


def _job_environments(jobs: int) -> list[dict]:
    """Each of `jobs` side-by-side chapters' share of the machine: its CPU threads (the
    cores divided between them), and on a machine with several GPUs a GPU of its own
    (``CUDA_VISIBLE_DEVICES``; shared round-robin when there are fewer GPUs than jobs)."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [g.strip() for g in visible.split(",") if g.strip()]
    else:
        import torch  # only here: counting the GPUs needs it

        gpus = [str(i) for i in range(torch.cuda.device_count())]
    envs = []
    for slot in range(jobs):
        env = {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        if len(gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        envs.append(env)
    return envs


def _side_by_side(root: Path, chosen: list[tuple[Path, str]], profile: str, timeout: float, keep_going: bool,
                  seed: int, jobs: int, lock: RunLock, staging: Path, done: Callable[[Result], None],
                  interactive: bool = False) -> None:
    """Run `chosen` (notebook, key) pairs up to `jobs` at a time, each in its own kernel and
    staging folder, publishing each as it ends (`done` is told); after a failure no new
    chapter starts unless `keep_going`; a kernel that never started gets one more try.
    Interrupted, every running chapter is killed and nothing half-written stays."""
    envs, pending, running, retried = _job_environments(jobs), list(chosen), {}, set()
    stop_starting = False
    try:
        while running or (pending and not stop_starting):
            for slot in range(jobs):
                if slot in running or not pending or stop_starting:
                    continue
                notebook, key = pending.pop(0)
                folder = staging / f"job-{slot}"
                folder.mkdir(exist_ok=True)
                print(f"running {notebook.stem} (profile={profile}{f', seed={seed}' if seed else ''}; "
                      f"job {slot + 1} of {jobs}) ...", flush=True)
                running[slot] = _launch(notebook, root, profile, folder, interactive, key, seed, envs[slot],
                                        log=folder / "papermill.log")
            time.sleep(0.2)
            for slot, run in list(running.items()):
                lock.record(run.proc)
                if run.proc.poll() is None and time.perf_counter() - run.start < timeout:
                    continue
                if run.proc.returncode is None:  # past its limit
                    _kill_tree(run.proc)
                    error, cause_known = f"timed out after {timeout:.0f} s; {_first_error(run.tmp)[0]}", True
                else:
                    error, cause_known = _outcome(run)
                log = run.log.read_text(errors="replace")
                if _never_started(error, log) and run.notebook not in retried:
                    print(f"  {run.notebook.stem}: its kernel did not start; trying once more", flush=True)
                    retried.add(run.notebook)
                    running[slot] = _launch(run.notebook, root, profile, run.staging, interactive, run.key, seed,
                                            envs[slot], log=run.log)
                    continue
                del running[slot]
                result = _finish(root, profile, run, log, error, cause_known)
                done(result)
                stop_starting = stop_starting or (not result.ok and not keep_going)
    except BaseException:  # Ctrl-C, SIGTERM, SIGHUP: stop every kernel, leave nothing half-written
        for run in running.values():
            _kill_tree(run.proc)
            run.tmp.unlink(missing_ok=True)
        raise


def run(root: Path, names: list[str], profile: str, timeout: float, keep_going: bool,
        force: bool = False, seed: int = 0, jobs: int = 1, interactive: bool = False,
        record: bool = False) -> list[Result]:
    """Run the chosen chapters at chapter seed `seed` (another than 0 publishes apart from
    the book: `published`), up to `jobs` side by side (`_side_by_side`), else in order,
    in batch mode or as in JupyterLab (`interactive`: `kernel_env`; always run);
    stop starting chapters after the first failure unless `keep_going`. A chapter whose
    notebook, profile and environment (`chapter_key`) are those its published copy was
    made with is reported "unchanged" and not run, unless `force`. A chapter that succeeds at
    `full`, or at any profile with `record`, is kept in the ledger (`ledger.record`)."""
    config.check_profile(profile)
    config.check_seed(seed)
    if not timeout > 0:
        raise ValueError(f"--timeout must be a positive number of seconds, not {timeout}")
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"--jobs must be a whole number ≥ 1, not {jobs}")
    chosen = resolve(root, names)
    results = []
    # what the ledger records is what ran: the chapters' sources and the commit as they start
    began = ledger.git_commit(root), {nb.stem: ledger.source_hash(root, nb.stem) for nb in chosen}

    def done(result: Result) -> None:
        results.append(result)
        _record_timing(published(root, seed)[1], result, profile)
        if result.ok and seed == 0 and (record or profile == "full"):
            entry = ledger.record(root, result.chapter, profile, result.seconds, source=began[1][result.chapter],
                                  commit=began[0])
            if entry is not None:
                print(f"  recorded in {entry.relative_to(root)}", flush=True)
        status = "ok" if result.ok else f"FAILED: {result.error}"
        print(f"  {result.chapter}: {status} ({result.seconds:.0f} s, claims {result.passed} passed, "
              f"{result.failed} failed)", flush=True)

    with exclusive(root) as lock, stop_on_signals():
        _remove_stale_files(root)
        environment = environment_fingerprint()
        to_run = []
        for notebook in chosen:
            key = chapter_key(notebook, profile, environment, seed)
            if not force and not interactive and _unchanged(root, notebook, key, seed):
                records = claims.read_file(published(root, seed)[1] / f"{notebook.stem}.json")
                passed = sum(r["passed"] for r in records)
                results.append(Result(notebook.stem, True, 0.0, passed, len(records) - passed, unchanged=True))
                print(f"{notebook.stem}: unchanged since its last run (profile={profile}); not run again",
                      flush=True)
            else:
                to_run.append((notebook, key))
        with staging_folder(root) as staging:
            if jobs > 1 and len(to_run) > 1:
                _side_by_side(root, to_run, profile, timeout, keep_going, seed, min(jobs, len(to_run)), lock,
                              staging, done, interactive)
            else:
                for notebook, key in to_run:
                    print(f"running {notebook.stem} (profile={profile}{f', seed={seed}' if seed else ''}) ...",
                          flush=True)
                    done(run_chapter(notebook, root, profile, timeout, interactive, staging, lock, key, seed))
                    if not results[-1].ok and not keep_going:
                        break
    order = {nb.stem: i for i, nb in enumerate(chosen)}
    results.sort(key=lambda r: order[r.chapter])
    print(summary_table(results))
    return results


def merge(root: Path, sources: list[Path]) -> list[str]:
    """Bring chapters executed elsewhere into this book: each source is a folder laid out as
    a book's (``book/chapters/<chapter>.ipynb``, ``results/<chapter>.json`` and ``.key``,
    ``results/timings.json``) — another checkout, or one CI job's artifact. Every chapter
    found replaces this book's copy, all of them together or none; refused when a source
    holds a failed chapter, one this book does not have, a chapter another source also
    holds, unreadable claims, or nothing. Returns the chapters merged, in book order."""
    if not sources:
        raise ValueError("give at least one folder to merge from")
    stems = [nb.stem for nb in notebooks(root)]
    found: dict[str, Path] = {}
    for source in sources:
        chapters = source / "book" / "chapters"
        if not source.is_dir():
            raise ValueError(f"{source} is not a folder")
        executed = sorted(chapters.glob("[0-9][0-9]_*.ipynb")) if chapters.is_dir() else []
        if not executed:
            raise ValueError(f"{source} holds no executed chapter (looked for {chapters}/NN_name.ipynb)")
        for path in executed:
            stem = path.name.removesuffix(".ipynb").removesuffix(".failed")
            if stem not in stems:
                raise ValueError(f"{path} is not a chapter of this book (its chapters: {', '.join(stems)})")
            if path.name.endswith(".failed.ipynb"):
                raise RuntimeError(f"{stem} failed in {source} ({path}); run it again there before merging")
            if stem in found:
                raise ValueError(f"{stem} is in both {found[stem]} and {source}: merge one of them")
            try:
                json.loads(path.read_text())
                claims.read_file(source / "results" / f"{stem}.json")
            except (ValueError, claims.ClaimsFileCorrupt) as error:
                raise RuntimeError(f"{stem} from {source} cannot be read: {error}") from None
            found[stem] = source
    out_dir, results = published(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(root):
        copies = []  # (temporary copy beside its destination, destination); absent sources remove theirs
        try:
            for stem, source in found.items():
                for src, dest in [(source / "book" / "chapters" / f"{stem}.ipynb", out_dir / f"{stem}.ipynb"),
                                  *((source / "results" / f"{stem}{suffix}", results / f"{stem}{suffix}")
                                    for suffix in (".json", ".key"))]:
                    tmp = dest.with_name(f".{dest.name}.merging")
                    if src.exists():
                        shutil.copyfile(src, tmp)
                    copies.append((tmp if src.exists() else None, dest))
            with _signals_held():
                for tmp, dest in copies:
                    if tmp is None:
                        dest.unlink(missing_ok=True)
                    else:
                        os.replace(tmp, dest)
                for stem in found:
                    (out_dir / f"{stem}.failed.ipynb").unlink(missing_ok=True)
        finally:
            for tmp, _ in copies:
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
        timings = _read_json(results / TIMINGS)
        for stem, source in found.items():
            if stem in (theirs := _read_json(source / "results" / TIMINGS)):
                timings[stem] = theirs[stem]
        config.write_atomic(results / TIMINGS, lambda tmp: Path(tmp).write_text(json.dumps(timings, indent=1)))
    return [stem for stem in stems if stem in found]


def _read_json(path: Path) -> dict:
    """A small bookkeeping file, or {} when it is absent or unreadable (it is only a record:
    a damaged one is started afresh, never a reason to stop)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _record_timing(results: Path, result: Result, profile: str) -> None:
    """Remember how long the chapter's last run took, for the report `nblib book` prints."""
    path = results / TIMINGS
    timings = _read_json(path) | {result.chapter: {"seconds": round(result.seconds, 1), "profile": profile,
                                                   "ok": result.ok}}
    config.write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(timings, indent=1)))


TIMINGS = "timings.json"  # in the results folder, beside the claims
LAST_BUILD = "last-book-claims.json"  # in the cache folder: outside git, kept across fresh clones


def build_report(root: Path) -> str:
    """One table for a maintainer: each chapter's seconds (its last run) and claims passed
    and failed, then every claim whose value or verdict changed since the last build on
    this machine (old → new). Remembers this build's values for the next report."""
    timings = _read_json(config.results_dir(root) / TIMINGS)
    last_path = config.cache_dir() / LAST_BUILD
    last, now = _read_json(last_path), {}
    lines = [f"{'chapter':28} {'profile':>7} {'seconds':>8} {'passed':>7} {'failed':>7}"]
    changes = []
    for notebook in notebooks(root):
        records = claims.read_file(config.results_dir(root) / f"{notebook.stem}.json")
        timing = timings.get(notebook.stem, {})
        seconds = f"{timing['seconds']:8.1f}" if "seconds" in timing else f"{'?':>8}"
        passed = sum(r["passed"] for r in records)
        lines.append(f"{notebook.stem:28} {timing.get('profile', '?'):>7} {seconds} {passed:7d} "
                     f"{len(records) - passed:7d}")
        now[notebook.stem] = {r["id"]: {"value": r["value"], "passed": r["passed"], "profile": r["profile"]}
                              for r in records}
        before = last.get(notebook.stem, {})
        for claim_id in sorted(now[notebook.stem].keys() | before.keys()):
            old, new = before.get(claim_id), now[notebook.stem].get(claim_id)
            if old != new:
                changes.append(f"  {claim_id}: {_claim_state(old)} → {_claim_state(new)}")
    if not last:
        lines.append("no earlier build on this machine to compare claims with")
    elif changes:
        lines += ["claims changed since the last build:", *changes]
    else:
        lines.append("no claim changed since the last build")
    config.write_atomic(last_path, lambda tmp: Path(tmp).write_text(json.dumps(now, indent=1)))
    return "\n".join(lines)


def _claim_state(record: dict | None) -> str:
    if record is None:
        return "(none)"
    return f"{record['value']:.4g} ({'pass' if record['passed'] else 'FAIL'}, {record['profile']})"


def summary_table(results: list[Result]) -> str:
    lines = [f"{'chapter':32} {'seconds':>8} {'passed':>7} {'failed':>7}  status"]
    lines += [f"{r.chapter:32} {r.seconds:8.1f} {r.passed:7d} {r.failed:7d}  "
              f"{'unchanged' if r.unchanged else 'ok' if r.ok else 'FAILED'}" for r in results]
    return "\n".join(lines)


def _with_setting(record: dict) -> str:
    return record["statement"] + (f" ({record['setting']})" if record.get("setting") else "")


def _provenance_line(root: Path) -> str:
    """'Built from commit `1a2b3c4` on 2026-12-06 with torch 2.14.1; the chapters' last runs took 19.8 minutes.'"""
    from importlib import metadata

    commit = ledger.git_commit(root)
    where = f"commit `{commit}`" if commit else "a folder outside git"
    seconds = sum(t.get("seconds", 0) for t in _read_json(config.results_dir(root) / TIMINGS).values())
    return (f"Built from {where} on {time.strftime('%Y-%m-%d', time.gmtime())} with torch "
            f"{metadata.version('torch')}; the chapters' last runs took {seconds / 60:.1f} minutes in all.")


def _full_line(chapter: str, full: dict | None) -> str:
    """Where the chapter's `full` numbers come from, or that it has none yet."""
    if full is None:
        return (f"Not yet run at `full` (`nblib run {chapter[:2]} --profile full` records it in "
                f"`{ledger.LEDGER}/`).")
    state = ("**stale**: the chapter has changed since, so these numbers may not be what it gives now"
             if full["stale"] else "the chapter has not changed since")
    computed = full.get("computed_seconds", full["seconds"])
    took = f"ran in {full['seconds'] / 60:.1f} minutes" + (
        f" (its models from the cache; computing them took {computed / 60:.1f})" if computed > full["seconds"]
        else " (less than computing takes if its models came from the cache: {doc}`setup` gives the cost)")
    return (f"At `full`: on {full['device']}, commit `{full['commit'] or '?'}`, {full['date']}, {took}; {state}.")


def _full_column(record: dict, at_full: dict | None) -> str:
    """The claim's value and verdict at `full` as a table cell (' 77.3% (holds) |'); nothing
    for a chapter without a full run."""
    if at_full is None:
        return ""
    c = at_full.get(record["id"])
    if c is None:
        return " not measured |"
    return f" {claims.format_value(c['value'], c.get('unit'))} ({'holds' if c['passed'] else '**fails**'}) |"


def claims_page(root: Path) -> tuple[str, int, int]:
    """The generated book/claims.md text, and the numbers of asserted claims and of those
    that held. Per chapter: where and on what it was measured, a table of its claims and
    one of its expectations (registered before the run, shown with their outcome)."""
    sections, total, passed, expected, met = [], 0, 0, 0, 0
    for notebook in notebooks(root):
        records = claims.read_file(config.results_dir(root) / f"{notebook.stem}.json")
        if not records:
            continue
        asserted = [r for r in records if claims.kind_of(r) == "asserted"]
        expectations = [r for r in records if claims.kind_of(r) == "expectation"]
        total, passed = total + len(asserted), passed + sum(r["passed"] for r in asserted)
        expected, met = expected + len(expectations), met + sum(r["passed"] for r in expectations)
        data = {d["name"]: d for r in records for d in r.get("data", [])}
        runs = sorted({f"profile {r['profile']} on {r['device']}" for r in records})
        data_lines = ([f"- {claims.md_cell(line)}" for line in claims.describe_data(list(data.values()))]
                      or ["- no data set"])
        full = ledger.latest(root, notebook.stem)
        sections += [f"## [{notebook.stem}](chapters/{notebook.stem}.ipynb)", "",
                     f"Measured at {', '.join(runs)}, on:", "", *data_lines, "", _full_line(notebook.stem, full), ""]
        at_full = {c["id"]: c for c in full["claims"]} if full else None

        def finding(r: dict) -> str:
            paper = claims.paper_beside_ours(r)
            return (f"`{r['id']}`: {claims.md_cell(_with_setting(r))}"
                    + (f"; *paper:* {claims.md_cell(paper)}" if paper else ""))

        # three columns (four with a full run), so that a table fits a 1280-px window
        full_head, full_rule = (" at full |", "---|") if at_full is not None else ("", "")
        measured = f"{records[0]['profile']} (target; null)"

        if asserted:
            sections += [f"| claim (ours; the paper) | {measured} |{full_head} holds |",
                         f"|---|---|{full_rule}---|",
                         *[f"| {finding(r)} | {claims.md_cell(claims.describe_measured(r))} |"
                           f"{_full_column(r, at_full)} {'yes' if r['passed'] else '**no**'} |" for r in asserted], ""]
        if expectations:
            sections += ["Expectations, registered before the run and shown with their outcome:", "",
                         f"| expectation (ours; the paper) | {measured} |{full_head} outcome |",
                         f"|---|---|{full_rule}---|",
                         *[f"| {finding(r)}; *why an expectation:* "
                           f"{claims.md_cell(r.get('reason') or r.get('reported') or '')} | "
                           f"{claims.md_cell(claims.describe_measured(r))} |{_full_column(r, at_full)} "
                           f"{'held' if r['passed'] else '**did not hold**'} |" for r in expectations], ""]
    text = "\n".join([
        "# Claims", "",
        "Every finding of the book, as measured when the chapters were last executed "
        "(generated by `nblib book`; do not edit). A chapter with a registry (`claims/<chapter>.yml`) "
        "registered each claim before measuring it: its target, the null value expected if the effect "
        "were absent, the number of seeds and the rule that decides it. Each chapter lists the data its "
        "claims were measured on; a claim measured on a subset of a data set says so beside the paper's number.",
        "", _provenance_line(root), "",
        f"**{total} claims, {passed} hold; {expected} expectations, {met} held.**", "", *sections])
    return text, total, passed


KEY_FINDINGS = "key-findings.md"  # in book/: generated by `nblib book`, included by the intro


def key_findings(root: Path) -> str:
    """A table for the intro, one row per chapter: its key finding as last measured — the
    first asserted claim of its registry (a registry lists its key finding first), else the
    first it recorded — with our value and whether it held. Generated, so it cannot drift."""
    rows = ["| chapter | key finding | ours | holds |", "|---|---|---|---|"]
    for notebook in notebooks(root):
        records = {r["id"]: r for r in claims.read_file(config.results_dir(root) / f"{notebook.stem}.json")
                   if claims.kind_of(r) == "asserted"}
        order = list(claims.registry(notebook.stem, root) or {}) + list(records)
        key = next((records[i] for i in order if i in records), None)
        if key is None:
            continue
        values = key.get("values") or [key["value"]]
        ours = claims.format_value(key["value"], key.get("unit"))
        if len(values) > 1:
            ours = f"{'median' if key.get('rule') == 'median' else 'mean'} {ours} ({len(values)} seeds)"
        rows.append(f"| {{doc}}`chapters/{notebook.stem}` | {claims.md_cell(key['statement'] or key['id'])} | "
                    f"{claims.md_cell(ours)} | {'yes' if key['passed'] else '**no**'} |")
    return "\n".join(rows) + "\n"


def compare(first: Path, second: Path) -> tuple[str, int]:
    """Two result sets — folders of ``<chapter>.json``, e.g. ``results`` and
    ``results/seed-1`` — side by side: each claim's value and verdict in both, then the
    asserted claims whose verdict flipped or that one side did not measure. Returns the
    text and the number of those."""
    def chapters(folder: Path) -> dict[str, dict[str, dict]]:
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder of results")
        return {path.stem: {r["id"]: r for r in claims.read_file(path)}
                for path in sorted(folder.glob("[0-9][0-9]_*.json"))}

    def state(record: dict | None) -> str:
        if record is None:
            return "(not measured)"
        mark = "holds" if record["passed"] else "FAILS"
        return f"{claims.format_value(record['value'], record.get('unit'))} {mark}"

    def folder_label(folder: Path) -> str:  # "results/seed-1" from the book's root, the end of a long path
        name = os.path.relpath(folder)
        return (name if not name.startswith("..") else str(folder))[-24:]

    a, b = chapters(first), chapters(second)
    lines = [f"{'claim':52} {folder_label(first):>24} {folder_label(second):>24}"]
    flips = []
    for chapter in sorted(a.keys() | b.keys()):
        ours, theirs = a.get(chapter, {}), b.get(chapter, {})
        for claim_id in sorted(ours.keys() | theirs.keys()):
            x, y = ours.get(claim_id), theirs.get(claim_id)
            kind = claims.kind_of(x or y)
            label = claim_id + (" (expectation)" if kind == "expectation" else "")
            lines.append(f"{label:52} {state(x):>24} {state(y):>24}")
            if kind == "asserted" and (x is None or y is None or x["passed"] != y["passed"]):
                flips.append(f"  {claim_id}: {state(x)} → {state(y)}")  # unmeasured on one side counts
    lines.append(f"{len(flips)} asserted claim(s) flipped or measured on one side only" + (":" if flips else ""))
    return "\n".join(lines + flips), len(flips)


def registry_mismatches(root: Path) -> list[str]:
    """For each chapter with a claims registry: the registered claims its published results
    lack, and the claims they hold that are not registered."""
    problems = []
    for notebook in notebooks(root):
        entries = claims.registry(notebook.stem, root)
        if entries is None:
            continue
        measured = {r["id"] for r in claims.read_file(config.results_dir(root) / f"{notebook.stem}.json")}
        where = claims.registry_file(notebook.stem, root).relative_to(root)
        problems += [f"{notebook.stem}: {id} is registered in {where} but was not measured"
                     for id in sorted(entries.keys() - measured)]
        problems += [f"{notebook.stem}: {id} was measured but is not registered in {where}"
                     for id in sorted(measured - entries.keys())]
    return problems


# jupyter-book's command line, without rfc3987_syntax (1 s to import; see nblib/_papermill.py)
_JUPYTER_BOOK = ("import sys; sys.modules['rfc3987_syntax'] = None; "
                 "from jupyter_book.cli.main import main; sys.exit(main())")


def build_book(root: Path, page_check: bool = True) -> Path:
    """Write book/claims.md, build the HTML book, load every page in Chromium (unless not
    `page_check`) and print the build report; refuse if a chapter is missing or failed, or
    while a run is working in this checkout. Raises `RuntimeError` naming each broken page."""
    if page_check:
        from . import pagecheck

        pagecheck.find_browser()  # before the build, not a minute after it
    with exclusive(root), stop_on_signals():  # SIGTERM ends Chromium and its driver as Ctrl-C does
        out_dir = root / "book" / "chapters"
        problems = []
        for notebook in notebooks(root):
            if (out_dir / f"{notebook.stem}.failed.ipynb").exists():
                problems.append(f"{notebook.stem} failed on its last run "
                                f"(see book/chapters/{notebook.stem}.failed.ipynb)")
            elif not (out_dir / f"{notebook.stem}.ipynb").exists():
                problems.append(f"{notebook.stem} has not been executed")
        if problems:
            raise RuntimeError("cannot build the book:\n  " + "\n  ".join(problems)
                               + "\nrun `nblib run` (or `make book`) first")
        mismatches = registry_mismatches(root)
        if mismatches:
            raise RuntimeError("the published claims do not match the registry:\n  " + "\n  ".join(mismatches)
                               + "\nrun the chapter again (`nblib run --force`), or register what it measures")
        from . import pagecheck

        shown = [f"{notebook.stem}: {problem}" for notebook in notebooks(root)
                 for problem in pagecheck.output_defects(json.loads((out_dir / f"{notebook.stem}.ipynb").read_text()))]
        if shown:
            raise RuntimeError("chapters show what a page must not:\n  " + "\n  ".join(shown)
                               + "\nfix the notebooks (nblib.prose.settings_table, a trailing ';', a table), "
                                 "then run them again")
        text, total, passed = claims_page(root)
        (root / "book" / "claims.md").write_text(text)
        (root / "book" / KEY_FINDINGS).write_text(key_findings(root))
        build = subprocess.run([sys.executable, "-c", _JUPYTER_BOOK, "build", str(root), "-W", "-n", "--keep-going"])
        if build.returncode:
            raise RuntimeError(f"jupyter-book build failed (exit code {build.returncode}); its messages are above")
        html = root / "_build" / "html"
        if page_check:
            print("loading every page in Chromium ...", flush=True)
            broken = pagecheck.check_site(html, pagecheck.expected_pages(root))
        print(build_report(root))
    print(f"book: {html / 'index.html'}\n{total} claims, {passed} passed")
    if page_check and broken:
        raise RuntimeError(f"{len(broken)} problem(s) in the built pages:\n  " + "\n  ".join(map(str, broken)))
    if page_check:
        print("every page loaded: no broken images, internal links or JavaScript errors")
    return html / "index.html"
