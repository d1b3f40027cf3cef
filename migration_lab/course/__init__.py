"""The course: the chapter registry, exercise checks, and one module per chapter (chNN_*.py)."""
