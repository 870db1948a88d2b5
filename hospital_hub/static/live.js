// Live pages: listen to /api/events (server-sent events) and refetch the page's
// live regions ([data-live-region] with an id) when something relevant changed.
(function () {
  "use strict";
  const body = document.body;
  const caseId = body.dataset.case || null;
  let timer = null;
  let pending = false;

  function relevant(ev) {
    if (!caseId) return true;
    return ev.case_id === caseId || ev.ambulance_id === body.dataset.ambulance;
  }

  async function refresh() {
    timer = null;
    const active = document.activeElement;
    if (active && active.closest("[data-live-region]") && active.tagName === "INPUT" && active.value) {
      pending = true;  // do not wipe what the user is typing; refresh on blur
      return;
    }
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    document.querySelectorAll("[data-live-region]").forEach(function (region) {
      const fresh = doc.getElementById(region.id);
      if (fresh && fresh.innerHTML !== region.innerHTML) region.innerHTML = fresh.innerHTML;
    });
    body.dataset.refreshes = String(Number(body.dataset.refreshes || 0) + 1);
    tick();
    document.dispatchEvent(new CustomEvent("gh:refreshed"));
  }

  function schedule() { if (timer === null) timer = setTimeout(refresh, 100); }

  document.addEventListener("focusout", function () { if (pending) { pending = false; schedule(); } });

  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("ready", function () { body.dataset.sse = "open"; });
    source.onmessage = function (message) {
      const ev = JSON.parse(message.data);
      if (relevant(ev)) schedule();
    };
    source.onerror = function () { body.dataset.sse = "reconnecting"; };
  }

  function fmt(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  // Countdowns to an expiry and timers since an event, every second.
  function tick() {
    const now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      const left = (Date.parse(el.dataset.expires) - now) / 1000;
      el.textContent = left > 0 ? fmt(left) : (body.dataset.expiredText || "expired");
      el.classList.toggle("urgent", left < 30);
    });
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = fmt((now - Date.parse(el.dataset.since)) / 1000);
    });
    // A live ETA: the arrival as a local clock time, and the minutes left.
    document.querySelectorAll("[data-arrives]").forEach(function (el) {
      const at = Date.parse(el.dataset.arrives);
      const left = (at - now) / 60000;
      const clock = el.querySelector(".arrival-clock");
      if (clock) {
        clock.textContent = new Date(at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
      }
      const minutes = el.querySelector(".arrival-minutes");
      if (minutes) {
        minutes.textContent = left <= 0 ? el.dataset.arrivingText
          : left < 1 ? el.dataset.underText
          : el.dataset.minutesText.replace("{n}", String(Math.round(left)));
      }
    });
  }

  document.addEventListener("click", function (e) {
    const target = e.target;
    if (target && target.id === "print-handover") window.print();
  });

  tick();
  setInterval(tick, 1000);
  if (window.EventSource) connect();
})();
