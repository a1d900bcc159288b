"""Property: random datasets with identity planted at random depths and VRs never leak."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from safepacs.deid.delta import IdentityDelta
from safepacs.deid.engine import deidentify
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options
from safepacs.deid.policy import load_policy
from safepacs.deid.profile import load_profile

TEXT = ("PN", "LO", "SH", "LT", "ST", "UT", "UC", "DA", "DT", "TM", "AS", "AE")
_KEEP = load_policy().keep_tags


def _text_tags() -> list[tuple[int, str]]:
    """Listed attributes with a text VR, plus unlisted public ones (each must go)."""
    from pydicom.datadict import DicomDictionary

    out = []
    for tag, entry in DicomDictionary.items():
        vr = entry[0]
        if vr in TEXT and tag not in _KEEP and (tag >> 16) not in (0x0002, 0x0008) or (
            vr in TEXT and (tag >> 16) == 0x0008 and tag not in _KEEP and tag != 0x00080005
        ):
            if keyword_for_tag(tag) and not entry[3].startswith("Retired"):
                out.append((tag, vr))
    return sorted(out)


TEXT_TAGS = _text_tags()
SEQ_TAGS = sorted(
    t for t in load_profile().rows if dictionary_VR(t) == "SQ"
) + [0x00081115, 0x00400260, 0x0040A730, 0x00081250]


def _value(vr: str, secret: str) -> str:
    if vr == "DA":
        return "19" + secret[-6:]
    if vr == "TM":
        return secret[-6:]
    if vr == "DT":
        return "19" + secret[-6:] + "101010"
    if vr == "AS":
        return secret[-3:] + "Y"
    if vr == "AE":
        return secret[:16]
    if vr == "SH":
        return secret[:16]
    return secret


@st.composite
def planted(draw):
    rnd = random.Random(draw(st.integers(0, 2**32)))
    secret = "Q" + "".join(rnd.choice("0123456789") for _ in range(9))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3." + secret[1:]
    ds.Modality = "CT"
    ds.BurnedInAnnotation = "NO"
    ds.SpecificCharacterSet = rnd.choice(["ISO_IR 192", "GB18030", "ISO_IR 100"])
    plants = draw(st.integers(1, 12))
    for _ in range(plants):
        depth = rnd.randint(0, 3)
        node = ds
        for _ in range(depth):
            seq_tag = rnd.choice(SEQ_TAGS)
            if seq_tag not in node:
                node.add_new(seq_tag, "SQ", Sequence([Dataset()]))
            node = node[seq_tag].value[0]
        if rnd.random() < 0.2:
            group = rnd.choice([0x0009, 0x0011, 0x0029, 0x7FD1])
            node.add_new((group << 16) | 0x0010, "LO", "ACME PRIVATE")
            vr = rnd.choice(["LO", "UN", "LT"])
            node.add_new((group << 16) | 0x1000 | rnd.randint(0, 255), vr,
                         secret.encode() if vr == "UN" else secret)
        else:
            tag, vr = rnd.choice(TEXT_TAGS)
            if vr == "PN":
                node.add_new(tag, vr, f"{secret}^{secret}")
            else:
                node.add_new(tag, vr, _value(vr, secret))
    return ds, secret


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted())
def test_random_planted_identity_never_leaks(case):
    ds, secret = case
    out, delta = deidentify(ds, Options(), Keys(b"\x07" * 32))
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, out)
    data = fp.getvalue()
    for needle in {secret, secret[:16], secret[1:], secret[-6:]}:
        assert needle.encode() not in data
    # and the delta brings every planted value back
    restored = IdentityDelta.from_bytes(delta.to_bytes()).apply(out)
    assert set(restored.keys()) == set(ds.keys())
