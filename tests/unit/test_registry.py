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
