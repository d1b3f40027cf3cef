# `history` lists `parent -> revision, message`; the first revision, from base:
#   <base> -> 3f1c2a9d4b10, create user profiles and settings
answer = "3f1c2a9d4b10"
ch.alembic(f"downgrade {answer}", confirm=True)
