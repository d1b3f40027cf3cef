"""The instructor's side of a workshop on one shared server: learners, templates, the room view."""
