# Exactly one revision down. It drops phone_number, which holds data, so the
# lab asks you to confirm first.
ch.alembic("downgrade -1", confirm=True)
