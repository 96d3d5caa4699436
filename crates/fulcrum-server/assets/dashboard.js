// A version's dashboard charts: the figures of dashboard.json (the same the page's tables show)
// drawn with the vendored uPlot. Without this script the tables are the dashboard.
(function () {
  "use strict";
  var root = document.querySelector("[data-dashboard]");
  if (!root || !window.uPlot || !window.fetch) { return; }
  var palette = ["#1f5fa8", "#b35900", "#2e7d32", "#8e24aa", "#c62828", "#00838f"];
  function chart(name, times, series) {
    var el = root.querySelector('[data-chart="' + name + '"]');
    if (!el) { return; }
    if (series.length === 0) {
      el.textContent = "No data in this range.";
      return;
    }
    var opts = {
      width: Math.max(el.clientWidth, 320),
      height: 200,
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: palette[i % palette.length], width: 2, spanGaps: false, points: { show: true, size: 6 } };
      })),
      axes: [{}, {}],
    };
    var data = [times].concat(series.map(function (s) { return s.values; }));
    el.setAttribute("data-drawn", "true");
    new window.uPlot(opts, data, el);
  }
  fetch(root.getAttribute("data-dashboard"), { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
    .then(function (d) {
      var by = function (field) {
        return d.aliases.map(function (a) { return { label: a.alias, values: a[field] }; });
      };
      chart("latency", d.times, by("p99_ms"));
      chart("errors", d.times, by("errors"));
      chart("refused", d.times, by("refused"));
      chart("psi", d.times, d.psi.map(function (f) { return { label: f.feature, values: f.psi }; }));
      root.setAttribute("data-loaded", "true");
    })
    .catch(function () { root.setAttribute("data-loaded", "failed"); });
})();
