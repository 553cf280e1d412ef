// The live page: one WebSocket to /ws/live for this session, the figures and the table updated
// as each block's event arrives, and a small PnL chart drawn on a canvas. No framework.
(function () {
  "use strict";
  const root = document.getElementById("live");
  if (!root) return;
  const session = root.dataset.session;
  const status = root.querySelector(".connection");
  const tbody = root.querySelector("#events tbody");
  const canvas = document.getElementById("pnl");
  const points = [];
  const MAX_POINTS = 600;
  const MAX_ROWS = 30;
  let received = 0;

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (Array.isArray(v)) return v.length ? v.join(", ") : "none";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(4);
    return String(v);
  }

  function draw() {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 28;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, h);
    if (points.length < 2) return;
    let lo = Math.min(0, ...points.map(p => p[1]));
    let hi = Math.max(0, ...points.map(p => p[1]));
    if (hi === lo) { hi += 1; lo -= 1; }
    const x0 = points[0][0], x1 = points[points.length - 1][0];
    const sx = b => pad + (w - 2 * pad) * (x1 === x0 ? 1 : (b - x0) / (x1 - x0));
    const sy = v => h - pad - (h - 2 * pad) * (v - lo) / (hi - lo);
    ctx.strokeStyle = "#d9dee7";
    ctx.beginPath(); ctx.moveTo(pad, sy(0)); ctx.lineTo(w - pad, sy(0)); ctx.stroke();
    ctx.strokeStyle = "#1f6feb";
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(sx(p[0]), sy(p[1])) : ctx.moveTo(sx(p[0]), sy(p[1]))));
    ctx.stroke();
    ctx.fillStyle = "#5b6475";
    ctx.font = "12px sans-serif";
    ctx.fillText("PnL " + hi.toFixed(2), 4, 14);
    ctx.fillText(lo.toFixed(2), 4, h - 6);
    ctx.fillText("block " + x1, w - 110, h - 6);
  }

  function show(e) {
    const p = e.payload || {};
    received += 1;
    root.dataset.received = String(received);
    root.dataset.lastBlock = String(e.block);
    root.dataset.fills = String(p.fills_total || 0);
    for (const el of root.querySelectorAll("[data-key]")) {
      const k = el.dataset.key;
      el.textContent = fmt(k === "block" ? e.block : p[k]);
      if (k === "halted") el.className = "value " + (p.halted && p.halted.length ? "status-bad" : "status-ok");
    }
    const spreads = document.querySelector("#spreads tbody");
    if (spreads && Array.isArray(p.spreads)) {
      while (spreads.rows.length) spreads.deleteRow(0);
      for (const s of p.spreads) {
        const row = spreads.insertRow();
        for (const [v, num] of [[s.pair, false], [s.pools, true], [fmt(s.bps), true]]) {
          const td = row.insertCell();
          td.textContent = String(v);
          if (num) td.className = "num";
        }
      }
      root.dataset.spreads = String(p.spreads.length);
    }
    if (typeof p.pnl_quote === "number") {
      points.push([e.block, p.pnl_quote]);
      if (points.length > MAX_POINTS) points.shift();
    }
    const tr = document.createElement("tr");
    if (p.filled > 0) tr.className = "fill";
    for (const v of [e.block, p.sent, p.filled, p.reverted, p.rejected, p.expired, p.pnl_quote]) {
      const td = document.createElement("td");
      td.textContent = fmt(v);
      if (typeof v === "number") td.className = "num";
      tr.appendChild(td);
    }
    const risk = document.createElement("td");
    risk.textContent = (p.risk || []).map(r => JSON.stringify(r)).join(" ");
    tr.appendChild(risk);
    tbody.insertBefore(tr, tbody.firstChild);
    while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(tbody.rows.length - 1);
  }

  let pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws/live?session=" + encodeURIComponent(session));
    ws.onopen = () => { status.textContent = "Live"; root.dataset.connected = "true"; delay = 500; };
    ws.onmessage = m => {
      const msg = JSON.parse(m.data);
      if (msg.type === "event") { show(msg.event); redraw(); }
      else if (msg.type === "lagged") status.textContent = "Live (missed " + msg.missed + " events)";
    };
    ws.onclose = () => {
      root.dataset.connected = "false";
      status.textContent = "Disconnected; reconnecting…";
      setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
    };
  }
  connect(500);
})();
