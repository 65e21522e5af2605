// tierstream dashboard: draws what the node pushes at each heartbeat (GET /dashboard/events).
// No library, no build step: the relay tree is hand-written SVG. Everything from the feed is
// put in the page as text (textContent), never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const BOX = { w: 156, h: 50, gapX: 18, gapY: 70, top: 44, side: 16 };
const MAX_EVENTS = 200;

const state = {
  stream: new URLSearchParams(location.search).get("stream") || "",
  source: null,
  view: null,
  player: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- the feed -----------------------------------------------------------------------------

function connect() {
  if (state.source) state.source.close();
  const query = state.stream ? `?stream=${encodeURIComponent(state.stream)}` : "";
  const source = new EventSource(`/dashboard/events${query}`);
  state.source = source;
  source.addEventListener("view", (message) => {
    banner(null);
    render(JSON.parse(message.data));
  });
  source.addEventListener("bye", () => {
    banner("the node serving this page is shutting down; reconnecting");
  });
  source.onerror = () => {
    banner("lost the connection to the node serving this page; retrying (last view kept)");
    // A refusal (503: draining, or too many dashboards) closes an EventSource for good.
    if (source.readyState === EventSource.CLOSED) setTimeout(() => { if (state.source === source) connect(); }, 3000);
  };
}

function banner(text) {
  const node = $("banner");
  node.hidden = !text;
  node.textContent = text || "";
}

function render(view) {
  state.view = view;
  $("served-by").textContent = `served by ${view.node} (${view.nodeGroup})`;
  const registry = $("registry");
  registry.className = `pill ${view.registry}`;
  registry.textContent = view.registry === "reachable" ? "registry reachable" : "registry unreachable";
  if (view.registry !== "reachable") {
    banner("registry unreachable: showing the last view this node read; it recovers by itself");
  }
  $("read-at").textContent = view.readAt ? `read ${new Date(view.readAt).toLocaleTimeString()}` : "";
  if (!state.stream && view.streams.length) {
    choose(view.streams[0].streamId);
    return;
  }
  renderStreams(view);
  renderNodes(view);
  renderTree(view);
  renderEvents(view.events);
  renderNodeChoices(view);
}

function choose(stream) {
  state.stream = stream;
  const url = new URL(location.href);
  url.searchParams.set("stream", stream);
  history.replaceState(null, "", url);
  connect();
}

// --- streams, nodes, events -------------------------------------------------------------

function renderStreams(view) {
  const select = $("stream-select");
  const ids = view.streams.map((s) => s.streamId);
  if (state.stream && !ids.includes(state.stream)) ids.unshift(state.stream);
  if (select.dataset.ids !== ids.join(",")) {
    select.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
    select.dataset.ids = ids.join(",");
  }
  select.value = state.stream;
}

function renderNodes(view) {
  const body = $("nodes").tBodies[0];
  const rows = [];
  let region = null;
  for (const node of view.nodes) {
    if (node.nodeGroup !== region) {
      region = node.nodeGroup;
      const members = view.nodes.filter((n) => n.nodeGroup === region && n.status === "alive");
      const players = members.reduce((sum, n) => sum + n.load.players, 0);
      const row = el("tr", { class: "region" });
      row.append(el("td", { colspan: "7" }, `${region}: ${members.length} nodes, ${players} players`));
      rows.push(row);
    }
    const alive = node.status === "alive";
    const row = el("tr", { "data-node": node.id });
    row.append(
      el("td", {}, node.id),
      el("td", { class: `state-${node.state}` }, node.state),
      el("td", {}, alive ? `${node.cpu}%` : "-"),
      el("td", {}, alive ? String(node.load.players) : "-"),
      el("td", {}, alive ? String(node.load.pulls) : "-"),
      el("td", {}, alive ? String(node.load.bitrateInKbps) : "-"),
      el("td", {}, alive ? String(node.load.bitrateOutKbps) : "-"),
    );
    rows.push(row);
  }
  body.replaceChildren(...rows);
}

function renderEvents(events) {
  const list = $("events");
  for (const event of events) {
    const item = el("li", { class: event.kind });
    item.append(el("time", {}, new Date(event.at).toLocaleTimeString()), document.createTextNode(event.text));
    list.prepend(item);
  }
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function renderNodeChoices(view) {
  const alive = view.nodes.filter((n) => n.status === "alive");
  for (const id of ["player-node", "move-node"]) {
    const select = $(id);
    const key = alive.map((n) => `${n.id}@${n.publicUrl}`).join(",");
    if (select.dataset.key === key) continue;
    const before = select.value;
    select.replaceChildren(...alive.map((n) => el("option", { value: n.publicUrl }, `${n.id} (${n.nodeGroup})`)));
    select.dataset.key = key;
    if (alive.some((n) => n.publicUrl === before)) select.value = before;
    else if (id === "player-node") {
      const own = alive.find((n) => n.id === view.node);
      if (own) select.value = own.publicUrl;
    }
  }
}

// --- the relay tree ---------------------------------------------------------------------

function depths(nodes) {
  const byId = new Map(nodes.map((n) => [n.node, n]));
  const depth = new Map();
  const of = (n, seen = new Set()) => {
    if (depth.has(n.node)) return depth.get(n.node);
    if (!n.upstream || !byId.has(n.upstream) || seen.has(n.node)) return 0;
    seen.add(n.node);
    const d = of(byId.get(n.upstream), seen) + 1;
    depth.set(n.node, d);
    return d;
  };
  for (const n of nodes) depth.set(n.node, of(n));
  return depth;
}

function renderTree(view) {
  const svg = $("tree");
  const topology = view.topology;
  const notice = $("tree-notice");
  $("tree-title").textContent = state.stream ? `of ${state.stream}` : "";
  if (!topology) {
    notice.hidden = false;
    notice.textContent = state.stream
      ? `stream ${state.stream} is not live on this cluster (unknown or ended)`
      : "no stream is live on this cluster";
    svg.replaceChildren();
    svg.setAttribute("height", "60");
    svg.setAttribute("width", "300");
    $("region-totals").tBodies[0].replaceChildren();
    return;
  }
  notice.hidden = true;
  const nodes = topology.nodes;
  const depth = depths(nodes);
  const epochs = new Map(topology.secondaryOrigins.map((o) => [o.node, o.epoch]));
  const originRegion = topology.mainOrigin.nodeGroup;
  const regions = [...new Set(nodes.map((n) => n.nodeGroup))].sort((a, b) =>
    a === originRegion ? -1 : b === originRegion ? 1 : a.localeCompare(b));

  // Columns per region, as wide as its widest level; nodes centred within their level.
  const place = new Map();
  let x = BOX.side;
  let deepest = 0;
  const bands = [];
  for (const region of regions) {
    const members = nodes.filter((n) => n.nodeGroup === region);
    const levels = new Map();
    for (const n of members) {
      const d = depth.get(n.node);
      deepest = Math.max(deepest, d);
      if (!levels.has(d)) levels.set(d, []);
      levels.get(d).push(n);
    }
    const widest = Math.max(...[...levels.values()].map((l) => l.length));
    const width = widest * (BOX.w + BOX.gapX) - BOX.gapX;
    for (const [d, level] of levels) {
      level.sort((a, b) => a.node.localeCompare(b.node));
      const span = level.length * (BOX.w + BOX.gapX) - BOX.gapX;
      level.forEach((n, i) => {
        place.set(n.node, { x: x + (width - span) / 2 + i * (BOX.w + BOX.gapX), y: BOX.top + d * (BOX.h + BOX.gapY) });
      });
    }
    bands.push({ region, x, width, players: (topology.regions[region] || {}).players || 0 });
    x += width + 3 * BOX.gapX;
  }
  const width = Math.max(x - 2 * BOX.gapX, 300);
  const height = BOX.top + (deepest + 1) * (BOX.h + BOX.gapY) - BOX.gapY + 20;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));

  const defs = svgEl("defs");
  const marker = svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(svgEl("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9fb3c8" }));
  defs.append(marker);
  const parts = [defs];
  for (const band of bands) {
    parts.push(svgEl("rect", { class: "region-band", x: band.x - 8, y: 6, width: band.width + 16, height: height - 12, rx: 8 }));
    parts.push(svgEl("text", { class: "region-label", x: band.x, y: 26 }, `${band.region} · ${band.players} players`));
  }
  const groupOf = new Map(nodes.map((n) => [n.node, n.nodeGroup]));
  for (const pull of topology.pulls) {
    const from = place.get(pull.upstream);
    const to = place.get(pull.downstream);
    if (!from || !to) continue;
    const x1 = from.x + BOX.w / 2, y1 = from.y + BOX.h, x2 = to.x + BOX.w / 2, y2 = to.y;
    const mid = (y1 + y2) / 2;
    const cross = groupOf.get(pull.upstream) !== groupOf.get(pull.downstream);
    parts.push(svgEl("path", {
      class: cross ? "edge cross-region" : "edge",
      d: `M ${x1} ${y1} C ${x1} ${mid}, ${x2} ${mid}, ${x2} ${y2}`,
      "data-upstream": pull.upstream,
      "data-downstream": pull.downstream,
    }));
  }
  for (const n of nodes) {
    const p = place.get(n.node);
    const g = svgEl("g", { class: `node ${n.role}`, "data-node": n.node, "data-role": n.role, transform: `translate(${p.x} ${p.y})` });
    if (epochs.has(n.node)) g.setAttribute("data-epoch", String(epochs.get(n.node)));
    g.append(svgEl("rect", { width: BOX.w, height: BOX.h, rx: 6 }));
    g.append(svgEl("text", { x: 8, y: 18 }, n.node));
    const role = n.role === "main-origin" ? "main origin"
      : n.role === "secondary-origin" ? `secondary origin · e${epochs.get(n.node)}` : "edge";
    g.append(svgEl("text", { x: 8, y: 36 }, role));
    g.append(svgEl("text", { class: "players", x: BOX.w - 8, y: 18, "text-anchor": "end" }, String(n.players)));
    g.append(svgEl("title", {}, `${n.node} (${n.nodeGroup}): ${role}, ${n.players} players`));
    parts.push(g);
  }
  svg.replaceChildren(...parts);

  const totals = $("region-totals").tBodies[0];
  const rows = bands.map((b) => {
    const row = el("tr");
    row.append(el("td", {}, b.region), el("td", {}, String((topology.regions[b.region] || {}).nodes || 0)), el("td", {}, String(b.players)));
    return row;
  });
  const all = el("tr", { class: "region" });
  all.append(el("td", {}, "all"), el("td", {}, String(topology.totals.nodes)), el("td", {}, String(topology.totals.players)));
  totals.replaceChildren(...rows, all);
}

// --- the in-page player (WHEP with the browser's own RTCPeerConnection) ------------------

async function play() {
  await stop();
  const base = $("player-node").value;
  const app = state.view && state.view.topology ? state.view.topology.app : "LiveApp";
  if (!base || !state.stream) return;
  const pc = new RTCPeerConnection({ iceServers: [] });
  const player = { pc, location: null, timer: null, frames: 0, at: performance.now() };
  state.player = player;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.ontrack = (event) => {
    const video = $("video");
    if (!video.srcObject) video.srcObject = new MediaStream();
    video.srcObject.addTrack(event.track);
  };
  $("play").disabled = true;
  $("stop").disabled = false;
  stats("connecting");
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 2000);
    const reply = await fetch(`${base}/${app}/whep/${encodeURIComponent(state.stream)}`, {
      method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
    });
    if (reply.status !== 201) {
      const body = await reply.text();
      let message = body;
      try { message = JSON.parse(body).message; } catch (e) { /* plain text */ }
      throw new Error(`${reply.status}: ${message}`);
    }
    const location = reply.headers.get("Location");
    player.location = location ? new URL(location, reply.url).href : null;
    await pc.setRemoteDescription({ type: "answer", sdp: await reply.text() });
    player.timer = setInterval(() => measure(player), 1000);
  } catch (error) {
    stats(`could not play: ${error.message}`);
    await stop(false);
  }
}

function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function measure(player) {
  const report = await player.pc.getStats();
  report.forEach((entry) => {
    if (entry.type !== "inbound-rtp" || entry.kind !== "video") return;
    const now = performance.now();
    const decoded = entry.framesDecoded || 0;
    const fps = ((decoded - player.frames) * 1000) / (now - player.at);
    player.frames = decoded;
    player.at = now;
    const node = $("player-stats");
    node.dataset.framesDecoded = String(decoded);
    node.dataset.fps = fps.toFixed(1);
    stats(`${fps.toFixed(1)} fps · ${decoded} frames decoded · ${player.pc.connectionState}`);
  });
}

function stats(text) { $("player-stats").textContent = text; }

async function stop(clearText = true) {
  const player = state.player;
  state.player = null;
  $("play").disabled = false;
  $("stop").disabled = true;
  if (!player) return;
  clearInterval(player.timer);
  player.pc.close();
  $("video").srcObject = null;
  if (player.location) fetch(player.location, { method: "DELETE" }).catch(() => {});
  if (clearText) stats("not playing");
}

// --- region change (admin REST, the operator's token) ----------------------------------

async function move(event) {
  event.preventDefault();
  const result = $("move-result");
  const base = $("move-node").value;
  try {
    const reply = await fetch(`${base}/rest/changeServerSettings`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${$("move-token").value}` },
      body: JSON.stringify({ nodeGroup: $("move-region").value }),
    });
    const body = await reply.json();
    result.textContent = `${reply.status}: ${body.message}`;
  } catch (error) {
    result.textContent = `failed: ${error.message}`;
  }
}

$("stream-select").addEventListener("change", (event) => choose(event.target.value));
$("play").addEventListener("click", play);
$("stop").addEventListener("click", () => stop());
$("move").addEventListener("submit", move);
connect();
