# downgrade() undoes upgrade(), step by step in reverse order. (In the editor:
# ai-service/migrations/versions/d4f0c3b2a1e9_add_language_to_settings.py.)
ch.rewrite_revision(
    revision="add_language",
    downgrade="""
op.drop_index(op.f('ix_user_settings_language'), table_name='user_settings')
op.drop_column('user_settings', 'language')
""",
)
# The proof, in a terminal: alembic downgrade -1 && alembic upgrade head
ch.alembic("downgrade -1", confirm=True)
ch.schema("user_settings")  # no language column any more
ch.alembic("upgrade head")
