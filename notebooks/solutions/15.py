# 1. The code first: UserProfile no longer maps phone_number (deploying it is editing main.py here).
ch.edit_model("    phone_number = Column(String, nullable=True)\n", "")
# 2. Then the migration, asking for its lock briefly: the deploy retries a run that gave up on it.
ch.alembic('revision -m "drop phone number"')
ch.rewrite_revision(
    upgrade="""op.execute("SET LOCAL lock_timeout = '200ms'")  # ask briefly; the deploy retries
op.drop_column('user_profiles', 'phone_number')""",
    # The column comes back, nullable; the numbers do not.
    downgrade="op.add_column('user_profiles', sa.Column('phone_number', sa.String(), nullable=True))",
)
# It drops the numbers for good: the kit asks before it destroys data, and this time we mean it.
ch.alembic("upgrade head", confirm=True)
