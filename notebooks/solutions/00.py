# `current` (the console's button, or ch.alembic("current")) prints the revision
# the database is at: the 12-character id before "(head)".
answer = "8b7e5d2c6a41"
