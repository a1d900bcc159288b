"""Helpers for the service-secret tests: a data dir put back into the layout of earlier
versions (the three secrets as plaintext files in ``keys/``, written exactly as the old code
wrote them, no wrapped rows), and the artefacts those secrets vouch for: a signed-in
session's JWT, a watermarked copy, signed audit heads."""

from __future__ import annotations

import io
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from sqlalchemy import delete

from safepacs.config import Settings
from safepacs.deid.keys import Keys
from safepacs.dicom.memio import to_bytes
from safepacs.index import db
from safepacs.index.models import SiteKey
from safepacs.render.display import rendered
from safepacs.render.issuance import Issuances
from safepacs.render.keys import RenderKeys
from safepacs.store import crypto, service_keys
from safepacs.synth import make_dataset
from safepacs.synth.pixels import radiograph
from tests.render.helpers import read

NAMES = (service_keys.ACCESS, service_keys.RENDER, service_keys.AUDIT_SIGNING)
FILES = {service_keys.ACCESS: "access.key", service_keys.RENDER: "render.key",
         service_keys.AUDIT_SIGNING: "audit-signing.key"}


def secrets_of(data_dir: Path) -> dict[str, bytes]:
    """The three secrets as the archive holds them (unwrapped with its KEK)."""
    settings = Settings.load(data_dir)
    engine = db.make_engine(settings.database_url)
    try:
        src = service_keys.WrappedSecrets(engine, lambda: crypto.load_kek(settings.kek, data_dir), data_dir / "keys")
        return {name: src.secret(name) for name in NAMES}
    finally:
        engine.dispose()


def _write_0600(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_old_files(keys_dir: Path, secrets: dict[str, bytes]) -> None:
    """The key files as versions before the wrapped store wrote them."""
    _write_0600(keys_dir / "access.key", secrets[service_keys.ACCESS])  # 32 raw bytes
    Keys(secrets[service_keys.RENDER]).save(keys_dir / "render.key")  # safepacs-key-v1:BASE64
    key = Ed25519PrivateKey.from_private_bytes(secrets[service_keys.AUDIT_SIGNING])
    _write_0600(keys_dir / "audit-signing.key", key.private_bytes(  # PKCS#8 PEM
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def make_old(data_dir: Path, *, keep_rows: bool = False) -> dict[str, bytes]:
    """Turn a closed archive's data dir into the old layout (``keep_rows``: the state of an
    upgrade interrupted after the import); returns the secrets."""
    secrets = secrets_of(data_dir)
    write_old_files(data_dir / "keys", secrets)
    if not keep_rows:
        settings = Settings.load(data_dir)
        engine = db.make_engine(settings.database_url)
        try:
            with engine.begin() as conn:
                conn.execute(delete(SiteKey).where(SiteKey.name.in_(NAMES)))
        finally:
            engine.dispose()
    return secrets


def key_forms(secrets: dict[str, bytes]) -> list[bytes]:
    """Every plaintext form a secret could be found in: raw, base64, PKCS#8 DER and PEM."""
    import base64

    forms = []
    for value in secrets.values():
        forms += [value, base64.b64encode(value), value.hex().encode()]
    key = Ed25519PrivateKey.from_private_bytes(secrets[service_keys.AUDIT_SIGNING])
    for enc in (serialization.Encoding.DER, serialization.Encoding.PEM):
        forms.append(key.private_bytes(enc, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return forms


def files_holding(data_dir: Path, forms: list[bytes]) -> list[str]:
    """The files under ``data_dir`` that contain any of ``forms``."""
    hits = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(f in data for f in forms):
            hits.append(str(path.relative_to(data_dir)))
    return hits


def marked_png(render_keys: RenderKeys, data_dir: Path, out: Path) -> int:
    """Register a copy for ``dr.chen`` and write it, watermarked, to ``out``; its serial."""
    engine = db.make_engine(Settings.load(data_dir).database_url)
    issued = Issuances(engine)
    try:
        serial = issued.issue(account_id=12, username="dr.chen", role="researcher", instance_uid="2.25.1",
                              level="pseudonymised", project="P", now=datetime(2026, 1, 2, tzinfo=UTC))
    finally:
        issued.close()
        engine.dispose()
    ds, _ = make_dataset(random.Random(3), "CR", "ISO_IR 100", small=True)
    ds.Rows = ds.Columns = 512
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelData = radiograph(np.random.default_rng(3), 512, 512, 12, False).tobytes()
    png = rendered(read(to_bytes(ds)), serial=serial, key=render_keys.watermark)
    Image.open(io.BytesIO(png)).save(out, "PNG")
    return serial
