# 1. Change the model. server_default: the *database* fills the value in, for
#    new rows and, when the column is added, for every existing row too.
ch.add_column("UserProfile", "last_login = Column(DateTime(timezone=True), server_default=func.now())")
# 2. Generate the revision.
ch.alembic('revision --autogenerate -m "add last login"')
# 3. Review it: one op.add_column with server_default=sa.text('now()').
ch.show_revision()
# 4. Apply it.
ch.alembic("upgrade head")
