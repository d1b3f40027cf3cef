# Carol's revision starts from a1c4e7f20b13 too: a second head. Join them, then apply.
ch.alembic('merge heads -m "merge carol" --rev-id 0e0000000002')
ch.alembic("upgrade head")
