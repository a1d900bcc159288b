"""schemathesis over the /api router's OpenAPI schema: generated requests (valid and
invalid bodies, paths and parameters: positive and negative modes) without a token and with a forged one never get a 5xx,
and never a 2xx anywhere but the route that redirects to single sign-on."""

from __future__ import annotations

import itertools

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from safepacs.api.admin import admin_router
from tests.access.conftest import ac, clock, engine, sink  # noqa: F401

FORGED = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwicm9sZSI6InN5c3RlbV9hZG1pbiJ9."
          "c2lnbmF0dXJlLW5vdC12YWxpZA")
HEADERS = ({}, {"Authorization": f"Bearer {FORGED}"}, {"Authorization": "Bearer sp_nope"})


def test_no_5xx_and_no_unauthenticated_2xx(ac):  # noqa: F811
    app = FastAPI()
    app.include_router(admin_router(ac))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 30
    seen: list[int] = []
    for op, mode in itertools.product(operations, GenerationMode):

        @settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(mode))
        def check(case) -> None:
            for headers in HEADERS:
                response = case.call(headers=headers)
                seen.append(response.status_code)
                assert response.status_code < 500, (case.method, case.path, response.status_code)
                assert response.status_code >= 300 or case.path == "/api/auth/oidc/login", (
                    case.method, case.path, response.status_code)

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing to make invalid (no parameters)
    assert len(seen) >= 1.5 * len(operations) * len(HEADERS)
