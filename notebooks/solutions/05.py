# A data migration: an empty revision, SQL in upgrade(). No import from main.py.
ch.alembic('revision -m "lowercase emails"')
ch.rewrite_revision(
    upgrade='''
# Ada signed up twice: keep the older profile, delete the later one, or the
# UPDATE fails on the UNIQUE constraint.
op.execute("""
    DELETE FROM user_profiles p
    WHERE EXISTS (SELECT 1 FROM user_profiles q WHERE lower(q.email) = lower(p.email) AND q.id < p.id)
""")
# Only the rows that still need it: a second run finds none and changes nothing.
op.execute("UPDATE user_profiles SET email = lower(email) WHERE email <> lower(email)")
''',
    # The capitals and the deleted duplicate are gone for good: say so rather than pretend.
    downgrade="pass  # lowercasing and removing duplicates cannot be undone",
)
# The lab stops first: the rehearsal sees a row deleted. That row is the duplicate: confirm.
ch.alembic("upgrade head", confirm=True)
