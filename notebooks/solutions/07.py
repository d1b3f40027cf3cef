# The model first: 'paused' right after 'done' (an enum's order is part of the type: ORDER BY state follows it).
ch.edit_model('"done"', '"done", "paused"')
ch.alembic('revision -m "add paused job state"')
ch.rewrite_revision(
    # AFTER 'done': where the model has it. A bare ADD VALUE appends at the end, and the order would differ.
    upgrade="""with op.get_context().autocommit_block():
    op.execute("ALTER TYPE job_state ADD VALUE IF NOT EXISTS 'paused' AFTER 'done'")""",
    # PostgreSQL cannot drop one value from an enum: recreate the type without it (paused jobs go back in the queue).
    downgrade="""bind = op.get_bind()
bind.execute(sa.text("UPDATE job_entries SET state = 'queued' WHERE state = 'paused'"))
values = [v for v in bind.execute(sa.text("SELECT unnest(enum_range(NULL::job_state))::text")).scalars()
          if v != 'paused']
op.execute("ALTER TYPE job_state RENAME TO job_state_old")
sa.Enum(*values, name="job_state").create(bind)
op.execute("ALTER TABLE job_entries ALTER COLUMN state DROP DEFAULT")
op.execute("ALTER TABLE job_entries ALTER COLUMN state TYPE job_state USING state::text::job_state")
op.execute("ALTER TABLE job_entries ALTER COLUMN state SET DEFAULT 'queued'")
op.execute("DROP TYPE job_state_old")""",
)
ch.alembic("upgrade head")
ch.alembic("check")
