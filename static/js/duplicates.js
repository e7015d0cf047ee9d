// The near-duplicates page: the threshold slider shows its value and regroups when let go; each
// image of a group is marked "Same picture" or "Different" against the group's reference (clicking
// the pressed button again clears the mark). Keys on a focused image: S same, D different, 0 clear.
(() => {
  "use strict";
  const slider = document.getElementById("distance");
  const shown = document.getElementById("distance-value");
  if (slider && shown) {
    slider.addEventListener("input", () => { shown.textContent = Number(slider.value).toFixed(3); });
    slider.addEventListener("change", () => slider.form.requestSubmit());
    document.getElementById("mutual")?.addEventListener("change", () => slider.form.requestSubmit());
  }

  const groups = document.getElementById("duplicate-groups");
  if (!groups) return;
  const status = document.getElementById("marks-status");
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]")?.value;
  const LABELS = { duplicate: "the same picture", distinct: "a different picture", "": "not marked" };

  function show(item) {
    for (const button of item.querySelectorAll(".mark")) {
      button.setAttribute("aria-pressed", String(button.dataset.value === item.dataset.mark));
    }
  }

  function say(text, isError = false) {
    status.classList.toggle("error", isError);
    status.textContent = text;
  }

  // one at a time, in order: the server applies the marks as they were made
  let queue = Promise.resolve();

  function mark(item, value) {
    const previous = item.dataset.mark || "";
    const next = previous === value ? "" : value;
    item.dataset.mark = next;
    show(item);
    queue = queue.then(() => send(item, next)).catch((error) => {
      item.dataset.mark = previous;
      show(item);
      say(`Not saved: ${error.message}.`, true);
    });
  }

  async function send(item, value) {
    const response = await fetch(groups.dataset.marksUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ criterion: Number(groups.dataset.criterion), reference: Number(item.dataset.reference),
                             image: Number(item.dataset.image), mark: value || "none" }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || Object.values(body).flat().join(" ") || `the server answered ${response.status}`);
    const name = item.querySelector("img")?.alt || "The image";
    say(`${name}: ${LABELS[body.mark || ""]}. Your marks against this reference make ${body.judgments} ` +
        `judgment${body.judgments === 1 ? "" : "s"} for training (a "same" and a "different" mark make one).`);
  }

  groups.addEventListener("click", (event) => {
    const button = event.target.closest(".mark");
    if (button) mark(button.closest(".duplicate-member"), button.dataset.value);
  });

  groups.addEventListener("keydown", (event) => {
    const item = event.target.closest(".duplicate-member");
    if (!item || event.ctrlKey || event.metaKey || event.altKey) return;
    const value = { s: "duplicate", d: "distinct", 0: "" }[event.key.toLowerCase()];
    if (value === undefined) return;
    event.preventDefault();
    if (value === "") { if (item.dataset.mark) mark(item, item.dataset.mark); } else { mark(item, value); }
  });
})();
