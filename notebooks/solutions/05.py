# A data migration: an empty revision, SQL in upgrade(). No import from main.py.
ch.alembic('revision -m "lowercase emails"')
ch.rewrite_revision(
    upgrade='op.execute("UPDATE user_profiles SET email = lower(email)")',
    # The original capitals are gone for good: say so rather than pretend.
    downgrade="pass  # lowercasing cannot be undone; the emails stay lowercase",
)
ch.alembic("upgrade head")
