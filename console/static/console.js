// The console's few behaviours: live alerts and reviews (Server-Sent Events), bulk review, and drawing.
// Everything from a record is set with textContent or setAttribute, never as HTML.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  function when(ms) {
    const n = Number(ms);
    return n ? new Date(n).toLocaleString() : "";
  }
  function draw(root) {
    root.querySelectorAll(".time[data-ms]").forEach((el) => { el.textContent = when(el.dataset.ms); });
    root.querySelectorAll(".time[data-iso]").forEach((el) => {
      const d = new Date(el.dataset.iso);
      if (!isNaN(d)) el.textContent = d.toLocaleString();
    });
    root.querySelectorAll(".score-bar span[data-norm]").forEach((el) => {
      const v = Math.max(0, Number(el.dataset.norm) || 0);
      // 1.0 (the threshold) sits at 40 % of the bar; 2.5x the threshold span fills it
      el.style.width = Math.min(100, 40 * v) + "%";
      el.classList.toggle("over", v >= 1);
    });
    root.querySelectorAll(".histogram .bin[data-h]").forEach((el) => { el.style.height = Math.max(1, Number(el.dataset.h)) + "%"; });
    root.querySelectorAll("img").forEach(placeholderOnError);
  }
  function placeholderOnError(img) {
    const swap = () => {
      const p = document.createElement("span");
      p.className = "placeholder";
      p.textContent = "image unavailable";
      const src = img.getAttribute("src");
      img.replaceWith(p);
      // the server says why (no longer on the topic, too large, not an image, the console's backends away)
      fetch(src, { credentials: "same-origin" }).then((r) => r.json()).then((b) => { if (b.error) p.textContent = b.error; }).catch(() => {});
    };
    if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) { swap(); return; }
    img.addEventListener("error", swap, { once: true });
  }
  function setStatus(fp, verdict) {
    document.querySelectorAll('tr.alert[data-fingerprint="' + CSS.escape(fp) + '"]').forEach((tr) => {
      tr.dataset.status = verdict;
      const st = tr.querySelector(".status");
      st.textContent = verdict;
      st.className = "status st-" + verdict;
    });
    const detail = document.getElementById("status");
    if (detail && detail.dataset.fingerprint === fp) {
      detail.textContent = verdict;
      detail.className = "st-" + verdict;
    }
  }
  function matches(table, row) {
    const st = table.dataset.filterStatus, src = table.dataset.filterSource, mv = table.dataset.filterModel;
    return (st === "all" || st === row.status) && (!src || src === row.source) && (!mv || mv === row.model_version);
  }
  function addRow(row) {
    const table = document.getElementById("alerts");
    const tpl = document.getElementById("row-template");
    if (!table || !tpl || !matches(table, row)) return;
    if (table.querySelector('tr.alert[data-fingerprint="' + CSS.escape(row.fingerprint) + '"]')) return;
    const tr = tpl.content.querySelector("tr").cloneNode(true);
    const fp = encodeURIComponent(row.fingerprint);
    tr.dataset.fingerprint = row.fingerprint;
    tr.dataset.resultId = row.result_id;
    tr.dataset.status = row.status;
    tr.dataset.source = row.source;
    tr.dataset.modelVersion = row.model_version;
    tr.querySelector(".pick").value = row.fingerprint;
    tr.querySelector("img.thumb").src = "/alerts/" + fp + "/original.png?size=thumb";
    tr.querySelector("img.heat").src = "/alerts/" + fp + "/overlay.png?size=thumb";
    tr.querySelector(".score-bar span").dataset.norm = row.score_normalised;
    tr.querySelector(".score").textContent = row.score.toPrecision(4) + " / " + row.threshold.toPrecision(4);
    const sev = tr.querySelector(".severity");
    sev.textContent = row.severity;
    sev.className = "severity sev-" + row.severity;
    tr.querySelector(".source").textContent = row.source;
    tr.querySelector(".model-version").textContent = row.model_version;
    tr.querySelector(".time").dataset.ms = row.at_ms;
    tr.querySelector(".status").textContent = row.status;
    tr.querySelector(".status").className = "status st-" + row.status;
    tr.querySelector("a.open").href = "/alerts/" + fp;
    tr.classList.add("fresh");
    table.tBodies[0].prepend(tr);
    draw(tr);
  }
  function live() {
    const badge = document.getElementById("live");
    const es = new EventSource("/api/events");
    es.addEventListener("hello", () => { if (badge) { badge.textContent = "live"; badge.className = "live on"; } });
    es.addEventListener("down", () => { if (badge) { badge.textContent = "reconnecting"; badge.className = "live"; } });
    const up = () => { if (badge && badge.textContent !== "live") { badge.textContent = "live"; badge.className = "live on"; } };
    es.addEventListener("alert", (e) => { up(); addRow(JSON.parse(e.data)); });
    es.addEventListener("review", (e) => { up(); const r = JSON.parse(e.data); setStatus(r.fingerprint, r.verdict); });
    es.addEventListener("beat", up);
    es.onerror = () => { if (badge) { badge.textContent = "reconnecting"; badge.className = "live"; } };
  }
  async function bulk(verdict) {
    const picked = [...document.querySelectorAll("input.pick:checked")].map((c) => c.value);
    const out = document.getElementById("bulk-result");
    if (!picked.length) { out.textContent = "pick some alerts first"; return; }
    out.textContent = "sending " + picked.length + " verdicts…";
    const resp = await fetch("/api/review/bulk", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ verdict: verdict, note: document.getElementById("bulk-note").value, fingerprints: picked }),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) { out.textContent = "error: " + (body.error || resp.status); return; }
    (body.results || []).forEach((r) => setStatus(r.fingerprint, verdict));
    out.textContent = body.sent + " verdicts sent" + (body.unchanged ? ", " + body.unchanged + " unchanged" : "");
  }
  document.addEventListener("DOMContentLoaded", () => {
    draw(document);
    if (document.getElementById("alerts") || document.getElementById("status")) live();
    const all = document.getElementById("pick-all");
    if (all) all.addEventListener("change", () => document.querySelectorAll("input.pick").forEach((c) => { c.checked = all.checked; }));
    document.getElementById("bulk-normal")?.addEventListener("click", () => bulk("normal"));
    document.getElementById("bulk-anomaly")?.addEventListener("click", () => bulk("anomaly"));
  });
})();
