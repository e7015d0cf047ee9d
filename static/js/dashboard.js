// Dashboard: jobs update in place every 2 s (progress, rate, ETA, log, cancel); workers every 10 s;
// when a job ends, the model versions table is refreshed from the server; what cannot be undone
// (cancelling a job, retiring a version) asks first, in place. No dependencies, no inline script.
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

  // A job's bar, by the rule the page's template draws it with (and the documents page should):
  // done of total; with nothing to count, full once it succeeded, empty once it ended otherwise,
  // indeterminate (moving) while it waits or runs.
  function drawProgress(bar, job) {
    if (job.progress_total) {
      bar.max = job.progress_total;
      bar.value = job.progress_done;
    } else if (finished.has(job.status)) {
      bar.max = 1;
      bar.value = job.status === "succeeded" ? 1 : 0;
    } else {
      bar.removeAttribute("value");
    }
  }

  function eta(job) {
    if (finished.has(job.status)) return "—";
    if (job.eta_seconds === null || job.eta_seconds === undefined) {
      return job.status === "running" ? "estimating…" : "—"; // known after its first step
    }
    return duration(job.eta_seconds);
  }

  function rowFor(job) {
    let row = table.querySelector(`tr[data-job="${job.id}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.job = job.id;
      row.innerHTML = '<td class="name"></td><td class="status" tabindex="-1"></td><td><progress></progress> <span class="count"></span></td>' +
        '<td class="rate"></td><td class="elapsed"></td><td class="eta"></td><td class="latest"></td><td class="actions"></td>';
      table.tBodies[0].querySelector("td[colspan]")?.parentElement.remove();
      row.querySelector("progress").setAttribute("aria-label", `Progress of job ${job.id}`);
      table.tBodies[0].prepend(row);
    }
    return row;
  }

  function show(job) {
    const row = rowFor(job);
    row.querySelector("td").textContent = `#${job.id} ${job.kind}`;
    row.dataset.status = job.status;
    cell(row, "status").textContent = job.status;
    drawProgress(row.querySelector("progress"), job);
    // a job with nothing to count (pretrained features: no epochs) shows no count
    cell(row, "count").textContent = job.progress_total ? `${job.progress_done} / ${job.progress_total}` +
      (job.percent !== null ? ` (${job.percent}%)` : "") : "—";
    cell(row, "rate").textContent = job.rate ? `${job.rate.toFixed(job.rate < 10 ? 2 : 0)}/s` : "—";
    cell(row, "elapsed").textContent = duration(job.elapsed_seconds);
    cell(row, "eta").textContent = eta(job);
    const latest = cell(row, "latest");
    latest.textContent = job.error || job.log_tail[job.log_tail.length - 1] || job.message;
    latest.classList.toggle("error", Boolean(job.error));
    latest.title = job.log_tail.join("\n");
    const actions = cell(row, "actions");
    if (finished.has(job.status)) {
      // its buttons go: keep a keyboard user's place on the row, not lost at the top of the page
      if (actions.contains(document.activeElement)) cell(row, "status").focus();
      actions.textContent = "";
    } else if (!actions.querySelector("button")) { // none yet, or "Really cancel?" is open: leave it
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary cancel-job";
      button.textContent = "Cancel";
      button.dataset.confirm = `Cancel job #${job.id}? This cannot be undone; what it finished is kept.`;
      button.dataset.confirmYes = "Cancel the job";
      button.dataset.confirmNo = "Keep it running";
      button.addEventListener("confirmed", () => cancel(job.id, button));
      actions.append(button);
    }
  }

  async function cancel(id, button) {
    const row = button.closest("tr");
    button.disabled = true;
    cell(row, "status").focus(); // the button goes when the job ends: the keyboard stays on its row
    try {
      const response = await fetch(`${table.dataset.cancelUrl}${id}/cancel/`, {
        method: "POST", headers: { "X-CSRFToken": csrf },
      });
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      show(await response.json());
    } catch (error) {
      button.disabled = false;
      button.title = `Not cancelled: ${error.message}`;
      button.focus();
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

  // When the server stops answering, say so (the rows would otherwise go on showing "running").
  const connection = document.getElementById("connection-status");
  let unreachableSince = null;
  function reachable(ok) {
    if (!connection) return;
    if (ok) { unreachableSince = null; connection.hidden = true; return; }
    unreachableSince = unreachableSince || new Date();
    connection.textContent = `The server has not answered since ${unreachableSince.toLocaleTimeString()}: ` +
      "what this page shows may be out of date. It keeps asking.";
    connection.hidden = false;
  }

  async function pollJobs() {
    try {
      const response = await fetch(table.dataset.url, { headers: { Accept: "application/json" } });
      reachable(response.ok || response.status === 403);
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
    } catch (error) {
      reachable(false); // the server is down or the network gone: try again later
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
    } catch (error) {
      workers.replaceChildren(Object.assign(document.createElement("li"), {
        className: "error", textContent: "The server is not answering: the workers are unknown.",
      }));
    } finally {
      setTimeout(pollWorkers, 10000);
    }
  }

  // --- asking before what cannot be undone -------------------------------------------------------
  // A button with data-confirm turns, on its first click, into "question [Yes] [No]" in its place;
  // No (or Escape) puts it back. Yes sends a form button's form, or fires "confirmed" on the button.
  // Delegated from the document, so the versions table refreshed from the server keeps working.
  let asked = 0;

  function ask(button) {
    const box = document.createElement("span");
    box.className = "confirm";
    box.setAttribute("role", "group");
    const question = document.createElement("span");
    question.id = `confirm-question-${++asked}`;
    question.textContent = button.dataset.confirm;
    box.setAttribute("aria-labelledby", question.id);
    const yes = Object.assign(document.createElement("button"), {
      type: "button", className: "danger confirm-yes", textContent: button.dataset.confirmYes || "Yes",
    });
    const no = Object.assign(document.createElement("button"), {
      type: "button", className: "secondary confirm-no", textContent: button.dataset.confirmNo || "No",
    });
    box.append(question, " ", yes, " ", no);
    button.hidden = true;
    button.after(box);
    no.focus(); // the safe answer first: a second Enter does not do it
    const close = () => {
      box.remove();
      button.hidden = false;
    };
    no.addEventListener("click", () => { close(); button.focus(); });
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { event.preventDefault(); close(); button.focus(); }
    });
    yes.addEventListener("click", () => {
      close();
      if (button.form && button.type === "submit") button.form.requestSubmit(button); // sends its name and value
      else button.dispatchEvent(new CustomEvent("confirmed"));
    });
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-confirm]");
    if (!button || button.disabled) return;
    event.preventDefault(); // the form is sent by Yes
    ask(button);
  });

  // --- the criterion: choosing one shows it (the button does so without JavaScript) --------------
  const criterionSelect = document.getElementById("criterion-select");
  criterionSelect?.addEventListener("change", () => criterionSelect.form.requestSubmit());

  if (table) pollJobs();
  if (workers) pollWorkers();
})();
