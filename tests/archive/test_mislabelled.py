"""An object whose UTF-8 text declares GB18030 is filed under the name it really carries:
the treating physician finds it by that name and reads it back as it was sent."""

from __future__ import annotations

from io import BytesIO

import pydicom

from safepacs.archive import Archive
from tests.deid.test_mislabelled import GIVEN, NAME, _file
from tests.people import clinician_principal as clinician


def test_identity_of_mislabelled_text_is_searchable_and_read_back(archive_dir):
    arch, _ = Archive.create(archive_dir)
    try:
        sent = _file("GB18030", "utf-8")
        stored = arch.ingest(sent, source="t")
        found = arch.search("study", {"PatientName": f"{NAME}^{GIVEN}"}, principal=clinician(arch))
        assert [str(s.StudyInstanceUID) for s in found] == [stored.study_uid]
        back = pydicom.dcmread(BytesIO(bytes(arch.read_instance(stored.sop_instance_uid,
                                                                 principal=clinician(arch)))))
        assert back.SpecificCharacterSet == "GB18030"  # as sent
        original = pydicom.dcmread(BytesIO(sent))
        for tag in (0x00100010, 0x00081030):  # PatientName, StudyDescription: the bytes sent
            assert back.get_item(tag).value == original.get_item(tag).value
    finally:
        arch.close()
