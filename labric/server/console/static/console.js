// The console's only script: draws dashboard charts, places widgets on their grid, and follows a
// running job's log. Data comes from the page (data-* attributes and JSON script elements);
// nothing here builds HTML from data (text goes in with textContent).
"use strict";

(function () {
  var PALETTE = ["#2f6fb0", "#d9822b", "#3f9d5a", "#b5454b", "#7b5ea7", "#8c6d3f", "#c05a9a"];

  function placeWidgets() {
    document.querySelectorAll(".grid > .widget").forEach(function (card) {
      var x = parseInt(card.dataset.x, 10), y = parseInt(card.dataset.y, 10);
      var w = parseInt(card.dataset.w, 10), h = parseInt(card.dataset.h, 10);
      if ([x, y, w, h].some(isNaN)) { return; }
      card.style.gridColumn = (x + 1) + " / span " + w;
      card.style.gridRow = (y + 1) + " / span " + h;
    });
  }

  function column(data, name) {
    var at = data.columns.indexOf(name);
    return data.rows.map(function (row) { return at < 0 ? null : row[at]; });
  }

  function chartConfig(data) {
    var ys = data.y || [];
    if (data.kind === "histogram") {
      var counts = column(data, "count");
      var labels = data.rows.map(function (row) {
        return Number(row[0]).toPrecision(3) + "–" + Number(row[1]).toPrecision(3);
      });
      return { type: "bar", data: { labels: labels, datasets: [
        { label: "count", data: counts, backgroundColor: PALETTE[0], barPercentage: 1, categoryPercentage: 1 }
      ] } };
    }
    var xs = data.x ? column(data, data.x) : data.rows.map(function (_, i) { return i; });
    var datasets = ys.map(function (name, i) {
      var values = column(data, name);
      var colour = PALETTE[i % PALETTE.length];
      if (data.kind === "scatter") {
        return { label: name, backgroundColor: colour, borderColor: colour,
                 data: values.map(function (v, j) { return { x: xs[j], y: v }; }) };
      }
      return { label: name, data: values, backgroundColor: colour, borderColor: colour, pointRadius: 2 };
    });
    if (data.kind === "scatter") {
      return { type: "scatter", data: { datasets: datasets } };
    }
    return { type: data.kind === "bar" ? "bar" : "line", data: { labels: xs, datasets: datasets } };
  }

  function drawCharts() {
    if (typeof window.Chart === "undefined") { return; }
    document.querySelectorAll(".chart").forEach(function (box) {
      var source = box.querySelector("script.chart-data");
      var canvas = box.querySelector("canvas");
      if (!source || !canvas) { return; }
      var config = chartConfig(JSON.parse(source.textContent));
      config.options = { animation: false, responsive: true, maintainAspectRatio: false,
                         plugins: { legend: { display: (config.data.datasets || []).length > 1 } } };
      var chart = new window.Chart(canvas, config);
      box.dataset.drawn = String(chart.data.datasets.length);
    });
  }

  function followLog() {
    var log = document.getElementById("log");
    if (!log || !log.dataset.follow) { return; }
    var url = log.dataset.follow;
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("status " + response.status); }
          return response.json();
        })
        .then(function (state) {
          var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
          log.textContent = state.text;
          if (atBottom) { log.scrollTop = log.scrollHeight; }
          document.querySelectorAll("[data-status]").forEach(function (badge) {
            badge.textContent = state.status;
            badge.dataset.status = state.status;
            badge.className = "status status-" + state.status;
          });
          document.querySelectorAll("[data-duration]").forEach(function (span) {
            span.textContent = state.duration;
          });
          if (state.finished) {
            log.dataset.finished = "true";
          } else {
            window.setTimeout(tick, 500);
          }
        })
        .catch(function () { window.setTimeout(tick, 2000); });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    placeWidgets();
    drawCharts();
    followLog();
  });
})();
