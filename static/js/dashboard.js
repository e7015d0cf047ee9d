// Dashboard: jobs update in place every 2 s (progress, rate, ETA, log, cancel); workers every 10 s;
// when a job ends, the model versions table is refreshed from the server. No dependencies.
(() => {
  "use strict";
  const table = document.getElementById("jobs");
  const workers = document.getElementById("workers");
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]")?.value;
  const finished = new Set(["succeeded", "failed", "cancelled"]);
  const lastStatus = new Map();
  // jobs already on the page when it was rendered: a change from these counts too
  table?.querySelectorAll("tr[data-job]").forEach((row) => lastStatus.set(Number(row.dataset.job), row.dataset.status));
  let refreshWanted = false;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function cell(row, name) {
    return row.querySelector(`.${name}`);
  }

  function rowFor(job) {
    let row = table.querySelector(`tr[data-job="${job.id}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.job = job.id;
      row.innerHTML = '<td class="name"></td><td class="status"></td><td><progress></progress> <span class="count"></span></td>' +
        '<td class="rate"></td><td class="elapsed"></td><td class="eta"></td><td class="latest"></td><td class="actions"></td>';
      table.tBodies[0].querySelector("td[colspan]")?.parentElement.remove();
      table.tBodies[0].prepend(row);
    }
    return row;
  }

  function show(job) {
    const row = rowFor(job);
    row.querySelector("td").textContent = `#${job.id} ${job.kind}`;
    row.dataset.status = job.status;
    cell(row, "status").textContent = job.status;
    const bar = row.querySelector("progress");
    bar.max = job.progress_total || 1;
    bar.value = job.progress_total ? job.progress_done : (job.status === "succeeded" ? 1 : 0); // nothing to do: done
    cell(row, "count").textContent = `${job.progress_done} / ${job.progress_total}` +
      (job.percent !== null ? ` (${job.percent}%)` : "");
    cell(row, "rate").textContent = job.rate ? `${job.rate.toFixed(job.rate < 10 ? 2 : 0)}/s` : "—";
    cell(row, "elapsed").textContent = duration(job.elapsed_seconds);
    cell(row, "eta").textContent = finished.has(job.status) ? "—" : duration(job.eta_seconds);
    const latest = cell(row, "latest");
    latest.textContent = job.error || job.log_tail[job.log_tail.length - 1] || job.message;
    latest.classList.toggle("error", Boolean(job.error));
    latest.title = job.log_tail.join("\n");
    const actions = cell(row, "actions");
    if (finished.has(job.status)) actions.textContent = "";
    else if (!actions.querySelector("button")) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary cancel-job";
      button.textContent = "Cancel";
      button.addEventListener("click", () => cancel(job.id, button));
      actions.append(button);
    }
  }

  async function cancel(id, button) {
    button.disabled = true;
    try {
      const response = await fetch(`${table.dataset.cancelUrl}${id}/cancel/`, {
        method: "POST", headers: { "X-CSRFToken": csrf },
      });
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      show(await response.json());
    } catch (error) {
      button.disabled = false;
      button.title = `Not cancelled: ${error.message}`;
    }
  }

  async function refreshVersions() {
    const response = await fetch(location.href);
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("versions-section");
    const current = document.getElementById("versions-section");
    if (!fresh || !current) return;
    if (current.contains(document.activeElement)) { refreshWanted = true; return; } // not under the user's hands
    current.replaceWith(fresh);
    refreshWanted = false;
  }

  async function pollJobs() {
    try {
      const response = await fetch(table.dataset.url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        let ended = false;
        for (const job of (await response.json()).reverse()) {
          const before = lastStatus.get(job.id);
          if (finished.has(job.status) && before !== job.status) ended = true; // ended since we last looked
          lastStatus.set(job.id, job.status);
          show(job);
        }
        if (ended || refreshWanted) await refreshVersions();
      }
    } finally {
      setTimeout(pollJobs, document.hidden ? 10000 : 2000);
    }
  }

  async function pollWorkers() {
    try {
      const response = await fetch(workers.dataset.url, { headers: { Accept: "application/json" } });
      if (response.status === 403) {
        workers.replaceChildren(Object.assign(document.createElement("li"), {
          className: "error", textContent: "Signed out, or no longer an admin: reload the page.",
        }));
      } else if (response.status === 503) {
        workers.replaceChildren(Object.assign(document.createElement("li"), {
          className: "error", textContent: "The broker cannot be reached: jobs cannot start.",
        }));
      } else if (response.ok) {
        const list = await response.json();
        workers.replaceChildren(...(list.length ? list.map((w) => {
          const item = document.createElement("li");
          item.textContent = `${w.hostname} · queues ${w.queues.join(", ")} · ${w.gpu ? "GPU " + w.gpu : "no GPU"}` +
            ` · ${w.active_tasks} running`;
          return item;
        }) : [Object.assign(document.createElement("li"), {
          className: "error", textContent: "No worker online: jobs wait in the queue until one starts.",
        })]));
      }
    } finally {
      setTimeout(pollWorkers, 10000);
    }
  }

  if (table) pollJobs();
  if (workers) pollWorkers();
})();
