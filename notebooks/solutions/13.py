# Replicas take turns: a session advisory lock on the connection alembic migrates on, held around the upgrade.
ch.edit_file(
    "migrate.py",
    '        command.upgrade(config, "head")\n',
    '        connection.execute(text("SELECT pg_advisory_lock(13)"))\n'
    "        connection.commit()\n"
    '        command.upgrade(config, "head")\n'
    '        connection.execute(text("SELECT pg_advisory_unlock(13)"))\n'
    "        connection.commit()\n",
)
# Then deploy the release to your own database.
ch.alembic("upgrade head")
