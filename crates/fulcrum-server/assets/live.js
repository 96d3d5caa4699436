// Live updates for a version page: follow the registry's event stream (server-sent events, the
// session's own identity) and reload the page when this version changes — a revocation shows
// without a reload by hand. The page stays fully readable without this script.
(function () {
  "use strict";
  var el = document.querySelector("[data-live]");
  if (!el || !window.EventSource) { return; }
  var version = el.getAttribute("data-version");
  var source = new EventSource(el.getAttribute("data-live"));
  var kinds = ["revocation", "quarantined", "quarantine_released", "approval", "promotion", "alias_updated"];
  var onEvent = function (message) {
    var data;
    try { data = JSON.parse(message.data).data; } catch (e) { return; }
    if (data && (data.version === version || data.from === version)) {
      source.close();
      window.location.reload();
    }
  };
  kinds.forEach(function (k) { source.addEventListener(k, onEvent); });
})();
