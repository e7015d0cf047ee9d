// Search page: drop, paste or pick a query image; more results on demand; relevant / not relevant
// marks on results, saved one by one through the feedback API. No dependencies.
(() => {
  "use strict";
  const form = document.getElementById("query-form");
  const fileInput = document.getElementById("query-file");
  const results = document.getElementById("results");
  const status = document.getElementById("feedback-status");

  // --- the query: a file from the picker, a drop anywhere on the page, or the clipboard ----------
  function submitFile(file) {
    if (!file || !file.type.startsWith("image/")) {
      say(file ? `${file.name} is not an image.` : "No image found.", true);
      return;
    }
    const transfer = new DataTransfer();
    transfer.items.add(file);
    fileInput.files = transfer.files;
    form.classList.add("busy");
    form.requestSubmit();
  }
  fileInput.addEventListener("change", () => fileInput.files.length && submitFile(fileInput.files[0]));
  document.addEventListener("dragover", (event) => {
    if (![...event.dataTransfer.types].includes("Files")) return;
    event.preventDefault();
    form.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) form.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    if (!event.dataTransfer.files.length) return;
    event.preventDefault();
    form.classList.remove("dragging");
    submitFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    if (event.target.closest("input[type=text], input:not([type]), textarea")) return;
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { event.preventDefault(); submitFile(file); }
  });

  if (!results) return;

  // --- more results: the next page's items appended to each column ------------------------------
  results.addEventListener("click", async (event) => {
    const more = event.target.closest("#more-results");
    if (!more) return;
    event.preventDefault();
    if (more.getAttribute("aria-busy") === "true") return; // a double click loads one page
    more.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(more.href + "&fragment=1", { headers: { "X-Requested-With": "fetch" } });
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const page = document.createElement("div");
      page.innerHTML = await response.text();
      let firstNew = null;
      for (const column of page.querySelectorAll(".result-column")) {
        const grid = results.querySelector(`.result-column[data-column="${column.dataset.column}"] .result-grid`);
        for (const item of column.querySelectorAll(".result")) {
          // each page is its own approximate search: skip a result an earlier page already showed
          if (grid.querySelector(`.result[data-image="${item.dataset.image}"]`)) continue;
          grid.append(item);
          firstNew = firstNew || item;
        }
      }
      const next = page.querySelector("#more-results");
      if (next) more.href = next.href; else more.closest(".more-results").remove();
      if (firstNew) firstNew.querySelector(".result-link").focus();
      showMarks();
    } catch (error) {
      say(`Could not load more results: ${error.message}`, true);
    } finally {
      more.removeAttribute("aria-busy");
    }
  });

  // --- feedback marks ---------------------------------------------------------------------------
  const query = results.dataset.query;
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]")?.value;

  function showMarks() {
    for (const item of results.querySelectorAll(".result")) {
      for (const button of item.querySelectorAll(".mark")) {
        button.setAttribute("aria-pressed", String(button.dataset.value === item.dataset.mark));
      }
    }
  }

  function say(text, isError = false) {
    if (!status) return;
    status.classList.toggle("error", isError);
    if (status.textContent === text) {
      // the same words again (R pressed twice): a live region only speaks when its text changes
      status.textContent = "";
      setTimeout(() => { status.textContent = text; }, 50);
    } else {
      status.textContent = text;
    }
  }

  // Marks are sent one at a time, in order, so the server applies them as they were made and
  // the status line always describes the newest state.
  let queue = Promise.resolve();
  let pending = 0;

  function mark(item, value) {
    if (!query) return;
    const image = item.dataset.image;
    const next = (item.dataset.mark || "") === value ? "" : value; // the same key again clears the mark
    // one result can show in both columns of a comparison: mark every copy
    const copies = () => results.querySelectorAll(`.result[data-image="${image}"]`);
    copies().forEach((copy) => { copy.dataset.mark = next; });
    showMarks();
    pending += 1;
    queue = queue.then(() => send(image, next)).catch((error) => {
      say(`Not saved: ${error.message}. Reload the page to see what is saved.`, true);
    }).finally(() => { pending -= 1; });
  }

  async function send(image, value) {
    const response = await fetch(results.dataset.feedbackUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ criterion: Number(results.dataset.criterion), query: Number(query),
                             result: Number(image), mark: value || "none" }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || `the server answered ${response.status}`);
    if (pending > 1) return; // newer marks are queued: their answer will tell
    // what the server holds wins (another tab may have marked too)
    const relevant = new Set(body.relevant.map(String));
    const notRelevant = new Set(body.not_relevant.map(String));
    for (const item of results.querySelectorAll(".result")) {
      const id = item.dataset.image;
      item.dataset.mark = relevant.has(id) ? "relevant" : notRelevant.has(id) ? "not_relevant" : "";
    }
    showMarks();
    say(`${body.relevant.length} relevant, ${body.not_relevant.length} not relevant: ` +
        `${body.judgments} judgment${body.judgments === 1 ? "" : "s"} for training.`);
  }

  results.addEventListener("click", (event) => {
    const button = event.target.closest(".mark");
    if (button) mark(button.closest(".result"), button.dataset.value);
  });

  // --- keyboard: arrows move between results, R / N / 0 mark the focused one -----------------
  function columnsPerRow(grid) {
    return getComputedStyle(grid).gridTemplateColumns.split(" ").length;
  }
  results.addEventListener("keydown", (event) => {
    const item = event.target.closest(".result");
    if (!item || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const key = event.key.toLowerCase();
    if (key === "r" || key === "n" || key === "0") {
      event.preventDefault();
      item.scrollIntoView({ block: "nearest" }); // the result the key acted on is in sight (see below)
      if (!query) { say("Add the query to the library first: then R and N mark results."); return; }
      if (key === "0") { if (item.dataset.mark) mark(item, item.dataset.mark); }
      else mark(item, key === "r" ? "relevant" : "not_relevant");
      return;
    }
    const grid = item.parentElement;
    const items = [...grid.children].filter((c) => c.classList.contains("result"));
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columnsPerRow(grid), ArrowUp: -columnsPerRow(grid) }[event.key];
    if (!step) return;
    const target = items[items.indexOf(item) + step];
    if (target) { event.preventDefault(); target.querySelector(".result-link").focus(); }
  });

  // R / N / 0 with no result focused (focus on the page, the filters' button, "More results"):
  // say what to do rather than nothing. Typing in a field is left alone.
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (!["r", "n", "0"].includes(event.key.toLowerCase())) return;
    if (event.target.closest?.(".result, input, textarea, select, [contenteditable]")) return;
    event.preventDefault();
    say(query ? "No result has the focus: use a result's ✓ or ✗, or Tab to a result " +
                "(the arrow keys then move between them)."
      : "Add the query to the library first: then R and N mark results.");
  });

  showMarks();

  // Results have arrived (this page is a search's answer): the first takes the focus, so R, N and
  // the arrows work at once instead of after a Tab through the header and the filters. Not when the
  // reader is already somewhere (a field, a link to a fragment); no scrolling: the query and the
  // filters stay in view, and a key that acts on a result scrolls to it.
  const first = results.querySelector(".result .result-link");
  const untouched = document.activeElement === document.body || document.activeElement === null;
  if (first && untouched && !location.hash) first.focus({ preventScroll: true });
})();
