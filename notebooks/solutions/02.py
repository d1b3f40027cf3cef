# Rename in the model: autogenerate will see a dropped and an added column.
ch.rename_column("UserProfile", "name", "full_name")
ch.alembic('revision --autogenerate -m "rename name to full_name"')
# Never apply that: replace drop + add with one rename, both ways.
ch.rewrite_revision(
    upgrade="op.alter_column('user_profiles', 'name', new_column_name='full_name')",
    downgrade="op.alter_column('user_profiles', 'full_name', new_column_name='name')",
)
ch.alembic("upgrade head")
