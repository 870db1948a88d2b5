"""The National Early Warning Score 2 (NEWS2) of the Royal College of Physicians.

Seven parameters, each scored 0 to 3 from the RCP chart (Royal College of
Physicians, *National Early Warning Score (NEWS) 2*, London 2017):

================  ========  ===========  ===========  ==========  ===========  ===========  ========
parameter         3         2            1            0           1            2            3
================  ========  ===========  ===========  ==========  ===========  ===========  ========
resp. rate /min   <= 8                   9-11         12-20                    21-24        >= 25
SpO2 scale 1 %    <= 91     92-93        94-95        >= 96
SpO2 scale 2 %    <= 83     84-85        86-87        88-92,      93-94 on O2  95-96 on O2  >= 97 on
                                                      >= 93 air                             O2
air or oxygen               oxygen                    air
systolic BP mmHg  <= 90     91-100       101-110      111-219                               >= 220
pulse /min        <= 40                  41-50        51-90       91-110       111-130      >= 131
consciousness                                         alert                                 CVPU
temperature C     <= 35.0                35.1-36.0    36.1-38.0   38.1-39.0    >= 39.1
================  ========  ===========  ===========  ==========  ===========  ===========  ========

SpO2 scale 2 is for patients with hypercapnic respiratory failure (usually
COPD) whose prescribed target saturation is 88-92 %, on a clinician's
decision; scale 1 is the default. Clinical risk: 0-4 low, a 3 in any single
parameter ("red score") low-medium, 5-6 medium, 7 or more high.

A parameter not measured is left out and named in :attr:`News2.missing`; the
total of the others is then a lower bound of the real score.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

from shared.messages import Vitals

logger = logging.getLogger(__name__)

Avpu = Literal["A", "C", "V", "P", "U"]
SpO2Scale = Literal[1, 2]
Risk = Literal["low", "low-medium", "medium", "high"]

PARAMETERS: tuple[str, ...] = ("resp_rate", "spo2", "supplemental_o2", "systolic_bp", "heart_rate",
                               "consciousness", "temperature")
"""The seven NEWS2 parameters, in the chart's order."""

AVPU_MEANING: dict[str, str] = {"A": "alert", "C": "new confusion", "V": "responds to voice",
                                "P": "responds to pain", "U": "unresponsive"}


def score_resp_rate(per_minute: int) -> int:
    """Respiration rate sub-score: <=8: 3, 9-11: 1, 12-20: 0, 21-24: 2, >=25: 3."""
    if per_minute <= 8:
        return 3
    if per_minute <= 11:
        return 1
    if per_minute <= 20:
        return 0
    if per_minute <= 24:
        return 2
    return 3


def score_spo2(percent: int, *, supplemental_o2: bool = False, scale: SpO2Scale = 1) -> int:
    """SpO2 sub-score on scale 1 (default) or scale 2 (hypercapnic respiratory failure).

    Scale 1: <=91: 3, 92-93: 2, 94-95: 1, >=96: 0. Scale 2: <=83: 3, 84-85: 2,
    86-87: 1, 88-92 (or >=93 on air): 0, and on oxygen 93-94: 1, 95-96: 2, >=97: 3.
    """
    if scale == 1:
        if percent <= 91:
            return 3
        if percent <= 93:
            return 2
        if percent <= 95:
            return 1
        return 0
    if scale != 2:
        raise ValueError(f"SpO2 scale must be 1 or 2, not {scale!r}")
    if percent <= 83:
        return 3
    if percent <= 85:
        return 2
    if percent <= 87:
        return 1
    if percent <= 92 or not supplemental_o2:
        return 0
    if percent <= 94:
        return 1
    if percent <= 96:
        return 2
    return 3


def score_supplemental_o2(on_oxygen: bool) -> int:
    """Air: 0, oxygen: 2."""
    return 2 if on_oxygen else 0


def score_systolic_bp(mmhg: int) -> int:
    """Systolic blood pressure: <=90: 3, 91-100: 2, 101-110: 1, 111-219: 0, >=220: 3."""
    if mmhg <= 90:
        return 3
    if mmhg <= 100:
        return 2
    if mmhg <= 110:
        return 1
    if mmhg <= 219:
        return 0
    return 3


def score_heart_rate(per_minute: int) -> int:
    """Pulse: <=40: 3, 41-50: 1, 51-90: 0, 91-110: 1, 111-130: 2, >=131: 3."""
    if per_minute <= 40:
        return 3
    if per_minute <= 50:
        return 1
    if per_minute <= 90:
        return 0
    if per_minute <= 110:
        return 1
    if per_minute <= 130:
        return 2
    return 3


def score_consciousness(avpu: Avpu) -> int:
    """Alert: 0; new confusion, voice, pain or unresponsive (CVPU): 3."""
    if avpu not in AVPU_MEANING:
        raise ValueError(f"AVPU must be one of A, C, V, P, U, not {avpu!r}")
    return 0 if avpu == "A" else 3


def score_temperature(celsius: float) -> int:
    """Temperature, read to one decimal: <=35.0: 3, 35.1-36.0: 1, 36.1-38.0: 0,
    38.1-39.0: 1, >=39.1: 2."""
    if not math.isfinite(celsius):
        raise ValueError("temperature must be a finite number")
    tenths = math.floor(celsius * 10 + 0.5)  # the chart is in tenths of a degree; half rounds up
    if tenths <= 350:
        return 3
    if tenths <= 360:
        return 1
    if tenths <= 380:
        return 0
    if tenths <= 390:
        return 1
    return 2


@dataclass(frozen=True)
class News2:
    """A NEWS2 result: the total, each measured parameter's sub-score, and the risk band."""

    total: int
    subscores: dict[str, int]
    """Sub-score per measured parameter (keys from :data:`PARAMETERS`)."""
    values: dict[str, str]
    """Each measured parameter's value as shown to people, e.g. ``SpO2 88%``."""
    missing: tuple[str, ...]
    """Parameters not measured (the total is then a lower bound)."""
    spo2_scale: SpO2Scale = 1

    @property
    def red_score(self) -> bool:
        """Whether any single parameter scores 3 (RCP: low-medium risk at least)."""
        return any(score == 3 for score in self.subscores.values())

    @property
    def complete(self) -> bool:
        """Whether all seven parameters were measured."""
        return not self.missing

    @property
    def risk(self) -> Risk:
        """RCP clinical risk: high (>=7), medium (5-6), low-medium (a 3 in one parameter), low."""
        if self.total >= 7:
            return "high"
        if self.total >= 5:
            return "medium"
        if self.red_score:
            return "low-medium"
        return "low"

    def describe(self) -> str:
        """One line for people, e.g. ``NEWS2 7 (high risk): SpO2 88% +3, RR 28/min +3, on O2 +2``."""
        parts = [f"{self.values[name]} +{score}" for name, score in self.subscores.items() if score]
        text = f"NEWS2 {'>=' if self.missing else ''}{self.total} ({self.risk} risk"
        text += ", scale 2 SpO2)" if self.spo2_scale == 2 else ")"
        if parts:
            text += ": " + ", ".join(parts)
        if self.missing:
            text += f"; not measured: {', '.join(_LABELS[name] for name in self.missing)}"
        return text


_LABELS = {"resp_rate": "RR", "spo2": "SpO2", "supplemental_o2": "air/O2", "systolic_bp": "SBP",
           "heart_rate": "HR", "consciousness": "AVPU", "temperature": "temperature"}


def news2(*, resp_rate: int | None = None, spo2_pct: int | None = None,
          supplemental_o2: bool | None = None, systolic_bp: int | None = None,
          heart_rate: int | None = None, avpu: Avpu | None = None, temperature_c: float | None = None,
          spo2_scale: SpO2Scale = 1) -> News2:
    """NEWS2 from whichever parameters were measured (None: not measured).

    Raises:
        ValueError: an AVPU letter, SpO2 scale or temperature that is not valid.
    """
    subscores: dict[str, int] = {}
    values: dict[str, str] = {}
    missing: list[str] = []

    def add(name: str, measured: object, score: int | None, shown: str) -> None:
        if measured is None or score is None:
            missing.append(name)
            return
        subscores[name] = score
        values[name] = shown

    add("resp_rate", resp_rate, None if resp_rate is None else score_resp_rate(resp_rate),
        f"RR {resp_rate}/min")
    add("spo2", spo2_pct, None if spo2_pct is None else score_spo2(
        spo2_pct, supplemental_o2=bool(supplemental_o2), scale=spo2_scale), f"SpO2 {spo2_pct}%")
    add("supplemental_o2", supplemental_o2,
        None if supplemental_o2 is None else score_supplemental_o2(supplemental_o2),
        "on O2" if supplemental_o2 else "on air")
    add("systolic_bp", systolic_bp, None if systolic_bp is None else score_systolic_bp(systolic_bp),
        f"SBP {systolic_bp}")
    add("heart_rate", heart_rate, None if heart_rate is None else score_heart_rate(heart_rate),
        f"HR {heart_rate}/min")
    add("consciousness", avpu, None if avpu is None else score_consciousness(avpu),
        f"AVPU {avpu} ({AVPU_MEANING.get(avpu or '', '?')})")
    add("temperature", temperature_c, None if temperature_c is None else score_temperature(temperature_c),
        f"T {temperature_c:.1f}C" if temperature_c is not None else "")
    return News2(total=sum(subscores.values()), subscores=subscores, values=values,
                 missing=tuple(missing), spo2_scale=spo2_scale)


def news2_from_vitals(vitals: Vitals, *, spo2_scale: SpO2Scale = 1) -> News2:
    """NEWS2 of one set of vital signs from the crew."""
    return news2(resp_rate=vitals.resp_rate, spo2_pct=vitals.spo2_pct,
                 supplemental_o2=vitals.supplemental_o2, systolic_bp=vitals.systolic_bp,
                 heart_rate=vitals.heart_rate, avpu=vitals.avpu, temperature_c=vitals.temperature_c,
                 spo2_scale=spo2_scale)
