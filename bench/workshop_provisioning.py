"""How long provisioning a workshop's learners takes on one shared server.

In one run, on a throw-away PostgreSQL (TCP on 127.0.0.1, scram-sha-256, as a
workshop server is reached): `workshop init`, then `add` of one learner, then
of N learners for each N given (30 and 100 by default; the learners of one
round are removed before the next), an instructor's `reset` of a learner
to chapter 02 (a clone swapped into place; with and without the pg_dump backup, taken as the learner, that
`workshop reset` makes first), and one `status` of the room. Prints ms per learner and the ratio to the
single learner: near 1.0 means provisioning scales linearly, as a room needs. The server syncs to disk as a
real one does; `--no-fsync` shows the work without waiting for a disk other processes share.

    python bench/workshop_provisioning.py [--no-fsync] [N ...]
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from throwaway import REPO

from migration_lab import Project
from migration_lab.database.shared_server import local_server
from migration_lab.workshop.instructor import Workshop, learner_names


def provision(shop: Workshop, names: list[str]) -> float:
    """Wall seconds to add `names`, one after another, as `workshop add --learners N` does."""
    started = time.perf_counter()
    for name in names:
        shop.add(name)
    return time.perf_counter() - started


def load() -> str:
    """The machine's load: these figures are only comparable with it."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} cores"


def main(sizes: list[int], durable: bool = True) -> int:
    print(f"before: {load()} (other work on the machine slows every figure below); fsync {'on' if durable else 'off'}")
    server = local_server(max_connections=20 + 8 * max(sizes), durable=durable)
    with tempfile.TemporaryDirectory() as tmp, server as url:
        shop = Workshop(url, roster=Path(tmp) / "roster.json", project=Project(REPO))
        started = time.perf_counter()
        shop.init()
        print(f"workshop init (templates for every chapter checkpoint): {time.perf_counter() - started:.1f} s")
        single = statistics.median(provision(shop, [f"solo{n}"]) for n in range(5)) * 1000
        print(f"one learner: {single:.0f} ms (median of 5)")
        for backup, what in ((False, "the re-clone alone"), (True, "with the backup first, as `workshop reset`")):
            resets = []
            for _ in range(5):
                started = time.perf_counter()
                shop.reset("solo0", "02", backup=backup)
                resets.append((time.perf_counter() - started) * 1000)
            print(f"reset of one learner to chapter 02, {what}: {statistics.median(resets):.0f} ms (median of 5)")
        for name in [f"solo{n}" for n in range(5)]:
            shop.remove(name)
        print(f"{'learners':>9}{'total s':>10}{'ms/learner':>12}{'vs one':>8}{'status s':>10}")
        for size in sizes:
            seconds = provision(shop, learner_names(size))
            per = seconds * 1000 / size
            started = time.perf_counter()
            shop.status()  # the room view: one read of the catalogs and the room's store
            room = time.perf_counter() - started
            print(f"{size:>9}{seconds:>10.1f}{per:>12.0f}{per / single:>7.2f}x{room:>10.2f}", flush=True)
            for name in learner_names(size):
                shop.remove(name)
        shop.drop()
    print(f"after: {load()}")
    return 0


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--no-fsync"]
    sys.exit(main([int(a) for a in arguments] or [30, 100], durable="--no-fsync" not in sys.argv[1:]))
