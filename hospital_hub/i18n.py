"""Interface text in English and Korean. The language is the ``lang`` cookie
(set by the toggle in every page's header); English by default. Every string
the templates use is a key of :data:`STRINGS` with both languages
(``tests/integration/test_api.py`` checks that)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.notice import AI_NOTICE

LANGUAGES = ("en", "ko")
DEFAULT = "en"
COOKIE = "lang"

STRINGS: dict[str, tuple[str, str]] = {
    "ai_notice": (AI_NOTICE, "AI 분석 결과이며 임상 진단용이 아닙니다"),
    "placeholder_short": ("placeholder model, not a diagnosis", "임시 모델, 진단 아님"),
    "placeholder_long": ("Placeholder model: these results are not a diagnosis and mean nothing clinically",
                         "임시 모델: 이 결과는 진단이 아니며 임상적 의미가 없습니다"),
    "signed_in_as": ("signed in as", "로그인:"),
    "sign_out": ("sign out", "로그아웃"),
    "sign_in": ("Sign in", "로그인"),
    "username": ("Username", "사용자 이름"),
    "password": ("Password", "비밀번호"),
    "login.help": ("Dispatchers and ER doctors sign in here; machine clients use an API token",
                   "상황실 요원과 응급실 의사는 여기서 로그인합니다. 기계 클라이언트는 API 토큰을 씁니다"),
    "login.wrong": ("Wrong username or password.", "사용자 이름 또는 비밀번호가 틀렸습니다."),
    "login.too_many": ("Too many failed sign-ins. Try again in {wait} s.",
                       "로그인 실패가 너무 많습니다. {wait}초 후에 다시 시도하세요."),
    "kind.admin": ("admin", "관리자"),
    "kind.dispatcher": ("dispatcher", "상황실"),
    "kind.er_doctor": ("er doctor", "응급실 의사"),
    "kind.er_service": ("er service", "응급실 연동"),
    "kind.ambulance": ("ambulance", "구급차"),
    "board": ("Dispatch board", "상황판"),
    "board_link": ("dispatch", "상황판"),
    "broker": ("broker", "브로커"),
    "connected": ("connected", "연결됨"),
    "disconnected": ("DISCONNECTED", "연결 끊김"),
    "history": ("Case history", "사례 기록"),
    "active_cases": ("Active cases", "진행 중인 사례"),
    "no_cases": ("No cases yet. Send an X-ray with", "아직 사례가 없습니다. X선 보내기:"),
    "case": ("Case", "사례"),
    "ambulance": ("Ambulance", "구급차"),
    "ambulances": ("Ambulances", "구급차"),
    "triage": ("Triage", "중증도"),
    "ai_top_findings": ("AI top findings", "AI 주요 소견"),
    "status": ("Status", "상태"),
    "since_received": ("Since received", "접수 후 경과"),
    "next_expiry": ("Next offer expires in", "다음 제안 만료까지"),
    "offers": ("Offers", "제안"),
    "record_pdf": ("record (PDF)", "기록 (PDF)"),
    "open_case": ("open case", "사례 열기"),
    "map": ("Map", "지도"),
    "legend.free": ("ER accepting, free beds", "수용 가능, 빈 병상 있음"),
    "legend.full": ("no free beds or not current", "빈 병상 없음 또는 정보 지연"),
    "legend.closed": ("not accepting", "수용 불가"),
    "ers": ("Emergency rooms", "응급실"),
    "free_er_beds": ("Free ER beds", "응급실 빈 병상"),
    "free_icu_beds": ("Free ICU beds", "중환자실 빈 병상"),
    "accepting": ("Accepting", "수용 중"),
    "not_accepting": ("NOT accepting ambulances", "구급차 수용 불가"),
    "accepting_ambulances": ("accepting ambulances", "구급차 수용"),
    "capabilities": ("Capabilities", "진료 역량"),
    "console": ("Console", "콘솔"),
    "open": ("open", "열기"),
    "yes": ("yes", "예"),
    "NO": ("NO", "아니요"),
    "not_current": ("not current", "최신 아님"),
    "online": ("online", "온라인"),
    "offline": ("offline", "오프라인"),
    "unknown": ("unknown", "미상"),
    "esc.no_er": ("no ER accepted: allocate by phone", "수용한 응급실 없음: 전화로 배정하세요"),
    "esc.expired": ("an offer expired unanswered", "응답 없이 만료된 제안 있음"),
    "esc.critical_waiting": ("triage 1-2 still waiting for an ER", "중증도 1-2 환자가 응급실을 기다리는 중"),
    "er_console": ("ER console", "응급실 콘솔"),
    "er.critical": ("CRITICAL patient incoming (triage 1-2)", "중증 환자 이송 중 (중증도 1-2)"),
    "update_capacity": ("Update capacity", "병상 정보 갱신"),
    "capacity_stale": ("capacity not current: please update", "병상 정보가 오래되었습니다: 갱신하세요"),
    "read_only": ("read-only: only this ER's doctors decide here", "읽기 전용: 이 응급실 의사만 결정합니다"),
    "incoming_offers": ("Incoming offers", "들어온 이송 요청"),
    "no_offers": ("No open offers.", "열린 요청이 없습니다."),
    "eta": ("ETA about", "도착 예정 약"),
    "answer_within": ("answer within", "응답 남은 시간"),
    "expired": ("expired", "만료"),
    "accept": ("Accept", "수용"),
    "decline": ("Decline", "거절"),
    "reason": ("reason", "사유"),
    "reason_placeholder": ("reason (needed to decline)", "사유 (거절 시 필수)"),
    "recent": ("Recent", "최근"),
    "outcome": ("Outcome", "결과"),
    "by": ("By", "결정자"),
    "error.reason_needed": ("Give a reason to decline", "거절 사유를 입력하세요"),
    "error.already_placed": ("Already placed at another ER", "이미 다른 응급실에 배정되었습니다"),
    "error.already_decided": ("This offer was already decided", "이미 결정된 요청입니다"),
    "state.open": ("open", "대기"),
    "state.accepted": ("accepted", "수용"),
    "state.declined": ("declined", "거절"),
    "state.expired": ("expired", "만료"),
    "state.withdrawn": ("withdrawn", "철회"),
    "status.offered": ("offered", "요청 중"),
    "status.accepted": ("accepted", "수용됨"),
    "status.no_er_available": ("no ER available", "수용 응급실 없음"),
    "status.cancelled": ("cancelled", "취소됨"),
    "back_to_offers": ("back to offers", "요청 목록으로"),
    "xray": ("X-ray", "X선"),
    "image_full": ("full image", "원본 영상"),
    "image_thumbnail": ("thumbnail (full image not yet received)", "미리보기 (원본 영상 수신 전)"),
    "zoom_in": ("zoom in", "확대"),
    "zoom_out": ("zoom out", "축소"),
    "reset": ("Reset", "초기화"),
    "window": ("Window", "창 너비"),
    "level": ("Level", "창 중심"),
    "boxes": ("AI boxes", "AI 영역 표시"),
    "heatmap": ("Heat map", "열 지도"),
    "no_heatmap": ("no heat map from this model", "이 모델은 열 지도를 제공하지 않습니다"),
    "heatmap_of": ("heat map of", "열 지도 소견"),
    "heatmap_label": ("AI heat map — where the model's evidence is, not a diagnosis; "
                      "not for clinical use",
                      "AI 열 지도 — 모델이 근거로 삼은 위치이며 진단이 아닙니다. 임상용이 아닙니다"),
    "ai_evidence": ("AI evidence: boxes and heat maps", "AI 근거: 영역 표시와 열 지도"),
    "peak": ("peak of the heat map", "열 지도 최고점"),
    "regions_title": ("AI boxes on the X-ray", "X선 위 AI 영역 표시"),
    "no_regions": ("none (no suspected finding with a box)",
                   "없음 (영역이 있는 의심 소견 없음)"),
    "source.heatmap": ("from the heat map", "열 지도 기반"),
    "source.detector": ("from the detector", "검출기 기반"),
    "source.unknown": ("source not given", "출처 미표시"),
    "model": ("Model", "모델"),
    "sha_none": ("not given", "미표시"),
    "reasons": ("Why this level", "중증도 근거"),
    "triage_reassessed": ("re-assessed by the ambulance with new vital signs",
                          "구급차에서 새 활력 징후로 재평가함"),
    "triage_from_diagnosis": ("from the AI diagnosis (with the vital signs sent with it)",
                              "AI 진단 기준 (함께 보낸 활력 징후 포함)"),
    "triage_image_only": ("from the AI diagnosis of the image alone (no vital signs yet)",
                          "영상만으로 한 AI 진단 기준 (아직 활력 징후 없음)"),
    "viewer_help": ("Wheel: zoom · drag: pan · right-drag or shift-drag: window/level",
                    "휠: 확대/축소 · 끌기: 이동 · 오른쪽 끌기 또는 Shift+끌기: 창 너비/중심"),
    "findings": ("AI findings (14)", "AI 소견 (14개)"),
    "finding": ("Finding", "소견"),
    "probability": ("Probability", "확률"),
    "threshold": ("Operating point", "작동점"),
    "positive": ("suspected", "의심"),
    "measured": ("Measured sensitivity / specificity", "측정 민감도 / 특이도"),
    "suspected_note": ("Suspected: the probability reached the finding's operating point, chosen for a "
                       "stated specificity on out-of-fold NIH images; the measured sensitivity and "
                       "specificity are from there, not from your patients. Other findings are shown muted.",
                       "의심: 확률이 해당 소견의 작동점에 도달함. 작동점은 교차 검증된 NIH 영상에서 "
                       "정한 특이도로 선택했으며, 측정 민감도와 특이도는 그 영상에서 얻은 값으로 "
                       "귀하의 환자에서 얻은 값이 아닙니다. 나머지 소견은 흐리게 표시합니다."),
    "not_measured": ("not measured", "측정값 없음"),
    "decision": ("Decision", "결정"),
    "top3": ("Top 3", "상위 3개"),
    "patient": ("Patient", "환자"),
    "age": ("age", "나이"),
    "sex": ("sex", "성별"),
    "complaint": ("Chief complaint", "주 호소"),
    "transport": ("Transport", "이송"),
    "position": ("Latest position", "최근 위치"),
    "at_capture": ("where the X-ray was taken", "X선 촬영 위치"),
    "vitals": ("Vital signs", "활력 징후"),
    "time": ("Time", "시각"),
    "resp_rate": ("Resp. rate", "호흡수"),
    "heart_rate": ("Heart rate", "심박수"),
    "systolic": ("Systolic BP", "수축기 혈압"),
    "none_yet": ("None yet.", "아직 없음."),
    "handover": ("Handover", "인계"),
    "print": ("Print", "인쇄"),
    "date_from": ("From", "시작일"),
    "date_to": ("To", "종료일"),
    "all": ("all", "전체"),
    "severity": ("Triage at least", "중증도 이상"),
    "filter": ("Filter", "조회"),
    "matching": ("Matching cases", "일치하는 사례"),
    "received": ("Received", "접수"),
    "needs_action": ("Needs action", "조치 필요"),
    "needs_action.none": ("Nothing needs action now.", "지금 조치할 사례가 없습니다."),
    "dispatch_alerts": ("Dispatch alerts", "상황실 알림"),
    "dispatch_alerts.none": ("No dispatch alert yet.", "아직 상황실 알림이 없습니다."),
    "esc.expiring": ("an offer expires in under a minute", "1분 안에 만료되는 제안 있음"),
    "reoffer_now": ("Re-offer now", "지금 다시 요청"),
    "reoffer.offered": ("Offered again", "다시 요청했습니다"),
    "reoffer.none": ("No ER can take the case now (closed, full or declined); it still needs action",
                     "지금 받을 수 있는 응급실이 없습니다 (수용 불가, 만석 또는 거절). "
                     "계속 조치가 필요합니다"),
    "reoffer.not_waiting": ("The case is no longer waiting for an ER",
                            "이 사례는 더 이상 응급실을 기다리지 않습니다"),
    "board.accepted_note": ("Accepted cases: the newest {n} are shown here; the rest are in the",
                            "수용된 사례는 최근 {n}건만 표시합니다. 나머지:"),
    "expected_arrivals": ("Expected arrivals", "도착 예정 환자"),
    "no_arrivals": ("No accepted patient on the way.", "이송 중인 수용 환자가 없습니다."),
    "eta.under_1": ("under 1 min", "1분 이내"),
    "eta.arriving": ("arriving", "도착 중"),
    "eta.in_min": ("in {n} min", "{n}분 후"),
    "eta.arrives_about": ("arrives about", "도착 예정 약"),
    "eta.from_position": ("from the ambulance's latest position", "구급차 최근 위치 기준"),
    "eta.from_capture": ("from where the X-ray was taken", "X선 촬영 위치 기준"),
    "eta.estimate": ("straight-line estimate", "직선 거리 추정"),
    "set_by": ("set by", "판정 근거"),
    "rr": ("RR", "호흡수"),
    "hr": ("HR", "심박수"),
    "bp": ("BP", "혈압"),
    "error_page.403": ("Not allowed", "권한이 없습니다"),
    "error_page.404": ("Page not found", "페이지를 찾을 수 없습니다"),
    "error_page.422": ("That request could not be used", "요청을 처리할 수 없습니다"),
    "error_page.home": ("Back to the start page", "첫 화면으로"),
}


def normalise(lang: str | None) -> str:
    """A supported language code (English for anything else)."""
    return lang if lang in LANGUAGES else DEFAULT


def translate(lang: str, key: str, **values: Any) -> str:
    """The text of ``key`` in ``lang`` (the key itself if unknown), formatted with ``values``."""
    pair = STRINGS.get(key)
    text = key if pair is None else pair[LANGUAGES.index(normalise(lang))]
    return text.format(**values) if values else text


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **values)`` for templates."""
    lang = normalise(lang)

    def t(key: str, **values: Any) -> str:
        return translate(lang, key, **values)

    return t


from hospital_hub.i18n_field import STRINGS as _FIELD_STRINGS  # noqa: E402  (verdicts, /performance)

STRINGS.update(_FIELD_STRINGS)
