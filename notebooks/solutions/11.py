from migration_lab.course import ch11_locks as locks

# 1. The migration, before the code that uses it: the running app never sees a model the database lacks.
ch.alembic('revision -m "add plan"')
# A constant default: PostgreSQL 11+ adds the column without rewriting the table. The ALTER still needs
# ACCESS EXCLUSIVE: ask for it briefly and fail fast (SET LOCAL: for this revision's transaction only), and let
# the deploy retry. Half a second: a request that queues behind the waiting ALTER waits that long, plus its own
# work, well within the 2 s a client waits.
ch.rewrite_revision(
    upgrade="""op.execute("SET LOCAL lock_timeout = '500ms'")
op.add_column('user_profiles', sa.Column('plan', sa.String(length=20), server_default='free', nullable=False))""",
    downgrade="op.drop_column('user_profiles', 'plan')",
)
locks.upgrade_while_busy(ch)
# 2. Then the code: the model says what the database already has.
ch.add_column("UserProfile", 'plan = Column(String(20), nullable=False, server_default="free")')
