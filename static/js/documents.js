// Documents page: keep the "Recent imports" table current while an import runs (no dependencies).
(() => {
  const table = document.getElementById("import-jobs");
  if (!table) return;
  const running = () => table.querySelector('tr[data-status="queued"], tr[data-status="running"]');
  const text = (el, value) => { if (el && el.textContent !== value) el.textContent = value; };

  function issuesCell(cell, job) {
    cell.replaceChildren();
    if (!job.issues.length) { cell.textContent = "none"; return; }
    for (const issue of job.issues.slice(0, 5)) {
      const line = document.createElement("div");
      const source = document.createElement("span");
      source.className = "issue-source";
      source.textContent = issue.source;
      line.append(source, `: ${issue.message}`);
      cell.append(line);
    }
    if (job.issue_count > 5) {
      const more = document.createElement("div");
      more.className = "muted";
      more.textContent = `… and ${job.issue_count - 5} more`;
      cell.append(more);
    }
  }

  async function poll() {
    if (!running()) return;
    try {
      const response = await fetch(table.dataset.pollUrl, { headers: { Accept: "application/json" } });
      if (response.ok) {
        for (const job of await response.json()) {
          const row = table.querySelector(`tr[data-job="${job.id}"]`);
          if (!row) continue;
          row.dataset.status = job.status;
          text(row.querySelector(".job-status"), job.status);
          const bar = row.querySelector("progress");
          // the dashboard's rule: done of total; with nothing to count, full when succeeded, empty when it
          // failed or was cancelled, indeterminate while it waits or runs
          if (job.progress_total) { bar.max = job.progress_total; bar.value = job.progress_done; }
          else if (["succeeded", "failed", "cancelled"].includes(job.status)) {
            bar.max = 1; bar.value = job.status === "succeeded" ? 1 : 0;
          } else bar.removeAttribute("value");
          text(row.querySelector(".job-count"), `${job.progress_done} / ${job.progress_total} files`);
          text(row.querySelector(".job-message"), job.error ? `${job.message} ${job.error}` : job.message);
          issuesCell(row.querySelector(".job-issues"), job);
        }
      }
    } catch (error) { /* the next poll tries again */ }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 1000);
})();
