// The map page: draws a version's images as points (from /api/maps/<id>/points/, a compact binary),
// with zoom and pan, a hover preview, click to search, and a box or lasso selection that the server turns
// into a labeling focus, a collection or a label. Points are written straight into an ImageData buffer,
// one colour per point: 100,000 of them redraw in a few milliseconds (bench.maps measures the frame time).
(function () {
  "use strict";
  const app = document.getElementById("map-app");
  if (!app) return;
  const canvas = document.getElementById("map-canvas");
  const ctx = canvas.getContext("2d");
  const caption = document.getElementById("map-caption");
  const hoverBox = document.getElementById("map-hover");
  const legend = document.getElementById("map-legend");
  const colourSelect = document.getElementById("map-colour");
  const csrf = app.querySelector("[name=csrfmiddlewaretoken]").value;
  const clusters = JSON.parse(app.dataset.clusters);
  const total = Number(app.dataset.total);
  const pagePoints = Number(app.dataset.pagePoints);
  const stats = (window.mapStats = { firstDrawMs: null, drawMs: [], pointsDrawn: 0 });

  // 12 colours that stay apart for most eyes (Tableau 10 and two more); beyond 12, darker and lighter turns
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#8c564b"].map(hex => [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16)));
  const NONE = [205, 208, 214]; // the labels or collections past the first 11
  const UNLABELLED = [150, 156, 168];

  function rgba([r, g, b]) { return (255 << 24) | (b << 16) | (g << 8) | r; } // little-endian ImageData pixels
  function shade(n) {
    const [r, g, b] = PALETTE[n % PALETTE.length];
    const turn = Math.floor(n / PALETTE.length) % 3; // 0 as is, 1 darker, 2 lighter
    const f = turn === 1 ? 0.65 : 1;
    const mix = turn === 2 ? 0.45 : 0;
    return [r, g, b].map(c => Math.round(c * f + (255 - c * f) * mix));
  }
  function css(rgb) { return `rgb(${rgb.join(",")})`; }

  let base = null; // the sample of the whole map
  let detail = null; // the points inside a box, when zoomed in: {points, box}
  let view = { scale: 1, x: 0, y: 0 }; // screen px = view.x + mapX * view.scale (CSS pixels)
  let wholeMap = true; // a resized window shows the whole map again if that is what it showed, else keeps the view
  let tool = "pan";
  let selection = null; // polygon in map coordinates
  let drawing = null; // the polygon being drawn
  let hovered = -1;
  const imageCache = new Map();

  function parse(buffer) {
    const headerLength = new DataView(buffer).getUint32(0, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headerLength)));
    const n = header.count;
    let at = 4 + headerLength;
    const take = (Type, size) => { const a = new Type(buffer, at, n); at += n * size; return a; };
    const points = {
      header, n, ids: take(Int32Array, 4), xs: take(Float32Array, 4), ys: take(Float32Array, 4),
      clusters: take(Uint16Array, 2), labels: take(Uint16Array, 2), collections: take(Uint16Array, 2),
    };
    points.grid = gridIndex(points);
    return points;
  }

  // per colouring, the colour of each code: labels and collections by how many points carry them
  function colouring(points, by) {
    if (by === "cluster") {
      return { codes: points.clusters, colour: code => shade(code - 1), names: null };
    }
    const codes = by === "label" ? points.labels : points.collections;
    const names = by === "label" ? points.header.labels : points.header.collections;
    const counts = new Map();
    for (let i = 0; i < points.n; i++) counts.set(codes[i], (counts.get(codes[i]) || 0) + 1);
    const ranked = [...counts.entries()].filter(([code]) => !(by === "label" && code === 0)).sort((a, b) => b[1] - a[1]);
    const colours = new Map(ranked.slice(0, 11).map(([code], rank) => [code, PALETTE[rank]]));
    if (by === "label") colours.set(0, UNLABELLED);
    return { codes, names, ranked, unlabelled: by === "label" ? counts.get(0) || 0 : 0,
             colour: code => colours.get(code) || NONE };
  }

  function gridIndex(points) {
    const size = 128;
    const cells = new Map();
    for (let i = 0; i < points.n; i++) {
      const key = Math.min(size - 1, Math.max(0, Math.floor(points.xs[i] * size))) * size +
        Math.min(size - 1, Math.max(0, Math.floor(points.ys[i] * size)));
      let cell = cells.get(key);
      if (!cell) cells.set(key, (cell = []));
      cell.push(i);
    }
    return { size, cells };
  }

  function shown() {
    if (detail) {
      const [x0, y0, x1, y1] = visibleBox();
      const b = detail.box;
      if (x0 >= b[0] && y0 >= b[1] && x1 <= b[2] && y1 <= b[3]) return detail.points;
    }
    return base;
  }

  function visibleBox() {
    const w = canvas.clientWidth, h = canvas.clientHeight;
    return [-view.x / view.scale, -view.y / view.scale, (w - view.x) / view.scale, (h - view.y) / view.scale];
  }

  function fit() {
    const w = canvas.clientWidth, h = canvas.clientHeight;
    view.scale = Math.min(w, h) * 0.94;
    view.x = (w - view.scale) / 2;
    view.y = (h - view.scale) / 2;
  }

  const BACKGROUND = rgba([251, 251, 253]);
  let buffer = null;

  // each point's pixel value under a colouring, worked out once per set of points and colouring
  function pointColours(points, by) {
    points.colours = points.colours || {};
    if (!points.colours[by]) {
      const paint = colouring(points, by);
      const values = new Map();
      const out = new Uint32Array(points.n);
      for (let i = 0; i < points.n; i++) {
        const code = paint.codes[i];
        let value = values.get(code);
        if (value === undefined) values.set(code, (value = rgba(paint.colour(code))));
        out[i] = value;
      }
      points.colours[by] = out;
    }
    return points.colours[by];
  }

  let frame = null;
  function redraw() { if (!frame) frame = requestAnimationFrame(draw); }

  function draw() {
    frame = null;
    const started = performance.now();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr)), h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const points = shown();
    if (!points) return;
    // one pixel buffer, reused while the canvas keeps its size: allocating 3 MB a frame cost a third of it
    if (!buffer || buffer.width !== w || buffer.height !== h) {
      buffer = ctx.createImageData(w, h);
      buffer.pixels = new Uint32Array(buffer.data.buffer);
    }
    const pixels = buffer.pixels;
    pixels.fill(BACKGROUND);
    const colours = pointColours(points, colourSelect.value);
    // bigger points as one zooms in, so a few hundred in view are still easy to point at
    const zoom = view.scale / (Math.min(canvas.clientWidth, canvas.clientHeight) * 0.94);
    const r = Math.max(2, Math.min(7, Math.round(dpr * (1.5 + Math.log2(Math.max(1, zoom))))));
    const sx = view.scale * dpr, ox = view.x * dpr, oy = view.y * dpr;
    const xs = points.xs, ys = points.ys, maxX = w - r, maxY = h - r;
    let drawn = 0;
    for (let i = 0; i < points.n; i++) {
      const px = (ox + xs[i] * sx) | 0, py = (oy + ys[i] * sx) | 0;
      if (px < 0 || py < 0 || px >= maxX || py >= maxY) continue;
      const value = colours[i];
      let at = py * w + px;
      for (let dy = 0; dy < r; dy++, at += w) for (let dx = 0; dx < r; dx++) pixels[at + dx] = value;
      drawn++;
    }
    ctx.putImageData(buffer, 0, 0);
    ctx.save();
    ctx.scale(dpr, dpr);
    for (const polygon of [selection, drawing]) {
      if (!polygon || polygon.length < 2) continue;
      ctx.beginPath();
      polygon.forEach(([x, y], k) => (k ? ctx.lineTo : ctx.moveTo).call(ctx, view.x + x * view.scale, view.y + y * view.scale));
      ctx.closePath();
      ctx.fillStyle = "rgba(37, 99, 235, 0.08)";
      ctx.fill();
      ctx.strokeStyle = "#2563eb";
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
    if (hovered >= 0) {
      ctx.beginPath();
      ctx.arc(view.x + points.xs[hovered] * view.scale, view.y + points.ys[hovered] * view.scale, 7, 0, 2 * Math.PI);
      ctx.strokeStyle = "#111827";
      ctx.lineWidth = 2;
      ctx.stroke();
    }
    ctx.restore();
    const ms = performance.now() - started;
    if (stats.firstDrawMs === null) stats.firstDrawMs = performance.now();
    stats.drawMs.push(ms);
    if (stats.drawMs.length > 200) stats.drawMs.shift();
    stats.pointsDrawn = drawn;
    const of = points === base && base.n < total ? ` (a uniform sample of the map's ${total.toLocaleString()})` : "";
    caption.textContent = `${drawn.toLocaleString()} images in view of ${points.n.toLocaleString()} drawn${of}.`;
  }

  function renderLegend() {
    legend.replaceChildren();
    const by = colourSelect.value;
    const entries = [];
    if (by === "cluster") {
      for (const c of clusters) entries.push({ text: `Cluster ${c.number}`, count: c.size, colour: shade(c.number - 1), at: c });
    } else if (base) {
      const paint = colouring(base, by);
      for (const [code, count] of paint.ranked.slice(0, 11)) entries.push({ text: paint.names[code] || "(none)", count, colour: paint.colour(code) });
      const rest = paint.ranked.slice(11).reduce((s, [, n]) => s + n, 0);
      if (rest) entries.push({ text: `the other ${paint.ranked.length - 11} ${by}s`, count: rest, colour: NONE });
      if (paint.unlabelled) entries.push({ text: "no label", count: paint.unlabelled, colour: UNLABELLED });
    }
    for (const entry of entries) {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = css(entry.colour); // a CSSOM property: the page's CSP refuses style attributes
      const count = document.createElement("span");
      count.className = "muted";
      count.textContent = entry.count === null ? "" : ` ${entry.count.toLocaleString()}`;
      let holder = li;
      if (entry.at) {
        holder = document.createElement("button");
        holder.type = "button";
        holder.className = "link-button";
        holder.title = "Zoom to it";
        holder.addEventListener("click", () => zoomTo(entry.at.x, entry.at.y, 4));
        li.append(holder);
      }
      holder.append(swatch, entry.text, count);
      legend.append(li);
    }
  }

  function zoomTo(x, y, factor) {
    fit();
    const w = canvas.clientWidth, h = canvas.clientHeight;
    view.scale *= factor;
    view.x = w / 2 - x * view.scale;
    view.y = h / 2 - y * view.scale;
    viewChanged();
  }

  function zoomAt(px, py, factor) {
    const before = view.scale;
    const whole = Math.min(canvas.clientWidth, canvas.clientHeight) * 0.94;
    view.scale = Math.min(Math.max(view.scale * factor, whole / 2), whole * 5000);
    const f = view.scale / before;
    view.x = px - (px - view.x) * f;
    view.y = py - (py - view.y) * f;
    viewChanged();
  }

  let detailTimer = null;
  function viewChanged(whole = false) {
    wholeMap = whole;
    redraw();
    clearTimeout(detailTimer);
    detailTimer = setTimeout(loadDetail, 300);
  }

  async function loadDetail() {
    if (!base || base.n >= total) return; // everything is drawn already
    const [x0, y0, x1, y1] = visibleBox();
    if ((x1 - x0) * (y1 - y0) > 0.5) { detail = null; redraw(); return; }
    if (detail && x0 >= detail.box[0] && y0 >= detail.box[1] && x1 <= detail.box[2] && y1 <= detail.box[3]) return;
    // a margin around the view, so a small pan needs no new request
    const mx = (x1 - x0) / 2, my = (y1 - y0) / 2;
    const box = [x0 - mx, y0 - my, x1 + mx, y1 + my];
    const query = new URLSearchParams({ x0: box[0], y0: box[1], x1: box[2], y1: box[3], limit: pagePoints });
    const response = await fetch(`${app.dataset.pointsUrl}?${query}`, { credentials: "same-origin" });
    if (!response.ok) return;
    detail = { points: parse(await response.arrayBuffer()), box };
    redraw();
  }

  function toMap(event) {
    const rect = canvas.getBoundingClientRect();
    const px = event.clientX - rect.left, py = event.clientY - rect.top;
    return [(px - view.x) / view.scale, (py - view.y) / view.scale, px, py];
  }

  function nearest(mx, my, radiusPx) {
    const points = shown();
    if (!points) return -1;
    const radius = radiusPx / view.scale;
    const { size, cells } = points.grid;
    let best = -1, bestDistance = radius * radius;
    const c0 = Math.floor((mx - radius) * size), c1 = Math.floor((mx + radius) * size);
    const r0 = Math.floor((my - radius) * size), r1 = Math.floor((my + radius) * size);
    for (let cx = Math.max(0, c0); cx <= Math.min(size - 1, c1); cx++) {
      for (let cy = Math.max(0, r0); cy <= Math.min(size - 1, r1); cy++) {
        for (const i of cells.get(cx * size + cy) || []) {
          const d = (points.xs[i] - mx) ** 2 + (points.ys[i] - my) ** 2;
          if (d <= bestDistance) { bestDistance = d; best = i; }
        }
      }
    }
    return best;
  }

  async function imageInfo(id) {
    if (!imageCache.has(id)) {
      imageCache.set(id, fetch(app.dataset.imageUrl.replace(/0\/$/, `${id}/`), { credentials: "same-origin" })
        .then(r => (r.ok ? r.json() : null)).catch(() => null));
    }
    return imageCache.get(id);
  }

  async function showHover(index, px, py) {
    const points = shown();
    if (index < 0) { hoverBox.hidden = true; return; }
    const id = points.ids[index];
    hoverBox.style.left = `${Math.min(px + 14, canvas.clientWidth - 150)}px`;
    hoverBox.style.top = `${Math.max(0, py - 70)}px`;
    hoverBox.hidden = false;
    hoverBox.dataset.id = id;
    const info = await imageInfo(id);
    if (hoverBox.dataset.id !== String(id) || !info) return;
    hoverBox.replaceChildren();
    const img = document.createElement("img");
    img.src = info.thumbnail_url;
    img.alt = "";
    const text = document.createElement("span");
    text.textContent = info.title + (info.label ? ` · ${info.label}` : "");
    hoverBox.append(img, text);
  }

  // --- pointer and keys ---
  let dragging = null;
  canvas.addEventListener("pointerdown", event => {
    canvas.setPointerCapture(event.pointerId);
    const [mx, my, px, py] = toMap(event);
    dragging = { px, py, moved: false, x: view.x, y: view.y };
    if (tool !== "pan") drawing = [[mx, my]];
  });
  canvas.addEventListener("pointermove", event => {
    const [mx, my, px, py] = toMap(event);
    if (dragging) {
      if (Math.abs(px - dragging.px) + Math.abs(py - dragging.py) > 3) dragging.moved = true;
      if (tool === "pan") {
        view.x = dragging.x + px - dragging.px;
        view.y = dragging.y + py - dragging.py;
        viewChanged();
      } else if (tool === "box") {
        const [sx, sy] = drawing[0];
        drawing = [[sx, sy], [mx, sy], [mx, my], [sx, my]];
        redraw();
      } else {
        drawing.push([mx, my]);
        redraw();
      }
      return;
    }
    const index = nearest(mx, my, 8);
    if (index !== hovered) { hovered = index; redraw(); }
    showHover(index, px, py);
  });
  canvas.addEventListener("pointerup", event => {
    const wasClick = dragging && !dragging.moved;
    dragging = null;
    if (tool !== "pan" && drawing) {
      const polygon = drawing;
      drawing = null;
      if (!wasClick && polygon.length >= 3) select(polygon);
      redraw();
    }
    if (wasClick) {
      const [mx, my] = toMap(event);
      const index = nearest(mx, my, 8);
      if (index >= 0) window.location.href = app.dataset.searchUrl + shown().ids[index];
    }
  });
  canvas.addEventListener("pointerleave", () => { hovered = -1; hoverBox.hidden = true; redraw(); });
  canvas.addEventListener("wheel", event => {
    event.preventDefault();
    const [, , px, py] = toMap(event);
    zoomAt(px, py, Math.exp(-event.deltaY * 0.0015));
  }, { passive: false });

  function setTool(name) {
    tool = name;
    for (const button of app.querySelectorAll("[data-tool]")) button.setAttribute("aria-pressed", String(button.dataset.tool === name));
    canvas.style.cursor = name === "pan" ? "grab" : "crosshair";
  }
  for (const button of app.querySelectorAll("[data-tool]")) button.addEventListener("click", () => setTool(button.dataset.tool));
  const centre = () => [canvas.clientWidth / 2, canvas.clientHeight / 2];
  document.getElementById("map-zoom-in").addEventListener("click", () => zoomAt(...centre(), 1.6));
  document.getElementById("map-zoom-out").addEventListener("click", () => zoomAt(...centre(), 1 / 1.6));
  document.getElementById("map-reset").addEventListener("click", () => { fit(); viewChanged(true); });
  colourSelect.addEventListener("change", () => { renderLegend(); redraw(); });

  document.addEventListener("keydown", event => {
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const step = 60;
    const keys = {
      ArrowLeft: () => { view.x += step; viewChanged(); }, ArrowRight: () => { view.x -= step; viewChanged(); },
      ArrowUp: () => { view.y += step; viewChanged(); }, ArrowDown: () => { view.y -= step; viewChanged(); },
      "+": () => zoomAt(...centre(), 1.6), "=": () => zoomAt(...centre(), 1.6), "-": () => zoomAt(...centre(), 1 / 1.6),
      "0": () => { fit(); viewChanged(true); }, p: () => setTool("pan"), b: () => setTool("box"), l: () => setTool("lasso"),
      Escape: () => clearSelection(),
    };
    const action = keys[event.key] || keys[event.key.toLowerCase()];
    if (!action) return;
    if (event.key.startsWith("Arrow") && event.target !== canvas) return; // arrows scroll the page elsewhere
    event.preventDefault();
    action();
  });

  // --- selection ---
  const panel = document.getElementById("map-selection");
  const countText = document.getElementById("selection-count");
  const preview = document.getElementById("selection-preview");
  const form = document.getElementById("selection-form");
  const formStatus = document.getElementById("selection-status");
  const actionSelect = document.getElementById("selection-action");

  async function post(body) {
    const response = await fetch(app.dataset.selectionUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const messages = Object.values(data).flat().filter(m => typeof m === "string");
      throw new Error(messages.join(" ") || `The server answered ${response.status}.`);
    }
    return data;
  }

  async function select(polygon) {
    selection = polygon;
    panel.hidden = false;
    countText.textContent = "Counting…";
    preview.replaceChildren();
    formStatus.textContent = "";
    try {
      const data = await post({ polygon, action: "count" });
      countText.textContent = data.message;
      for (const image of data.preview) {
        const li = document.createElement("li");
        li.innerHTML = `<a href="${image.url}"><img src="${image.thumbnail_url}" alt=""></a>`;
        li.querySelector("a").title = image.title;
        li.querySelector("img").alt = image.title;
        preview.append(li);
      }
      form.hidden = !(app.dataset.canFocus || app.dataset.canMove) || !data.count;
    } catch (error) {
      countText.textContent = error.message;
    }
  }

  function clearSelection() {
    selection = null;
    panel.hidden = true;
    redraw();
    canvas.focus();
  }
  document.getElementById("selection-clear").addEventListener("click", clearSelection);
  form.addEventListener("submit", async event => {
    event.preventDefault();
    if (!selection) return;
    formStatus.classList.remove("error");
    formStatus.textContent = "Working…";
    try {
      const data = await post({ polygon: selection, action: actionSelect.value, name: form.elements.name.value });
      formStatus.innerHTML = "";
      formStatus.append(data.message + " ");
      if (data.url) {
        const link = document.createElement("a");
        link.href = data.url;
        link.textContent = actionSelect.value === "focus" ? "Label it" : "See them";
        formStatus.append(link);
      }
    } catch (error) {
      formStatus.classList.add("error");
      formStatus.textContent = error.message;
    }
  });

  // --- start ---
  window.addEventListener("resize", () => { if (wholeMap) fit(); redraw(); });
  setTool("pan");
  fit();
  fetch(`${app.dataset.pointsUrl}?limit=${pagePoints}`, { credentials: "same-origin" })
    .then(response => {
      if (!response.ok) throw new Error(`The points did not load (${response.status}).`);
      return response.arrayBuffer();
    })
    .then(buffer => {
      base = parse(buffer);
      renderLegend();
      const asked = /^#cluster-(\d+)$/.exec(window.location.hash); // "On the map" from the cluster list
      const cluster = asked && clusters.find(c => c.number === Number(asked[1]));
      if (cluster) zoomTo(cluster.x, cluster.y, 4);
      draw();
    })
    .catch(error => { caption.textContent = error.message; caption.classList.add("error"); });
})();
