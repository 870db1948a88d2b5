"""Interface text of the ER's verdict and the field-performance page, in
English and Korean (merged into :data:`hospital_hub.i18n.STRINGS`)."""

from __future__ import annotations

STRINGS: dict[str, tuple[str, str]] = {
    "verdict.title": ("Your verdict on the AI findings", "AI 소견에 대한 판정"),
    "verdict.no_diagnosis": ("No AI diagnosis to judge yet.", "아직 판정할 AI 진단이 없습니다."),
    "verdict.help": ("After reading the X-ray yourself: for each finding, is the AI right? "
                     "Your verdict is stored with the model it judges and feeds the model's "
                     "measured performance and its retraining.",
                     "X선을 직접 판독한 뒤 소견마다 AI가 맞는지 표시하세요. 판정은 해당 모델과 함께 "
                     "저장되어 모델의 실사용 성능 측정과 재학습에 쓰입니다."),
    "verdict.judges_model": ("judges the diagnosis of", "판정 대상 진단 모델"),
    "verdict.saved": ("Saved", "저장됨"),
    "verdict.complete": ("all 14 findings assessed", "14개 소견 모두 판정"),
    "verdict.partial": ("some findings not assessed", "일부 소견 미판정"),
    "verdict.ai_call": ("AI call", "AI 판단"),
    "verdict.er_judgement": ("ER judgement", "응급실 판정"),
    "verdict.ai_suspected": ("suspected", "의심"),
    "verdict.ai_not_suspected": ("not suspected", "의심 안 함"),
    "verdict.suspected.confirmed": ("present: confirm", "있음: 확인"),
    "verdict.suspected.refuted": ("absent: refute", "없음: 반박"),
    "verdict.suspected.not_assessed": ("not assessed", "판정 안 함"),
    "verdict.not_suspected.confirmed": ("absent: agree", "없음: 동의"),
    "verdict.not_suspected.refuted": ("present: AI missed it", "있음: AI가 놓침"),
    "verdict.not_suspected.not_assessed": ("not assessed", "판정 안 함"),
    "verdict.save": ("Save verdict", "판정 저장"),
    "verdict.read_only": ("read-only: only this ER's doctors and admins judge",
                          "읽기 전용: 이 응급실 의사와 관리자만 판정합니다"),
    "perf.title": ("Model performance in the field", "현장 모델 성능"),
    "perf.link": ("model performance", "모델 성능"),
    "perf.not_validation": ("Figures from ER verdicts on live cases, not a clinical validation.",
                            "실제 사례에 대한 응급실 판정에서 나온 수치이며 임상 검증이 아닙니다."),
    "perf.definitions": ("What is counted", "집계 기준"),
    "perf.defs_text": ("Per finding, from each diagnosis's latest verdict: TP suspected and "
                       "confirmed, FP suspected and refuted, FN not suspected but found by the ER "
                       "(added), TN not suspected and confirmed absent; not-assessed findings count "
                       "nowhere. PPV = TP/(TP+FP); sensitivity = TP/(TP+FN). Counts beside every "
                       "rate, with a Wilson 95% interval. Only what ERs judge is counted.",
                       "소견별로 각 진단의 최신 판정 기준: TP 의심·확인, FP 의심·반박, FN 의심 안 했으나 "
                       "응급실이 발견(추가), TN 의심 안 함·없음 동의. 판정 안 한 소견은 집계하지 않습니다. "
                       "PPV = TP/(TP+FP), 민감도 = TP/(TP+FN). 모든 비율 옆에 건수와 Wilson 95% 구간을 "
                       "표시합니다. 응급실이 판정한 것만 집계됩니다."),
    "perf.alerts": ("Model drift alerts", "모델 드리프트 경보"),
    "perf.cases": ("cases", "사례"),
    "perf.not_published": ("shown here only (no dispatch message yet)",
                           "여기에만 표시 (상황실 메시지 없음)"),
    "perf.by_model": ("By model version", "모델 버전별"),
    "perf.verdicts": ("verdicts", "판정"),
    "perf.no_verdicts": ("No verdicts yet.", "아직 판정이 없습니다."),
    "perf.by_device": ("By model version and ambulance", "모델 버전·구급차별"),
    "perf.drift": ("Drift of predicted probabilities", "예측 확률 분포 변화"),
    "perf.drift_text": ("Population stability index (PSI) per finding over each ambulance's last "
                        "{window} diagnoses against the model's validation distribution; judged "
                        "from {min_cases} diagnoses; above {psi} on any finding dispatch is alerted "
                        "once per window.",
                        "구급차별 최근 {window}건 진단의 소견별 PSI를 모델 검증 분포와 비교합니다. "
                        "{min_cases}건 이상일 때 판단하며, 어느 소견이든 {psi}를 넘으면 구간마다 한 번 "
                        "상황실에 경보합니다."),
    "perf.worst": ("Largest PSI", "최대 PSI"),
    "perf.status.ok": ("stable", "안정"),
    "perf.status.shift": ("SHIFTED", "분포 변화"),
    "perf.status.no_reference": ("no reference: the model's manifest entry has no validation "
                                 "histogram", "기준 없음: 모델 매니페스트에 검증 분포가 없습니다"),
    "perf.status.too_few_cases": ("too few cases", "사례 부족"),
    "perf.ppv": ("PPV", "양성 예측도"),
    "perf.sensitivity": ("Sensitivity", "민감도"),
    "perf.refusals": ("Images refused as not a chest X-ray", "흉부 X선이 아니어서 거부된 영상"),
    "perf.refusals_text": ("Each ambulance reports, per model, the images it diagnosed and the "
                           "ones it refused; the table shows its latest report (cumulative since "
                           "it began counting). Refusal rate = refused as not a chest X-ray / "
                           "(diagnosed + refused as not a chest X-ray), with counts and a Wilson "
                           "95% interval. Not a chest X-ray: the out-of-distribution guard, "
                           "another body part, a lateral or turned view. Unusable files (corrupt, "
                           "blank, unsupported) are counted beside it, not in it.",
                           "각 구급차는 모델별로 진단한 영상과 거부한 영상 수를 보고하며, 표는 최신 보고"
                           "(집계 시작 이후 누적)를 보여 줍니다. 거부율 = 흉부 X선 아님으로 거부 / (진단 + "
                           "흉부 X선 아님으로 거부)이며 건수와 Wilson 95% 구간을 함께 표시합니다. 흉부 X선 "
                           "아님: 분포 밖 영상 판별, 다른 신체 부위, 측면 또는 돌아간 영상. 사용할 수 없는 "
                           "파일(손상, 빈 영상, 미지원)은 따로 집계하며 거부율에 넣지 않습니다."),
    "perf.ambulances": ("Ambulances", "구급차 수"),
    "perf.diagnosed": ("Diagnosed", "진단"),
    "perf.refused_not_chest": ("Refused: not a chest X-ray", "거부: 흉부 X선 아님"),
    "perf.refused_unreadable": ("Refused: unusable file", "거부: 사용할 수 없는 파일"),
    "perf.refusal_rate": ("Refusal rate (not a chest X-ray)", "거부율 (흉부 X선 아님)"),
    "perf.counted_since": ("Counted since", "집계 시작"),
    "perf.last_report": ("Last report", "최근 보고"),
    "perf.no_intake": ("No ambulance has reported its image counts yet.",
                       "아직 영상 건수를 보고한 구급차가 없습니다."),
}
