"""Travel times: the estimate, and an OSRM-compatible service with fallback.

The routing server here is a small HTTP server answering in OSRM's ``/table``
format, since a real OSRM needs map data this machine does not have.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hospital_hub.travel import OsrmRouter, Point, estimate, make_router

BOSTON, MGH, BMC = Point(42.3601, -71.0589), Point(42.3631, -71.0686), Point(42.3350, -71.0730)


class _Osrm(BaseHTTPRequestHandler):
    answer: dict = {}  # type: ignore[type-arg]
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).paths.append(self.path)
        body = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def osrm() -> Iterator[tuple[str, type[_Osrm]]]:
    handler = type("Handler", (_Osrm,), {"answer": {}, "paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def test_estimate_is_faster_for_urgent_cases() -> None:
    urgent, routine = estimate(BOSTON, BMC, 1), estimate(BOSTON, BMC, 5)
    assert urgent.distance_km == routine.distance_km > 3
    assert urgent.eta_min < routine.eta_min and urgent.source == "estimate"


def test_osrm_durations_are_used(osrm) -> None:  # type: ignore[no-untyped-def]
    url, handler = osrm
    handler.answer = {"code": "Ok", "durations": [[0, 300, 600]],
                      "distances": [[0, 2000, 5000]]}
    travel = OsrmRouter(url).travel(BOSTON, [MGH, BMC], triage_level=3)
    assert [t.eta_min for t in travel] == [5.0, 10.0]
    assert [t.distance_km for t in travel] == [2.0, 5.0]
    assert {t.source for t in travel} == {"routing"}
    assert handler.paths[0].startswith("/table/v1/driving/-71.058900,42.360100;")
    assert "sources=0" in handler.paths[0]
    lights = OsrmRouter(url).travel(BOSTON, [MGH, BMC], triage_level=1)
    assert lights[0].eta_min == pytest.approx(4.0)


@pytest.mark.parametrize("answer", [{"code": "NoTable"}, {"code": "Ok", "durations": [[0, None]]},
                                    {"unexpected": True}])
def test_bad_routing_answers_fall_back_to_the_estimate(osrm, answer) -> None:  # type: ignore[no-untyped-def]
    url, handler = osrm
    handler.answer = answer
    travel = OsrmRouter(url).travel(BOSTON, [MGH], triage_level=2)
    assert travel == [estimate(BOSTON, MGH, 2)]


def test_unreachable_routing_falls_back_to_the_estimate() -> None:
    router = make_router("http://127.0.0.1:9", timeout_s=0.5)
    assert router.travel(BOSTON, [MGH], 3) == [estimate(BOSTON, MGH, 3)]
    assert make_router(None).travel(BOSTON, [MGH], 3) == [estimate(BOSTON, MGH, 3)]
