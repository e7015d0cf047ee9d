// A job's row, drawn and kept current the same way wherever a page lists jobs (the dashboard's Jobs,
// the documents page's Recent imports): templates/imagesearch/_job_row.html draws it on the server,
// this script redraws it from the jobs API by the same rules. No dependencies, no inline script.
//
// Every table.jobs[data-poll-url] is followed every 2 s (10 s while the tab is hidden): always with
// data-follow="always" (a new job appears on top), else while one of its jobs waits or runs. After each
// answer the table gets a "jobs:polled" event, detail.ended: the ids of the jobs that ended since.
// data-cancel-url: a running job gets a Cancel button, which asks first (app.js's data-confirm).
(() => {
  "use strict";
  const finished = new Set(["succeeded", "failed", "cancelled"]);
  // what a job's progress counts, by kind (_job_row.html says the same); a training's phases differ
  const units = { import_images: "files", refresh_embeddings: "images" };

  function duration(seconds) {
    if (seconds === null || seconds === undefined || seconds === "") return "—";
    const s = Math.round(Number(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  const text = (el, value) => { if (el && el.textContent !== value) el.textContent = value; };
  const cell = (row, name) => row.querySelector(`.${name}`);

  // The bar: done of total; with nothing to count, full once it succeeded, empty once it ended
  // otherwise, indeterminate (moving) while it waits or runs.
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

  // a job with nothing to count (pretrained features: no epochs) shows no count
  const count = (job) => (job.progress_total ? `${job.progress_done} / ${job.progress_total}` +
    (job.percent !== null && job.percent !== undefined ? ` (${job.percent}%)` : "") : "—");
  // items a second; a slow job's a minute or an hour ("0.00/s" said nothing of a training's 0.002/s)
  function rate(perSecond) {
    const r = Number(perSecond);
    if (!r) return "";
    const [value, per] = r >= 1 ? [r, "s"] : r * 60 >= 1 ? [r * 60, "min"] : [r * 3600, "h"];
    return `${value.toFixed(value < 10 ? (per === "s" ? 2 : 1) : 0)}/${per}`;
  }

  function eta(job) {
    if (finished.has(job.status)) return "—";
    if (job.eta_seconds === null || job.eta_seconds === undefined) {
      return job.status === "running" ? "estimating…" : "—"; // known after its first item
    }
    return duration(job.eta_seconds);
  }

  function drawIssues(box, job) {
    if (!box || !job.issues) return;
    const lines = job.issues.slice(0, 5).map((issue) => {
      const line = document.createElement("div");
      const source = Object.assign(document.createElement("span"), {
        className: "issue-source", textContent: issue.source,
      });
      line.append(source, `: ${issue.message}`);
      return line;
    });
    if (!lines.length) {
      lines.push(Object.assign(document.createElement("span"), { className: "muted", textContent: "none" }));
    }
    if (job.issue_count > 5) {
      lines.push(Object.assign(document.createElement("div"), {
        className: "muted", textContent: `… and ${job.issue_count - 5} more`,
      }));
    }
    box.replaceChildren(...lines);
  }

  // the log's last lines, under the row; none for one line (Latest shows it). An open one stays open.
  function drawLog(row, job) {
    const lines = job.log_tail || [];
    const logRow = row.closest("tbody").querySelector(".log-row");
    logRow.hidden = lines.length < 2;
    text(logRow.querySelector(".log-lines"), `${lines.length} line${lines.length === 1 ? "" : "s"}`);
    text(logRow.querySelector("pre"), lines.join("\n"));
  }

  function drawActions(table, row, job) {
    const actions = cell(row, "actions");
    if (finished.has(job.status) || !table.dataset.cancelUrl) {
      // its buttons go: keep a keyboard user's place on the row, not lost at the top of the page
      if (actions.contains(document.activeElement)) cell(row, "status").focus();
      actions.replaceChildren();
    } else if (!actions.querySelector("button")) { // none yet, or "Really cancel?" is open: leave it
      const button = Object.assign(document.createElement("button"), {
        type: "button", className: "secondary cancel-job", textContent: "Cancel",
      });
      button.setAttribute("aria-label", `Cancel job ${job.id}`);
      button.dataset.confirm = `Cancel job #${job.id}? This cannot be undone; what it finished is kept.`;
      button.dataset.confirmYes = "Cancel the job";
      button.dataset.confirmNo = "Keep it running";
      button.addEventListener("confirmed", () => cancel(table, job.id, button));
      actions.append(button);
    }
  }

  function rowFor(table, job) {
    let row = table.querySelector(`tr[data-job="${job.id}"]`);
    if (!row) { // a job the page did not have: a copy of _job_row.html's, on top
      const template = table.parentElement.querySelector("template.job-row-template");
      const group = template.content.firstElementChild.cloneNode(true);
      row = group.querySelector("tr[data-job]");
      row.dataset.job = job.id;
      row.querySelector("progress").setAttribute("aria-label", `Progress of job ${job.id}`);
      group.querySelector(".log .visually-hidden").textContent = ` of job ${job.id}`;
      table.querySelector("tbody.no-jobs")?.remove();
      table.tHead.after(group);
    }
    return row;
  }

  function show(table, job) {
    const row = rowFor(table, job);
    row.dataset.status = job.status;
    row.dataset.kind = job.kind;
    text(cell(row, "job-id"), `#${job.id}`);
    text(cell(row, "kind"), job.kind_label || job.kind);
    text(cell(row, "status"), job.status);
    drawProgress(row.querySelector("progress"), job);
    text(cell(row, "count"), count(job));
    text(cell(row, "unit"), units[job.kind] || "");
    text(cell(row, "rate"), rate(job.rate));
    const [elapsedLine, leftLine] = row.querySelectorAll(".time-line");
    text(cell(row, "elapsed"), duration(job.elapsed_seconds));
    elapsedLine.hidden = job.elapsed_seconds === null || job.elapsed_seconds === undefined;
    text(cell(row, "eta"), eta(job));
    leftLine.hidden = eta(job) === "—";
    const latest = cell(row, "latest");
    text(latest, job.error || (job.log_tail || []).at(-1) || job.message || "");
    latest.classList.toggle("error", Boolean(job.error));
    drawIssues(cell(row, "issues"), job);
    drawLog(row, job);
    drawActions(table, row, job);
  }

  async function cancel(table, id, button) {
    const row = button.closest("tr");
    button.disabled = true;
    cell(row, "status").focus(); // the button goes when the job ends: the keyboard stays on its row
    try {
      const response = await fetch(`${table.dataset.cancelUrl}${id}/cancel/`, {
        method: "POST",
        headers: { "X-CSRFToken": document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "" },
      });
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      show(table, await response.json());
    } catch (error) {
      button.disabled = false;
      button.title = `Not cancelled: ${error.message}`;
      button.setAttribute("aria-label", `Cancel job ${id} (not cancelled: ${error.message})`);
      button.focus();
    }
  }

  function follow(table) {
    const connection = document.getElementById(`${table.id}-connection`);
    const lastStatus = new Map();
    table.querySelectorAll("tr[data-job]").forEach((row) => {
      lastStatus.set(Number(row.dataset.job), row.dataset.status);
      drawActions(table, row, { id: Number(row.dataset.job), status: row.dataset.status });
    });
    // the server writes seconds and items a second; the page says them as this script does
    table.querySelectorAll("[data-seconds]").forEach((el) => { el.textContent = duration(el.dataset.seconds); });
    table.querySelectorAll("[data-rate]").forEach((el) => { el.textContent = rate(el.dataset.rate); });

    // When the server stops answering, say so (the rows would otherwise go on showing "running").
    let unreachableSince = null;
    function reachable(status) {
      if (!connection) return;
      if (status === "ok") { unreachableSince = null; connection.hidden = true; return; }
      if (status === "refused") {
        connection.textContent = "Signed out, or no longer allowed to follow these jobs: reload the page.";
      } else {
        unreachableSince = unreachableSince || new Date();
        connection.textContent = `The server has not answered since ${unreachableSince.toLocaleTimeString()}: ` +
          "what this table shows may be out of date. It keeps asking.";
      }
      connection.hidden = false;
    }

    const wanted = () => table.dataset.follow === "always" ||
      table.querySelector('tr[data-status="queued"], tr[data-status="running"]');

    async function poll() {
      if (!wanted()) return; // nothing left to follow (a page with no job running asks nothing)
      try {
        const response = await fetch(table.dataset.pollUrl, { headers: { Accept: "application/json" } });
        reachable(response.ok ? "ok" : [401, 403].includes(response.status) ? "refused" : "down");
        if (response.ok) {
          const ended = [];
          for (const job of (await response.json()).reverse()) { // oldest first: the newest ends on top
            if (finished.has(job.status) && lastStatus.get(job.id) !== job.status) ended.push(job.id);
            lastStatus.set(job.id, job.status);
            show(table, job);
          }
          table.dispatchEvent(new CustomEvent("jobs:polled", { detail: { ended } }));
        }
      } catch (error) {
        reachable("down"); // the server is down or the network gone: try again later
      }
      setTimeout(poll, document.hidden ? 10000 : 2000);
    }
    poll();
  }

  // after every deferred script has run (the dashboard's listens for "jobs:polled"), before the first poll
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("table.jobs[data-poll-url]").forEach(follow);
  }, { once: true });
})();
