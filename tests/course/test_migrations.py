"""pytest-alembic's built-in checks on the ai-service's migration history.

Single head, upgrade to head, models match the DDL, and every revision's
downgrade undoes its upgrade - on a real PostgreSQL, through env.py's
`connection` attribute, the channel the lab's runner uses too.
"""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.config import Config
from pytest_alembic.tests import (  # noqa: F401  (collected as tests)
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

from migration_lab import Project


@pytest.fixture
def alembic_config(project: Project) -> Config:
    config = Config(str(project.service_dir / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture
def alembic_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()
