# The model says what the database will have: a foreign key, and an index on it (index=True).
ch.edit_model(
    "reviewer_id = Column(Integer, nullable=True)",
    'reviewer_id = Column(ForeignKey("user_profiles.id"), nullable=True, index=True)',
)
# Hand-written: autogenerate's create_foreign_key would check every job under a lock that stops writes.
ch.alembic('revision -m "reviewer references a profile"')
ch.rewrite_revision(
    upgrade="""op.execute("SET LOCAL lock_timeout = '200ms'")  # ask briefly; the deploy retries
# 1. the key NOT VALID: a moment's lock on both tables, no scan; new rows are checked from now on
op.create_foreign_key('fk_job_entries_reviewer_id_user_profiles', 'job_entries', 'user_profiles',
                      ['reviewer_id'], ['id'], postgresql_not_valid=True)
with op.get_context().autocommit_block():  # each statement its own transaction: the NOT VALID's lock is gone
    # 2. the scan of the old rows, under a lock that lets reads and writes go on
    op.execute('ALTER TABLE job_entries VALIDATE CONSTRAINT fk_job_entries_reviewer_id_user_profiles')
    # 3. the index on the referencing column, concurrently
    op.create_index('ix_job_entries_reviewer_id', 'job_entries', ['reviewer_id'],
                    postgresql_concurrently=True)""",
    downgrade="""with op.get_context().autocommit_block():
    op.drop_index('ix_job_entries_reviewer_id', table_name='job_entries', postgresql_concurrently=True)
op.drop_constraint('fk_job_entries_reviewer_id_user_profiles', 'job_entries', type_='foreignkey')""",
)
ch.alembic("upgrade head")
