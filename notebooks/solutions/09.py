# Start fresh (development only!): empty database, no revision files, one new initial revision.
ch.nuke(confirm=True)
ch.clean_versions()
ch.alembic('revision --autogenerate -m "initial schema"')
ch.show_revision()
ch.alembic("upgrade head")
