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

(() => {
  "use strict";
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
})();

// --- pages that wait for a job --------------------------------------------------------------------
// An element with data-reload-after="5" (a scan, a map or features being prepared) reloads the page that
// many seconds later, unless the user is typing or has moved focus into a form, so its result shows up.
(() => {
  const waiting = document.querySelector("[data-reload-after]");
  if (!waiting) return;
  const seconds = Math.max(2, Number(waiting.dataset.reloadAfter) || 5);
  setTimeout(function again() {
    if (document.activeElement && document.activeElement.closest("form")) { setTimeout(again, seconds * 1000); return; }
    window.location.reload();
  }, seconds * 1000);
})();
