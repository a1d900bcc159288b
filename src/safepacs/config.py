"""Archive settings, kept in ``DATA_DIR/safepacs.json``.

Settings hold no secret and no patient data: the key-encryption key lives in its own file
(mode 0600) or comes from the environment, and everything else is derived from it.  A
database URL may carry a password; keep it in ``SAFEPACS_DATABASE_URL`` instead when that
matters (the environment wins over the file).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from safepacs.deid.options import Options
from safepacs.errors import SafepacsError

SETTINGS_FILE = "safepacs.json"
DEFAULT_AE_TITLE = "SAFEPACS"


class SettingsError(SafepacsError):
    """The settings file is missing or malformed."""


#: a web origin as browsers send it: scheme, host, optional port; nothing else
_ORIGIN = re.compile(r"^https?://(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def check_origins(origins: object) -> list[str]:
    """``origins`` as a list of exact web origins, or :class:`SettingsError`.  A wildcard is
    refused: which pages may read the archive with a reader's token is a site's explicit
    choice, never "any"."""
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise SettingsError("cors_origins must be a list of origins such as https://viewer.example.org")
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise SettingsError(f"cors_origins: {origin!r} is not an origin: give scheme://host[:port] "
                                "(no path, no trailing slash, no wildcard)")
    return list(dict.fromkeys(origins))


@dataclass
class Settings:
    """Everything an archive needs to start, except secrets."""

    data_dir: Path
    database_url: str = ""
    store_url: str = ""
    #: where the key-encryption key comes from: ``file:PATH`` (relative to data_dir) or ``env:VAR``
    kek: str = "file:keys/kek.key"
    ae_title: str = DEFAULT_AE_TITLE
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    dicom_port: int = 11112
    #: DIMSE callers allowed to connect: [{"ae_title": "MODALITY1", "host": "10.0.0.5"}]
    allowed_callers: list[dict] = field(default_factory=list)
    #: C-MOVE destinations: {"VIEWER": ["127.0.0.1", 11113]}
    move_destinations: dict[str, list] = field(default_factory=dict)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    #: where signed audit tree heads are published (a file, ideally on another machine's
    #: mount; default DATA_DIR/audit-witness.jsonl)
    audit_witness: str = ""
    #: audit export to a syslog collector over TLS: {"host", "port", "ca", "server_name", "spool"}
    audit_syslog: dict = field(default_factory=dict)
    #: OpenID Connect sign-in: {"issuer", "client_id", "redirect_uri", "claim", "scope",
    #: "trust_idp_mfa"}; the client secret comes from SAFEPACS_OIDC_CLIENT_SECRET, never this file
    oidc: dict = field(default_factory=dict)
    #: the organisation running the archive, as patients see it in their access log
    organisation: str = ""
    #: patient pseudonyms whose every access raises an alert
    vip_patients: list[str] = field(default_factory=list)
    #: de-identification options of this site that differ from the defaults (Options fields)
    deid_options: dict[str, object] = field(default_factory=dict)
    #: seconds between retention runs while serving (``safepacs retention run`` on a timer);
    #: 0 turns the timer off (run it from cron instead)
    retention_interval_s: float = 86400.0
    #: web origins (``https://viewer.example.org``) whose pages may call DICOMweb from a
    #: browser (CORS), such as a zero-footprint viewer served from another host; none by default
    cors_origins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'index.sqlite').resolve()}"
        if not self.store_url:
            self.store_url = f"file://{(self.data_dir / 'blobs').resolve()}"
        if self.ae_title and (len(self.ae_title) > 16 or not self.ae_title.isascii()):
            raise SettingsError("ae_title must be at most 16 ASCII characters")
        if not isinstance(self.retention_interval_s, (int, float)) or self.retention_interval_s < 0:
            raise SettingsError("retention_interval_s must be a number of seconds >= 0")
        self.cors_origins = check_origins(self.cors_origins)
        self.options()  # validate early

    @staticmethod
    def options_dict(options: Options) -> dict[str, object]:
        """The fields of ``options`` that differ from the defaults."""
        default = Options()
        return {
            k: getattr(options, k)
            for k in Options.field_names()
            if getattr(options, k) != getattr(default, k)
        }

    def oidc_config(self):  # type: ignore[no-untyped-def]
        """The OpenID Connect settings with the secret from the environment, or None."""
        if not self.oidc:
            return None
        from safepacs.access.oidc import OidcConfig

        secret = os.environ.get("SAFEPACS_OIDC_CLIENT_SECRET", "")
        allowed = set(OidcConfig.__dataclass_fields__) - {"client_secret"}
        unknown = set(self.oidc) - allowed
        if unknown or not secret or not {"issuer", "client_id", "redirect_uri"} <= set(self.oidc):
            raise SettingsError(
                "oidc settings need issuer, client_id and redirect_uri (and only known keys), and "
                "the client secret in SAFEPACS_OIDC_CLIENT_SECRET")
        return OidcConfig(client_secret=secret, **self.oidc)

    def options(self) -> Options:
        """The site's de-identification options."""
        unknown = set(self.deid_options) - set(Options.field_names())
        if unknown:
            raise SettingsError(f"unknown de-identification options: {sorted(unknown)}")
        try:
            return Options(**self.deid_options)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise SettingsError(str(exc)) from None

    # --- persistence --------------------------------------------------------------
    def save(self) -> None:
        """Write the settings atomically (temp + rename)."""
        doc = dataclasses.asdict(self)
        doc.pop("data_dir")
        path = self.data_dir / SETTINGS_FILE
        tmp = path.with_name(path.name + ".part")
        # 0600: database_url / store_url may carry credentials
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    @classmethod
    def load(cls, data_dir: Path, *, database_url: str | None = None) -> Settings:
        """Read ``data_dir/safepacs.json``; ``database_url`` or SAFEPACS_DATABASE_URL override it."""
        data_dir = Path(data_dir)
        path = data_dir / SETTINGS_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"{data_dir}: not a safepacs data dir (no {SETTINGS_FILE}); run init") from None
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{path}: unreadable settings ({exc.__class__.__name__})") from None
        if not isinstance(doc, dict):
            raise SettingsError(f"{path}: settings must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)} - {"data_dir"}
        unknown = set(doc) - known
        if unknown:
            raise SettingsError(f"{path}: unknown settings {sorted(unknown)}")
        url = database_url or os.environ.get("SAFEPACS_DATABASE_URL")
        if url:
            doc["database_url"] = url
        try:
            return cls(data_dir=data_dir, **doc)
        except TypeError as exc:
            raise SettingsError(f"{path}: malformed settings ({exc})") from None
