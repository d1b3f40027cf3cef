# Carol's revision (on main first) adds user_settings.timezone; yours adds it too. A merge of the two heads
# would run both ADD COLUMNs, and the second fails. So yours goes after hers (a rebase: its down_revision is
# her revision) and changes her column into what main.py says, instead of adding it again: her NULLs first
# (a server_default fills only new rows). ch.solution() starts from the exercise's start after ch.reset(), where
# your revision starts at a1c4e7f20b13; after the chapter's steps it starts at their merge, 0e0000000001, and
# needs both parents: down_revision = ('0e0000000001', 'c3e8a6d2f4b5').
ch.edit_file(
    "migrations/versions/0d0000000006_timezone_for_reminders.py",
    "down_revision: Union[str, Sequence[str], None] = 'a1c4e7f20b13'",
    "down_revision: Union[str, Sequence[str], None] = 'c3e8a6d2f4b5'",
)
ch.rewrite_revision(
    revision="0d0000000006",
    upgrade="""op.execute("UPDATE user_settings SET timezone = 'UTC' WHERE timezone IS NULL")
op.alter_column('user_settings', 'timezone', existing_type=sa.String(length=40), type_=sa.String(length=64),
                server_default='UTC', nullable=False)""",
    downgrade="""op.alter_column('user_settings', 'timezone', existing_type=sa.String(length=64),
                type_=sa.String(length=40), server_default=None, nullable=True)""",
)
ch.alembic("heads")
ch.alembic("upgrade head")
