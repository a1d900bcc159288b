"""Browsers may call DICOMweb cross-origin only from the origins a site lists (a viewer on
another host); no list, no cross-origin reads.  Real HTTP against a served archive."""

from __future__ import annotations

import httpx
import pydicom
import pytest

from tests.api.conftest import serve

VIEWER = "https://viewer.example.org"
PREFLIGHT = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization,accept"}


@pytest.fixture(scope="module")
def cors_served(tmp_path_factory):
    yield from serve(tmp_path_factory.mktemp("cors"), cors_origins=[VIEWER])


@pytest.fixture(scope="module")
def stored(cors_served, small_corpus):
    """(study, series, sop) of one stored object."""
    from dicomweb_client import DICOMwebClient

    c = DICOMwebClient(f"{cors_served.url}/dicomweb", headers={"Authorization": f"Bearer {cors_served.token}"})
    response = c.store_instances([pydicom.dcmread(small_corpus[0])])
    st, _, se, _, sop = str(response.ReferencedSOPSequence[0].RetrieveURL).split("/studies/")[1].split("/")
    return st, se, sop


def test_a_listed_origin_passes_the_preflight_with_the_token_header(cors_served):
    with httpx.Client(base_url=cors_served.url) as h:
        r = h.options("/dicomweb/studies", headers={"Origin": VIEWER, **PREFLIGHT})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == VIEWER
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert "GET" in r.headers["access-control-allow-methods"]


def test_another_origin_is_not_cleared(cors_served):
    with httpx.Client(base_url=cors_served.url) as h:
        r = h.options("/dicomweb/studies", headers={"Origin": "https://evil.example.net", **PREFLIGHT})
        g = h.get("/dicomweb/studies", headers={"Origin": "https://evil.example.net",
                                                "Authorization": f"Bearer {cors_served.token}"})
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in g.headers  # the browser will not hand it over


def test_reads_from_the_listed_origin_carry_the_header_on_every_route(cors_served, stored):
    st, se, sop = stored
    headers = {"Origin": VIEWER, "Authorization": f"Bearer {cors_served.token}"}
    paths = ["/dicomweb/studies",  # QIDO
             f"/dicomweb/studies/{st}/series/{se}/instances/{sop}",  # the fast retrieve path
             f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/metadata",
             f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/frames/1"]
    with httpx.Client(base_url=cors_served.url, timeout=60) as h:
        for path in paths:
            r = h.get(path, headers=headers)
            assert r.status_code == 200, path
            assert r.headers["access-control-allow-origin"] == VIEWER, path
        denied = h.get(paths[0], headers={"Origin": VIEWER})  # no token: still refused
    assert denied.status_code == 401
    assert "www-authenticate" in denied.headers["access-control-expose-headers"].lower()


def test_without_a_list_no_origin_is_cleared(served):
    with httpx.Client(base_url=served.url) as h:
        r = h.options("/dicomweb/studies", headers={"Origin": VIEWER, **PREFLIGHT})
        g = h.get("/dicomweb/studies", headers={"Origin": VIEWER, "Authorization": f"Bearer {served.token}"})
    assert "access-control-allow-origin" not in r.headers
    assert g.status_code == 200 and "access-control-allow-origin" not in g.headers
