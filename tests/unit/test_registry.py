"""The hospital registry import."""

from __future__ import annotations

from pathlib import Path

import pytest

from hospital_hub.registry import read_registry
from hospital_hub.settings import SAMPLE_REGISTRY
from shared.errors import ConfigurationError

HEADER = "id,name,lat,lon,er_beds,icu_beds,ct,thoracic_surgery,isolation_rooms,contact\n"


def test_sample_registry_is_valid_and_labelled() -> None:
    hospitals = read_registry(SAMPLE_REGISTRY)
    assert len(hospitals) >= 6
    assert all("SAMPLE DATA" in h.name for h in hospitals)


def test_errors_name_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(HEADER
                    + "ok,Good,42.3,-71.0,3,1,true,false,0,x\n"
                    + "bad,Bad,142.3,-71.0,3,1,true,false,0,x\n"
                    + "ok,Dup,42.3,-71.0,3,1,true,false,0,x\n"
                    + "sl/ash,Slash,42.3,-71.0,3,1,true,false,0,x\n"
                    + "nobeds,NB,42.3,-71.0,many,1,true,false,0,x\n")
    with pytest.raises(ConfigurationError) as info:
        read_registry(path)
    message = str(info.value)
    assert "line 3: lat" in message
    assert "line 4: duplicate id 'ok'" in message
    assert "line 5: id 'sl/ash'" in message
    assert "line 6: er_beds" in message


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        read_registry(tmp_path / "none.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER)
    with pytest.raises(ConfigurationError, match="no hospitals"):
        read_registry(empty)


def test_geojson_registry_matches_the_csv() -> None:
    from hospital_hub.settings import SAMPLE_REGISTRY as csv_path

    geojson = read_registry(csv_path.with_suffix(".geojson"))
    assert geojson == read_registry(csv_path)


def test_geojson_errors_name_the_feature(tmp_path: Path) -> None:
    import json

    good = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-71.0, 42.3]},
            "properties": {"id": "a", "name": "A", "er_beds": 2, "icu_beds": 1}}
    line = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": []},
            "properties": {"id": "b"}}
    bad_beds = {**good, "properties": {**good["properties"], "id": "c", "er_beds": -1}}
    path = tmp_path / "r.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection",
                                "features": [good, line, bad_beds]}))
    with pytest.raises(ConfigurationError) as info:
        read_registry(path)
    assert "feature 2: geometry: geometry is LineString" in str(info.value)
    assert "feature 3: er_beds" in str(info.value)
    path.write_text("[]")
    with pytest.raises(ConfigurationError, match="FeatureCollection"):
        read_registry(path)


def test_reimport_keeps_live_capacity(tmp_path: Path) -> None:
    from hospital_hub.db import make_engine, migrate, session_scope
    from hospital_hub.live import LiveState
    from hospital_hub.models import Hospital
    from hospital_hub.registry import import_registry

    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine)
    import_registry(engine, SAMPLE_REGISTRY)
    LiveState(engine).set_capacity("bos-mgh", er_beds_free=1, icu_beds_free=0, accepting=False)
    import_registry(engine, SAMPLE_REGISTRY)
    with session_scope(engine) as session:
        mgh = session.get(Hospital, "bos-mgh")
        assert mgh is not None and mgh.er_beds_free == 1 and mgh.accepting is False
    engine.dispose()
