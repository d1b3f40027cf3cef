import sys

from .launch.install import run_in_the_course_venv

run_in_the_course_venv(sys.argv[1:])  # a Python without the course's packages makes .venv first

from .front.cli import main  # noqa: E402  (after the venv check: it imports the course's packages)

sys.exit(main())
