"""`python -m migration_lab`: start, inspect, stop and reset the lab database.

A thin layer over `Lab`: each sub-command is one call.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..database.choice import BACKENDS
from ..errors import LabError
from ..lab import Lab, default_progress
from ..launch import bundle
from ..launch.install import ROOT
from ..launch.jupyterlab import WORKBOOK, refresh_chapter_notebook

if TYPE_CHECKING:
    from ..workshop.instructor import Workshop


def _confirm(question: str) -> bool:
    """True only for an explicit "yes"; no terminal (EOF) counts as no."""
    try:
        return input(f"{question} Type 'yes' to go on: ").strip().lower() == "yes"
    except (EOFError, OSError, ValueError, RuntimeError):  # no terminal, closed or missing stdin
        print("(no answer: standard input is closed)", file=sys.stderr)
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migration_lab", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="force the database backend (default: LAB_DATABASE_URL > running compose stack > embedded)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the lab database (if needed) and say where it is")
    lab_parser = sub.add_parser(
        "lab",
        help="what `make lab` does: the database, your notebooks in my-notebooks/, JupyterLab on chapter 00",
        description="Arguments after `--` go to JupyterLab.",
    )
    lab_parser.add_argument("--port", type=int, help="JupyterLab's port (default: 8888 or the next free one)")
    lab_parser.add_argument("--no-browser", action="store_true", help="print the URL only; do not open a browser")
    lab_parser.add_argument("jupyter_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    sub.add_parser("status", help="which backend, where, running or not, current revision")
    sub.add_parser("preflight", help="before a workshop: versions, backend, database reachable (exit 1 if not)")
    sub.add_parser("url", help="print the database's SQLAlchemy URL (last line of output)")
    sub.add_parser("down", help="stop the lab database, keeping its data")
    reset = sub.add_parser("reset", help="restore ai-service/ and the database to the start of a chapter")
    reset.add_argument("chapter", help="chapter number, e.g. 02 (your current work is backed up first)")
    reset.add_argument(
        "--keep-notebook",
        action="store_true",
        help=f"leave the chapter's notebook in {WORKBOOK}/ as it is (by default it starts over; yours is kept)",
    )
    restore = sub.add_parser("restore", help="bring back a backup a reset took (the newest, or the one named)")
    restore.add_argument("backup", nargs="?", help="the backup's name, e.g. 20261125-101500 (see `backups`)")
    sub.add_parser("backups", help="list the backups resets took, oldest first")
    nuke = sub.add_parser("nuke", help="drop ALL data and start a fresh, empty database")
    nuke.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    bundle_parser = sub.add_parser(
        "bundle",
        help="instructor: one archive with the course and every wheel it needs, for a room without network",
        description=bundle.__doc__.splitlines()[0] if bundle.__doc__ else None,
    )
    bundle.add_arguments(bundle_parser)
    _workshop_parser(sub)
    args = parser.parse_args(argv)

    progress = default_progress()
    try:
        if args.command == "workshop":
            return _workshop(args)
        if args.command == "bundle":
            print(bundle.run(args, ROOT))  # the archive's path, the last line
            return 0
        if args.command == "lab":
            from ..launch.jupyterlab import run

            extra = args.jupyter_args[1:] if args.jupyter_args[:1] == ["--"] else args.jupyter_args
            return run(backend=args.backend, port=args.port, open_browser=not args.no_browser, extra=extra)
        if args.command == "reset":
            from ..course.registry import spec

            spec(args.chapter)  # a chapter that is not one is refused before anything is touched
        lab = Lab(backend=args.backend)
        if args.command == "up":
            print(lab.up(progress))
        elif args.command == "status":
            from ..workspace import interruptions

            print(lab.status())
            left = interruptions.found(lab.project)
            if left is not None:
                print(f"⚠ {left}")
        elif args.command == "preflight":
            ready, lines = lab.preflight()
            print("\n".join(lines))
            return 0 if ready else 1
        elif args.command == "url":
            print(lab.backend.url())
        elif args.command == "reset":
            from ..course import registry

            print(registry.reset(args.chapter, lab))
            if not args.keep_notebook:
                notebook = refresh_chapter_notebook(lab.project, spec(args.chapter).number)
                if notebook:
                    print(notebook)
        elif args.command == "restore":
            from ..workspace import backups

            print(backups.restore(lab, args.backup))
        elif args.command == "backups":
            from ..workspace.backups import Backups

            names = Backups(lab.project, lab.db.url).names()
            print("\n".join(names) if names else "No backups yet: a reset takes one when it replaces your work.")
        elif args.command == "down":
            print(lab.down(progress))
        elif args.command == "nuke":
            if not (args.yes or _confirm(f"This deletes every table and row in {lab.backend.where()}.")):
                print("Nothing changed.", file=sys.stderr)
                return 1
            print(lab.nuke(progress))
    except LabError as error:
        print(error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: what happened in one line, not a traceback
        print(
            f"Interrupted: `{args.command}` stopped half-way.\nWhat to do: `python -m migration_lab status` says where "
            "the database is; `python -m migration_lab backups` lists your backups.",
            file=sys.stderr,
        )
        return 130
    return 0


def _workshop_parser(sub: argparse._SubParsersAction) -> None:
    """`workshop ...`: the instructor's commands for a shared server (migration_lab.workshop)."""
    from ..workshop.export import FORMATS
    from ..workshop.instructor import CONNECTION_LIMIT

    where = argparse.ArgumentParser(add_help=False)  # before or after the sub-command: `init --server URL` too
    where.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        help="the instructor's URL of the shared server (default: LAB_WORKSHOP_URL)",
    )
    where.add_argument(
        "--roster",
        default=argparse.SUPPRESS,
        help="the learners' URLs, a 0600 file (default: .lab/workshop/roster.json)",
    )
    parser = sub.add_parser(
        "workshop",
        parents=[where],
        help="instructor: learners' databases on one shared PostgreSQL (init, add, reset, status, remove, drop)",
    )
    commands = parser.add_subparsers(dest="workshop_command", required=True)
    commands.add_parser(
        "init", parents=[where], help="roles, the room's store, one template database per chapter checkpoint"
    )
    add = commands.add_parser("add", parents=[where], help="learners: a role, a database cloned from chapter 00")
    add.add_argument("names", nargs="*", help="learners' names (lowercase letters, digits, _)")
    add.add_argument("--learners", type=int, metavar="N", help="add learner01 ... learnerN (those missing)")
    add.add_argument(
        "--connection-limit",
        type=int,
        default=CONNECTION_LIMIT,
        help=f"connections each learner may hold, 1 to what the server gives (default {CONNECTION_LIMIT})",
    )
    add.add_argument("--force", action="store_true", help="add them even when the server cannot hold the room")
    reset = commands.add_parser(
        "reset", parents=[where], help="a learner's database back to a chapter's start (backed up first; asks)"
    )
    reset.add_argument("name")
    reset.add_argument("chapter", help="chapter number, e.g. 02")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.add_argument("--no-backup", action="store_true", help="do not dump their database first")
    reset.add_argument(
        "--files",
        metavar="CHECKOUT",
        help="their checkout too (ai-service/ and the database, their work backed up there first), through the "
        "kit's own reset run as the learner's OS account; only a checkout that account owns",
    )
    status = commands.add_parser(
        "status", parents=[where], help="the room: chapter, checks passed, last error, minutes since progress"
    )
    status.add_argument(
        "--watch", nargs="?", type=float, const=10.0, metavar="SECONDS", help="redraw every SECONDS (default 10)"
    )
    status.add_argument(
        "--format",
        default="table",
        choices=("table", *FORMATS),
        help="table (default), or csv / json: every learner's progress per chapter, for a spreadsheet or an LMS",
    )
    status.add_argument("--output", metavar="FILE", help="write it to FILE (0600) instead of printing it")
    remove = commands.add_parser("remove", parents=[where], help="learners' roles and databases, gone")
    remove.add_argument("names", nargs="+")
    drop = commands.add_parser("drop", parents=[where], help="everything the workshop made on the server (asks)")
    drop.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _workshop(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from ..workshop.room import printable

    try:
        return _workshop_command(args)
    except LabError as error:  # it may quote names learners chose (their databases, their tables)
        raise LabError(printable(error.what), printable(error.next_step)) from error
    except sa.exc.DBAPIError as error:  # the server's own words quote those names too: never raw to the terminal
        said = str(error.orig if error.orig is not None else error).strip().splitlines()
        raise LabError(
            printable(f"The workshop server refused: {said[0] if said else type(error).__name__}"),
            "Nothing after that step was done; fix what it says, then run the command again (it picks up where it "
            "stopped).",
        ) from None


def _workshop_command(args: argparse.Namespace) -> int:
    from ..workshop import export
    from ..workshop import status as workshop_status
    from ..workshop.instructor import LEFT, Workshop, check_name, server_url
    from ..workshop.room import printable

    command = args.workshop_command
    if command == "status":
        _check_status_options(args)
    roster = getattr(args, "roster", None)
    shop = Workshop(
        server_url(getattr(args, "server", None)),
        Path(roster) if roster else None,
        **({"connection_limit": args.connection_limit} if command == "add" else {}),
        say=lambda message: print(message, file=sys.stderr, flush=True),
    )
    if command == "init":
        shop.init()
    elif command == "add":
        return _workshop_add(shop, args)
    elif command == "reset":
        return _workshop_reset(shop, args)
    elif command == "status":
        if args.watch:
            workshop_status.watch(shop, args.watch)
            return 0
        rows = shop.status()
        text = workshop_status.table(rows) + "\n" if args.format == "table" else export.render(rows, args.format)
        if args.output:
            print(f"Wrote {export.save(text, Path(args.output))} (readable by you only).", file=sys.stderr)
        else:
            sys.stdout.write(text)
    elif command == "remove":
        for name in args.names:  # every name checked before anyone is removed
            check_name(name)
        said: list[str] = []
        for name in dict.fromkeys(args.names):  # a name that is no learner's stops no other
            try:
                said += shop.remove(name)
            except LabError as error:
                said.append(f"{name}: {LEFT} {error.what}")
                print(printable(said[-1]), file=sys.stderr)
        return 1 if any(LEFT in line for line in said) else 0
    elif command == "drop":
        question = f"This drops every learner's role and database, the templates and the room's store on {shop.where}."
        if not (args.yes or _confirm(question)):
            print("Nothing changed.", file=sys.stderr)
            return 1
        return 1 if any(LEFT in line for line in shop.drop()) else 0
    return 0


def _check_status_options(args: argparse.Namespace) -> None:
    """Refused before the server is asked anything: --watch out of range, or with an export."""
    from ..workshop import status as workshop_status

    if args.watch is not None:
        workshop_status.interval(args.watch, workshop_status.WATCH_SECONDS[0])
    if args.watch is not None and (args.format != "table" or args.output):
        raise LabError(
            "--watch redraws the table in this terminal: it writes no CSV, JSON or file.",
            "Leave out --watch to export once (as often as you like), or --format/--output to watch.",
        )


def _workshop_add(shop: Workshop, args: argparse.Namespace) -> int:
    from ..workshop.instructor import learner_names

    names = list(dict.fromkeys(args.names))
    if args.learners is not None:
        if args.learners < 1:
            print(f"--learners {args.learners}: nobody to add (give 1 or more).", file=sys.stderr)
            return 1
        problem = shop.room_problem(args.learners, force=args.force)  # before listing N names: N may be huge
        if problem is not None:
            raise problem
        have = shop.learners()
        names += [n for n in learner_names(args.learners) if n not in have and n not in names]
    if not names:
        print("Nobody to add: name learners, or --learners N (those missing from the roster).", file=sys.stderr)
        return 1
    room = len(set(shop.learners()) | set(names))
    capacity = shop.capacity()
    problem = shop.room_problem(room, capacity, force=args.force)
    if problem is not None:
        raise problem
    warning = shop.connection_warning(room, capacity)
    if warning:  # before anything is made: Ctrl-C now changes nothing
        print(warning, file=sys.stderr, flush=True)
    for name in names:
        learner = shop.add(name)
        print(f"{learner.name}\tLAB_DATABASE_URL={learner.database_url}", flush=True)
    print(f"Their URLs are in {shop.roster} (readable by you only).", file=sys.stderr)
    return 0


def _workshop_reset(shop: Workshop, args: argparse.Namespace) -> int:
    from ..course.registry import spec
    from ..workshop import checkouts
    from ..workshop.room import database_name

    number = spec(args.chapter).number  # a chapter that is not one is refused before anything is asked
    shop.known(args.name)
    database = database_name(args.name)
    if args.files:
        checkout = Path(args.files).absolute()
        checkouts.account(args.name, checkout)  # refused before anything is asked or written
        question = (
            f"Reset {args.name}'s files in {checkout} and their database {database} to the start of chapter "
            f"{number}? The kit backs both up in their checkout (.lab/backups/) first."
        )
    elif args.no_backup:
        question = f"Reset {database} to the start of chapter {number}, with NO backup? Their work in it is lost."
    else:
        question = f"Reset {database} to the start of chapter {number}? It is backed up to {shop.backup_dir} first."
    if not (args.yes or _confirm(question)):
        print("Nothing changed.", file=sys.stderr)
        return 1
    if args.files:
        url = shop.learners().get(args.name)
        if url is None:
            raise LabError(
                f"{args.name} has no URL in {shop.roster}.",
                f"`workshop add {args.name}` gives them a new password (and the roster their URL), then reset again.",
            )
        for line in checkouts.reset(args.name, args.chapter, checkout, url):  # each line theirs, escaped
            print(f"{args.name}: {line}")
    else:
        shop.reset(args.name, args.chapter, backup=not args.no_backup)
    return 0
