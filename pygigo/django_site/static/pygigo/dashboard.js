// Pygigo dashboard: polls the data URL and redraws the uPlot charts and the tables in place.
// window.pygigoDashboard exposes the charts and the last data (read by the browser test).
(function () {
  "use strict";
  const script = document.getElementById("pg-dashboard-script");
  const url = script.dataset.url;
  const pollMs = Number(script.dataset.pollMs) || 5000;
  const colors = ["#417690", "#ba2121", "#e8a33d", "#5b8c3a", "#79aec8", "#8e5ea2", "#333333", "#c96"];
  const state = (window.pygigoDashboard = { charts: {}, data: null, polls: 0 });

  function draw(name, times, seriesByLabel) {
    const element = document.getElementById("pg-chart-" + name);
    const labels = Object.keys(seriesByLabel);
    const data = [times, ...labels.map((label) => seriesByLabel[label])];
    const existing = state.charts[name];
    if (existing && existing.labels.join("\u0000") === labels.join("\u0000")) {
      existing.plot.setData(data);
      existing.data = data;
      return;
    }
    if (existing) existing.plot.destroy();
    element.textContent = "";
    if (!labels.length) {
      element.innerHTML = '<p class="pg-empty">No data yet.</p>';
      delete state.charts[name];
      return;
    }
    const options = {
      width: Math.max(element.clientWidth, 320),
      height: 200,
      scales: { x: { time: true } },
      series: [{}, ...labels.map((label, i) => ({ label: label, stroke: colors[i % colors.length], width: 2, spanGaps: true }))],
    };
    state.charts[name] = { plot: new uPlot(options, data, element), labels: labels, data: data };
  }

  function cell(row, text, href) {
    const td = row.insertCell();
    if (href) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text == null ? "-" : String(text);
    }
    return td;
  }

  function fill(id, rows, columns) {
    const body = document.getElementById(id);
    body.textContent = "";
    if (!rows.length) {
      cell(body.insertRow(), "none").colSpan = 4;
      return;
    }
    rows.forEach((item) => columns(body.insertRow(), item));
  }

  function render(data) {
    const s = data.series;
    draw("throughput", s.t, s.throughput);
    draw("runtime", s.t, s.t.length ? { p50: s.p50_s, p95: s.p95_s } : {});
    draw("failures", s.t, s.failures);
    draw("depth", s.t, s.depth);
    draw("age", s.t, s.oldest_age_s);
    fill("pg-workers", data.workers, (row, w) => {
      cell(row, w.host);
      cell(row, w.pid);
      cell(row, w.queues.join(", "));
      const age = cell(row, w.age_s.toFixed(1) + " s ago" + (w.stale ? " (stale)" : ""));
      if (w.stale) age.className = "pg-stale";
    });
    document.getElementById("pg-leader").textContent = "(leader: " + (data.scheduler.leader || "none") + ")";
    fill("pg-schedules", data.scheduler.schedules, (row, sc) => {
      cell(row, sc.name);
      cell(row, sc.function);
      cell(row, sc.last_run);
      cell(row, sc.next_run);
    });
    fill("pg-failures", data.recent_failures, (row, f) => {
      cell(row, f.id.slice(0, 8), f.url);
      cell(row, f.function);
      cell(row, f.status);
      cell(row, f.error);
    });
  }

  async function poll() {
    const error = document.getElementById("pg-error");
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error("the dashboard data answered " + response.status);
      state.data = await response.json();
      render(state.data);
      error.style.display = "none";
    } catch (exc) {
      error.textContent = "Cannot update: " + exc.message + " (retrying)";
      error.style.display = "";
    }
    state.polls += 1;
    setTimeout(poll, pollMs);
  }

  poll();
})();
