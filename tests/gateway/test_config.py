"""Configuration: file:line errors, embedded defaults, generated reference, secrets, reload."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config.loader import ConfigError, load_config, parse_config
from gateway.config.locate import key_lines, line_of
from gateway.config.models import CallgateConfig
from gateway.config.reference import nested_model, render_reference
from gateway.config.secrets import SecretRef, SecretUnavailableError
from gateway.config.sip import SipListener
from gateway.reload import merge_reload

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "config" / "examples" / "broken"
runner = CliRunner()


@pytest.mark.parametrize(
    ("name", "line", "needle"),
    [
        ("wrong-type.toml", 6, "sip.listen[1].port: Input should be a valid integer"),
        ("unknown-key.toml", 5, "http.prot: unknown key"),
        ("missing-required.toml", 4, "sip.listen[0].transport: required key is missing"),
        ("bad-toml.toml", 4, "invalid TOML"),
    ],
)
def test_check_config_names_file_line_and_key(name: str, line: int, needle: str) -> None:
    path = BROKEN / name
    result = runner.invoke(app, ["check-config", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line}: " in result.output, result.output
    assert needle in result.output, result.output


def test_check_config_accepts_the_shipped_file() -> None:
    result = runner.invoke(app, ["check-config", str(ROOT / "config" / "callgate.toml")])
    assert result.exit_code == 0, result.output


def test_production_example_is_valid() -> None:
    cfg = load_config(ROOT / "config" / "examples" / "production.toml")
    assert [listener.transport for listener in cfg.sip.listen] == ["udp", "tcp", "tls"]
    assert cfg.sms.routes[0].smsc == ("smsc-a", "smsc-b")


def test_sms_references_are_checked() -> None:
    text = (
        '[[smpp.smsc]]\nname = "a"\nhost = "127.0.0.1"\nsystem_id = "x"\n'
        'password = { env = "X" }\n[[sms.routes]]\nprefix = ""\nsmsc = ["b"]\n'
    )
    with pytest.raises(ConfigError, match="unknown SMSC b"):
        parse_config(text, "c.toml")
    with pytest.raises(ConfigError, match="unknown account"):
        parse_config('[[sms.numbers]]\naccount = "ghost"\nnumbers = ["+4930123"]\n', "c.toml")


def test_shipped_file_spells_out_the_embedded_defaults() -> None:
    assert load_config(ROOT / "config" / "callgate.toml") == CallgateConfig()


def test_reference_doc_is_current() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert doc == render_reference(), "run `make docs` to regenerate docs/configuration.md"


def test_every_field_is_documented() -> None:
    seen: set[type] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        assert model.__doc__, model
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            inner = nested_model(field.annotation)
            if inner is not None:
                walk(inner)

    walk(CallgateConfig)
    assert SipListener in seen and len(seen) > 10


def test_all_problems_are_reported_at_once() -> None:
    text = '[http]\nport = "x"\nhots = "1"\n[logging]\nlevel = "loud"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.toml")
    rendered = [str(p) for p in info.value.problems]
    assert any(r.startswith("c.toml:2: http.port") for r in rendered), rendered
    assert any(r.startswith("c.toml:3: http.hots: unknown key") for r in rendered), rendered
    assert any(r.startswith("c.toml:5: logging.level") for r in rendered), rendered


def test_tls_listener_defaults_to_5061() -> None:
    cfg = parse_config(
        '[sip]\nlisten = [{ transport = "tls", tls_cert = "c.pem", tls_key = "k.pem" }]\n',
        "c.toml",
    )
    assert cfg.sip.listen[0].port == 5061
    with pytest.raises(ConfigError, match="needs tls_cert and tls_key"):
        parse_config('[sip]\nlisten = [{ transport = "tls" }]\n', "c.toml")


def test_unreadable_file_is_one_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent.toml: file not found"):
        load_config(tmp_path / "absent.toml")


def test_secret_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret\n")
    assert SecretRef(file=secret_file).reveal().get_secret_value() == "s3cret"
    monkeypatch.setenv("CG_TEST_SECRET", "fromenv")
    ref = SecretRef(env="CG_TEST_SECRET")
    assert ref.reveal().get_secret_value() == "fromenv"
    assert "fromenv" not in repr(ref.reveal())
    with pytest.raises(SecretUnavailableError, match="not set"):
        SecretRef(env="CG_TEST_UNSET_SECRET").reveal()
    with pytest.raises(ValueError, match="exactly one"):
        SecretRef()


def test_check_config_reports_unreadable_secret_with_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[store]\npool_size = 2\npassword = {{ file = "{tmp_path}/missing" }}\n')
    result = runner.invoke(app, ["check-config", str(path)])
    assert result.exit_code == 1
    assert f"{path}:3: store.password: cannot read secret file" in result.output, result.output


def test_reload_keeps_restart_only_settings() -> None:
    old = CallgateConfig()
    new = parse_config(
        '[sip]\nserver_header = "New"\nlisten = [{ transport = "udp", port = 5070 }]\n'
        '[http]\nport = 9999\n[logging]\nlevel = "debug"\n',
        "c.toml",
    )
    merged, waiting = merge_reload(old, new)
    assert merged.sip.server_header == "New"
    assert merged.logging.level == "debug"
    assert merged.sip.listen == old.sip.listen
    assert merged.http == old.http
    assert sorted(waiting) == ["http", "sip.listen"]


# --- the key locator ---------------------------------------------------------


def test_locator_handles_tables_arrays_and_inline_tables() -> None:
    text = (
        "# comment\n"
        "[a]\n"
        "x = 1\n"
        '"quoted.key" = """multi\n'
        "line [not.a.table]\n"
        '"""\n'
        "[[b]]\n"
        "y = [\n"
        "  { z = 1 },\n"
        "  { z = 2, w = 'v' },\n"
        "]\n"
        "[[b]]\n"
        "c.d = true\n"
    )
    tomllib.loads(text)
    lines = key_lines(text)
    assert lines[("a", "x")] == 3
    assert lines[("a", "quoted.key")] == 4
    assert ("not", "a", "table") not in lines
    assert lines[("b", 0)] == 7
    assert lines[("b", 0, "y", 1, "w")] == 10
    assert lines[("b", 1, "c", "d")] == 13
    assert line_of(lines, ("b", 1, "c", "d", "missing")) == 13
    assert line_of(lines, ("nowhere",)) is None


_keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
_values = st.one_of(
    st.integers(),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20),
    st.lists(st.integers(), max_size=3),
)


@given(st.dictionaries(_keys, st.dictionaries(_keys, _values, max_size=5), max_size=5))
def test_locator_finds_every_key_on_its_line(doc: dict[str, dict[str, object]]) -> None:
    out: list[str] = []
    expected: dict[tuple[str, str], int] = {}
    for table, items in doc.items():
        out.append(f"[{table}]")
        for key, value in items.items():
            rendered = (
                json.dumps(value, ensure_ascii=False)
                if not isinstance(value, bool)
                else str(value).lower()
            )
            out.append(f"{key} = {rendered}")
            expected[(table, key)] = len(out)
    text = "\n".join(out) + "\n"
    assert tomllib.loads(text) == doc
    lines = key_lines(text)
    for path, line in expected.items():
        assert lines[path] == line


@given(st.text(max_size=300))
def test_locator_never_raises_on_valid_toml(text: str) -> None:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    key_lines(text)


@pytest.mark.parametrize(
    ("media", "needle"),
    [
        ("session_min_se = 60", "session_min_se: Input should be greater than or equal to 90"),
        ("session_expires = 100\nsession_min_se = 120", "must not exceed session_expires"),
        ('session_timer = "sometimes"', "media.session_timer"),
    ],
)
def test_session_timer_settings_are_checked(media: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_config(f"[media]\n{media}\n", "c.toml")
