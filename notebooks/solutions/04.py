# `history -r current:head` lists the range newest first; -i marks (current),
# the revision the database is at: applied already, so not in the answer.
ch.alembic("history -r current:head -i")
answer = ["a1c4e7f20b13", "b7d1e5f3c9a2"]
# Apply them: alembic prints one `Running upgrade` line per revision of the answer.
ch.alembic("upgrade head")
