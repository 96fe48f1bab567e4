// reid person lookup page: plain JavaScript, no build step, no external resources.
"use strict";

const KEY_STORAGE = "reid.apiKey";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

const state = {
  key: localStorage.getItem(KEY_STORAGE) || "",
  cameras: [],
  selected: new Set(),
  query: null, // {kind: "image", file, url, label} | {kind: "crop", id, label}
  history: [],
  historyIndex: -1,
  results: null,
  browsing: true,
  searchSeq: 0,
  alertsNext: 0,
  alertsPolling: false,
  watchesOff: false,
  watchesLoad: 0,
  whoami: null, // GET /v1/whoami: the key's id, whether it is an admin key, a scoped key's cameras
  eraseTarget: null, // the erasure the panel previewed: {tracks: [...], crop_ids: [...]}
  eraseSeq: 0,
};

// ---------- HTTP ----------

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.key) h["Authorization"] = "Bearer " + state.key;
  return h;
}

async function api(path, options) {
  options = options || {};
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers: headers(options.headers) }));
  } catch (err) {
    throw new Error("cannot reach the server: " + err.message);
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error;
    } catch (_) { /* not JSON */ }
    if (response.status === 401) openKeyPanel();
    if (response.status === 429) {
      const retry = response.headers.get("Retry-After");
      if (retry) message += " (retry in " + retry + " s)";
    }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

// Thumbnails: with a key, an <img src> cannot send the header, so images are fetched and shown
// as blob URLs (kept for the page's life: crop images never change under an id).
const blobCache = new Map();
const imageQueue = [];
let imagesInFlight = 0;

function setThumb(img, url) {
  if (!state.key) { img.src = url; return; }
  if (blobCache.has(url)) { img.src = blobCache.get(url); return; }
  imageQueue.push({ img, url });
  pumpImages();
}

function pumpImages() {
  while (imagesInFlight < 6 && imageQueue.length) {
    const { img, url } = imageQueue.shift();
    imagesInFlight++;
    api(url).then((r) => r.blob()).then((blob) => {
      const objectURL = URL.createObjectURL(blob);
      blobCache.set(url, objectURL);
      img.src = objectURL;
    }).catch(() => { img.alt = "image unavailable"; })
      .finally(() => { imagesInFlight--; pumpImages(); });
  }
}

// ---------- formatting ----------

// A track id is its tracker session's start second x 1,000,000 + the tracker's own number
// (cropstore.TrackID): unique over a camera's life, but people read the short number.
function trackNumber(track) {
  return track % 1000000;
}

function formatTime(iso, withDate) {
  const d = new Date(iso);
  const text = d.toISOString();
  return withDate ? text.slice(0, 10) + " " + text.slice(11, 19) : text.slice(11, 19);
}

function sameDay(items, field) {
  if (!items.length) return true;
  const day = items[0][field].slice(0, 10);
  return items.every((item) => item[field].slice(0, 10) === day);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------- errors and status ----------

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError() { $("error").hidden = true; }

async function refreshStatus() {
  const pill = $("status");
  try {
    const response = await fetch("/readyz");
    const body = await response.json();
    if (response.ok) {
      pill.textContent = body.embedder ? "ready" : "ready · upload search unavailable";
      pill.className = "pill ok";
    } else {
      pill.textContent = "index loading…";
      pill.className = "pill wait";
      setTimeout(refreshStatus, 3000);
    }
  } catch (_) {
    pill.textContent = "offline";
    pill.className = "pill bad";
    setTimeout(refreshStatus, 5000);
  }
}

// ---------- API key ----------

function openKeyPanel() {
  $("key-panel").hidden = false;
  $("key-button").setAttribute("aria-expanded", "true");
  $("key-input").value = state.key;
  $("key-input").focus();
}

function closeKeyPanel() {
  $("key-panel").hidden = true;
  $("key-button").setAttribute("aria-expanded", "false");
}

function updateKeyButton() {
  const button = $("key-button");
  button.textContent = state.key ? "API key ✓" : "API key";
  button.title = "API key";
  const who = state.whoami;
  if (state.key && who && who.scope) {
    // A scoped key sees some cameras only: say so, or an investigator takes "not found" for
    // "not seen anywhere".
    button.textContent = "API key ✓ · " + who.scope;
    button.title = "This key sees only the cameras of " + who.scope + ": " + who.cameras.join(", ");
  }
}

// loadWhoAmI asks what the key may see (GET /v1/whoami) and shows a scoped key's scope.
async function loadWhoAmI() {
  try {
    state.whoami = await (await api("/v1/whoami")).json();
  } catch {
    state.whoami = null; // the cameras' call shows why
  }
  updateKeyButton();
}

// ---------- cameras and filters ----------

async function loadCameras() {
  const box = $("cameras");
  try {
    const body = await (await api("/v1/cameras")).json();
    state.cameras = body.cameras.map((c) => c.id);
    state.selected = new Set(state.cameras);
    box.textContent = "";
    if (!state.cameras.length) box.append(el("span", "muted", "no cameras yet"));
    for (const camera of state.cameras) {
      const chip = el("button", "chip", camera);
      chip.type = "button";
      chip.setAttribute("aria-pressed", "true");
      chip.addEventListener("click", () => {
        if (state.selected.has(camera)) state.selected.delete(camera); else state.selected.add(camera);
        chip.setAttribute("aria-pressed", String(state.selected.has(camera)));
        if (state.query) search();
      });
      box.append(chip);
    }
    const select = $("browse-camera");
    select.textContent = "";
    select.append(new Option("all cameras", ""));
    for (const camera of state.cameras) select.append(new Option(camera, camera));
    return true;
  } catch (err) {
    box.textContent = "";
    box.append(el("span", "muted", "unavailable"));
    showError(err.message);
    return false;
  }
}

function localToISO(value) {
  // datetime-local has no zone; the page works in UTC like the API.
  if (!value) return "";
  const withSeconds = value.length === 16 ? value + ":00" : value;
  return withSeconds + "Z";
}

function filterParams() {
  const params = [];
  if (state.selected.size && state.selected.size < state.cameras.length) {
    for (const camera of state.selected) params.push(["camera", camera]);
  }
  if (state.cameras.length && state.selected.size === 0) return null;
  const from = localToISO($("from").value);
  const to = localToISO($("to").value);
  if (from) params.push(["from", from]);
  if (to) params.push(["to", to]);
  const minScore = parseFloat($("min-score").value);
  if (minScore > 0) params.push(["min_score", String(minScore)]);
  params.push(["k", $("k").value]);
  if ($("rerank").checked) params.push(["rerank", "true"]);
  if (!$("track-consensus").checked) params.push(["track_consensus", "false"]);
  return params;
}

// ---------- query ----------

function setQuery(query, record) {
  state.query = query;
  const img = $("query-image");
  img.hidden = false;
  if (query.kind === "image") img.src = query.url; else setThumb(img, "/v1/crops/" + encodeURIComponent(query.id) + "/image");
  $("drop").classList.add("has-query");
  $("drop-text").innerHTML = "";
  $("drop-text").append(el("strong", "", query.kind === "image" ? "Uploaded crop" : "Crop"), el("br"),
    el("span", "muted", "drop or click to replace"));
  $("query-label").textContent = query.label;
  $("search-button").disabled = false;
  $("watch-button").hidden = state.watchesOff;
  $("watch-button").disabled = false;
  $("erase-button").hidden = query.kind !== "crop";
  closeErasePanel();
  $("label-button").hidden = true; // until the search has results to pick from
  closeLabelPanel();
  // A crop search has an address (#crop=ID) that can be bookmarked or sent to a colleague; an
  // uploaded image has none.
  const hash = query.kind === "crop" ? "#crop=" + encodeURIComponent(query.id) : "";
  if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname + location.search);
  if (record !== false) {
    state.history = state.history.slice(0, state.historyIndex + 1);
    state.history.push(query);
    state.historyIndex = state.history.length - 1;
    renderHistory();
  }
}

function renderHistory() {
  const list = $("history");
  list.textContent = "";
  $("history-card").hidden = state.history.length < 2;
  state.history.forEach((query, i) => {
    const item = el("li");
    const button = el("button");
    button.type = "button";
    button.title = query.label;
    if (i === state.historyIndex) button.classList.add("current");
    const img = el("img");
    img.alt = query.label;
    if (query.kind === "image") img.src = query.url; else setThumb(img, "/v1/crops/" + encodeURIComponent(query.id) + "/image");
    button.append(img);
    button.addEventListener("click", () => goTo(i));
    item.append(button);
    list.append(item);
  });
}

function goTo(i) {
  if (i < 0 || i >= state.history.length) return;
  state.historyIndex = i;
  setQuery(state.history[i], false);
  renderHistory();
  search();
}

function useFile(file) {
  if (!file) return;
  if (!/^image\/(jpeg|png)$/.test(file.type)) {
    showError("Please choose a JPEG or PNG image (got " + (file.type || "an unknown type") + ").");
    return;
  }
  const url = URL.createObjectURL(file);
  setQuery({ kind: "image", file, url, label: file.name || "pasted image" });
  search();
}

function pivot(cropId) {
  setQuery({ kind: "crop", id: cropId, label: cropId });
  search();
  window.scrollTo({ top: 0, behavior: "smooth" });
}

// ---------- search ----------

async function search() {
  if (!state.query) return;
  const params = filterParams();
  if (params === null) { showError("Select at least one camera."); return; }
  clearError();
  const seq = ++state.searchSeq;
  state.browsing = false;
  $("browse-camera-label").hidden = true;
  $("results-title").textContent = "Matches";
  $("export-button").hidden = false;
  $("results-summary").textContent = "searching…";
  showSkeleton(parseInt($("k").value, 10));
  try {
    const response = await api("/v1/search", queryRequest(params));
    const result = await response.json();
    if (seq !== state.searchSeq) return; // a newer search superseded this one
    state.results = result;
    renderResults(result);
    renderTimeline(result);
    // An uploaded photo (a person asking what is held about them) has no sighting of its own,
    // but the results' sightings can still be picked to erase or label.
    const picked = (result.sightings || []).length > 0;
    $("label-button").hidden = !picked;
    $("erase-button").hidden = state.query.kind !== "crop" && !picked;
  } catch (err) {
    if (seq !== state.searchSeq) return;
    $("results").textContent = "";
    $("results-summary").textContent = "";
    $("timeline-card").hidden = true;
    showError(err.message);
  }
}

// queryRequest is the POST of the current query with params: the image as a form, or the crop
// id as JSON. /v1/search and /v1/export take the same.
function queryRequest(params) {
  if (state.query.kind === "image") {
    const form = new FormData();
    form.append("image", state.query.file, state.query.file.name || "query.jpg");
    for (const [name, value] of params) form.append(name, value);
    return { method: "POST", body: form };
  }
  const body = { crop_id: state.query.id };
  for (const [name, value] of params) {
    if (name === "camera") (body.cameras = body.cameras || []).push(value);
    else if (name === "k") body.k = parseInt(value, 10);
    else if (name === "min_score") body.min_score = parseFloat(value);
    else if (name === "rerank") body.rerank = true;
    else if (name === "track_consensus") body.track_consensus = value === "true";
    else body[name] = value;
  }
  return { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
}

// exportResults downloads the current search as a ZIP (query, crops, CSV, JSON, a note).
async function exportResults() {
  if (!state.query) return;
  const params = filterParams();
  if (params === null) { showError("Select at least one camera."); return; }
  const button = $("export-button");
  button.disabled = true;
  clearError();
  try {
    const response = await api("/v1/export", queryRequest(params));
    const blob = await response.blob();
    const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
    const link = el("a");
    link.href = URL.createObjectURL(blob);
    link.download = match ? match[1] : "reid-export.zip";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
  }
}

function showSkeleton(n) {
  const grid = $("results");
  grid.textContent = "";
  $("empty").hidden = true;
  for (let i = 0; i < Math.min(n, 24); i++) {
    const card = el("div", "result skeleton loading");
    const thumb = el("div", "thumb");
    const meta = el("div", "meta");
    meta.append(el("span"), el("span"));
    card.append(thumb, meta);
    grid.append(card);
  }
}

function card(item, options) {
  const button = el("button", "result");
  button.type = "button";
  button.setAttribute("role", "listitem");
  button.dataset.crop = item.crop_id || item.id;
  const id = button.dataset.crop;
  const img = el("img", "thumb");
  img.alt = "crop " + id;
  img.loading = "lazy";
  setThumb(img, item.thumbnail_url);
  const meta = el("div", "meta");
  meta.append(el("div", "camera", item.camera + (item.track > 0 ? " · #" + trackNumber(item.track) : "")));
  meta.append(el("div", "time", formatTime(item.time, options.withDate)));
  // With track consensus the results are ordered by rank_score (the crop and its whole track),
  // so that is the score shown; the crop's own similarity is in the tooltip.
  const shown = typeof item.rank_score === "number" ? item.rank_score : item.score;
  if (typeof shown === "number") {
    const score = el("div", "score");
    const bar = el("div", "bar");
    const fill = el("span");
    fill.style.width = Math.max(0, Math.min(1, shown)) * 100 + "%";
    bar.append(fill);
    score.append(bar, el("span", "value", shown.toFixed(2)));
    meta.append(score);
  }
  button.append(img, meta);
  if (options.rank) button.append(el("span", "rank", "#" + options.rank));
  if (options.isQuery) { button.classList.add("is-query"); button.append(el("span", "badge", "query")); }
  button.title = id + "\n" + formatTime(item.time, true) + " UTC" + (typeof item.score === "number" ? "\nthis crop " + item.score.toFixed(3) : "") +
    (typeof item.track_score === "number" ? "\nits track " + item.track_score.toFixed(3) : "") + "\nclick to search with this crop";
  button.addEventListener("click", () => pivot(id));
  return button;
}

function renderResults(result) {
  const grid = $("results");
  grid.textContent = "";
  const matches = result.matches || [];
  const cameras = new Set(matches.map((m) => m.camera));
  $("results-summary").textContent = matches.length + " match" + (matches.length === 1 ? "" : "es") +
    " · " + cameras.size + " camera" + (cameras.size === 1 ? "" : "s") + " · " + Math.round(result.took_ms) + " ms" +
    (result.query.rerank ? " · re-ranked" : result.query.track_consensus ? " · by whole tracks" : "") +
    (result.query.model ? " · model " + result.query.model : "");
  const withDate = !sameDay(matches, "time");
  matches.forEach((match, i) => {
    grid.append(card(match, { rank: i + 1, withDate, isQuery: state.query.kind === "crop" && match.crop_id === state.query.id }));
  });
  const empty = $("empty");
  empty.hidden = matches.length > 0;
  empty.textContent = "No matches. Try fewer filters or a lower minimum score.";
}

// ---------- timeline ----------

function renderTimeline(result) {
  const sightings = result.sightings || [];
  const container = $("timeline");
  container.textContent = "";
  $("timeline-card").hidden = sightings.length === 0;
  if (!sightings.length) return;
  const cameras = [...new Set(sightings.map((s) => s.camera))].sort();
  $("timeline-summary").textContent = sightings.length + " sighting" + (sightings.length === 1 ? "" : "s") + " on " +
    cameras.length + " camera" + (cameras.length === 1 ? "" : "s") + " · click one to search from it";
  const width = Math.max(container.clientWidth, 400);
  const labelWidth = 96, top = 8, axis = 24, barHeight = 18, rowGap = 4;
  let t0 = Math.min(...sightings.map((s) => Date.parse(s.first)));
  let t1 = Math.max(...sightings.map((s) => Date.parse(s.last)));
  const span = Math.max(t1 - t0, 10000);
  t0 -= span * 0.03; t1 = t0 + span * 1.06;
  const x = (t) => labelWidth + (width - labelWidth - 12) * (t - t0) / (t1 - t0);
  // Sightings that overlap in time on one camera go on separate rows of its lane.
  const placed = [];
  const lanes = cameras.map((camera) => {
    const rowsEnd = [];
    const own = sightings.filter((s) => s.camera === camera).sort((a, b) => Date.parse(a.first) - Date.parse(b.first));
    for (const s of own) {
      const x1 = x(Date.parse(s.first));
      const w = Math.max(x(Date.parse(s.last)) - x1, 10);
      const bx = Math.min(x1, width - 12 - w);
      let row = rowsEnd.findIndex((end) => end + 3 < bx);
      if (row < 0) { row = rowsEnd.length; rowsEnd.push(0); }
      rowsEnd[row] = bx + w;
      placed.push({ s, camera, row, bx, w });
    }
    return { camera, rows: Math.max(1, rowsEnd.length) };
  });
  let laneTop = top;
  for (const lane of lanes) {
    lane.top = laneTop;
    lane.height = 16 + lane.rows * (barHeight + rowGap) - rowGap;
    laneTop += lane.height + 4;
  }
  const height = laneTop + axis;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Sightings per camera over time");
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  for (const lane of lanes) {
    add("rect", { class: "lane", x: labelWidth - 4, y: lane.top, width: width - labelWidth - 4, height: lane.height, rx: 6 });
    add("text", { class: "lane-label", x: 4, y: lane.top + lane.height / 2 + 4 }, lane.camera.length > 13 ? lane.camera.slice(0, 12) + "…" : lane.camera);
  }
  const withDate = new Date(t0).toISOString().slice(0, 10) !== new Date(t1).toISOString().slice(0, 10);
  for (let i = 0; i <= 5; i++) {
    const t = t0 + (t1 - t0) * (i / 5);
    const tx = x(t);
    add("line", { class: "tick", x1: tx, x2: tx, y1: top, y2: height - axis + 4 });
    add("text", { class: "tick-label", x: tx, y: height - 6, "text-anchor": i === 0 ? "start" : i === 5 ? "end" : "middle" },
      formatTime(new Date(t).toISOString(), withDate));
  }
  const queryId = state.query && state.query.kind === "crop" ? state.query.id : null;
  for (const { s, camera, row, bx, w } of placed) {
    const lane = lanes.find((l) => l.camera === camera);
    const y = lane.top + 8 + row * (barHeight + rowGap);
    const bar = add("rect", {
      class: "sighting" + (queryId && s.crop_ids.includes(queryId) ? " query" : ""),
      x: bx, y, width: w, height: barHeight, rx: 5,
      "fill-opacity": (0.3 + 0.7 * Math.max(0, Math.min(1, s.best_score))).toFixed(2), tabindex: 0,
    });
    const title = document.createElementNS(SVG, "title");
    title.textContent = s.camera + (s.track > 0 ? " track " + trackNumber(s.track) : "") + "\n" + formatTime(s.first, true) + " – " +
      formatTime(s.last, false) + " UTC\n" + s.count + " crop" + (s.count === 1 ? "" : "s") + ", best score " + s.best_score.toFixed(3);
    bar.append(title);
    if (w > 22 && s.count > 1) add("text", { class: "count", x: bx + w / 2, y: y + 13, "text-anchor": "middle" }, String(s.count));
    bar.addEventListener("click", () => pivot(s.best_crop_id));
    bar.addEventListener("keydown", (e) => { if (e.key === "Enter") pivot(s.best_crop_id); });
    bar.addEventListener("mouseenter", () => highlight(s.crop_ids, true));
    bar.addEventListener("mouseleave", () => highlight(s.crop_ids, false));
  }
  container.append(svg);
}

function highlight(ids, on) {
  const set = new Set(ids);
  for (const node of document.querySelectorAll(".result")) {
    if (set.has(node.dataset.crop)) node.classList.toggle("highlight", on);
  }
}

// ---------- watches and alerts ----------

// A watch repeats the current query every few seconds over new crops; the server keeps it, and
// its alerts come back through a long poll (GET /v1/alerts?after=N&wait=25s).
async function watchQuery() {
  if (!state.query) return;
  // Asked here, on a click, as browsers require: alerts can then reach a background tab.
  if (typeof Notification !== "undefined" && Notification.permission === "default") Notification.requestPermission();
  const button = $("watch-button");
  button.disabled = true;
  clearError();
  const cameras = state.selected.size && state.selected.size < state.cameras.length ? [...state.selected] : [];
  try {
    if (state.query.kind === "image") {
      const form = new FormData();
      form.append("image", state.query.file, state.query.file.name || "query.jpg");
      form.append("name", state.query.label);
      for (const camera of cameras) form.append("camera", camera);
      await api("/v1/watches", { method: "POST", body: form });
    } else {
      // Named after the sighting it was made from, as people read it: "gate #12 2026-11-27 08:05:26".
      const own = state.results && (state.results.matches || []).find((m) => m.crop_id === state.query.id);
      const name = own ? own.camera + (own.track > 0 ? " #" + trackNumber(own.track) : "") + " " + formatTime(own.time, true) : state.query.label;
      const body = { crop_id: state.query.id, name };
      if (cameras.length) body.cameras = cameras;
      await api("/v1/watches", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    }
    button.textContent = "Watching ✓";
    setTimeout(() => { button.textContent = "Watch for this person"; button.disabled = false; }, 2500);
    loadWatches();
  } catch (err) {
    button.disabled = false;
    showError(err.message);
  }
}

// ---------- erasure ----------

// What the page erases is sightings, each looked at: the query's own (its track on its camera, or
// the crop alone when untracked) and, after a search, any of the results' sightings ticked beside
// it. A dry run says what would go before anything does.
async function openErasePanel() {
  if (!state.query || (state.query.kind !== "crop" && !state.results)) return;
  clearError();
  $("erase-panel").hidden = false;
  $("erase-button").setAttribute("aria-expanded", "true");
  const list = $("erase-sightings");
  list.textContent = "";
  if (state.results && (state.results.sightings || []).length) {
    renderSightingPicker(list, false, previewErasure);
    return previewErasure();
  }
  // Before any search: the query's own sighting, from its record.
  $("erase-confirm").disabled = true;
  $("erase-preview").textContent = "Finding this sighting's crops…";
  const id = state.query.id;
  try {
    const record = await (await api("/v1/crops/" + encodeURIComponent(id))).json();
    if (!state.query || state.query.id !== id) return;
    const target = record.track > 0 ? { tracks: [{ camera: record.camera, track: record.track }] } : { crop_ids: [id] };
    await previewTarget(target, sightingName(record));
  } catch (err) {
    $("erase-preview").textContent = err.message;
  }
}

// previewErasure dry-runs the erasure of the sightings ticked.
function previewErasure() {
  const ticked = [...document.querySelectorAll("#erase-sightings input:checked")];
  const target = { tracks: [], crop_ids: [] };
  for (const box of ticked) {
    const track = Number(box.dataset.track);
    if (track > 0) target.tracks.push({ camera: box.dataset.camera, track });
    else target.crop_ids.push(...JSON.parse(box.dataset.crops));
  }
  const names = ticked.map((box) => box.parentElement.textContent.split(" · ")[0]);
  const what = ticked.length === 1 ? names[0] : ticked.length + " sightings (" + names.join(", ") + ")";
  if (!ticked.length) {
    state.eraseTarget = null;
    $("erase-confirm").disabled = true;
    $("erase-preview").textContent = "Tick the sightings to erase.";
    return Promise.resolve();
  }
  return previewTarget(target, what);
}

// previewTarget asks the server what erasing target would delete and shows it; the answer to an
// older selection is dropped.
async function previewTarget(target, what) {
  const seq = ++state.eraseSeq;
  $("erase-confirm").disabled = true;
  try {
    const found = await (await api("/v1/erasures", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ dry_run: true }, target)),
    })).json();
    if (seq !== state.eraseSeq || $("erase-panel").hidden) return;
    state.eraseTarget = target;
    let text = "Erases " + found.crop_ids.length + " crop" + (found.crop_ids.length === 1 ? "" : "s") + " of " + what +
      " from the crop store and every gallery";
    if (found.watches.length) text += ", " + found.watches.length + " watch" + (found.watches.length === 1 ? "" : "es") + " made from them";
    if (found.alerts) text += ", " + found.alerts + " alert" + (found.alerts === 1 ? "" : "s") + " showing them";
    if (found.validation_people.length) text += ", " + found.validation_people.length + " labelled person" + (found.validation_people.length === 1 ? "" : "s");
    if (target.tracks && target.tracks.length) text += "; crops of these tracks seen later are not kept either";
    $("erase-preview").textContent = text + ". This cannot be undone.";
    $("erase-confirm").disabled = found.crop_ids.length === 0;
  } catch (err) {
    if (seq === state.eraseSeq) $("erase-preview").textContent = err.message;
  }
}

function closeErasePanel() {
  $("erase-panel").hidden = true;
  $("erase-button").setAttribute("aria-expanded", "false");
  $("erase-reason").value = "";
  state.eraseTarget = null;
}

async function eraseSighting(e) {
  e.preventDefault();
  const reason = $("erase-reason").value.trim();
  if (!state.eraseTarget) return;
  if (!reason) { $("erase-preview").textContent = "Give a reason: the audit log keeps it with the erasure."; $("erase-reason").focus(); return; }
  $("erase-confirm").disabled = true;
  // The server looks a second time, a few seconds on, for crops stored while it erased.
  $("erase-preview").textContent = "Erasing…";
  try {
    const body = Object.assign({ reason }, state.eraseTarget);
    const erased = await (await api("/v1/erasures", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    })).json();
    const gone = new Set(erased.crop_ids);
    for (const node of document.querySelectorAll("#alerts .alert")) if (gone.has(node.dataset.crop)) node.remove();
    state.history = state.history.filter((q) => !(q.kind === "crop" && gone.has(q.id)));
    state.historyIndex = state.history.length - 1;
    renderHistory();
    resetQuery();
    $("query-label").textContent = "Erased " + erased.crops + " crop" + (erased.crops === 1 ? "" : "s") + ".";
    browse();
    loadWatches();
  } catch (err) {
    $("erase-confirm").disabled = false;
    $("erase-preview").textContent = err.message;
  }
}

// ---------- labelling ----------

// The validation set (reid train --validate) is built from people someone has looked at: the
// query's sighting and the sightings of the results that show the same person, ticked here.
function openLabelPanel() {
  if (!state.query || !state.results) return;
  clearError();
  renderSightingPicker($("label-sightings"), true, updateLabelConfirm);
  $("label-message").textContent = "";
  $("label-panel").hidden = false;
  $("label-button").setAttribute("aria-expanded", "true");
  updateLabelConfirm();
}

// renderSightingPicker fills list with a checkbox per sighting of the search's results, the
// query's own first and ticked (for good with lockOwn); onChange runs on every tick. Each box
// carries its sighting: the crop that names it (value), its camera, track and crops.
function renderSightingPicker(list, lockOwn, onChange) {
  list.textContent = "";
  const sightings = (state.results && state.results.sightings) || [];
  const own = state.query.kind === "crop" ? sightings.find((s) => (s.crop_ids || []).includes(state.query.id)) : undefined;
  const rows = own ? [own, ...sightings.filter((s) => s !== own)] : sightings;
  for (const sighting of rows) {
    const item = el("li");
    const label = el("label");
    const box = el("input");
    box.type = "checkbox";
    box.value = sighting === own ? state.query.id : sighting.best_crop_id;
    box.dataset.camera = sighting.camera;
    box.dataset.track = String(sighting.track);
    box.dataset.crops = JSON.stringify(sighting.crop_ids || [sighting.best_crop_id]);
    if (sighting === own) { box.checked = true; box.disabled = lockOwn; }
    box.addEventListener("change", onChange);
    const img = el("img");
    img.alt = "";
    setThumb(img, sighting.thumbnail_url);
    label.append(box, img, el("span", "", sightingName(sighting) + " · " + formatTime(sighting.first, true) + (sighting === own ? " (the query)" : "")));
    item.append(label);
    list.append(item);
  }
}

function sightingName(sighting) {
  return sighting.camera + (sighting.track > 0 ? " #" + trackNumber(sighting.track) : "");
}

function closeLabelPanel() {
  $("label-panel").hidden = true;
  $("label-button").setAttribute("aria-expanded", "false");
  $("label-note").value = "";
}

// updateLabelConfirm allows adding once the ticked sightings span two cameras.
function updateLabelConfirm() {
  const ticked = [...document.querySelectorAll("#label-sightings input:checked")];
  $("label-confirm").disabled = new Set(ticked.map((box) => box.dataset.camera)).size < 2;
}

async function labelPerson(e) {
  e.preventDefault();
  const ids = [...document.querySelectorAll("#label-sightings input:checked")].map((box) => box.value);
  $("label-confirm").disabled = true;
  try {
    const added = await (await api("/v1/validation/people", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ crop_ids: ids, note: $("label-note").value.trim() }),
    })).json();
    $("label-message").textContent = "Added as person " + String(added.pid).padStart(4, "0") + " (" + added.crops + " crops from " +
      added.cameras.join(", ") + "). The set: " + added.set + ".";
  } catch (err) {
    $("label-message").textContent = err.message;
    updateLabelConfirm();
  }
}

// resetQuery empties the query card, as the page starts.
function resetQuery() {
  state.query = null;
  closeErasePanel();
  $("query-image").hidden = true;
  $("query-image").removeAttribute("src");
  $("drop").classList.remove("has-query");
  $("drop-text").innerHTML = "";
  $("drop-text").append(el("strong", "", "Drop a person crop"), el("br"), "or click to choose a JPEG/PNG", el("br"),
    el("span", "muted", "or paste an image, or click any crop"));
  $("search-button").disabled = true;
  $("watch-button").hidden = true;
  $("erase-button").hidden = true;
  $("label-button").hidden = true;
  closeLabelPanel();
  $("timeline-card").hidden = true;
  state.results = null;
  history.replaceState(null, "", location.pathname + location.search);
}

async function loadWatches() {
  // Loads overlap (an alert arriving, a watch deleted): only the newest may draw, or a list
  // fetched before a delete could come back last and show the deleted watch again.
  const load = ++state.watchesLoad;
  let body;
  try {
    body = await (await api("/v1/watches")).json();
    if (load !== state.watchesLoad) return true;
  } catch (err) {
    if (load !== state.watchesLoad) return false;
    if (err.status === 404) { // watches are turned off on this server
      state.watchesOff = true;
      $("watch-button").hidden = true;
      $("watches-card").hidden = true;
      $("alerts-card").hidden = true;
    }
    return false;
  }
  $("watches-card").hidden = false;
  const list = $("watches");
  list.textContent = "";
  $("watches-empty").hidden = body.watches.length > 0;
  for (const watch of body.watches) {
    const item = el("li", "watch" + (watch.expired ? " expired" : ""));
    item.dataset.watch = watch.id;
    const img = el("img");
    img.alt = "watched person";
    img.title = "Search with this watch's person";
    setThumb(img, watch.image_url);
    img.addEventListener("click", () => searchWatch(watch));
    const what = el("div", "what");
    what.append(el("strong", "", watch.name || watch.id));
    what.append(el("span", "muted", watch.alerts + " alert" + (watch.alerts === 1 ? "" : "s") +
      (watch.expired ? " · expired" : " · until " + formatTime(watch.expires, true).slice(0, 16))));
    const remove = el("button", "ghost", "×");
    remove.type = "button";
    remove.title = "Delete this watch and its alerts";
    remove.setAttribute("aria-label", "Delete watch " + (watch.name || watch.id));
    remove.addEventListener("click", async () => {
      try {
        await api("/v1/watches/" + encodeURIComponent(watch.id), { method: "DELETE" });
        for (const node of document.querySelectorAll('.alert[data-watch="' + watch.id + '"]')) node.remove();
        updateTitle();
        loadWatches();
      } catch (err) { showError(err.message); }
    });
    item.append(img, what, remove);
    list.append(item);
  }
  return true;
}

// searchWatch searches with a watch's query: its crop, or the image it was made from.
async function searchWatch(watch) {
  if (watch.query_crop_id) { pivot(watch.query_crop_id); return; }
  try {
    const blob = await (await api(watch.image_url)).blob();
    useFile(new File([blob], (watch.name || watch.id) + (blob.type === "image/png" ? ".png" : ".jpg"), { type: blob.type }));
  } catch (err) { showError(err.message); }
}

function alertCard(alert, fresh) {
  const button = el("button", "alert" + (fresh ? " new" : ""));
  button.type = "button";
  button.setAttribute("role", "listitem");
  button.dataset.watch = alert.watch_id;
  button.dataset.crop = alert.best_crop_id;
  const img = el("img");
  img.alt = "sighting " + alert.best_crop_id;
  setThumb(img, alert.thumbnail_url);
  const text = el("div");
  text.append(el("strong", "", alert.watch_name || alert.watch_id), el("br"),
    el("span", "", alert.camera + (alert.track > 0 ? " · #" + trackNumber(alert.track) : "")), el("br"),
    el("span", "muted", formatTime(alert.first, true) + " · " + alert.crops + " crop" + (alert.crops === 1 ? "" : "s") + " · " + alert.score.toFixed(2)));
  button.append(img, text);
  button.title = "Search from this sighting";
  button.addEventListener("click", () => { button.classList.remove("new"); updateTitle(); pivot(alert.best_crop_id); });
  return button;
}

// updateTitle counts the alerts not yet looked at in the tab's title, where a person working in
// another tab sees them.
function updateTitle() {
  const unseen = document.querySelectorAll("#alerts .alert.new").length;
  document.title = (unseen ? "(" + unseen + ") " : "") + "reid · person lookup";
}

// notify shows a desktop notification for new alerts while the page is in the background, when
// the person allowed it (asked when they make a watch).
function notify(alerts) {
  if (!document.hidden || typeof Notification === "undefined" || Notification.permission !== "granted") return;
  for (const alert of alerts.slice(-3)) {
    const note = new Notification("reid: " + (alert.watch_name || "watched person") + " seen", {
      body: alert.camera + (alert.track > 0 ? " · track " + trackNumber(alert.track) : "") + " · " + formatTime(alert.first, true) + " UTC",
      tag: "reid-alert-" + alert.seq,
    });
    note.onclick = () => { window.focus(); pivot(alert.best_crop_id); note.close(); };
  }
}

function showAlerts(alerts, fresh) {
  if (!alerts.length) return;
  $("alerts-card").hidden = false;
  const box = $("alerts");
  for (const alert of alerts) box.prepend(alertCard(alert, fresh));
  while (box.children.length > 50) box.lastChild.remove();
  $("alerts-summary").textContent = "newest first · click one to search from it";
  updateTitle();
  if (fresh) notify(alerts);
}

// pollAlerts shows the latest alerts, then keeps one long poll open for the next ones.
async function pollAlerts() {
  if (state.alertsPolling || state.watchesOff) return;
  state.alertsPolling = true;
  try {
    const first = await (await api("/v1/alerts?limit=20")).json();
    state.alertsNext = first.next;
    showAlerts(first.alerts, false);
    for (;;) {
      const body = await (await api("/v1/alerts?after=" + state.alertsNext + "&wait=25s")).json();
      state.alertsNext = body.next;
      if (body.alerts.length) {
        showAlerts(body.alerts, true);
        loadWatches();
      }
    }
  } catch (err) {
    state.alertsPolling = false;
    // 401 waits for a key (saving one starts polling again); 404 means watches are off.
    if (err.status !== 401 && err.status !== 404) setTimeout(pollAlerts, 5000);
  }
}

// ---------- browsing ----------

async function browse() {
  state.browsing = true;
  $("results-title").textContent = "Browse crops";
  $("export-button").hidden = true;
  $("browse-camera-label").hidden = false;
  $("results-summary").textContent = "loading…";
  showSkeleton(24);
  const camera = $("browse-camera").value;
  try {
    const body = await (await api("/v1/crops?order=newest&limit=60" + (camera ? "&camera=" + encodeURIComponent(camera) : ""))).json();
    if (!state.browsing) return;
    const grid = $("results");
    grid.textContent = "";
    const withDate = !sameDay(body.crops, "time");
    for (const crop of body.crops) grid.append(card(crop, { withDate }));
    $("results-summary").textContent = (body.more ? "the newest " : "") + body.crops.length + " crops · click one to search";
    $("empty").hidden = body.crops.length > 0;
    $("empty").textContent = "No crops stored yet.";
  } catch (err) {
    $("results").textContent = "";
    $("results-summary").textContent = "";
    showError(err.message);
  }
}

// ---------- keyboard ----------

function gridNeighbour(current, key) {
  const cards = [...document.querySelectorAll("#results .result:not(.skeleton)")];
  const i = cards.indexOf(current);
  if (i < 0) return cards[0];
  const columns = Math.max(1, Math.round($("results").clientWidth / (current.offsetWidth + 12)));
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns }[key];
  return cards[Math.max(0, Math.min(cards.length - 1, i + step))];
}

function onKey(e) {
  const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName);
  if (e.key === "Escape") { clearError(); closeKeyPanel(); return; }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "u" || e.key === "U") { e.preventDefault(); $("file").click(); }
  else if (e.key === "b" || e.key === "B") { goTo(state.historyIndex - 1); }
  else if (e.key.startsWith("Arrow") && (e.target.classList.contains("result") || e.target === document.body)) {
    const next = gridNeighbour(e.target, e.key);
    if (next) { e.preventDefault(); next.focus(); }
  }
}

// ---------- wiring ----------

function init() {
  updateKeyButton();
  $("key-button").addEventListener("click", () => ($("key-panel").hidden ? openKeyPanel() : closeKeyPanel()));
  $("key-panel").addEventListener("submit", async (e) => {
    e.preventDefault();
    state.key = $("key-input").value.trim();
    if (state.key) localStorage.setItem(KEY_STORAGE, state.key); else localStorage.removeItem(KEY_STORAGE);
    updateKeyButton();
    closeKeyPanel();
    clearError();
    loadWhoAmI();
    if (await loadCameras()) {
      showStart();
      if (await loadWatches()) pollAlerts();
    }
  });
  $("key-clear").addEventListener("click", () => {
    state.key = "";
    state.whoami = null;
    localStorage.removeItem(KEY_STORAGE);
    $("key-input").value = "";
    updateKeyButton();
  });
  $("error-close").addEventListener("click", clearError);
  $("watch-button").addEventListener("click", watchQuery);
  $("export-button").addEventListener("click", exportResults);
  $("erase-button").addEventListener("click", () => ($("erase-panel").hidden ? openErasePanel() : closeErasePanel()));
  $("erase-cancel").addEventListener("click", closeErasePanel);
  $("erase-panel").addEventListener("submit", eraseSighting);
  $("label-button").addEventListener("click", () => ($("label-panel").hidden ? openLabelPanel() : closeLabelPanel()));
  $("label-cancel").addEventListener("click", closeLabelPanel);
  $("label-panel").addEventListener("submit", labelPerson);
  $("file").addEventListener("change", (e) => { useFile(e.target.files[0]); e.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) useFile(file);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.kind === "file");
    if (item) useFile(item.getAsFile());
  });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); search(); });
  $("min-score").addEventListener("input", () => { $("min-score-value").textContent = parseFloat($("min-score").value).toFixed(2); });
  for (const id of ["min-score", "k", "rerank", "track-consensus", "from", "to"]) {
    $(id).addEventListener("change", () => { if (state.query) search(); });
  }
  $("browse-camera").addEventListener("change", browse);
  document.addEventListener("keydown", onKey);
  let resizeTimer;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (state.results && !state.browsing) renderTimeline(state.results); }, 150);
  });
  window.addEventListener("hashchange", () => {
    const id = hashCrop();
    if (id && !(state.query && state.query.kind === "crop" && state.query.id === id)) pivot(id);
  });
  refreshStatus();
  loadWhoAmI();
  loadCameras().then((ok) => { if (ok) showStart(); });
  loadWatches().then((ok) => { if (ok) pollAlerts(); });
}

// showStart fills the results once the cameras are known: the current search, else the crop the
// address names (#crop=ID), else the newest crops.
function showStart() {
  const id = hashCrop();
  if (state.query) search();
  else if (id) pivot(id);
  else browse();
}

// hashCrop is the crop id in the page address (#crop=ID), or "".
function hashCrop() {
  const match = /^#crop=(.+)$/.exec(location.hash);
  if (!match) return "";
  try { return decodeURIComponent(match[1]); } catch { return ""; }
}

document.addEventListener("DOMContentLoaded", init);
