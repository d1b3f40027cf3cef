# Start fresh (development only!): empty database, no revision files, one new initial revision.
ch.nuke(confirm=True)
ch.clean_versions()
ch.alembic('revision --autogenerate -m "initial schema"')
ch.show_revision()
# Reviewed: downgrade() drops the tables but not the ENUM type job_state that create_table made.
ch.rewrite_revision(
    downgrade="""op.drop_table('user_settings')
op.drop_index(op.f('ix_job_entries_user_id'), table_name='job_entries')
op.drop_table('job_entries')
op.drop_table('user_profiles')
sa.Enum(name='job_state').drop(op.get_bind())"""
)
ch.alembic("upgrade head")
# The round trip proves the downgrade undoes the upgrade: base, then head again.
ch.alembic("downgrade base", confirm=True)
ch.alembic("upgrade head")
