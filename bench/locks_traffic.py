"""What one idle reader does to the ai-api during an ALTER TABLE, with and without lock_timeout.

In one run, on a throw-away embedded PostgreSQL and a copy of ai-service/, the
ai-api serves 3 clients (chapter 11's traffic) while a report sits idle in a
transaction on user_profiles, and `ALTER TABLE user_profiles ADD COLUMN` runs:
without lock_timeout (the kit cancels it after 2.5 s) and with
lock_timeout = '1s'. Prints, for each, the requests served in time and failed
while the ALTER waited, their rate, and the app's rate with no migration at
all, as a ratio of that baseline.

    python bench/locks_traffic.py
"""

import time

from throwaway import throwaway_lab

from migration_lab.course.ch11_locks import run_while_busy
from migration_lab.course.ch11_traffic import busy_app
from migration_lab.workspace import checkpoints

ALTER = "ALTER TABLE user_profiles ADD COLUMN nickname text"


def main() -> int:
    with throwaway_lab() as lab:
        checkpoints.reset(lab, checkpoints.WITH_PHONE_NUMBER)
        with busy_app(lab, reader=False, show=False) as (traffic, _, _panel):
            started = time.monotonic()
            time.sleep(2.0)
            idle = traffic.tally(started)
        print(f"no migration:             {idle.per_second:6.1f} requests/s served, {idle.failed} failed")
        for label, timeout in (("no lock_timeout:", None), ("lock_timeout = '1s':", "1s")):
            outcome = run_while_busy(lab, ALTER, lock_timeout=timeout, show=False)
            tally = outcome.requests
            print(
                f"{label:25s} {tally.per_second:6.1f} requests/s served ({tally.served} served, {tally.failed} failed "
                f"in {tally.seconds:.1f} s; {tally.per_second / idle.per_second:.2f} of the baseline); "
                f"stopped by {outcome.stopped_by or 'nothing: done'}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
