"""The ai-service: the application whose database the learner migrates.

Its SQLAlchemy models are the "code" side of every migration; the small
FastAPI app (the "ai-api") reads and writes them, so when the models and the
database disagree the API fails visibly, and after `alembic upgrade head` it
works again. This file runs on its own in its container: it never imports the
Migration Lab kit.
"""

import os
from pathlib import Path

from dotenv import load_dotenv
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import (
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    create_engine,
    func,
    inspect,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, declarative_base

# Every constraint gets a predictable name, so a migration can drop or alter
# it by name instead of by whatever name PostgreSQL happened to invent.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Base = declarative_base(metadata=MetaData(naming_convention=NAMING_CONVENTION))


class UserProfile(Base):
    __tablename__ = "user_profiles"

    id = Column(Integer, primary_key=True)
    name = Column(String(100), nullable=False)
    email = Column(String(255), nullable=False, unique=True)
    created_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())


class UserSettings(Base):
    __tablename__ = "user_settings"

    id = Column(Integer, primary_key=True)
    user_id = Column(ForeignKey("user_profiles.id", ondelete="CASCADE"), nullable=False, unique=True)
    theme = Column(String(20), nullable=False, server_default="light")
    status = Column(String(20), nullable=True)


class JobEntry(Base):
    __tablename__ = "job_entries"

    id = Column(Integer, primary_key=True)
    user_id = Column(ForeignKey("user_profiles.id", ondelete="CASCADE"), nullable=False, index=True)
    prompt = Column(Text, nullable=False)
    state = Column(
        Enum("queued", "running", "done", name="job_state"),
        nullable=False,
        server_default="queued",
    )
    created_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())


# --- the ai-api -------------------------------------------------------------

# A git-ignored .env beside this file may hold DATABASE_URL for a local run;
# a real environment variable (as docker-compose sets it) always wins, and then
# .env is not even read (in the container it may belong to another user).
if "DATABASE_URL" not in os.environ:
    load_dotenv(Path(__file__).with_name(".env"))

# This service's own helper, beside this file: any PostgreSQL spelling of DATABASE_URL.
from database_url import BadDatabaseURL, normalise  # noqa: E402

app = FastAPI(title="ai-api")
_engine = None


def get_session():
    """Open a session on DATABASE_URL; the engine is made on first use, not at import."""
    global _engine
    if _engine is None:
        url = os.environ.get("DATABASE_URL")
        if not url:
            raise HTTPException(503, "DATABASE_URL is not set")
        try:
            url = normalise(url)
        except BadDatabaseURL as error:
            raise HTTPException(503, str(error)) from None
        _engine = create_engine(url, pool_pre_ping=True)
    with Session(_engine) as session:
        yield session


def _as_dict(profile: UserProfile) -> dict:
    """Every column the model maps, by its Python name: a new column shows up in the API at once, and a column
    renamed in the database under the same attribute (`email = Column("email_address", ...)`) keeps the API's
    field as it was."""
    return {attr.key: getattr(profile, attr.key) for attr in inspect(UserProfile).column_attrs}


def _schema_error(error: Exception) -> HTTPException:
    return HTTPException(
        503,
        "The database schema does not match the models in main.py "
        f"({type(error.orig).__name__}: {str(error.orig).splitlines()[0]}). "
        "Run `alembic upgrade head`.",
    )


class ProfileIn(BaseModel):
    name: str
    email: str


@app.get("/health")
def health(session: Session = Depends(get_session)) -> dict:
    try:
        session.execute(select(1))
    except OperationalError as error:
        raise HTTPException(503, f"database unreachable: {error.orig}") from error
    return {"status": "ok"}


@app.get("/profiles")
def list_profiles(session: Session = Depends(get_session)) -> list[dict]:
    try:
        profiles = session.scalars(select(UserProfile).order_by(UserProfile.id)).all()
    except ProgrammingError as error:
        raise _schema_error(error) from error
    return [_as_dict(p) for p in profiles]


@app.post("/profiles", status_code=201)
def create_profile(body: ProfileIn, session: Session = Depends(get_session)) -> dict:
    profile = UserProfile(**body.model_dump())
    session.add(profile)
    try:
        session.commit()
        session.refresh(profile)
    except IntegrityError as error:
        raise HTTPException(409, f"a profile with email {body.email!r} already exists") from error
    except ProgrammingError as error:
        raise _schema_error(error) from error
    return _as_dict(profile)


# --- which models are running ----------------------------------------------
# `uvicorn --reload` restarts the app a moment after main.py is saved. A client
# that has just edited the models (the lab's notebooks do) waits until /version
# reports the models it saved before it calls the API.


def models_fingerprint() -> str:
    """A short hash of the tables, columns and types this process's models declare."""
    import hashlib

    described = sorted(
        f"{column.table.name}.{column.name} {column.type!r} nullable={column.nullable}"
        for table in Base.metadata.tables.values()
        for column in table.columns
    )
    return hashlib.sha256("\n".join(described).encode()).hexdigest()[:16]


MODELS_FINGERPRINT = models_fingerprint()


@app.get("/version")
def version() -> dict:
    return {"models": MODELS_FINGERPRINT}
