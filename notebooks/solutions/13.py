# The init container runs `alembic upgrade head`: the one file of yours it runs is migrations/env.py, so the guard
# goes there. A session advisory lock (it outlives the commit of each revision; a transaction lock would go with the
# first), taken on the connection alembic migrates on and committed before configure(): a transaction still open
# there would be taken for yours, and alembic would never commit it (chapter 11).
ch.edit_file("migrations/env.py", "from sqlalchemy import Connection,", "from sqlalchemy import text, Connection,")
ch.edit_file(
    "migrations/env.py",
    "    configure(connection=connection)\n    with context.begin_transaction():\n        context.run_migrations()\n",
    '    connection.execute(text("SELECT pg_advisory_lock(13)"))  # replicas take turns\n'
    "    connection.commit()\n"
    "    configure(connection=connection)\n"
    "    with context.begin_transaction():\n"
    "        context.run_migrations()\n"
    '    connection.execute(text("SELECT pg_advisory_unlock(13)"))\n'
    "    connection.commit()\n",
)
# Then deploy the release to your own database: in a terminal, `cd ai-service && alembic upgrade head`.
ch.alembic("upgrade head")
