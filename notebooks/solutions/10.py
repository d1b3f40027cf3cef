# NOT NULL on a table with rows: the database needs a value for the rows already there.
ch.add_column("UserProfile", 'country = Column(String(2), nullable=False, server_default="GB")')
ch.alembic('revision --autogenerate -m "add country"')
ch.review()
ch.alembic("upgrade head")
