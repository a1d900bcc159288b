"""pydicom never quotes an element value on stderr or in a log: not in a ``safepacs deid``
run, not in an archive's ingest."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from io import BytesIO

from pydicom.uid import generate_uid

from safepacs.archive.service import Archive
from safepacs.dicom.quiet import mask_quoted
from tests.conftest import make_ct

#: malformed values of the kind files from the wild carry: each fails pydicom's VR check,
#: whose message quoted it
MALFORMED = {
    0x00100030: ("DA", "1980/05/12"),  # PatientBirthDate
    0x00101010: ("AS", "45 years"),  # PatientAge
    0x00080020: ("DA", "2023.03.04"),  # StudyDate
    0x00080030: ("TM", "10:11:12 PM"),  # StudyTime
    0x00080054: ("AE", "WEIHAI\\HOSP!"),  # RetrieveAETitle
    0x00200010: ("SH", "ZHOU-1980-05-12-LONGER-THAN-SH"),  # StudyID
}


def _malformed_file() -> bytes:
    ds = make_ct()  # kept text (descriptions) makes cleaning read the identifying values
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for tag, (vr, value) in MALFORMED.items():
        ds.add_new(tag, vr, value)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _leaked(text: str) -> list[str]:
    return [value for _, value in MALFORMED.values() if value in text]


def test_mask_quoted_masks_every_quoted_part():
    masked = mask_quoted("""Invalid value for VR DA: '1980/05/12'; b'\\x01AB' and "45 years" - done""")
    assert masked == "Invalid value for VR DA: '***'; '***' and '***' - done"


def test_pydicom_log_records_have_their_quotes_masked(caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("pydicom").warning("Invalid value for VR %s: %r", "DA", "1980/05/12")
    assert caplog.records and "1980/05/12" not in caplog.text
    assert "Invalid value for VR DA: '***'" in caplog.text


def test_deid_run_prints_no_malformed_value(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dcm").write_bytes(_malformed_file())
    run = subprocess.run(
        [sys.executable, "-m", "safepacs", "deid", str(tmp_path / "in"), str(tmp_path / "out"),
         "--key-file", str(tmp_path / "k.key")],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert len([p for p in (tmp_path / "out").rglob("*.dcm")]) == 1
    assert _leaked(run.stdout + run.stderr) == []


def test_archive_ingest_logs_and_warns_no_malformed_value(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    archive, _ = Archive.create(tmp_path / "data")
    try:
        with warnings.catch_warnings(record=True) as shown:
            stored = archive.ingest(_malformed_file(), source="test")
    finally:
        archive.close()
    assert stored.sop_instance_uid
    assert _leaked(caplog.text) == []
    assert _leaked("\n".join(str(w.message) for w in shown)) == []


def test_pynetdicom_log_records_have_their_quotes_masked(caplog):
    """pynetdicom warns about a non-conformant UID with the UID in its message: a C-STORE of
    a real file (a leading zero in a component) wrote the original SOP Instance UID into the
    server's log.  Its module loggers mask what they quote once the server quiets them."""
    from pynetdicom.utils import set_uid

    from safepacs.dicom.quiet import quiet_pynetdicom

    quiet_pynetdicom()
    caplog.set_level(logging.DEBUG)
    set_uid("1.2.246.352.91.0000217.2005", "Affected SOP Instance UID")
    assert caplog.records and "0000217" not in caplog.text
    assert "Non-conformant '***' value '***'" in caplog.text
