"""A simulated room: N learners running chapter 01's commands at once against one shared server.

In one run, on a throw-away PostgreSQL (TCP, scram-sha-256) provisioned with
`workshop init` and `add`: for each N (1, 10, 30 by default) N processes,
each a learner's kit on the url backend with a copy of ai-service/ and a
database of its own, start together and repeat chapter 01's sequence through
the kit's runner: `revision --autogenerate`, `upgrade head`, `downgrade -1`,
`current`. Prints p50 and p95 of the command latency (target: p95 within 1 s
at N = 30), and the server's memory (USS of all its processes, sampled while
the room runs) per learner, against one embedded PostgreSQL per learner (an
idle cluster, plus what its busiest moment adds).

    python bench/workshop_room.py [ROUNDS] [N ...]
"""

import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import sqlalchemy as sa
from throwaway import REPO, copy_project, throwaway_lab

from migration_lab import Lab, Project, UrlBackend
from migration_lab.workshop import Workshop, learner_names
from migration_lab.workshop_server import local_server
from migration_lab.workspace import add_column, apply_edit, restore_checkpoint

TARGET_P95_MS = 1000.0
SEQUENCE = ('revision --autogenerate -m "Add last login"', "upgrade head", "downgrade -1", "current")


def learner(url: str, rounds: int, ready: "mp.Queue", start: "mp.synchronize.Event", results: "mp.Queue") -> None:
    """One learner's process: chapter 01's start, a warm-up round, then `rounds` timed rounds to `results`."""
    from migration_lab.chapters import spec

    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(copy_project(Path(tmp)), UrlBackend(url))
        restore_checkpoint(lab, spec("01").checkpoint)
        edit = add_column("UserProfile", "last_login = Column(String, nullable=True)")
        apply_edit(lab.project.service_dir / "main.py", edit, lab.project.root)
        round_of(lab)  # warm, as a kernel that ran the chapter's earlier cells: imports and templates loaded
        ready.put(True)
        start.wait()
        samples = [sample for _ in range(rounds) for sample in round_of(lab)]
        lab.db.dispose()
    results.put(samples)


def round_of(lab: Lab) -> list[tuple[str, float]]:
    """Chapter 01's sequence once: (command, ms) each; the generated revision file is deleted after."""
    samples = []
    for line in SEQUENCE:
        started = time.perf_counter()
        result = lab.runner.run_line(line)
        samples.append((line, (time.perf_counter() - started) * 1000))
        assert result.ok, f"{line}: {result.error}"
    for path in lab.project.versions_dir.glob("*add_last_login.py"):
        path.unlink()  # the next round generates it again
    return samples


def postmaster(url: str) -> psutil.Process:
    """The server's postmaster: the parent of a backend, asked while the backend lives."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        found = psutil.Process(conn.scalar(sa.text("SELECT pg_backend_pid()"))).parent()
    engine.dispose()
    assert found is not None
    return found


def server_uss(server: psutil.Process) -> int:
    """Bytes of unique memory of the server's postmaster and every process it started."""
    total = 0
    for process in [server, *server.children()]:
        with contextlib.suppress(psutil.Error):  # a backend that ended meanwhile
            total += process.memory_full_info().uss
    return total


class Sampler:
    """The peak of `measure()` while a block runs, sampled every 0.2 s in a thread."""

    def __init__(self, measure) -> None:
        self.measure, self.peak, self._stop = measure, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.measure())

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def room(shop: Workshop, server: psutil.Process, size: int, rounds: int) -> tuple[list[tuple[str, float]], int]:
    """Latencies of every command of `size` learners at once, and the server's peak USS meanwhile."""
    context = mp.get_context("spawn")  # each learner a fresh interpreter, as a kernel of its own
    ready, start, results = context.Queue(), context.Event(), context.Queue()
    urls = shop.learners()
    processes = [
        context.Process(target=learner, args=(urls[name], rounds, ready, start, results))
        for name in learner_names(size)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=600)  # every kit imported and at chapter 01's start before the room begins
    with Sampler(lambda: server_uss(server)) as sampler:
        start.set()
        samples = [sample for _ in processes for sample in results.get(timeout=900)]
    for process in processes:
        process.join()
        assert process.exitcode == 0, f"a learner's process failed (exit {process.exitcode})"
    return samples, sampler.peak


def embedded_per_user() -> tuple[int, int]:
    """(idle USS, peak USS while chapter 01's sequence runs) of one learner's own embedded PostgreSQL."""
    with throwaway_lab() as lab:
        server = postmaster(lab.backend.url())

        def uss() -> int:
            return server_uss(server)

        idle = uss()
        with Sampler(uss) as sampler:
            for line in ("upgrade head", "downgrade -1", "upgrade head", "current"):
                lab.runner.run_line(line)
        return idle, max(idle, sampler.peak)


def load() -> str:
    """The machine's load: these figures are only comparable with it."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} cores"


def main(rounds: int, sizes: list[int]) -> int:
    mib = 1024 * 1024
    worst_p95 = 0.0
    print(f"before: {load()} (other work on the machine slows every figure below)")
    with tempfile.TemporaryDirectory() as tmp, local_server(max_connections=20 + 8 * max(sizes)) as url:
        shop = Workshop(url, roster=Path(tmp) / "roster.json", project=Project(REPO))
        shop.init()
        for name in learner_names(max(sizes)):
            shop.add(name)
        server = postmaster(url)
        idle = server_uss(server)
        print(f"shared server, idle with {max(sizes)} learners provisioned: {idle / mib:.0f} MiB USS")
        print(f"{'learners':>9}{'commands':>10}{'p50 ms':>8}{'p95 ms':>8}{'peak MiB':>10}{'MiB/learner':>13}")
        for size in sizes:
            samples, peak = room(shop, server, size, rounds)
            latencies = [ms for _, ms in samples]
            p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
            per = (peak - idle) / size / mib
            print(f"{size:>9}{len(samples):>10}{p50:>8.0f}{p95:>8.0f}{peak / mib:>10.0f}{per:>13.1f}", flush=True)
            by_command = {
                line.split()[0]: f"{percentile([ms for what, ms in samples if what == line], 0.95):.0f}"
                for line in SEQUENCE
            }
            print(f"{'':>9}  p95 ms by command: {by_command}", flush=True)
            if size == max(sizes):
                worst_p95 = p95
        shop.drop()
    print(f"after: {load()}")
    embedded_idle, embedded_peak = embedded_per_user()
    print(
        f"embedded per learner: {embedded_idle / mib:.0f} MiB USS idle, {embedded_peak / mib:.0f} MiB at its busiest "
        "(a whole cluster each, busy or not)"
    )
    verdict = "meets" if worst_p95 <= TARGET_P95_MS else "MISSES"
    print(f"p95 at {max(sizes)} learners: {worst_p95:.0f} ms; {verdict} the {TARGET_P95_MS:.0f} ms target")
    return 0 if worst_p95 <= TARGET_P95_MS else 1


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:]]
    sys.exit(main(arguments[0] if arguments else 2, arguments[1:] or [1, 10, 30]))
