import sys

from .launch.install import ROOT, run_in_the_course_venv

if sys.argv[1:2] == ["bundle"]:  # standard library only: an instructor's bare python3 needs no venv for it
    from .launch import bundle

    sys.exit(bundle.main(sys.argv[2:], ROOT))

run_in_the_course_venv(sys.argv[1:])  # a Python without the course's packages makes .venv first

from .front.cli import main  # noqa: E402  (after the venv check: it imports the course's packages)

sys.exit(main())
