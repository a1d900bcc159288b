"""After ingesting the synthetic corpus, no planted value is anywhere at rest.

Searched: the raw bytes of every file under the data dir (blobs, SQLite database and its
WAL, settings, key file) and every value of every table of the database (SQLite or
PostgreSQL), in UTF-8, the file's own character set, UTF-16 and the usual legacy codecs.

Integer and timestamp columns (sizes, counts, row numbers, kept numeric attributes) hold
no text: a size may equal a planted time such as 101530 by chance, so only string columns
are searched as text.  Ciphertext is uniformly random, so a short byte string turns up in
megabytes of it by chance (a 3-byte name such as "Liu" is expected about once in 16 MB):
raw bytes are searched for values of at least 6 bytes, the database's string values, the
only place plaintext is stored, for every value of at least 3 bytes.  Generated values
(hashes, pseudonyms, "2.25." UIDs) are likewise searched as raw bytes only.  That blobs are
ciphertext is asserted too: they do not compress and carry no DICOM structure.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from safepacs.errors import RejectedFile
from tests.archive_fixtures import dump_database
from tests.planted import found_in

CODECS = ("utf-8", "utf-16-le", "utf-16-be", "gb18030", "latin-1", "iso2022_jp", "iso2022_kr")
#: values the archive generates from keys or randomness (hashes, blob names, key ids,
#: pseudonyms "SP" + base32, "2.25." UIDs): a short planted value such as "GUO" turns up
#: inside a random base32 pseudonym by chance, so these are searched as raw bytes only
_MACHINE = re.compile(
    r"[0-9a-f]{64}|[0-9a-f]{2}/[0-9a-f]{32}\.(obj|dlt)|[0-9a-f]{16}|sqlite:///.*"
    r"|SP[A-Z2-7]{16}|2\.25\.[0-9]{1,39}|b3:[A-Za-z0-9_-]{43}"
)


def _forms(value: str, charset: str | None) -> set[bytes]:
    forms = set()
    for codec in CODECS + ((charset,) if charset else ()):
        try:
            forms.add(value.encode(codec))
        except (UnicodeEncodeError, LookupError):
            pass
    return forms


def _python_codec(dicom_charset: str) -> str | None:
    from pydicom.charset import python_encoding

    first = dicom_charset.split("\\")[-1].strip()
    return python_encoding.get(first)


@pytest.fixture
def ingested(corpus, archive, archive_dir):
    src, key = corpus
    arch, _ = archive
    rejected = 0
    for path in sorted(src.rglob("*.dcm")):
        try:
            arch.ingest(path.read_bytes(), source="import")
        except RejectedFile:
            rejected += 1
    assert arch.status()["instances"] + rejected == key.count
    assert arch.status()["instances"] >= key.count * 0.8
    return arch, key


def _leaks(planted: dict[str, str | None], text_blob: bytes, raw_blob: bytes) -> list[tuple[str, str]]:
    """(where, masked value) of every planted value found."""
    forms = {value: [f for f in _forms(value, charset) if len(f) >= 3] for value, charset in planted.items()}
    long_forms = sorted({f for fs in forms.values() for f in fs if len(f) >= 6})
    hits = np.isin(_prefixes(long_forms), _windows(raw_blob))
    maybe = {f for f, hit in zip(long_forms, hits, strict=True) if hit}
    leaks = []
    for value, fs in forms.items():
        if any(found_in(form, text_blob) for form in fs):
            leaks.append(("database", value[:2] + "…"))
        if any(found_in(form, raw_blob) for form in fs if form in maybe):
            leaks.append(("file", value[:2] + "…"))
    return leaks


def test_no_planted_value_is_at_rest_and_blobs_are_ciphertext(ingested, corpus, archive_dir, database_url):
    arch, key = ingested
    arch.close()  # no checkpoint is forced: the WAL is searched as it is
    planted: dict[str, str | None] = {}
    for p in key.planted:
        planted.setdefault(p.value, _python_codec(key.files[p.file].charset))
    texts = [line for line in dump_database(database_url, archive_dir, binary=False).split(b"\n")
             if line and not _MACHINE.fullmatch(line.decode("utf-8", "replace"))]
    raw = [p.read_bytes() for p in sorted(archive_dir.rglob("*")) if p.is_file()]
    raw.append(dump_database(database_url, archive_dir, binary=True))
    assert _leaks(planted, b"\n".join(texts), b"\n".join(raw)) == []
    # control: the same search finds the planted values in the original files
    originals = b"\n".join(p.read_bytes() for p in sorted(corpus[0].rglob("*.dcm")))
    assert len(_leaks(planted, b"", originals)) > len(planted) // 2
    blobs = [p for p in (archive_dir / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) >= 2 * 160
    for path in blobs:
        data = path.read_bytes()
        assert data.startswith(b"SPBLOB2\x00") and b"DICM" not in data
        if len(data) > 2000:
            assert len(zlib.compress(data)) > 0.99 * len(data), path.name


def _windows(data: bytes, n: int = 6) -> np.ndarray:
    """Every n-byte window of ``data`` as an integer: a multi-pattern pre-filter (checking
    thousands of values against megabytes with ``in`` one by one takes minutes)."""
    a = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    out = np.zeros(len(a) - n + 1, dtype=np.uint64)
    for i in range(n):
        out |= a[i : len(a) - n + 1 + i] << np.uint64(8 * i)
    return np.unique(out)


def _prefixes(forms: list[bytes]) -> np.ndarray:
    return np.array([int.from_bytes(f[:6], "little") for f in forms], dtype=np.uint64)
