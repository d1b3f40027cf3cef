import sys

from .launch.install import ROOT, run_in_the_course_venv

if sys.argv[1:2] == ["bundle"]:  # standard library only: an instructor's bare python3 needs no venv for it
    from .launch import bundle

    sys.exit(bundle.main(sys.argv[2:], ROOT))

run_in_the_course_venv(sys.argv[1:])  # a Python without the course's packages makes .venv first

try:  # Ctrl-C in the second the kit takes to load: nothing has started yet (main() says what a command left)
    from .front.cli import main  # noqa: E402  (after the venv check: it imports the course's packages)

    code = main()
except KeyboardInterrupt:
    print("Interrupted before `python -m migration_lab` started anything.", file=sys.stderr)
    code = 130
sys.exit(code)
