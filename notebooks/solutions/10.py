# NOT NULL on a table with rows: the rows already there need a value. The way that works on any table:
ch.add_column("UserProfile", "country = Column(String(2), nullable=False)")
ch.alembic('revision --autogenerate -m "add country"')
# Autogenerate writes one add_column(nullable=False), which fails on the rows. In steps instead: add it nullable,
# backfill, then NOT NULL; with timeouts first. (server_default="GB" in the model and the revision works too.)
ch.rewrite_revision(
    upgrade="""op.execute("SET LOCAL lock_timeout = '1s'")
op.execute("SET LOCAL statement_timeout = '10s'")
op.add_column('user_profiles', sa.Column('country', sa.String(length=2), nullable=True))
op.execute("UPDATE user_profiles SET country = 'GB' WHERE country IS NULL")
op.alter_column('user_profiles', 'country', existing_type=sa.String(length=2), nullable=False)"""
)
ch.review()
ch.alembic("upgrade head")
