# 0. The traceback, read from the bottom up: ImportError, and just above it the last frame in your project.
answer = "ai-service/migrations/env.py:18"
# 1. The import: env.py asks main.py for a model `JobQueue` it does not have. Base is all env.py needs.
ch.edit_file("migrations/env.py", "from main import Base, JobQueue", "from main import Base")
# 2. The tables exist (create_all made them) and match the models: record that, don't recreate them.
ch.alembic("stamp head")
ch.alembic("check")
