// Cairn's dashboard: reads the node's /api/v1/ routes every few seconds and fills the page.
// Everything from the node (package names, reasons, upstream errors) is set as text, never as
// markup: a hostile name cannot script the page.
"use strict";

const params = new URLSearchParams(location.search);
const EVERY = Math.min(60, Math.max(1, Number(params.get("refresh")) || 3));
let trafficWindow = "hour";
let refreshes = 0;

const $ = (id) => document.getElementById(id);

/// An element with text or children; `data` becomes data-* attributes.
function el(tag, { text, cls, data, title } = {}, ...children) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  if (title) e.title = title;
  for (const [k, v] of Object.entries(data || {})) e.dataset[k] = String(v);
  for (const c of children) e.append(c);
  return e;
}

function cell(text, opts = {}) {
  return el("td", { ...opts, text });
}

function number(n, field, extra = {}) {
  return cell(n.toLocaleString("en"), { cls: "n", data: { field, value: n, ...extra } });
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
}

function sizeCell(n, field, extra = {}) {
  return cell(bytes(n), { cls: "n", data: { field, value: n, ...extra }, title: n + " bytes" });
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " days ago";
}

function replaceRows(id, rows, empty, columns) {
  const body = $(id);
  if (rows.length === 0) {
    const td = cell(empty);
    td.colSpan = columns;
    rows = [el("tr", { cls: "empty" }, td)];
  }
  body.replaceChildren(...rows);
}

async function api(path) {
  // The origin, not the page's URL: a URL with credentials in it cannot be fetched.
  const response = await fetch(location.origin + path, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) {
    let why = response.status + " " + response.statusText;
    try {
      why = (await response.json()).error || why;
    } catch (_) {
      // Not JSON: the status says enough.
    }
    throw new Error(path + ": " + why);
  }
  return response.json();
}

function showTraffic(t) {
  $("spared").textContent = bytes(t.spared_upstream_bytes);
  $("spared").dataset.value = t.spared_upstream_bytes;
  const rows = [];
  const sum = { hits: 0, misses: 0, cache_bytes: 0, peer_bytes: 0, upstream_bytes: 0 };
  for (const [ecosystem, c] of Object.entries(t.totals)) {
    for (const k of Object.keys(sum)) sum[k] += c[k];
    rows.push(trafficRow(ecosystem, c, ""));
  }
  if (rows.length > 1) rows.push(trafficRow("all", sum, "total"));
  replaceRows("traffic-rows", rows, "No requests in this window.", 7);
  drawChart(t);
}

function trafficRow(ecosystem, c, cls) {
  const requests = c.hits + c.misses;
  const ratio = requests ? Math.round((100 * c.hits) / requests) + " %" : "–";
  const data = { ecosystem };
  return el(
    "tr",
    { cls, data },
    cell(ecosystem),
    number(requests, "requests", data),
    number(c.hits, "hits", data),
    cell(ratio, { cls: "n", data: { field: "ratio", ...data } }),
    sizeCell(c.cache_bytes, "cache_bytes", data),
    sizeCell(c.peer_bytes, "peer_bytes", data),
    sizeCell(c.upstream_bytes, "upstream_bytes", data),
  );
}

function drawChart(t) {
  const svg = $("chart");
  const series = Object.values(t.ecosystems);
  const n = series.length ? series[0].length : 0;
  const hits = new Array(n).fill(0);
  const misses = new Array(n).fill(0);
  for (const buckets of series) {
    buckets.forEach((c, i) => {
      hits[i] += c.hits;
      misses[i] += c.misses;
    });
  }
  const top = Math.max(1, ...hits.map((h, i) => h + misses[i]));
  const width = 600 / Math.max(1, n);
  const ns = "http://www.w3.org/2000/svg";
  const bars = [];
  for (let i = 0; i < n; i++) {
    const hitH = (78 * hits[i]) / top;
    const missH = (78 * misses[i]) / top;
    for (const [cls, h, y] of [["hit", hitH, 80 - hitH], ["miss", missH, 80 - hitH - missH]]) {
      if (h <= 0) continue;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("class", cls);
      r.setAttribute("x", String(i * width + 0.5));
      r.setAttribute("y", String(y));
      r.setAttribute("width", String(Math.max(0.5, width - 1)));
      r.setAttribute("height", String(h));
      bars.push(r);
    }
  }
  const title = document.createElementNS(ns, "title");
  title.textContent =
    "Requests per " + t.bucket_seconds / 60 + " min since " + t.start + ": at most " + top;
  svg.replaceChildren(title, ...bars);
}

function showUpstreams(u) {
  $("mode").textContent = u.offline
    ? "Offline: nothing is fetched upstream; cached copies and peers answer."
    : "";
  const rows = u.upstreams.map((h) => {
    const data = { ecosystem: h.ecosystem };
    const mark = { up: "✓ up", down: "✗ down", unknown: "? not asked yet" }[h.state] || h.state;
    const last = h.recent_errors[0];
    return el(
      "tr",
      { data },
      cell(h.ecosystem),
      cell(h.upstream, { cls: "wrap" }),
      cell(mark, { cls: h.state === "down" ? "down" : "", data: { field: "state", ...data } }),
      cell(h.average_latency_ms === undefined ? "–" : Math.round(h.average_latency_ms) + " ms", {
        cls: "n",
        title: h.last_latency_ms === undefined ? "" : "last " + Math.round(h.last_latency_ms) + " ms",
      }),
      number(h.requests, "requests", data),
      number(h.errors, "errors", data),
      cell(h.stale_served ? h.stale_served + " (" + ago(h.last_stale_ms) + ")" : "0", {
        cls: "n",
        data: { field: "stale", value: h.stale_served, ...data },
      }),
      cell(last ? ago(last.at_ms) + ": " + last.error : "–", { cls: "wrap" }),
    );
  });
  for (const off of u.off) {
    const td = cell("off: " + off.because, { cls: "wrap" });
    td.colSpan = 6;
    rows.push(el("tr", { data: { ecosystem: off.ecosystem } }, cell(off.ecosystem), cell("none"), td));
  }
  replaceRows("upstream-rows", rows, "No upstream is configured.", 8);
}

let penalized = [];

function showPeers(p) {
  if (p.p2p === false) {
    $("swarm-said").textContent = "Peer-to-peer is off on this node.";
    penalized = [];
    replaceRows("peer-rows", [], "No swarm.", 5);
    return;
  }
  penalized = p.penalized || [];
  $("swarm-said").textContent =
    (p.private ? "Private swarm (a swarm key is set)" : "Open swarm") +
    " · this node is " + p.peer_id + " · " + p.peers.length + " peer" +
    (p.peers.length === 1 ? "" : "s") + " connected";
  const rows = p.peers.map((peer) => {
    const data = { peer: peer.peer };
    return el(
      "tr",
      { data },
      cell(peer.peer.slice(-12), { title: peer.peer }),
      cell(peer.address, { cls: "wrap" }),
      cell(peer.rtt_ms == null ? "–" : peer.rtt_ms.toFixed(1) + " ms", { cls: "n" }),
      sizeCell(peer.bytes_received, "received", data),
      sizeCell(peer.bytes_sent, "sent", data),
    );
  });
  replaceRows("peer-rows", rows, "No peer connected.", 5);
}

function showStore(s) {
  const $said = $("store-said");
  let said = bytes(s.held_bytes) + " held";
  if (s.limit_bytes) said += " of " + bytes(s.limit_bytes) + " (" + Math.round((100 * s.held_bytes) / s.limit_bytes) + " %)";
  if (s.free_bytes !== undefined) said += " · " + bytes(s.free_bytes) + " free on disk";
  said += " · " + s.pinned_snapshots + " pinned snapshot" + (s.pinned_snapshots === 1 ? "" : "s");
  $said.textContent = said;
  $said.dataset.held = s.held_bytes;
  const rows = s.ecosystems.map((e) => {
    const data = { ecosystem: e.ecosystem };
    return el(
      "tr",
      { data },
      cell(e.ecosystem),
      sizeCell(e.bytes, "held", data),
      cell(e.limit_bytes ? bytes(e.limit_bytes) + " (" + Math.round((100 * e.bytes) / e.limit_bytes) + " %)" : "none", { cls: "n" }),
      number(e.files, "files", data),
      number(e.documents, "documents", data),
    );
  });
  replaceRows("store-rows", rows, "Nothing cached yet.", 5);
  const v = s.last_verify;
  $("verify-said").textContent = v
    ? "Last verified " + ago(v.at_ms) + ": " + v.files + " files (" + bytes(v.bytes) + "), " +
      (v.damaged ? v.damaged + " damaged, " + v.repaired + " repaired, " + v.remaining + " not repaired" : "none damaged")
    : "Never verified (cairn verify).";
}

function showRefusals(r) {
  const rows = [];
  for (const p of penalized) {
    rows.push(
      el(
        "tr",
        { data: { kind: "peer" } },
        cell(ago(p.at_ms)),
        cell("bad peer (" + p.fault + ", kept out " + p.seconds_left + " s more)"),
        cell("–"),
        cell(p.peer, { cls: "wrap" }),
        cell(p.reason, { cls: "wrap" }),
      ),
    );
  }
  for (const x of r.refusals) {
    const what = { digest: "digest mismatch (upstream)", "peer-digest": "digest mismatch (peer)", policy: "policy: " + x.rule }[x.kind] || x.kind;
    rows.push(
      el(
        "tr",
        { data: { kind: x.kind, ecosystem: x.ecosystem } },
        cell(ago(Date.parse(x.at)), { title: x.at }),
        cell(what),
        cell(x.ecosystem),
        cell(x.key, { cls: "wrap", data: { field: "key" } }),
        cell(x.reason, { cls: "wrap" }),
      ),
    );
  }
  $("refusals-said").textContent =
    r.refusals.length + " refused file" + (r.refusals.length === 1 ? "" : "s") +
    " (the last " + r.kept + " are kept) · " + penalized.length + " peer" +
    (penalized.length === 1 ? "" : "s") + " kept out now";
  replaceRows("refusal-rows", rows, "Nothing refused.", 5);
}

function showStatus(s) {
  const served = s.upstreams.filter((u) => u.upstream).map((u) => u.ecosystem);
  $("node").textContent =
    (s.offline ? "Offline" : "Online") + " · serving " + (served.join(", ") || "nothing") +
    " · store in " + s.data_dir;
}

async function refresh() {
  const parts = [
    ["/api/v1/status", showStatus],
    ["/api/v1/traffic?window=" + trafficWindow, showTraffic],
    ["/api/v1/upstreams", showUpstreams],
    ["/api/v1/peers", showPeers],
    ["/api/v1/store", showStore],
    ["/api/v1/refusals", showRefusals],
  ];
  // Peers before refusals: the refusals panel lists the peers kept out.
  const answers = await Promise.allSettled(parts.map(([path]) => api(path)));
  const problems = [];
  answers.forEach((answer, i) => {
    if (answer.status === "fulfilled") {
      try {
        parts[i][1](answer.value);
      } catch (e) {
        problems.push(parts[i][0] + ": " + e.message);
      }
    } else {
      problems.push(answer.reason.message);
    }
  });
  $("problem").hidden = problems.length === 0;
  $("problem").textContent = problems.join(" · ");
  refreshes += 1;
  document.body.dataset.refreshes = refreshes;
  $("updated").textContent = new Date().toLocaleTimeString();
}

async function loop() {
  await refresh();
  setTimeout(loop, EVERY * 1000);
}

async function search(event) {
  event.preventDefault();
  const q = $("q").value.trim();
  const said = $("search-said");
  const table = $("search-table");
  if (!q) return;
  said.textContent = "Searching…";
  try {
    const found = await api("/api/v1/search?q=" + encodeURIComponent(q));
    const asked = found.name + (found.version ? " " + found.version : "") +
      (found.ecosystem ? " in " + found.ecosystem : "");
    if (found.files.length === 0) {
      said.textContent = "Not cached: " + asked + ".";
      table.hidden = true;
      $("search-rows").replaceChildren();
      return;
    }
    said.textContent = found.files.length + " cached file" + (found.files.length === 1 ? "" : "s") + " for " + asked + ".";
    $("search-rows").replaceChildren(
      ...found.files.map((f) => {
        const link = el("a", { text: "gateway (CAR)" });
        link.href = f.gateway;
        const cids = el("td", {}, el("code", { text: "root " + f.root_cid }), el("br"), el("code", { text: "file " + f.flat_cid }), el("br"), link);
        return el(
          "tr",
          { data: { key: f.key, root: f.root_cid } },
          cell(f.ecosystem),
          cell(f.key, { cls: "wrap" }),
          cell(f.version || "–"),
          sizeCell(f.size, "size"),
          cell(f.from + (f.private ? " (private)" : ""), { cls: "wrap" }),
          cell(f.fetched),
          cids,
        );
      }),
    );
    table.hidden = false;
  } catch (e) {
    said.textContent = "Search failed: " + e.message;
    table.hidden = true;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("every").textContent = EVERY;
  for (const radio of document.querySelectorAll("input[name=window]")) {
    radio.addEventListener("change", () => {
      trafficWindow = radio.value;
      refresh();
    });
  }
  $("search-form").addEventListener("submit", search);
  loop();
});
