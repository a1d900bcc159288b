"""DICOMweb against a real archive over real HTTP: dicomweb-client stores, searches and
retrieves; bad requests get the right 4xx and a JSON body and harm nothing stored."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.parse

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image

from safepacs.api import multipart
from tests.people import clinician

DICOM_MP = 'multipart/related; type="application/dicom"; boundary=xyz'


def client(served, token=None) -> DICOMwebClient:
    return DICOMwebClient(f"{served.url}/dicomweb", headers={"Authorization": f"Bearer {token or served.token}"})


def mp_body(*parts: bytes, content_type: str = "application/dicom") -> bytes:
    return b"".join(multipart.encode(iter([(content_type, p) for p in parts]), "xyz"))


@pytest.fixture(scope="module")
def loaded(served, small_corpus):
    """The corpus stored through dicomweb-client; returns the STOW response."""
    datasets = [pydicom.dcmread(f) for f in small_corpus]
    response = client(served).store_instances(datasets)
    return response


def snapshot(served) -> dict[str, str]:
    """sop uid -> sha256 of what WADO-RS returns, for every stored instance."""
    c = client(served)
    out = {}
    for inst in c.search_for_instances():
        st, se, sop = (inst[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
        raw = served.archive.read_instance(sop, principal=served.archive.authenticate(served.token))
        out[sop] = hashlib.sha256(raw).hexdigest()
    return out


def test_store_search_retrieve_round_trip(served, small_corpus, loaded):
    assert len(loaded.ReferencedSOPSequence) == len(small_corpus)
    assert "FailedSOPSequence" not in loaded
    c = client(served)
    studies = c.search_for_studies()
    assert studies
    for item in loaded.ReferencedSOPSequence[:5]:
        url = str(item.RetrieveURL)
        assert url.startswith(served.url + "/dicomweb/studies/")
        st, _, se, _, sop = url.split("/studies/")[1].split("/")
        ds = c.retrieve_instance(st, se, sop)
        assert ds.SOPInstanceUID == sop and ds.PatientIdentityRemoved == "YES"
        meta = c.retrieve_instance_metadata(st, se, sop)
        assert meta["00080018"]["Value"] == [sop]
        assert "BulkDataURI" in meta["7FE00010"]
        frames = c.retrieve_instance_frames(st, se, sop, [1])
        assert len(frames) == 1 and len(frames[0]) > 0
        if "NumberOfFrames" not in ds and not ds.file_meta.TransferSyntaxUID.is_encapsulated:
            assert frames[0] == ds.PixelData
            assert c.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"]) == [ds.PixelData]


def test_study_and_series_retrieve_return_every_instance(served, loaded):
    c = client(served)
    study = c.search_for_studies(search_filters={"ModalitiesInStudy": "CT"})[0]["0020000D"]["Value"][0]
    n = len(c.search_for_instances(study_instance_uid=study))
    assert len(c.retrieve_study(study)) == n
    assert len(c.retrieve_study_metadata(study)) == n


def test_duplicate_is_stored_once(served, small_corpus, loaded):
    before = len(client(served).search_for_instances())
    again = client(served).store_instances([pydicom.dcmread(small_corpus[0])])
    assert len(again.ReferencedSOPSequence) == 1
    assert len(client(served).search_for_instances()) == before


def test_conflicting_object_with_same_uid_is_refused_with_0111(served, small_corpus, loaded):
    raw = bytearray(small_corpus[0].read_bytes())
    raw[-1] ^= 0xFF  # last pixel byte: same UIDs, other content
    with served.client() as h:
        r = h.post("/dicomweb/studies", content=mp_body(bytes(raw)), headers={"Content-Type": DICOM_MP})
    assert r.status_code == 409
    failed = r.json()["00081198"]["Value"]
    assert failed[0]["00081197"]["Value"] == [0x0111]


def _names(served, principal_token, name_query):
    return [s.get("00100010", {}).get("Value", [{}])[0] for s in
            client(served, principal_token).search_for_studies(search_filters={"PatientName": name_query})]


def test_identity_reader_finds_by_original_name_exact_wildcard_and_gets_chinese_intact(served, small_corpus, loaded):
    ident = clinician(served.archive, "clinician")[1]
    originals = [pydicom.dcmread(f, stop_before_pixels=True) for f in small_corpus]
    cjk = next(d for d in originals if not str(d.PatientName).isascii() and "=" in str(d.PatientName))
    name = str(cjk.PatientName)
    alphabetic = name.split("=")[0]
    # exact, with the ^ separator (dicomweb-client percent-encodes it)
    hits = _names(served, ident, alphabetic)
    assert hits and all(h.get("Alphabetic", "").upper() == alphabetic.upper() for h in hits)
    # wildcard on the family name
    family = alphabetic.split("^")[0]
    hits = _names(served, ident, family + "*")
    assert hits and all(h.get("Alphabetic", "").upper().startswith(family.upper()) for h in hits)
    # the ideographic group comes back intact in the JSON
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {ident}"}) as h:
        r = h.get("/dicomweb/studies", params={"PatientName": alphabetic})
    assert r.headers["content-type"].startswith("application/dicom+json")
    assert name.split("=")[1] in r.content.decode("utf-8")
    # a de-identified reader finds nothing by the original name
    assert _names(served, None, alphabetic) == []


def test_wildcard_sent_percent_encoded_matches(served, loaded):
    pid = client(served).search_for_studies()[0]["00100020"]["Value"][0]
    with served.client() as h:
        r = h.get("/dicomweb/studies?PatientID=" + urllib.parse.quote(pid[:4] + "*"))
    assert r.status_code == 200
    assert any(s["00100020"]["Value"][0] == pid for s in r.json())


def test_limit_offset_and_includefield(served, loaded):
    c = client(served)
    everything = c.search_for_instances()
    page = c.search_for_instances(limit=2, offset=1)
    assert len(page) == 2
    assert [p["00080018"] for p in page] == [e["00080018"] for e in everything[1:3]]
    with served.client() as h:
        r = h.get("/dicomweb/studies", params={"includefield": "all", "limit": "1"})
    assert r.status_code == 200 and len(r.json()) == 1


def test_rendered_png_and_jpeg(served, loaded):
    inst = client(served).search_for_instances(search_filters={"Modality": "CT"})[0]
    st, se, sop = (inst[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
    path = f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/rendered"
    with served.client() as h:
        png = h.get(path)
        jpg = h.get(path, headers={"Accept": "image/jpeg"})
        windowed = h.get(path, params={"window": "3000,10"})
        bad = h.get(path, params={"window": "40"})
    assert png.headers["content-type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(png.content)))
    ds = pydicom.dcmread(io.BytesIO(served.archive.read_instance(sop, principal=served.archive.authenticate(served.token))))
    assert img.shape == (ds.Rows, ds.Columns) and img.max() > img.min()
    assert jpg.headers["content-type"] == "image/jpeg" and jpg.content[:2] == b"\xff\xd8"
    assert windowed.status_code == 200 and windowed.content != png.content
    assert bad.status_code == 400


def test_no_token_or_a_bad_token_is_401(served, loaded):
    with httpx.Client(base_url=served.url) as h:
        assert h.get("/dicomweb/studies").status_code == 401
        r = h.get("/dicomweb/studies", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["error"]
        assert h.post("/dicomweb/studies", content=b"x", headers={"Content-Type": DICOM_MP}).status_code == 401
    with served.client() as h:
        assert h.get("/dicomweb/studies", params={"access_token": served.token}).status_code == 400


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (mp_body(b"DICM" * 10)[:-20], DICOM_MP, 400),  # truncated
        (b"no boundaries at all", DICOM_MP, 400),
        (mp_body(b"abc"), "application/dicom", 415),
        (mp_body(b"abc"), "multipart/related; type=\"application/json\"; boundary=xyz", 415),
        (mp_body(b"abc", content_type="text/plain"), DICOM_MP, 415),
        (mp_body(b"this is not dicom"), DICOM_MP, 409),
        (mp_body(b""), DICOM_MP, 409),
        (b"--xyz\r\nContent-Type: application/dicom\r\nContent-Length: 999999999999\r\n\r\nab\r\n--xyz--\r\n", DICOM_MP, 413),
        (mp_body(b"x"), "multipart/related; type=\"application/dicom\"", 400),
    ],
)
def test_bad_stow_bodies_get_4xx_with_json_and_harm_nothing(served, loaded, body, content_type, status):
    before = snapshot(served)
    with served.client() as h:
        r = h.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
    assert r.status_code == status
    assert r.headers["content-type"].startswith(("application/json", "application/dicom+json"))
    if status == 409:
        assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    else:
        assert r.json()["error"]
    assert snapshot(served) == before


def test_one_good_one_bad_part_is_202(served, small_corpus, loaded):
    with served.client() as h:
        r = h.post("/dicomweb/studies", content=mp_body(small_corpus[1].read_bytes(), b"junk"),
                   headers={"Content-Type": DICOM_MP})
    assert r.status_code == 202
    body = r.json()
    assert len(body["00081199"]["Value"]) == 1 and len(body["00081198"]["Value"]) == 1


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/dicomweb/studies/..%2F..%2Fetc", 404),  # decoded "/" matches no route
        ("/dicomweb/studies/1.2.3/series/%2e%2e", 400),
        ("/dicomweb/studies/1.2.3/series/..%2e", 400),
        ("/dicomweb/studies/1.2.3abc/metadata", 400),
        ("/dicomweb/studies/1..2/series", 400),
        ("/dicomweb/studies/" + "1" * 65, 400),
        ("/dicomweb/studies/1.2.3", 404),
        ("/dicomweb/studies/1.2.3/series/4.5/instances/6.7", 404),
        ("/dicomweb/studies/1.2.3/series/4.5/instances/6.7/frames/1", 404),
        ("/dicomweb/studies?limit=-3", 400),
        ("/dicomweb/studies?StudyDate=2024-01-01-", 400),
        ("/dicomweb/studies?Nonsense=1", 400),
        ("/dicomweb/studies?fuzzymatching=yes", 400),
    ],
)
def test_bad_paths_and_queries(served, loaded, path, status):
    with served.client() as h:
        r = h.get(path)
    assert r.status_code == status, r.text
    assert r.json()["error"]


def test_frame_list_out_of_range_and_malformed(served, loaded):
    inst = client(served).search_for_instances()[0]
    st, se, sop = (inst[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
    base = f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/frames/"
    with served.client() as h:
        assert h.get(base + "999").status_code == 400
        assert h.get(base + "0").status_code == 400
        assert h.get(base + "1,x").status_code == 400


def test_error_bodies_never_quote_uploaded_values(served, loaded):
    marker = "ZZSECRETPATIENTZZ"
    with served.client() as h:
        r1 = h.post("/dicomweb/studies", content=mp_body(marker.encode() * 10), headers={"Content-Type": DICOM_MP})
        r2 = h.get("/dicomweb/studies", params={marker: "x"})
        r3 = h.get(f"/dicomweb/studies/{marker}")
    for r in (r1, r2, r3):
        assert marker not in r.text
        json.loads(r.text)


def test_stow_to_a_study_url_accepts_its_instances_and_refuses_others(served, small_corpus, loaded):
    originals = [(f, pydicom.dcmread(f, stop_before_pixels=True)) for f in small_corpus]
    f0, d0 = originals[0]
    other = next(f for f, d in originals if d.StudyInstanceUID != d0.StudyInstanceUID)
    with served.client() as h:
        r = h.post(f"/dicomweb/studies/{d0.StudyInstanceUID}", content=mp_body(f0.read_bytes(), other.read_bytes()),
                   headers={"Content-Type": DICOM_MP})
    assert r.status_code == 202
    body = r.json()
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xC409]
    assert len(body["00081199"]["Value"]) == 1
    # the study's RetrieveURL names the de-identified study, never the sender's original UID
    study_url = body["00081190"]["Value"][0]
    assert d0.StudyInstanceUID not in study_url
    assert study_url.split("/studies/")[1] in body["00081199"]["Value"][0]["00081190"]["Value"][0]


def test_wado_refuses_a_transfer_syntax_it_cannot_give(served, loaded):
    inst = client(served).search_for_instances()[0]
    st, se, sop = (inst[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
    path = f"/dicomweb/studies/{st}/series/{se}/instances/{sop}"
    with served.client() as h:
        jpeg2000 = h.get(path, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90'})
        anything = h.get(path, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        json_only = h.get(path, headers={"Accept": "application/json"})
    assert jpeg2000.status_code == 406 and jpeg2000.json()["error"]
    assert anything.status_code == 200 and anything.headers["content-type"].startswith("multipart/related")
    assert json_only.status_code == 406


def test_instance_is_only_found_under_its_own_study_and_series(served, loaded):
    c = client(served)
    a, b = c.search_for_studies()[:2]
    inst = c.search_for_instances(study_instance_uid=a["0020000D"]["Value"][0])[0]
    se, sop = inst["0020000E"]["Value"][0], inst["00080018"]["Value"][0]
    other = b["0020000D"]["Value"][0]
    with served.client() as h:
        assert h.get(f"/dicomweb/studies/{other}/series/{se}/instances/{sop}").status_code == 404
        assert h.get(f"/dicomweb/studies/{a['0020000D']['Value'][0]}/series/{other}/instances/{sop}").status_code == 404
        assert h.get(f"/dicomweb/studies/{a['0020000D']['Value'][0]}/series/{se}/instances/{sop}").status_code == 200


def test_a_malformed_frame_count_is_refused_without_quoting_it(served, loaded):
    """A stored object whose NumberOfFrames is not a number (seen in the wild): the object
    is served as stored, its frames and renders are refused, and no answer quotes it."""
    from pydicom.data import get_testdata_file
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.BurnedInAnnotation = "NO"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds[0x00280008] = RawDataElement(Tag(0x00280008), "IS", 4, b"7QX ", 0, False, True)
    buf = io.BytesIO()
    ds.save_as(buf)
    with served.client() as h:
        stored = h.post("/dicomweb/studies", content=mp_body(buf.getvalue()),
                        headers={"Content-Type": DICOM_MP, "Accept": "application/dicom+json"})
        assert stored.status_code == 200, stored.text
        url = stored.json()["00081199"]["Value"][0]["00081190"]["Value"][0].split(served.url)[1]
        whole = h.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
        answers = [h.get(url + "/frames/1"), h.get(url + "/rendered", headers={"Accept": "image/png"}),
                   h.get(url + "/rendered", headers={"Accept": "image/jpeg"})]
    assert whole.status_code == 200 and b"7QX" in whole.content  # a count, not identity: kept
    for r in answers:
        assert r.status_code in (404, 500), r.text
        assert "7QX" not in r.text and json.loads(r.text)["error"]


def parametric_map(keyword: str, values: np.ndarray) -> bytes:
    """A two-frame Parametric Map whose values are in (Double) Float Pixel Data."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "MAP^PARA", "PM-1", "MR"
    ds.NumberOfFrames, (ds.Rows, ds.Columns) = values.shape[0], values.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = values.itemsize * 8
    setattr(ds, keyword, values.tobytes())
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("keyword,vr,dtype", [("FloatPixelData", "OF", "<f4"), ("DoubleFloatPixelData", "OD", "<f8")])
def test_parametric_map_pixels_are_linked_framed_and_rendered(served, keyword, vr, dtype):
    """Float pixels (Parametric Maps: ADC, perfusion) are served as Pixel Data is; they were
    answered 404 'no pixel data', and metadata linked a Pixel Data that was not there."""
    values = (np.arange(2 * 6 * 8).reshape(2, 6, 8) / 7.0).astype(dtype)
    with served.client() as h:
        stored = h.post("/dicomweb/studies", content=mp_body(parametric_map(keyword, values)),
                        headers={"Content-Type": DICOM_MP, "Accept": "application/dicom+json"})
        assert stored.status_code == 200, stored.text
        url = stored.json()["00081199"]["Value"][0]["00081190"]["Value"][0].split(served.url)[1]
        meta = h.get(url + "/metadata").json()[0]
        tag = f"{int(pydicom.tag.Tag(keyword)):08X}"
        assert "7FE00010" not in meta and meta[tag]["vr"] == vr
        bulk = h.get(meta[tag]["BulkDataURI"].split(served.url)[1])
        frame = h.get(url + "/frames/2")
        png = h.get(url + "/frames/2/rendered", headers={"Accept": "image/png"})
    assert bulk.status_code == 200 and values.tobytes() in bulk.content
    assert frame.status_code == 200 and values[1].tobytes() in frame.content
    assert png.status_code == 200, png.text
    img = np.asarray(Image.open(io.BytesIO(png.content)))
    assert img.shape == values.shape[1:] and img.max() > img.min()
