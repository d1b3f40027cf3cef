"""Two versions of the ai-api running against one database, and a burst of their requests.

During a deploy the old code and the new code run at the same time (a rolling
update replaces instances one by one), and a migration runs while both serve
requests. A schema change is safe only if every version that runs while it is
applied keeps working. This module gives chapter 12 such versions: small
FastAPI apps that each map `user_profiles` with the column their code knows
(`name` or `full_name`, `phone_number` or `phone`), exercised in-process
through FastAPI's TestClient against the lab database's URL. That URL is the
same on every route (embedded, compose, a shared server), so the outputs are too.

A request fails when it answers with an error, or when it reads something
wrong: a profile without a value (a column nobody filled), or not the value
another version has just written (a column nobody keeps in step).
"""

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from ..errors import LabError


@dataclass(frozen=True)
class AppVersion:
    """One version of the code: the column it reads and writes when it signs a user up and changes them."""

    key: str  # what a notebook names it by: "old", "new", "old-phone", "new-phone"
    label: str  # how outputs name it
    column: str
    required: bool  # every profile has a value (NOT NULL in the end state); a phone may be unknown
    phone: bool = False  # a phone version: writes phone numbers, and its sign-up gives a name too (NOT NULL)


VERSIONS = {
    v.key: v
    for v in (
        AppVersion("old", "old version (name)", "name", required=True),
        AppVersion("new", "new version (full_name)", "full_name", required=True),
        # The phone versions sign users up too: a trigger that keeps the columns in step on UPDATE only would leave
        # a new user's phone in one column.
        AppVersion("old-phone", "old version (phone_number)", "phone_number", required=False, phone=True),
        AppVersion("new-phone", "new version (phone)", "phone", required=False, phone=True),
    )
}


def version(key: str | AppVersion) -> AppVersion:
    if isinstance(key, AppVersion):
        return key
    if key not in VERSIONS:
        raise LabError(f"There is no app version {key!r}.", f"The versions: {', '.join(VERSIONS)}.")
    return VERSIONS[key]


def _reason(error: sa.exc.DBAPIError) -> str:
    """PostgreSQL's message, first line: what a log would show ('column "name" does not exist')."""
    return str(error.orig).strip().splitlines()[0]


def _name_column(engine: sa.Engine) -> str:
    """The profile's name column as the schema has it now (chapter 12 renames name to full_name before its phone
    exercise): a phone version signs users up with the schema of its day, and phones are all it is about."""
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("user_profiles")}
    except sa.exc.SQLAlchemyError:  # no user_profiles at all: the requests will say so
        return "name"
    return "name" if "name" in columns or "full_name" not in columns else "full_name"


def make_app(app_version: AppVersion, engine: sa.Engine) -> FastAPI:
    """The ai-api as this version's code has it: profiles with id, email and its one column (a phone version's
    sign-up gives a name as well, in the name column the schema has)."""
    app = FastAPI(title=f"ai-api, {app_version.label}")
    column = app_version.column
    profiles = sa.table("user_profiles", sa.column("id"), sa.column("email"), sa.column(column))
    named = _name_column(engine) if app_version.phone else None
    signed_up = sa.table("user_profiles", sa.column("email"), sa.column(column), *([sa.column(named)] if named else []))

    def run(statement: sa.Executable) -> list[dict[str, Any]]:
        try:
            with engine.begin() as conn:
                result = conn.execute(statement)
                return [dict(row) for row in result.mappings()] if result.returns_rows else []
        except sa.exc.DBAPIError as error:
            raise HTTPException(503, _reason(error)) from error

    @app.get("/profiles")
    def list_profiles() -> list[dict[str, Any]]:
        return run(sa.select(profiles).order_by(profiles.c.id))

    @app.post("/profiles", status_code=201)
    def sign_up(body: dict[str, str]) -> dict[str, Any]:
        values = {"email": body["email"], column: body.get(column)}  # a phone may be unknown: NULL
        if named:
            values[named] = body["name"]
        return run(sa.insert(signed_up).values(values).returning(*profiles.c))[0]

    @app.patch("/profiles/{profile_id}")
    def change(profile_id: int, body: dict[str, str]) -> dict[str, Any]:
        found = run(
            sa.update(profiles).where(profiles.c.id == profile_id).values({column: body[column]}).returning(profiles)
        )
        if not found:
            raise HTTPException(404, f"no profile {profile_id}")
        return found[0]

    return app


@dataclass
class VersionResult:
    """What one version saw during a burst."""

    app_version: AppVersion
    requests: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def __str__(self) -> str:
        if not self.failures:
            return f"{self.app_version.label}: 0 failed"
        return f"{self.app_version.label}: {self.failed} of {self.requests} requests failed ({self.failures[0]})"


@dataclass(frozen=True)
class Burst:
    """The result of one burst of requests from the versions that run."""

    results: tuple[VersionResult, ...]

    @property
    def ok(self) -> bool:
        return all(not r.failures for r in self.results)

    def of(self, key: str) -> VersionResult:
        return next(r for r in self.results if r.app_version.key == key)

    def __str__(self) -> str:
        return "\n".join(map(str, self.results))


@contextmanager
def _clients(url: str, versions: Sequence[AppVersion]) -> Iterator[list[TestClient]]:
    """One in-process client per version, on an engine of its own (as separate deployments have)."""
    engines = [sa.create_engine(url, poolclass=sa.pool.NullPool) for _ in versions]
    try:
        yield [
            TestClient(make_app(v, e), raise_server_exceptions=False) for v, e in zip(versions, engines, strict=True)
        ]
    finally:
        for engine in engines:
            engine.dispose()


def burst(url: str, keys: Sequence[str | AppVersion]) -> Burst:
    """Each version writes (signs a user up, then renames them or changes another user's phone), then each reads
    everything.

    The writes come first, so every read can check that it sees what the other
    versions wrote. The number of requests is fixed, so the summary is the same
    on every run; the values written carry a random token, so nothing a
    previous burst left behind can pass for this one's.
    """
    versions = [version(k) for k in keys]
    results = [VersionResult(v) for v in versions]
    written: dict[int, str | None] = {}  # profile id -> the value some version wrote there in this burst
    with _clients(url, versions) as clients:
        existing = _profile_ids(clients)
        for index, (app_version, client, result) in enumerate(zip(versions, clients, results, strict=True)):
            token = secrets.token_hex(3)
            column = app_version.column
            phone = app_version.phone
            first = f"+1 555 02{int(token, 16) % 100:02d}" if phone else f"Signed up {token}"
            result.requests += 1
            body = {"email": f"traffic-{token}@example.org", "name": f"Signed up {token}", column: first}
            reply = client.post("/profiles", json=body)
            signed_up: int | None = None
            if reply.status_code == 201:
                signed_up = reply.json()["id"]
                written[signed_up] = first
            else:
                result.failures.append(_detail(reply))
            if phone:  # a user who gives no phone: its version's column NULL, and the other's must stay NULL too
                result.requests += 1
                body = {"email": f"traffic-{token}-no-phone@example.org", "name": f"No phone {token}"}
                reply = client.post("/profiles", json=body)
                if reply.status_code == 201:
                    written[reply.json()["id"]] = None
                else:
                    result.failures.append(_detail(reply))
            # A name version renames the user it signed up; a phone version changes a phone already there and
            # leaves its sign-up as inserted, so both an INSERT and an UPDATE must reach the other column.
            elsewhere = existing[index % len(existing)] if existing else None
            target = elsewhere if phone else signed_up
            if target is None:
                continue
            value = f"+1 555 01{int(token, 16) % 100:02d}" if phone else f"Renamed {token}"
            result.requests += 1
            reply = client.patch(f"/profiles/{target}", json={column: value})
            if reply.status_code == 200:
                written[target] = value
            else:
                result.failures.append(_detail(reply))
        reference: tuple[AppVersion, dict[int, Any]] | None = None  # the first successful read
        for app_version, client, result in zip(versions, clients, results, strict=True):
            result.requests += 1
            reply = client.get("/profiles")
            if reply.status_code != 200:
                result.failures.append(_detail(reply))
                continue
            seen = {p["id"]: p.get(app_version.column) for p in reply.json()}
            empty = [i for i, value in seen.items() if value is None]
            stale = [i for i, value in written.items() if i in seen and seen[i] != value]
            if app_version.required and empty:
                result.failures.append(f"{len(empty)} profile(s) have no {app_version.column}")
            elif stale:
                result.failures.append(f"it does not see what another version just wrote to {app_version.column}")
            elif reference is not None and reference[1] != seen:
                differ = sum(reference[1].get(i) != value for i, value in seen.items())
                result.failures.append(f"{differ} profile(s) differ from what the {reference[0].label} reads")
            if reference is None:
                reference = (app_version, seen)
    return Burst(tuple(results))


def _profile_ids(clients: list[TestClient]) -> list[int]:
    """The ids of the profiles there are, as the first version that can read them says (not counted as traffic)."""
    for client in clients:
        reply = client.get("/profiles")
        if reply.status_code == 200:
            return [p["id"] for p in reply.json()]
    return []


def _detail(reply: Any) -> str:
    try:
        detail = reply.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if detail else f"HTTP {reply.status_code}"
