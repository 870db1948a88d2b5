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
  // Positions of heat-map peaks and boxes come as data attributes, set here: the page's
  // Content-Security-Policy (no inline styles) would drop style="..." in the markup.
  function place(root) {
    root.querySelectorAll("[data-place]").forEach(function (node) {
      var v = node.getAttribute("data-place").split(" ");
      node.style.left = v[0] + "%"; node.style.top = v[1] + "%";
      if (v.length === 4) { node.style.width = v[2] + "%"; node.style.height = v[3] + "%"; }
    });
    root.querySelectorAll("[data-aspect]").forEach(function (node) {
      node.style.aspectRatio = node.getAttribute("data-aspect");
    });
  }
  place(document);
  new MutationObserver(function () { place(document); }).observe(document.body, {childList: true, subtree: true});
  if (document.querySelector("[data-live]")) { window.setTimeout(poll, 1000); }
  var unknown = document.getElementById("name-unknown");
  var name = document.getElementById("name");
  if (unknown && name) {
    unknown.addEventListener("change", function () { name.disabled = unknown.checked; });
  }
})();
