// The model page's "How it is doing" panel: reads GET /v2/models/{name}/monitor
// every 5 seconds and says, in words and small charts, how the model is doing:
// requests and errors over the last minutes, latency, class mix, accuracy from
// feedback, drift per feature (stable / watch / drifted). The figures cover this
// pod, or all replicas when the server reads them from Prometheus; the panel says which.
(function () {
  "use strict";
  const KEY_STORAGE = "modelship-api-key"; // the key model.js keeps for this tab
  const REFRESH_MS = 5000;

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children || []) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return e;
  }

  function pct(x) {
    return (100 * x).toFixed(1) + "%";
  }

  function key() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (e) {
      return "";
    }
  }

  const STYLE = `
    #monitor .mon-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(15rem, 1fr)); gap: 1rem 1.5rem; }
    #monitor h3 { font-size: 1rem; margin: 0 0 .4rem; }
    #monitor .mon-figure { font-size: 1.5rem; font-weight: 700; display: block; }
    #monitor svg { width: 100%; height: 3.2rem; display: block; }
    #monitor .status-stable { color: var(--ok-text, #1a7f37); }
    #monitor .status-watch { color: #9a6700; }
    #monitor .status-drifted { color: var(--error-text, #b42318); font-weight: 700; }
    #monitor td, #monitor th { text-align: left; }
  `;

  // A sparkline of one series; `max` is shared so requests and errors compare.
  function spark(values, max, cls) {
    const w = 300, h = 50, n = Math.max(values.length - 1, 1);
    const pts = values.map((v, i) => `${((i / n) * w).toFixed(1)},${(h - (max > 0 ? (v / max) * (h - 4) : 0) - 2).toFixed(1)}`);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", cls === "errors" ? "#b42318" : "#2563eb");
    line.setAttribute("stroke-width", "2");
    svg.appendChild(line);
    return svg;
  }

  function traffic(s) {
    const pts = s.traffic || [];
    const req = pts.map((p) => p.requests_per_s || 0);
    const err = pts.map((p) => p.errors_per_s || 0);
    const slot = pts.length > 1 ? pts[1].t - pts[0].t : 10;
    const total = req.reduce((a, b) => a + b, 0) * slot;
    const errors = err.reduce((a, b) => a + b, 0) * slot;
    const minutes = Math.round((pts.length * slot) / 60);
    const lat = pts.map((p) => p.latency_ms).filter((v) => v !== null && v !== undefined);
    const recent = lat.slice(-6);
    const mean = recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : null;
    const max = Math.max(...req, 0);
    const box = el("div", { id: "monitor-traffic" }, [
      el("h3", { text: "Requests" }),
      el("span", { class: "mon-figure", text: `${Math.round(total)} in the last ${minutes} minutes` }),
      el("p", {
        class: "hint",
        text: errors > 0 ? `${Math.round(errors)} errors (${pct(errors / Math.max(total, 1))})` : "No errors.",
      }),
      spark(req, max, "requests"),
      spark(err, max, "errors"),
      el("p", {
        class: "hint",
        text: mean === null ? "No answered request in the last minute." : `Mean latency ${mean.toFixed(1)} ms over the last minute.`,
      }),
    ]);
    return box;
  }

  function classes(s) {
    const cs = s.classes || [];
    const box = el("div", { id: "monitor-classes" }, [el("h3", { text: "Class mix" })]);
    const total = cs.reduce((a, c) => a + c.predicted, 0);
    if (!cs.length || total === 0) {
      box.appendChild(el("p", { class: "hint", text: cs.length ? "No prediction yet." : "Not a classifier." }));
      return box;
    }
    const list = el("ul", { class: "bars" });
    for (const c of cs) {
      const share = c.predicted / total;
      const prior = c.prior === null || c.prior === undefined ? "" : ` (training: ${pct(c.prior)})`;
      const fill = el("div", { class: "fill" });
      fill.style.width = pct(share);
      list.appendChild(el("li", { class: "bar" }, [
        el("span", { class: "name", text: c.class }),
        el("span", { class: "track" }, [fill]),
        el("span", { class: "pct", text: pct(share) }),
      ]));
      list.lastChild.title = `${pct(share)} of predictions${prior}`;
    }
    box.appendChild(list);
    return box;
  }

  function accuracy(s) {
    const f = s.feedback || {};
    const box = el("div", { id: "monitor-accuracy" }, [el("h3", { text: "Accuracy from feedback" })]);
    if (f.accuracy !== null && f.accuracy !== undefined) {
      box.appendChild(el("span", { class: "mon-figure", id: "monitor-accuracy-value", text: pct(f.accuracy) }));
      box.appendChild(el("p", { class: "hint", text: `${Math.round(f.correct)} of ${Math.round(f.rows)} rows with feedback were right.` }));
    } else if (f.abs_error_mean !== null && f.abs_error_mean !== undefined) {
      box.appendChild(el("span", { class: "mon-figure", id: "monitor-accuracy-value", text: f.abs_error_mean.toPrecision(3) }));
      box.appendChild(el("p", { class: "hint", text: "Mean absolute error of the answers with feedback." }));
    } else {
      box.appendChild(el("p", { class: "hint", text: `No feedback yet. Send the true answers to POST /v2/models/${s.model}/feedback with the ids the server returned.` }));
    }
    const other = Object.entries(f.items || {}).filter(([k, v]) => k !== "counted" && v > 0);
    if (other.length) {
      box.appendChild(el("p", { class: "hint", text: "Not counted: " + other.map(([k, v]) => `${Math.round(v)} ${k}`).join(", ") + "." }));
    }
    return box;
  }

  const WORDS = { stable: "stable", watch: "watch", drifted: "drifted" };
  // Features listed before the rest are folded into a <details>.
  const SHOWN = 10;

  function drift(s) {
    const d = s.drift || {};
    const box = el("div", { id: "monitor-drift" }, [el("h3", { text: "Drift from the training data" })]);
    if (!d.available) {
      box.appendChild(el("p", { class: "hint", id: "monitor-drift-reason", text: `No drift figures: ${d.reason}.` }));
      return box;
    }
    const rows = (d.features || []).concat(d.classes ? [d.classes] : []);
    const drifted = rows.filter((r) => r.status === "drifted").map((r) => r.name);
    box.appendChild(el("p", {
      class: "hint",
      text: rows.every((r) => r.psi === null)
        ? `Not enough inputs yet (${d.window_rows} rows; figures from 100).`
        : drifted.length
          ? `Drifted: ${drifted.slice(0, SHOWN).join(", ")}${drifted.length > SHOWN ? ` and ${drifted.length - SHOWN} more` : ""}. The inputs no longer look like the training data.`
          : "The inputs look like the training data.",
    }));
    // Many features (an image's pixels): the most drifted first, the rest folded away.
    const many = rows.length > SHOWN + 2;
    const ordered = many ? rows.slice().sort((a, b) => (b.psi ?? -1) - (a.psi ?? -1)) : rows;
    const table = (part) => {
      const t = el("table", {}, [el("thead", {}, [el("tr", {}, [el("th", { text: "Feature" }), el("th", { text: "PSI" }), el("th", { text: "Status" })])])]);
      const body = el("tbody");
      for (const r of part) {
        const status = r.status ? WORDS[r.status] : "not enough data";
        body.appendChild(el("tr", { "data-feature": r.name, "data-status": r.status || "none" }, [
          el("td", { text: r.name }),
          el("td", { text: r.psi === null ? "–" : r.psi.toFixed(3) }),
          el("td", { class: r.status ? "status-" + r.status : "", text: status }),
        ]));
      }
      t.appendChild(body);
      return el("div", { class: "table-wrap" }, [t]);
    };
    box.appendChild(table(many ? ordered.slice(0, SHOWN) : ordered));
    if (many) {
      const rest = ordered.slice(SHOWN);
      box.appendChild(el("details", { id: "monitor-drift-more" }, [
        el("summary", { text: `${rest.length} more features, less drifted` }),
        table(rest),
      ]));
    }
    box.appendChild(el("p", {
      class: "hint",
      text: `Population stability index: below ${d.watch} stable, ${d.watch} to ${d.drifted} watch, above ${d.drifted} drifted.`,
    }));
    return box;
  }

  async function refresh(section, name) {
    const headers = {};
    const k = key();
    if (k) headers.Authorization = "Bearer " + k;
    const scope = section.querySelector("#monitor-scope");
    const out = section.querySelector("#monitor-body");
    try {
      // Under the page's own prefix (a path-prefix public route): /team/iris/models/NAME -> /team/iris.
      const base = location.pathname.replace(/\/models\/[^/]*$/, "");
      const resp = await fetch(`${base}/v2/models/${encodeURIComponent(name)}/monitor`, { headers });
      if (resp.status === 401) {
        scope.textContent = "These figures need the model's API key (enter it above).";
        return;
      }
      if (!resp.ok) {
        scope.textContent = `The figures are not available (${resp.status}).`;
        return;
      }
      const s = await resp.json();
      scope.textContent = s.scope_note;
      scope.dataset.scope = s.scope;
      const grid = el("div", { class: "mon-grid" }, [traffic(s), accuracy(s), classes(s), drift(s)]);
      out.replaceChildren(grid);
    } catch (e) {
      scope.textContent = "The figures could not be read: " + e;
    }
  }

  function start() {
    const section = document.getElementById("monitor");
    if (!section) return;
    const style = document.createElement("style");
    style.textContent = STYLE;
    document.head.appendChild(style);
    const name = document.body.dataset.model;
    refresh(section, name);
    setInterval(() => refresh(section, name), REFRESH_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
