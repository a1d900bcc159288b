"""Archive settings: saved beside the data, validated on load, no secrets inside."""

from __future__ import annotations

import json

import pytest

from safepacs.config import SETTINGS_FILE, Settings, SettingsError
from safepacs.deid.options import Options


def test_round_trip_with_defaults_and_options(tmp_path):
    s = Settings(tmp_path, deid_options=Settings.options_dict(Options(retain_long_modified_dates=True)))
    s.save()
    loaded = Settings.load(tmp_path)
    assert loaded.database_url == f"sqlite:///{tmp_path.resolve() / 'index.sqlite'}"
    assert loaded.store_url == f"file://{tmp_path.resolve() / 'blobs'}"
    assert loaded.options() == Options(retain_long_modified_dates=True)
    assert loaded.http_host == "127.0.0.1" and loaded.ae_title == "SAFEPACS"


def test_database_url_from_the_environment_wins(tmp_path, monkeypatch):
    Settings(tmp_path).save()
    monkeypatch.setenv("SAFEPACS_DATABASE_URL", "postgresql://u@127.0.0.1/x")
    assert Settings.load(tmp_path).database_url == "postgresql://u@127.0.0.1/x"


@pytest.mark.parametrize(
    "doc, message",
    [({"nonsense": 1}, "unknown settings"), ({"deid_options": {"retain_everything": True}}, "unknown"),
     ({"ae_title": "X" * 17}, "ae_title"), ("[]", "JSON object")],
)
def test_bad_settings_are_refused(tmp_path, doc, message):
    (tmp_path / SETTINGS_FILE).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(SettingsError, match=message):
        Settings.load(tmp_path)


def test_missing_settings_say_run_init(tmp_path):
    with pytest.raises(SettingsError, match="run init"):
        Settings.load(tmp_path)
