from libs.storage.testing import database_engine, postgres_server  # noqa: F401
