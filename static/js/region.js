// Region search: draw a box on a picture (a search's query, a document's page) and search with that region.
// Each form.region-form names its picture (data-target: the id of a positioned element holding the img);
// "Select a region" puts a layer over it: drag to draw the box, or use the keys (arrows move it, Shift+arrows
// resize it, Enter searches, Esc cancels). The box goes to the server as shares of the picture.
(function () {
  "use strict";
  const STEP = 0.02;

  for (const form of document.querySelectorAll("form.region-form")) {
    const target = document.getElementById(form.dataset.target);
    const start = form.querySelector(".region-start");
    const submit = form.querySelector(".region-submit");
    const hint = form.querySelector(".region-hint");
    const input = form.elements.box;
    if (!target || !start) continue;
    let layer = null, rect = null, box = null, anchor = null;

    function show() {
      if (!box) { rect.hidden = true; return; }
      const [l, t, r, b] = box;
      rect.hidden = false;
      Object.assign(rect.style, { left: `${l * 100}%`, top: `${t * 100}%`, width: `${(r - l) * 100}%`, height: `${(b - t) * 100}%` });
      input.value = box.map(v => v.toFixed(4)).join(",");
      submit.disabled = r - l < 0.01 || b - t < 0.01;
      hint.textContent = `Region: ${Math.round((r - l) * 100)} % × ${Math.round((b - t) * 100)} % of the picture.`;
    }
    const clamp = v => Math.min(1, Math.max(0, v));
    function at(event) {
      const bounds = layer.getBoundingClientRect();
      return [clamp((event.clientX - bounds.left) / bounds.width), clamp((event.clientY - bounds.top) / bounds.height)];
    }

    function open() {
      if (layer) return;
      layer = document.createElement("div");
      layer.className = "region-layer";
      layer.tabIndex = 0;
      layer.setAttribute("role", "application");
      layer.setAttribute("aria-label", "Draw a box: drag, or arrows to move and Shift+arrows to resize; Enter searches, Escape cancels");
      rect = document.createElement("div");
      rect.className = "region-box";
      layer.append(rect);
      target.append(layer);
      target.classList.add("selecting");
      box = box || [0.25, 0.25, 0.75, 0.75];
      show();
      start.textContent = "Cancel";
      layer.focus();
      layer.addEventListener("pointerdown", event => {
        layer.setPointerCapture(event.pointerId);
        anchor = at(event);
        box = [...anchor, ...anchor];
        show();
        event.preventDefault();
      });
      layer.addEventListener("pointermove", event => {
        if (!anchor) return;
        const [x, y] = at(event);
        box = [Math.min(anchor[0], x), Math.min(anchor[1], y), Math.max(anchor[0], x), Math.max(anchor[1], y)];
        show();
      });
      layer.addEventListener("pointerup", () => { anchor = null; });
      layer.addEventListener("keydown", event => {
        const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
        if (event.key === "Escape") { close(); start.focus(); event.preventDefault(); return; }
        if (event.key === "Enter" && !submit.disabled) { form.requestSubmit(submit); event.preventDefault(); return; }
        const move = moves[event.key];
        if (!move) return;
        event.preventDefault();
        let [l, t, r, b] = box;
        const [dx, dy] = move.map(v => v * STEP);
        if (event.shiftKey) { r = clamp(Math.max(l + STEP, r + dx)); b = clamp(Math.max(t + STEP, b + dy)); }
        else {
          const w = r - l, h = b - t;
          l = clamp(Math.min(1 - w, l + dx)); t = clamp(Math.min(1 - h, t + dy));
          r = l + w; b = t + h;
        }
        box = [l, t, r, b];
        show();
      });
    }

    function close() {
      if (layer) layer.remove();
      layer = null;
      target.classList.remove("selecting");
      start.textContent = "Select a region";
      submit.disabled = true;
      hint.textContent = "";
    }

    start.addEventListener("click", () => (layer ? close() : open()));
  }
})();
