"""A simulated room: N learners running chapter 01's commands at once against one shared server.

In one run, on a throw-away PostgreSQL (TCP, scram-sha-256) provisioned with
`workshop init` and `add`: for each N (1, 10, 30 by default) N processes,
each a learner's kit on the url backend with a copy of ai-service/ and a
database of its own, start together and repeat chapter 01's sequence through
the kit's runner: `revision --autogenerate`, `upgrade head`, `downgrade -1`,
`current`. Prints p50 and p95 of the command latency (target: p95 within 1 s
at N = 30), and the server's memory (USS of all its processes, sampled while
the room runs) per learner, against one embedded PostgreSQL per learner (an
idle cluster, plus what its busiest moment adds), and who used the CPU: the
server's processes or the learners' kits (alembic, autogenerate, in Python).

By default learners fire their commands back to back, the worst case; with
`--think S` each waits a random 0-2S seconds before each command, as a
learner reading and typing does.

    python bench/workshop_room.py [--rounds R] [--think S] [N ...]
"""

import argparse
import contextlib
import multiprocessing as mp
import os
import random
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
from migration_lab.course.registry import reset
from migration_lab.database.shared_server import local_server
from migration_lab.workshop.instructor import Workshop, learner_names
from migration_lab.workspace.edits import add_column, apply_edit

TARGET_P95_MS = 1000.0
SEQUENCE = ('revision --autogenerate -m "Add last login"', "upgrade head", "downgrade -1", "current")


def learner(
    url: str, rounds: int, think: float, ready: "mp.Queue", start: "mp.synchronize.Event", results: "mp.Queue"
) -> None:
    """One learner's process: chapter 01's start, a warm-up round, then `rounds` timed rounds to `results`
    (with this process's CPU seconds meanwhile)."""

    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(copy_project(Path(tmp)), UrlBackend(url))
        reset("01", lab)
        edit = add_column("UserProfile", "last_login = Column(String, nullable=True)")
        apply_edit(lab.project.service_dir / "main.py", edit, lab.project.root)
        round_of(lab, 0.0, random.Random())  # warm, as a kernel that ran the chapter's earlier cells
        ready.put(True)
        start.wait()
        pace, cpu = random.Random(url), time.process_time()
        samples = [sample for _ in range(rounds) for sample in round_of(lab, think, pace)]
        cpu = time.process_time() - cpu
        lab.db.dispose()
    results.put((samples, cpu))


def round_of(lab: Lab, think: float, pace: random.Random) -> list[tuple[str, float]]:
    """Chapter 01's sequence once: (command, ms) each; the generated revision file is deleted after."""
    samples = []
    for line in SEQUENCE:
        time.sleep(pace.uniform(0, 2 * think))
        started = time.perf_counter()
        result = lab.runner.run(line)
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


def server_cpu(server: psutil.Process) -> float:
    """CPU seconds the server used so far: the postmaster, the backends it reaped, the ones alive."""
    total = sum(server.cpu_times())  # user, system, and its waited-for children's
    for child in server.children():
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def room(
    shop: Workshop, server: psutil.Process, size: int, rounds: int, think: float
) -> tuple[list[tuple[str, float]], int, float, float]:
    """Latencies of every command of `size` learners at once, the server's peak USS meanwhile, and the CPU
    seconds of the server and of the learners' kits."""
    context = mp.get_context("spawn")  # each learner a fresh interpreter, as a kernel of its own
    ready, start, results = context.Queue(), context.Event(), context.Queue()
    urls = shop.learners()
    processes = [
        context.Process(target=learner, args=(urls[name], rounds, think, ready, start, results))
        for name in learner_names(size)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=600)  # every kit imported and at chapter 01's start before the room begins
    before = server_cpu(server)
    with Sampler(lambda: server_uss(server)) as sampler:
        start.set()
        done = [results.get(timeout=1800) for _ in processes]
    used = server_cpu(server) - before
    for process in processes:
        process.join()
        assert process.exitcode == 0, f"a learner's process failed (exit {process.exitcode})"
    return [sample for samples, _ in done for sample in samples], sampler.peak, used, sum(cpu for _, cpu in done)


def embedded_per_user() -> tuple[int, int]:
    """(idle USS, peak USS while chapter 01's sequence runs) of one learner's own embedded PostgreSQL."""
    with throwaway_lab() as lab:
        server = postmaster(lab.backend.url())

        def uss() -> int:
            return server_uss(server)

        idle = uss()
        with Sampler(uss) as sampler:
            for line in ("upgrade head", "downgrade -1", "upgrade head", "current"):
                lab.runner.run(line)
        return idle, max(idle, sampler.peak)


def load() -> str:
    """The machine's load: these figures are only comparable with it."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} cores"


def main(rounds: int, think: float, sizes: list[int]) -> int:
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
        pacing = f"each waits 0-{2 * think:g} s before a command" if think else "commands back to back"
        print(f"{rounds} round(s) of {len(SEQUENCE)} commands per learner, {pacing}")
        print(
            f"{'learners':>9}{'commands':>10}{'p50 ms':>8}{'p95 ms':>8}{'peak MiB':>10}{'MiB/learner':>13}"
            f"{'server CPU s':>14}{'kits CPU s':>12}"
        )
        for size in sizes:
            samples, peak, server_seconds, kit_seconds = room(shop, server, size, rounds, think)
            latencies = [ms for _, ms in samples]
            p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
            per = (peak - idle) / size / mib
            print(
                f"{size:>9}{len(samples):>10}{p50:>8.0f}{p95:>8.0f}{peak / mib:>10.0f}{per:>13.1f}"
                f"{server_seconds:>14.1f}{kit_seconds:>12.1f}",
                flush=True,
            )
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--think", type=float, default=0.0, help="mean seconds before each command (default 0)")
    parser.add_argument("sizes", type=int, nargs="*", default=[1, 10, 30])
    options = parser.parse_args()
    sys.exit(main(options.rounds, options.think, options.sizes))
