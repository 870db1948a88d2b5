// Live refresh of the crew page: poll /live every 2 s and replace the parts
// marked data-live (link status, queue, case list, destination and offers).
// Forms are never replaced, so nothing the crew is typing is lost.
(function () {
  "use strict";
  var caseId = document.body.getAttribute("data-case") || "";
  var url = "/live" + (caseId ? "?case=" + encodeURIComponent(caseId) : "");
  function poll() {
    fetch(url, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) { if (r.status === 401) { window.location.reload(); } return r.json(); })
      .then(function (data) {
        var fragments = (data && data.fragments) || {};
        Object.keys(fragments).forEach(function (key) {
          var node = document.querySelector("[data-live='" + key + "']");
          if (node && node.innerHTML !== fragments[key]) { node.innerHTML = fragments[key]; }
        });
      })
      .catch(function () { /* the page itself is local; try again */ })
      .then(function () { window.setTimeout(poll, 2000); });
  }
  if (document.querySelector("[data-live]")) { window.setTimeout(poll, 1000); }
  var unknown = document.getElementById("name-unknown");
  var name = document.getElementById("name");
  if (unknown && name) {
    unknown.addEventListener("change", function () { name.disabled = unknown.checked; });
  }
})();
