/* The dashboard's small behaviours, in plain JavaScript (no library, no build):
   - live job progress: the jobs table is refreshed from jobs.json every few seconds while a job is
     queued or running (slowly otherwise, to notice a newly started job; never while the tab is hidden);
   - overlay layers on a subject's image; the expert form that walks the decision tree;
   - a confirmation before destructive buttons. */
(function () {
  "use strict";

  const FAST_MS = 3000;   // while a job is queued or running
  const SLOW_MS = 15000;  // otherwise: a job the scientist just queued appears once a worker starts it

  function ago(iso) {
    if (!iso) return "";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return (s / 3600).toFixed(1).replace(/\.0$/, "") + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function timeCell(iso, fallback) {
    const td = el("td");
    if (iso) {
      const t = el("time", { datetime: iso, title: iso.replace("T", " ").slice(0, 19) + " UTC" }, ago(iso));
      td.appendChild(t);
    } else {
      td.appendChild(el("span", { class: "muted" }, fallback));
    }
    return td;
  }

  function jobRow(job) {
    const pct = Math.round(job.progress * 100);
    const tr = el("tr", { "data-job-id": String(job.id), "data-status": job.status });
    tr.appendChild(el("td", { class: "mono" }, "#" + job.id));
    tr.appendChild(el("td", {}, job.kind_display));
    const status = el("td");
    status.appendChild(el("span", { class: "badge badge-" + job.status }, job.status_display));
    tr.appendChild(status);
    const prog = el("td", { class: "col-progress" });
    const meter = el("div", { class: "meter", role: "progressbar", "aria-label": "Job " + job.id + " progress",
                              "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(pct) });
    const bar = el("div", { class: "meter-bar" });
    bar.style.width = Math.min(100, Math.max(0, job.progress * 100)).toFixed(1) + "%";
    meter.appendChild(bar);
    prog.appendChild(meter);
    prog.appendChild(el("span", { class: "meter-text" }, pct + "%"));
    tr.appendChild(prog);
    tr.appendChild(el("td", { class: "job-message" }, job.message || "–"));
    tr.appendChild(timeCell(job.started_at, "waiting"));
    tr.appendChild(timeCell(job.finished_at, "–"));
    return tr;
  }

  /* Update an existing row in place (so its bar's width animates from where it was). */
  function updateRow(tr, job) {
    const fresh = jobRow(job);
    tr.dataset.status = job.status;
    const bar = tr.querySelector(".meter-bar");
    bar.style.width = fresh.querySelector(".meter-bar").style.width;
    tr.querySelector(".meter").setAttribute("aria-valuenow", fresh.querySelector(".meter").getAttribute("aria-valuenow"));
    // Every other cell is replaced by the fresh one.
    for (const i of [2, 4, 5, 6]) tr.cells[i].replaceWith(fresh.cells[i].cloneNode(true));
    tr.querySelector(".meter-text").textContent = fresh.querySelector(".meter-text").textContent;
  }

  function applyJobs(table, jobs) {
    const body = table.tBodies[0];
    const existing = new Map();
    for (const tr of Array.from(body.rows)) {
      if (tr.dataset.jobId) existing.set(tr.dataset.jobId, tr);
      else tr.remove();  // the "no jobs yet" row
    }
    const wanted = new Set();
    jobs.forEach((job, i) => {
      const id = String(job.id);
      wanted.add(id);
      let tr = existing.get(id);
      if (tr) updateRow(tr, job);
      else tr = jobRow(job);
      if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] || null);
    });
    for (const [id, tr] of existing) if (!wanted.has(id)) tr.remove();
    if (!jobs.length) {
      const tr = el("tr", { class: "empty-row" });
      tr.appendChild(el("td", { colspan: "7", class: "muted" }, "No jobs yet."));
      body.appendChild(tr);
    }
  }

  function watchJobs() {
    const table = document.getElementById("jobs");
    if (!table) return;
    const live = document.getElementById("jobs-live");
    let timer = null;
    let active = Array.from(table.tBodies[0].rows).some(
      (tr) => tr.dataset.status === "running" || tr.dataset.status === "queued");

    function schedule() {
      clearTimeout(timer);
      if (document.hidden) return;
      timer = setTimeout(poll, active ? FAST_MS : SLOW_MS);
    }

    async function poll() {
      try {
        const response = await fetch(table.dataset.jobsUrl, { headers: { Accept: "application/json" },
                                                              credentials: "same-origin", cache: "no-store" });
        if (!response.ok) {
          live.textContent = response.status === 403 ? "Your session has ended: reload the page to log in again."
                                                     : "Could not refresh the jobs (HTTP " + response.status + "); retrying.";
          if (response.status === 403) return;
        } else {
          const data = await response.json();
          applyJobs(table, data.jobs);
          active = data.active;
          table.dataset.updated = data.now;
          live.textContent = active ? "Live: updated " + new Date().toLocaleTimeString() : "";
        }
      } catch (err) {
        live.textContent = "Could not refresh the jobs (" + err.message + "); retrying.";
      }
      schedule();
    }

    document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); else clearTimeout(timer); });
    schedule();
    if (active) poll();
  }

  function overlayLayers() {
    const wrap = document.getElementById("overlay-wrap");
    if (!wrap) return;
    for (const box of document.querySelectorAll("input[data-layer]")) {
      const apply = () => wrap.classList.toggle("show-" + box.dataset.layer, box.checked);
      box.addEventListener("change", apply);
      apply();
    }
  }

  /* Show only the questions the chosen answers lead to, as a volunteer would see them; inputs of the
     others are disabled so they are not sent (the server walks the tree again and validates the path). */
  function expertForm() {
    const form = document.getElementById("expert-form");
    if (!form || !form.dataset.first) return;
    const sets = new Map(Array.from(form.querySelectorAll("fieldset[data-question]")).map((f) => [f.dataset.question, f]));
    function walk() {
      const reached = new Set();
      let q = form.dataset.first;
      while (q && sets.has(q) && !reached.has(q)) {
        reached.add(q);
        const chosen = sets.get(q).querySelector("input:checked");
        q = chosen ? chosen.dataset.next : null;
      }
      for (const [name, set] of sets) {
        const on = reached.has(name);
        set.classList.toggle("is-unreached", !on);
        for (const input of set.querySelectorAll("input")) input.disabled = !on;
      }
    }
    form.addEventListener("change", walk);
    walk();
  }

  function confirmations() {
    for (const form of document.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", (event) => { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
    }
  }

  watchJobs();
  overlayLayers();
  expertForm();
  confirmations();
})();
