// Small progressive enhancements shared by every page (no dependencies).
document.addEventListener("keydown", (event) => {
  // "/" focuses the first search or filter field, as on most sites.
  if (event.key !== "/" || event.target.closest("input, textarea, select")) return;
  const field = document.querySelector("form[role=search] input, form[role=search] select");
  if (field) { event.preventDefault(); field.focus(); }
});

// "Go back" on the error pages: back in history when there is one (its href, the start page, otherwise).
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-history-back]");
  if (!link || history.length < 2) return;
  event.preventDefault();
  history.back();
});
