// segad console: one small script for every page (no framework, no build
// step). Pages are rendered by the daemon; this only keeps them current.
"use strict";
(function () {
  const body = document.body;
  const csrf = body.dataset.csrf || "";
  const canWrite = body.dataset.write === "true";
  const $ = (id) => document.getElementById(id);
  const fmt = (v, d) => (v === null || v === undefined || !isFinite(v)) ? "—" : Number(v).toFixed(d === undefined ? 3 : d);
  const pct = (v) => (v === null || v === undefined) ? "—" : (100 * v).toFixed(1) + "%";
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  async function api(url, opts) {
    opts = opts || {};
    opts.headers = Object.assign({ "Accept": "application/json" }, opts.headers || {});
    if (opts.method && opts.method !== "GET") {
      opts.headers["X-CSRF-Token"] = csrf;
      opts.headers["Content-Type"] = "application/json";
    }
    const r = await fetch(url, opts);
    const text = await r.text();
    let data = null;
    try { data = JSON.parse(text); } catch (e) { data = { error: text.trim() }; }
    if (!r.ok) {
      const msg = (data && data.error) || ("HTTP " + r.status);
      throw new Error(r.status === 401 ? msg + " (log in again)" : msg);
    }
    return data;
  }

  // ---- Live ----
  function live() {
    let frameSeq = 0;
    const img = $("frame");
    img.addEventListener("load", () => { img.hidden = false; $("noframe").hidden = true; });
    const es = new EventSource("/console/events");
    es.onopen = () => { $("stale").hidden = true; };
    es.onerror = async () => {
      $("stale").hidden = false;
      // An ended session makes the stream fail for good: go to the login.
      try {
        const r = await fetch("/console/api/live", { headers: { "Accept": "application/json" } });
        if (r.status === 401) { es.close(); window.location = "/login?next=/live"; }
      } catch (e) { /* the daemon is away: EventSource retries by itself */ }
    };
    es.addEventListener("ended", () => { es.close(); window.location = "/login?next=/live"; });
    es.onmessage = (ev) => {
      const u = JSON.parse(ev.data);
      $("parts").textContent = u.parts_hour; $("fails").textContent = u.fails_hour; $("errors").textContent = u.errors_hour;
      $("camera").textContent = u.camera; $("broker").textContent = u.broker;
      $("outbox").textContent = u.outbox_backlog + " waiting, " + u.outbox_drops + " dropped";
      $("queue").textContent = u.queue_depth;
      if (u.frame_seq && u.frame_seq !== frameSeq) {
        frameSeq = u.frame_seq;
        img.src = "/console/frame.jpg?seq=" + u.frame_seq;
      }
      const r = u.result;
      if (!r) return;
      // Frames are rendered at most twice a second: say whose frame it is.
      const cap = $("frame-cap");
      cap.hidden = !u.frame_seq;
      cap.textContent = "frame of part seq " + u.frame_seq + (u.frame_seq !== r.seq ? " (newest: " + r.seq + ")" : "");
      const v = $("verdict");
      v.textContent = r.verdict + (r.warn ? " (warn)" : "");
      v.className = "verdict " + r.verdict + (r.warn ? " warn" : "");
      $("part").textContent = r.part_id || r.id;
      $("seq").textContent = r.seq;
      $("score").textContent = fmt(r.score) + " / threshold " + fmt(u.threshold) + (u.warn !== null ? ", warn " + fmt(u.warn) : "");
      $("reason").textContent = r.reason_code || "—";
      body.dataset.seq = r.seq; // what the browser has shown (tests read it)
      const top = $("top");
      top.replaceChildren();
      for (const c of (u.top || [])) top.appendChild(el("li", {}, c.name + "  " + (c.value >= 0 ? "+" : "") + fmt(c.value, 2)));
      gauge(r.score, u.threshold, u.warn);
    };
  }
  function gauge(score, thr, warn) {
    const svg = $("gauge");
    svg.replaceChildren();
    if (thr === null) return;
    const vals = [thr].concat(warn !== null ? [warn] : []).concat(score !== null ? [score] : []);
    let lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    const pad = Math.max((hi - lo) * 0.25, 0.5);
    lo -= pad; hi += pad;
    const x = (v) => 300 * (v - lo) / (hi - lo);
    const ns = "http://www.w3.org/2000/svg";
    const rect = (x0, x1, fill) => { const r = document.createElementNS(ns, "rect"); r.setAttribute("x", x0); r.setAttribute("y", 8); r.setAttribute("width", Math.max(x1 - x0, 0)); r.setAttribute("height", 20); r.setAttribute("fill", fill); svg.appendChild(r); };
    rect(0, 300, "#d8efe0");
    if (warn !== null) rect(x(warn), x(thr), "#ffe0b2");
    rect(x(thr), 300, "#f8c9c9");
    if (score !== null) {
      const m = document.createElementNS(ns, "rect");
      m.setAttribute("x", x(score) - 2); m.setAttribute("y", 2); m.setAttribute("width", 4); m.setAttribute("height", 32); m.setAttribute("fill", "#1d2330");
      svg.appendChild(m);
    }
  }

  // ---- Threshold ----
  function threshold() {
    const data = JSON.parse($("data").textContent);
    const parts = data.parts || [];
    const scores = parts.filter((p) => p.score !== null).map((p) => p.score);
    $("src").textContent = parts.length + " recent parts (" + data.source + ")";
    $("thr-now").textContent = fmt(data.threshold);
    $("warn-now").textContent = data.warn === null ? "none" : fmt(data.warn);
    $("in-thr").value = data.threshold === null ? "" : data.threshold;
    $("in-warn").value = data.warn === null ? "" : data.warn;
    // The scale is the scores' own: a threshold far outside them (1000
    // while scores lie within ±2) would squash every bar into one.
    const marks = scores.length ? scores : [data.threshold, data.warn].filter((v) => v !== null);
    let lo = marks.length ? Math.min.apply(null, marks) : 0, hi = marks.length ? Math.max.apply(null, marks) : 1;
    if (hi <= lo) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.1; lo -= pad; hi += pad;
    const slider = $("what");
    slider.min = lo; slider.max = hi; slider.step = "any";
    slider.value = data.threshold !== null ? Math.min(hi, Math.max(lo, data.threshold)) : (lo + hi) / 2;
    let by = "verdict";
    document.querySelectorAll("input[name=by]").forEach((r) => r.addEventListener("change", () => { by = r.value; draw(); }));

    function local(t) {
      let rej = 0, unscored = 0, defects = 0, caught = 0, good = 0, fr = 0;
      for (const p of parts) {
        const r = p.score === null || p.score >= t; // result.Decide: score >= threshold fails; no score fails closed
        if (p.score === null) unscored++;
        if (r) rej++;
        if (p.label === "bad") { defects++; if (r) caught++; }
        if (p.label === "good") { good++; if (r) fr++; }
      }
      return { rejected: rej, n: parts.length, unscored: unscored, defects: defects, caught: caught, good: good, fr: fr };
    }
    function draw() {
      const cv = $("hist"), g = cv.getContext("2d");
      const W = cv.width, H = cv.height, L = 40, B = 24;
      g.clearRect(0, 0, W, H);
      const bins = 40, w = (hi - lo) / bins;
      const groups = by === "verdict" ? [["pass", "#1f8a4c"], ["fail", "#c62828"], ["warn", "#e08a00"]] : [["good", "#1f8a4c"], ["bad", "#c62828"], ["", "#9aa4b5"]];
      const counts = groups.map(() => new Array(bins).fill(0));
      for (const p of parts) {
        if (p.score === null) continue;
        const i = Math.min(bins - 1, Math.max(0, Math.floor((p.score - lo) / w)));
        let k;
        if (by === "verdict") k = p.verdict === "fail" ? 1 : (p.warn ? 2 : 0);
        else k = p.label === "good" ? 0 : (p.label === "bad" ? 1 : 2);
        counts[k][i]++;
      }
      let top = 1;
      for (let i = 0; i < bins; i++) top = Math.max(top, counts.reduce((s, c) => s + c[i], 0));
      const x = (v) => L + (W - L - 10) * (v - lo) / (hi - lo);
      const y = (c) => H - B - (H - B - 10) * c / top;
      for (let i = 0; i < bins; i++) {
        let acc = 0;
        counts.forEach((c, k) => {
          if (!c[i]) return;
          g.fillStyle = groups[k][1];
          g.fillRect(x(lo + i * w) + 1, y(acc + c[i]), Math.max(x(lo + (i + 1) * w) - x(lo + i * w) - 2, 1), y(acc) - y(acc + c[i]));
          acc += c[i];
        });
      }
      g.fillStyle = "#5d6675"; g.font = "12px sans-serif";
      g.fillText(String(top), 4, 16); g.fillText("0", 4, H - B);
      for (let k = 0; k <= 4; k++) { const v = lo + (hi - lo) * k / 4; g.fillText(v.toFixed(2), x(v) - 12, H - 6); }
      const line = (v, col, dash) => { if (v === null) return; v = Math.min(hi, Math.max(lo, v)); g.strokeStyle = col; g.lineWidth = 2; g.setLineDash(dash); g.beginPath(); g.moveTo(x(v), 6); g.lineTo(x(v), H - B); g.stroke(); g.setLineDash([]); };
      line(data.warn, "#e08a00", []);
      line(data.threshold, "#c62828", []);
      line(parseFloat(slider.value), "#1565c0", [6, 4]);
      cv.dataset.drawn = String(parts.length);
    }
    let timer = null, asked = 0;
    function update() {
      const t = parseFloat(slider.value);
      $("what-value").textContent = fmt(t);
      const w = local(t);
      $("wi-rejected").textContent = w.rejected;
      $("wi-n").textContent = w.n;
      $("wi-unscored").textContent = w.unscored;
      $("wi-recall").textContent = w.defects ? pct(w.caught / w.defects) + " of " + w.defects : "no labelled defects";
      $("wi-fr").textContent = w.good ? pct(w.fr / w.good) + " of " + w.good : "no labelled good parts";
      if (canWrite) $("in-thr").value = t;
      draw();
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const n = ++asked;
        try {
          const a = await api("/console/api/whatif?snapshot=" + encodeURIComponent(data.snapshot) + "&threshold=" + encodeURIComponent(String(t)));
          if (n !== asked) return;
          const out = $("wi-api");
          out.textContent = a.rejected + " rejected" +
            (a.recall !== null ? "; recall " + pct(a.recall) + " [" + pct(a.recall_lo) + ", " + pct(a.recall_hi) + "]" : "") +
            (a.false_reject !== null ? "; false rejects " + pct(a.false_reject) + " [" + pct(a.false_reject_lo) + ", " + pct(a.false_reject_hi) + "]" : "") +
            " (" + Math.round(100 * a.confidence) + "% intervals)";
          out.dataset.threshold = String(t);
          out.dataset.rejected = String(a.rejected);
        } catch (e) { $("wi-api").textContent = e.message; }
      }, 150);
    }
    slider.addEventListener("input", update);
    update();
    const ops = document.querySelector("#ops tbody");
    for (const p of (data.table || [])) {
      const tr = el("tr");
      tr.appendChild(el("td", {}, fmt(p.threshold)));
      tr.appendChild(el("td", {}, pct(p.recall)));
      tr.appendChild(el("td", {}, pct(p.fpr)));
      tr.addEventListener("click", () => { slider.value = p.threshold; update(); });
      ops.appendChild(tr);
    }
    $("ops-none").hidden = (data.table || []).length > 0;
    $("apply").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const msg = $("apply-msg");
      msg.className = ""; msg.textContent = "Applying…";
      try {
        const r = await api("/console/api/threshold", { method: "POST", body: JSON.stringify({ threshold: $("in-thr").value, warn: $("in-warn").value, revision: data.revision }) });
        data.revision = r.revision;
        msg.className = "ok";
        msg.textContent = r.message + (r.changes || []).map((c) => "; " + c.Key + ": " + c.Old + " → " + c.New).join("");
        body.dataset.applied = String(Date.now());
      } catch (e) {
        msg.className = "error";
        msg.textContent = e.message;
      }
    });
  }

  // ---- History ----
  const thumb = (id) => { const i = el("img", { src: "/console/audit/" + id + ".jpg", alt: "", loading: "lazy" }); i.addEventListener("error", () => { i.hidden = true; }); return i; };
  function history() {
    const form = $("filters");
    if (!form) return;
    // seq drops a response that a later load has overtaken: the page's
    // first, unfiltered load may answer after a filtered one was asked for,
    // and must not paint over it.
    let seq = 0;
    const load = async () => {
      const mine = ++seq;
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
      $("csv").href = "/console/api/results/export?format=csv" + (q.toString() ? "&" + q : "");
      q.set("limit", "100");
      const tb = document.querySelector("#rows tbody");
      try {
        const page = await api("/console/api/results?" + q);
        if (mine !== seq) return;
        $("hist-msg").hidden = true;
        tb.replaceChildren();
        for (const r of page.results) {
          const tr = el("tr", { "data-id": r.id });
          const td = el("td"); td.appendChild(thumb(r.id)); tr.appendChild(td);
          tr.appendChild(el("td", {}, new Date(r.decided_at).toLocaleString()));
          tr.appendChild(el("td", {}, r.part_id || "—"));
          tr.appendChild(el("td", { class: "v-" + r.verdict }, r.verdict + (r.warn ? " (warn)" : "")));
          tr.appendChild(el("td", {}, fmt(r.score)));
          tr.appendChild(el("td", { class: "label" }, r.label ? r.label.label + (r.label.defect_type ? " · " + r.label.defect_type : "") : ""));
          tr.addEventListener("click", () => detail(r.id));
          tb.appendChild(tr);
        }
        body.dataset.rows = String(page.results.length);
        body.dataset.query = q.toString();
      } catch (e) { if (mine !== seq) return; $("hist-msg").hidden = false; $("hist-msg").textContent = e.message; }
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
    load();
  }
  async function detail(id) {
    const d = $("detail");
    d.replaceChildren(el("p", { class: "note" }, "Loading…"));
    try {
      const r = await api("/console/api/results/" + encodeURIComponent(id));
      d.replaceChildren();
      d.appendChild(el("h3", {}, (r.part_id || r.id) + " · " + r.verdict));
      d.appendChild(thumb(r.id));
      const dl = el("dl", { class: "facts" });
      const add = (k, v) => { dl.appendChild(el("dt", {}, k)); dl.appendChild(el("dd", {}, v)); };
      add("Score", fmt(r.score) + " / " + fmt(r.threshold)); add("Decided", new Date(r.decided_at).toLocaleString());
      add("Reason", r.reason || r.reason_code || "—"); add("Forest", r.bundle || "—");
      for (const l of (r.labels || [])) add("Label", l.label + (l.defect_type ? " · " + l.defect_type : "") + " by " + l.who + " " + new Date(l.at).toLocaleString());
      d.appendChild(dl);
      const ex = el("button", { type: "button" }, "Explain the score");
      ex.addEventListener("click", async () => {
        try {
          const x = await api("/console/api/results/" + encodeURIComponent(id) + "/explain");
          const ol = el("ol");
          for (const c of (x.segments || []).slice(0, 8)) ol.appendChild(el("li", {}, c.name + "  " + (c.value >= 0 ? "+" : "") + fmt(c.value, 3)));
          ex.replaceWith(el("h3", {}, "Segments (bias " + fmt(x.bias) + ")"), ol);
        } catch (e) { ex.replaceWith(el("p", { class: "error" }, e.message)); }
      });
      d.appendChild(ex);
      d.appendChild(el("pre", {}, JSON.stringify(r, null, 1)));
    } catch (e) { d.replaceChildren(el("p", { class: "error" }, e.message)); }
  }

  // ---- Review ----
  function review() {
    const q = $("queue");
    if (!q) return;
    const say = (t, cls) => { const m = $("review-msg"); m.textContent = t; m.className = cls || ""; };
    const card = (r) => {
      const c = el("div", { class: "item", "data-id": r.id });
      c.appendChild(thumb(r.id));
      c.appendChild(el("div", {}, (r.part_id || r.id) + " · " + r.verdict + (r.warn ? " (warn band)" : "") + " · score " + fmt(r.score)));
      c.appendChild(el("div", { class: "note" }, new Date(r.decided_at).toLocaleString()));
      const type = el("input", { placeholder: "defect type (optional)", "aria-label": "defect type", maxlength: "64" });
      const acts = el("div", { class: "acts" });
      const bad = el("button", { type: "button", class: "bad" }, "Confirmed defect");
      const good = el("button", { type: "button", class: "good" }, r.verdict === "fail" ? "False reject" : "Good part");
      if (!canWrite) { bad.disabled = good.disabled = type.disabled = true; }
      const send = async (label) => {
        try {
          await api("/console/api/results/" + encodeURIComponent(r.id) + "/label", { method: "POST", body: JSON.stringify(label === "bad" && type.value ? { label: label, defect_type: type.value } : { label: label }) });
          c.remove();
          say("Labelled " + (r.part_id || r.id) + " as " + label + ".", "ok");
        } catch (e) { say(e.message, "error"); }
      };
      bad.addEventListener("click", () => send("bad"));
      good.addEventListener("click", () => send("good"));
      acts.append(bad, good);
      c.append(type, acts);
      return c;
    };
    (async () => {
      try {
        const fails = await api("/console/api/results?verdict=fail&label=unlabelled&limit=60");
        const passes = await api("/console/api/results?verdict=pass&label=unlabelled&limit=500");
        const items = fails.results.concat(passes.results.filter((r) => r.warn));
        items.sort((a, b) => (a.decided_at < b.decided_at ? 1 : -1));
        q.replaceChildren();
        for (const r of items) q.appendChild(card(r));
        if (!items.length) say("Nothing to review: every reject and warn-band pass is labelled.");
        body.dataset.queue = String(items.length);
      } catch (e) { say(e.message, "error"); }
    })();
  }

  // ---- Health ----
  function health() {
    const load = async () => {
      try {
        const h = await api("/console/api/health");
        const u = JSON.parse(JSON.stringify(h.live));
        const lf = $("line-facts"); lf.replaceChildren();
        const add = (dl, k, v) => { dl.appendChild(el("dt", {}, k)); dl.appendChild(el("dd", {}, v)); };
        add(lf, "Camera", u.camera); add(lf, "Broker", u.broker); add(lf, "Queue depth", String(u.queue_depth));
        add(lf, "Dropped frames", u.dropped_hour + " in the last hour");
        add(lf, "Outbox", u.outbox_backlog + " waiting"); add(lf, "Outbox drops", String(u.outbox_drops));
        add(lf, "Config error", u.config_error || "none");
        for (const k in (u.outputs || {})) add(lf, k, u.outputs[k]);
        const mf = $("model-facts"); mf.replaceChildren();
        if (h.identity) {
          add(mf, "Station", h.identity.station); add(mf, "Version", h.identity.version); add(mf, "Forest", h.identity.forest);
          add(mf, "Detectors", (h.identity.detectors || []).join(", ")); add(mf, "Bundle", h.identity.bundle || "none"); add(mf, "Config", h.identity.config);
        }
        const lat = h.latencies || [];
        const last = {};
        for (const m of lat) last[m.stage] = m;
        const tb = document.querySelector("#lat-table tbody"); tb.replaceChildren();
        for (const s of Object.keys(last).sort()) {
          const tr = el("tr"); const m = last[s];
          tr.append(el("td", {}, s), el("td", {}, String(m.n)), el("td", {}, fmt(m.p50_ms, 1)), el("td", {}, fmt(m.p99_ms, 1)));
          tb.appendChild(tr);
        }
        chart(lat);
      } catch (e) { $("line-facts").replaceChildren(el("dd", { class: "error" }, e.message)); }
    };
    const chart = (lat) => {
      const cv = $("lat"), g = cv.getContext("2d"), W = cv.width, H = cv.height, L = 44, B = 22;
      g.clearRect(0, 0, W, H);
      if (!lat.length) { g.fillStyle = "#5d6675"; g.fillText("no parts yet", W / 2 - 30, H / 2); return; }
      const t0 = Math.min.apply(null, lat.map((m) => Date.parse(m.minute))), t1 = Math.max(t0 + 60000, Math.max.apply(null, lat.map((m) => Date.parse(m.minute))));
      const top = Math.max(1, Math.max.apply(null, lat.map((m) => m.p99_ms)));
      const x = (t) => L + (W - L - 10) * (t - t0) / (t1 - t0), y = (v) => H - B - (H - B - 10) * v / top;
      const colours = ["#1565c0", "#c62828", "#1f8a4c", "#6d4c9f", "#e08a00", "#00838f"];
      const stages = [...new Set(lat.map((m) => m.stage))].sort();
      stages.forEach((s, i) => {
        const pts = lat.filter((m) => m.stage === s);
        for (const [key, dash] of [["p99_ms", []], ["p50_ms", [4, 3]]]) {
          g.strokeStyle = colours[i % colours.length]; g.setLineDash(dash); g.lineWidth = 2; g.beginPath();
          pts.forEach((m, j) => { const px = x(Date.parse(m.minute)), py = y(m[key]); if (j) g.lineTo(px, py); else g.moveTo(px, py); });
          if (pts.length === 1) { const px = x(Date.parse(pts[0].minute)); g.arc(px, y(pts[0][key]), 3, 0, 7); }
          g.stroke();
        }
        g.setLineDash([]); g.fillStyle = colours[i % colours.length]; g.fillText(s, L + 8 + 90 * i, 14);
      });
      g.fillStyle = "#5d6675"; g.fillText(top.toFixed(0) + " ms", 2, 16); g.fillText("0", 4, H - B);
    };
    load();
    setInterval(load, 5000);
  }

  const pages = { live: live, threshold: threshold, history: history, review: review, health: health };
  if (pages[body.dataset.page]) pages[body.dataset.page]();
})();
