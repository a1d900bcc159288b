"""An object whose UTF-8 text declares GB18030, or that declares GB2312 (no defined term),
is filed under the name it really carries: the treating physician finds it by that name
and reads it back as it was sent."""

from __future__ import annotations

from io import BytesIO

import pydicom
import pytest

from safepacs.archive import Archive
from tests.deid.test_mislabelled import GIVEN, NAME, _file
from tests.people import clinician_principal as clinician


@pytest.mark.parametrize(("charset", "codec"), [("GB18030", "utf-8"), ("GB2312", "gb18030")])
def test_identity_of_mislabelled_text_is_searchable_and_read_back(archive_dir, charset, codec):
    arch, _ = Archive.create(archive_dir)
    try:
        sent = _file(charset, codec)
        stored = arch.ingest(sent, source="t")
        found = arch.search("study", {"PatientName": f"{NAME}^{GIVEN}"}, principal=clinician(arch))
        assert [str(s.StudyInstanceUID) for s in found] == [stored.study_uid]
        back = pydicom.dcmread(BytesIO(bytes(arch.read_instance(stored.sop_instance_uid,
                                                                 principal=clinician(arch)))))
        assert back.SpecificCharacterSet == charset  # as sent
        original = pydicom.dcmread(BytesIO(sent))
        for tag in (0x00100010, 0x00081030):  # PatientName, StudyDescription: the bytes sent
            assert back.get_item(tag).value == original.get_item(tag).value
    finally:
        arch.close()
