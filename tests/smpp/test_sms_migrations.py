"""Migration 0007 (receipts in the segment row, no id_dec/id_hex) down and up
again on SQLite, with a segment row in it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

MIGRATIONS = Path(__file__).resolve().parents[2] / "gateway" / "store" / "migrations"


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(cfg, revision)
    engine.dispose()


def _segment_columns(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns("sms_segments")}
    finally:
        engine.dispose()


def test_0007_down_and_up_keeps_the_segments(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _migrate(url, "0006")
    assert {"id_dec", "id_hex"} <= _segment_columns(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sms_messages (id, account, source, destination, text, data_coding,"
                " segments, concat_method, concat_ref, state, attempts, expires_at, created_at,"
                " updated_at) VALUES ('m1', 'alice', 'Callgate', '+4915112000001', 'hi', 0,"
                " 1, 'udh', 0, 'submitted', 1, 2e9, 1.0, 1.0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO sms_segments (message_id, seq, submit_status, smsc,"
                " smsc_message_id, id_dec, id_hex) VALUES ('m1', 1, 'accepted', 'sim', '77',"
                " '77', '119')"
            )
        )
    engine.dispose()

    _migrate(url, "head")
    columns = _segment_columns(url)
    assert "dlr_raw" in columns and not {"id_dec", "id_hex"} & columns
    _migrate(url, "0006", down=True)
    assert {"id_dec", "id_hex"} <= _segment_columns(url)
    assert "dlr_raw" not in _segment_columns(url)
    _migrate(url, "head")

    engine = create_engine(url)
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT submit_status, smsc_message_id, dlr_raw FROM sms_segments")
        ).one()
        indexes = {i["name"] for i in inspect(connection).get_indexes("sms_segments")}
    engine.dispose()
    assert tuple(row) == ("accepted", "77", None)
    assert indexes == {"ix_sms_segments_smsc_id"}
