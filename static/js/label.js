// The labeling page: answer triplets with the keyboard (or a click or tap), never waiting on the page.
//
// A few triplets are held ahead, their images already decoded, so the next one is on screen
// the moment an answer is given; answers, skips and undos go to the server in the background,
// one after another, in the order they were given.
(() => {
  "use strict";
  const root = document.getElementById("labeling");
  if (!root) return;
  const AHEAD = 3; // triplets held ready beyond the one on screen
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const criterion = Number(root.dataset.criterion);
  const focus = root.dataset.focus ? Number(root.dataset.focus) : undefined; // the labeling focus chosen, if any
  const el = (id) => document.getElementById(id);
  const frames = { query: el("query-frame"), a: el("a-frame"), b: el("b-frame") };
  const statusLine = el("status");
  const counters = { today: el("stat-today"), total: el("stat-total"), pace: el("stat-pace") };

  const ready = []; // {triplet, images: {query, a, b}} with decoded <img> elements
  let current = null;
  let shownAt = 0;
  let fetching = null;
  let exhausted = false;
  let writes = Promise.resolve(); // answers, skips and undos, strictly in order
  let sinceStats = 0;
  let answeredAt = null;
  // ms from each answer to the next triplet painted; read by bench/labeling_page.py
  window.labelingSwitchTimes = [];

  async function api(url, body, method = "POST") {
    const response = await fetch(url, {
      method,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.detail || Object.values(data).flat().join(" ") || response.statusText);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function say(text, isError = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", isError);
  }

  function picture(image, alt) {
    const img = new Image();
    img.alt = alt;
    img.src = image.file_url;
    img.decoding = "async";
    // decode() resolves once the picture can be painted at once; a broken one still shows its alt text
    return img.decode().catch(() => undefined).then(() => img);
  }

  async function prepare(triplet) {
    const [query, a, b] = await Promise.all([
      picture(triplet.query, "Query image"), picture(triplet.a, "Candidate A"), picture(triplet.b, "Candidate B"),
    ]);
    return { triplet, images: { query, a, b } };
  }

  let resume = true; // the first request takes back triplets still held for us (reload, other tab)

  function topUp() {
    if (fetching || exhausted || ready.length >= AHEAD) return fetching;
    const count = AHEAD - ready.length;
    fetching = api(root.dataset.nextUrl, { criterion, focus, count, resume })
      .then((data) => {
        resume = false;
        if (!data.triplets.length) exhausted = true;
        // each triplet joins the line as soon as its own pictures are decoded
        return Promise.all(data.triplets.map((t) => prepare(t).then((item) => ready.push(item))));
      })
      .catch((error) => say(`Could not load more triplets: ${error.message}`, true))
      .finally(() => { fetching = null; });
    return fetching;
  }

  function show(item) {
    current = item;
    const busy = el("triplet");
    if (!item) {
      for (const frame of Object.values(frames)) frame.replaceChildren();
      busy.setAttribute("aria-busy", "true");
      return;
    }
    frames.query.replaceChildren(item.images.query);
    frames.a.replaceChildren(item.images.a);
    frames.b.replaceChildren(item.images.b);
    busy.setAttribute("aria-busy", "false");
    busy.dataset.triplet = item.triplet.id;
    // notes about the triplet before this one end with it: the one a key waited for is here, or the
    // undone triplet was answered again
    if (/was not counted\.$|^Answer undone/.test(statusLine.textContent)) say("");
    shownAt = performance.now();
    if (answeredAt !== null) {
      const started = answeredAt;
      answeredAt = null;
      requestAnimationFrame(() => window.labelingSwitchTimes.push(performance.now() - started));
    }
  }

  let emptyChecks = 0; // re-checks in a row that found no triplet

  async function showNext() {
    if (ready.length) {
      emptyChecks = 0;
      show(ready.shift());
      topUp();
      return;
    }
    show(null);
    say("Loading…");
    await topUp();
    if (ready.length) {
      emptyChecks = 0;
      say("");
      show(ready.shift());
      topUp();
    } else {
      // soon at first: a refill under way usually lands within seconds (a first session waited 15 s for
      // one that had committed half a second after the page asked), then less often, up to every 15 s
      const wait = Math.min(15, 2 ** emptyChecks);
      emptyChecks += 1;
      say(`No triplets to label right now. New ones are being prepared; this page checks again in ${wait} s.`);
      setTimeout(() => { exhausted = false; if (!current) showNext(); }, wait * 1000);
    }
  }

  let broken = false; // signed out or refused: stop taking answers that would be lost

  async function send(url, body) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await api(url, body);
      } catch (error) {
        // network trouble and server errors are retried; a refusal is not
        if (error.status && error.status < 500) throw error;
        if (attempt >= 4) throw error;
        say("Connection trouble: retrying…", true);
        await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
      }
    }
  }

  function write(url, body, onDone) {
    writes = writes
      .then(() => send(url, body))
      .then((result) => { if (statusLine.textContent.startsWith("Connection")) say(""); return onDone && onDone(result); })
      .catch((error) => {
        if (error.status === 401 || error.status === 403) {
          broken = true;
          say("You are signed out or no longer allowed to label: reload the page to sign in. " +
              "The answers since then were not saved.", true);
        } else {
          say(error.message, true);
        }
      });
    return writes;
  }

  function bump(delta) {
    counters.today.textContent = Math.max(0, Number(counters.today.textContent) + delta);
    counters.total.textContent = Math.max(0, Number(counters.total.textContent) + delta);
  }

  function refreshStats() {
    writes.then(() => api(`${root.dataset.statsUrl}?criterion=${criterion}`, undefined, "GET")).then((stats) => {
      counters.today.textContent = stats.today;
      counters.total.textContent = stats.total;
      counters.pace.textContent = stats.answers_per_minute ?? "–";
    }).catch(() => undefined);
  }

  let undoing = false; // keys wait while an undo brings its triplet back

  function answer(value) {
    if (broken) return;
    if (!current || undoing) {
      // nothing on screen to answer: a key pressed now is not counted, and the labeler is told so
      // (unless the page already says that there is nothing to label)
      if (!statusLine.textContent.startsWith("No triplets")) {
        say(undoing ? "Undoing the last answer: that key was not counted; press it again."
                    : "The next triplet is still loading: that key was not counted.");
      }
      return;
    }
    const { triplet } = current;
    const seconds = Math.round(performance.now() - shownAt) / 1000;
    answeredAt = performance.now();
    showNext();
    bump(1);
    write(root.dataset.judgmentUrl, { triplet: triplet.id, answer: value, seconds }, () => {
      if (++sinceStats >= 5) { sinceStats = 0; refreshStats(); }
    });
  }

  function skip() {
    if (!current || broken || undoing) return;
    const { triplet } = current;
    showNext();
    write(root.dataset.skipUrl, { triplet: triplet.id });
  }

  function undo() {
    if (broken || undoing) return;
    undoing = true;
    write(root.dataset.undoUrl, { criterion }, async (triplet) => {
      if (current) ready.unshift(current); // the one on screen waits for its turn again
      show(await prepare(triplet));
      bump(-1);
      say("Answer undone: answer this one again.");
      refreshStats();
    }).finally(() => { undoing = false; });
  }

  const KEYS = {
    ArrowLeft: () => answer("a"), 1: () => answer("a"),
    ArrowRight: () => answer("b"), 2: () => answer("b"),
    ArrowDown: () => answer("unsure"), 0: () => answer("unsure"),
    " ": skip, Backspace: undo, u: undo, U: undo,
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.target.closest("input, textarea, select")) return;
    const action = KEYS[event.key];
    if (!action) return;
    event.preventDefault();
    // a focused button must not also be pressed by this key (Space activates buttons on keyup)
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
    if (!event.repeat) action();
  });
  root.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.answer) answer(button.dataset.answer);
    else if (button.id === "skip") skip();
    else if (button.id === "undo") undo();
    button.blur(); // keep Space for "skip", not for pressing the focused button again
  });

  showNext();
})();
