# The column gets its new name; the attribute stays `email`, the name the ai-api and its clients use
# (ProfileIn.email, UserProfile(**body.model_dump())). Column's first argument is the database's name.
ch.edit_model(
    'email = Column(String(255), nullable=False, unique=True)',
    'email = Column("email_address", String(255), nullable=False, unique=True)',
)
# Autogenerate sees a dropped and an added column, and a unique constraint dropped
# (uq_user_profiles_email) and added (..._address).
ch.alembic('revision --autogenerate -m "rename email to email_address"')
# Never apply that. One rename for the column, one for the constraint (its
# index follows): alembic has no op for a constraint's name, so plain SQL.
ch.rewrite_revision(
    upgrade="""
op.alter_column('user_profiles', 'email', new_column_name='email_address')
op.execute('ALTER TABLE user_profiles RENAME CONSTRAINT uq_user_profiles_email TO uq_user_profiles_email_address')
""",
    downgrade="""
op.execute('ALTER TABLE user_profiles RENAME CONSTRAINT uq_user_profiles_email_address TO uq_user_profiles_email')
op.alter_column('user_profiles', 'email_address', new_column_name='email')
""",
)
ch.rehearse("upgrade head", show_table="user_profiles")
ch.alembic("upgrade head")
ch.alembic("check")  # nothing left for autogenerate: no stale name
ch.api("GET", "/profiles")  # the API's field is still "email"
