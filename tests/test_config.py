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


def test_oidc_settings_take_the_client_secret_from_the_environment_only(tmp_path, monkeypatch):
    from safepacs.config import Settings, SettingsError

    s = Settings(data_dir=tmp_path, oidc={"issuer": "https://idp.example", "client_id": "safepacs",
                                          "redirect_uri": "https://pacs.example/api/auth/oidc/callback"})
    monkeypatch.delenv("SAFEPACS_OIDC_CLIENT_SECRET", raising=False)
    with pytest.raises(SettingsError, match="SAFEPACS_OIDC_CLIENT_SECRET"):
        s.oidc_config()
    monkeypatch.setenv("SAFEPACS_OIDC_CLIENT_SECRET", "s3cret-from-env")
    cfg = s.oidc_config()
    assert cfg.client_secret == "s3cret-from-env" and cfg.issuer == "https://idp.example"
    s.save()
    assert "s3cret" not in (tmp_path / "safepacs.json").read_text()
    s.oidc["client_secret"] = "in the file"
    with pytest.raises(SettingsError):
        s.oidc_config()
    assert Settings(data_dir=tmp_path).oidc_config() is None


def test_cors_origins_round_trip_without_duplicates(tmp_path):
    Settings(tmp_path, cors_origins=["https://viewer.example.org", "http://127.0.0.1:3000",
                                     "https://viewer.example.org", "http://[::1]:8042"]).save()
    assert Settings.load(tmp_path).cors_origins == ["https://viewer.example.org", "http://127.0.0.1:3000",
                                                    "http://[::1]:8042"]


@pytest.mark.parametrize("origins", [["*"], ["https://viewer.example.org/"], ["https://v.example.org/ohif"],
                                     ["ftp://v.example.org"], ["viewer.example.org"], "https://v.example.org",
                                     [3], ["https://*.example.org"]])
def test_cors_origins_must_be_exact_origins(tmp_path, origins):
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"cors_origins": origins}))
    with pytest.raises(SettingsError, match="cors_origins"):
        Settings.load(tmp_path)
