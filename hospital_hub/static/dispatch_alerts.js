// The dispatch board's alerts: ask /api/dispatch/alerts for those after the
// last one shown, newest first, every retry_ms (the hub asks for less while
// it is overloaded). Text is set with textContent: alerts are never HTML.
(function () {
  "use strict";
  const list = document.getElementById("dispatch-alert-list");
  const none = document.getElementById("no-dispatch-alerts");
  if (!list || !window.fetch) return;
  let last = 0;

  function show(alert) {
    const item = document.createElement("li");
    item.className = "dispatch-alert level-" + alert.triage_level;
    item.dataset.kind = alert.kind;
    if (alert.case_id) item.dataset.case = alert.case_id;
    const when = document.createElement("time");
    when.dateTime = alert.sent_at;
    when.textContent = new Date(alert.sent_at).toLocaleTimeString([], { hour12: false });
    const text = document.createElement("span");
    text.textContent = " " + alert.kind.replace(/_/g, " ") + " · " + alert.ambulance_id + ": " + alert.message;
    item.append(when, text);
    list.prepend(item);
    while (list.children.length > 50) list.lastElementChild.remove();
  }

  async function poll() {
    let wait = 5000;
    try {
      const response = await fetch("/api/dispatch/alerts?after=" + last, { credentials: "same-origin" });
      if (response.ok) {
        const body = await response.json();
        body.alerts.forEach(show);
        last = body.last;
        wait = body.retry_ms;
        if (none) none.hidden = list.children.length > 0;
        document.body.dataset.alertsPolled = String(Number(document.body.dataset.alertsPolled || 0) + 1);
      }
    } catch (error) {
      wait = 5000;  // the hub is away: try again later
    }
    setTimeout(poll, wait);
  }

  poll();
})();
