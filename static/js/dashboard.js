// Dashboard: the jobs table is jobs.js's (every 2 s, Cancel asks first); when a job ends, the model
// versions table is refreshed from the server; workers every 10 s; retiring a version asks first, in
// place (app.js's data-confirm). No dependencies, no inline script.
(() => {
  "use strict";
  const table = document.getElementById("jobs");
  const workers = document.getElementById("workers");
  let refreshWanted = false;
  let refreshing = false;

  async function refreshVersions() {
    if (refreshing) { refreshWanted = true; return; } // one at a time: the next poll asks again
    refreshing = true;
    try { await replaceVersions(); } finally { refreshing = false; }
  }

  async function replaceVersions() {
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

  // a job ended since the last poll (a training, a refresh: a version changed), or a refresh waits
  table?.addEventListener("jobs:polled", (event) => {
    if (event.detail.ended.length || refreshWanted) refreshVersions().catch(() => { refreshWanted = true; });
  });

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
    } catch (error) {
      workers.replaceChildren(Object.assign(document.createElement("li"), {
        className: "error", textContent: "The server is not answering: the workers are unknown.",
      }));
    } finally {
      setTimeout(pollWorkers, 10000);
    }
  }

  // --- the criterion: choosing one shows it (the button does so without JavaScript) --------------
  const criterionSelect = document.getElementById("criterion-select");
  criterionSelect?.addEventListener("change", () => criterionSelect.form.requestSubmit());

  if (workers) pollWorkers();
})();
