/* mmplatform dashboard: the live-update socket shared by every page.
 *
 * - Reconnects with exponential backoff (0.5 s doubling to 30 s, jittered) after a server restart.
 * - Catches up on reconnect: sends the last event id it saw; the server replies with the BotEvent
 *   rows after it, or says there were too many and the page re-fetches its whole state.
 * - Coalesces bursts: messages are queued and handed to the page once per animation frame, so
 *   hundreds of updates a second cost one render per frame.
 * - Close codes 4401 (signed out), 4403 (membership lost), 4404 (not yours) stop reconnecting.
 */
(function () {
  "use strict";

  const MAX_QUEUE = 5000;
  const PING_MS = 25000;
  const FINAL_CODES = { 4401: "signed out — reload to sign in", 4403: "access removed", 4404: "not available" };

  function setStatus(state, text) {
    const el = document.getElementById("live-status");
    if (!el) return;
    el.dataset.state = state;
    const label = el.querySelector(".label");
    if (label) label.textContent = text;
  }

  function nextFrame(fn) {
    // requestAnimationFrame does not fire in hidden tabs; a timer keeps the queue draining there.
    if (document.hidden) return setTimeout(fn, 250);
    return requestAnimationFrame(fn);
  }

  class LiveSocket {
    constructor(path, options) {
      this.path = path;
      this.onBatch = options.onBatch || function () {};
      this.onResync = options.onResync || function () {};
      this.onFinal = options.onFinal || function () {};
      this.lastEventId = options.lastEventId == null ? null : Number(options.lastEventId);
      this.queue = [];
      this.overflowed = false;
      this.flushScheduled = false;
      this.attempt = 0;
      this.stopped = false;
      this.everConnected = false;
      this.stats = { received: 0, batches: 0, reconnects: 0 };
      this.connect();
    }

    url() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      return scheme + location.host + this.path;
    }

    connect() {
      setStatus(this.everConnected ? "reconnecting" : "connecting", this.everConnected ? "reconnecting…" : "connecting…");
      let ws;
      try {
        ws = new WebSocket(this.url());
      } catch (err) {
        this.scheduleReconnect();
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        this.attempt = 0;
        setStatus("live", "live");
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.send({ type: "ping", ts: Date.now() }), PING_MS);
      };
      ws.onmessage = (event) => this.handle(event.data);
      ws.onclose = (event) => {
        clearInterval(this.pinger);
        if (this.ws !== ws) return;
        if (FINAL_CODES[event.code]) {
          this.stopped = true;
          setStatus("closed", FINAL_CODES[event.code]);
          this.onFinal(event.code);
          return;
        }
        if (!this.stopped) this.scheduleReconnect();
      };
    }

    scheduleReconnect() {
      this.attempt += 1;
      this.stats.reconnects += 1;
      const base = Math.min(30000, 500 * Math.pow(2, this.attempt - 1));
      const delay = Math.round(base * (0.5 + Math.random() * 0.5));
      setStatus("reconnecting", "reconnecting in " + Math.max(1, Math.round(delay / 1000)) + " s");
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    }

    send(message) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
    }

    handle(raw) {
      let msg;
      try { msg = JSON.parse(raw); } catch (err) { return; }
      if (!msg || typeof msg !== "object") return;
      switch (msg.type) {
        case "hello": {
          const reconnect = this.everConnected;
          this.everConnected = true;
          if (this.lastEventId === null) this.lastEventId = msg.last_event_id;
          else if (msg.last_event_id > this.lastEventId) this.send({ type: "catch_up", after: this.lastEventId });
          if (reconnect) this.onResync("reconnected");
          break;
        }
        case "update":
          if (msg.event_id != null && (this.lastEventId === null || msg.event_id > this.lastEventId)) {
            this.lastEventId = msg.event_id;
          }
          this.enqueue(msg);
          break;
        case "catch_up":
          if (msg.more) { this.onResync("too many missed events"); }
          for (const e of msg.events || []) {
            if (this.lastEventId === null || e.event_id > this.lastEventId) this.lastEventId = e.event_id;
            this.enqueue({ type: "update", kind: "event", bot_id: e.bot_id, event_id: e.event_id, data: e, caughtUp: true });
          }
          break;
        case "error":
          if (window.console) console.warn("live socket:", msg.error);
          break;
        default:
          break;
      }
    }

    enqueue(msg) {
      this.stats.received += 1;
      if (this.queue.length >= MAX_QUEUE) {
        // The page cannot keep up (e.g. a long-hidden tab): drop the backlog and re-fetch state.
        this.queue = [];
        this.overflowed = true;
      } else {
        this.queue.push(msg);
      }
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        nextFrame(() => this.flush());
      }
    }

    flush() {
      this.flushScheduled = false;
      const batch = this.queue;
      this.queue = [];
      if (this.overflowed) {
        this.overflowed = false;
        this.onResync("backlog dropped");
      }
      if (!batch.length) return;
      this.stats.batches += 1;
      try {
        this.onBatch(batch);
      } catch (err) {
        if (window.console) console.error("live update render failed", err);
      }
    }
  }

  /* Small helpers the pages share. */
  function fmt(value, digits) {
    if (value === null || value === undefined || value === "") return "—";
    const n = Number(value);
    if (!isFinite(n)) return String(value);
    return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  /* An exact decimal string from the server, without the trailing zeros of its 12 places. */
  function dec(value) {
    if (value === null || value === undefined || value === "") return "—";
    const text = String(value);
    if (/e/i.test(text)) return String(Number(text));
    return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
  }

  function timeOf(iso) {
    if (!iso) return "";
    const d = typeof iso === "number" ? new Date(iso * 1000) : new Date(iso);
    return isNaN(d) ? String(iso) : d.toISOString().substring(11, 19);
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children || []) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function wireForms() {
    const switcher = document.getElementById("tenant-select");
    if (switcher) switcher.addEventListener("change", () => switcher.form.submit());
    document.addEventListener("submit", (event) => {
      const form = event.target;
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      const button = form.querySelector("button[type=submit]");
      if (button) setTimeout(() => { button.disabled = true; }, 0);
    });
  }

  function pnlClass(value) {
    const n = Number(value);
    return n < 0 ? "neg" : "pos";
  }

  function renderSummaryField(node, field, bot) {
    switch (field) {
      case "status":
        node.replaceChildren(el("span", { class: "status status-" + bot.status, text: bot.status_label }));
        if (bot.status_reason) node.appendChild(el("div", { class: "sub", text: bot.status_reason.slice(0, 80) }));
        break;
      case "pnl_today_quote":
      case "pnl_total_quote":
      case "realised_pnl_quote":
      case "unrealised_pnl_quote":
      case "fees_paid_quote":
        node.textContent = fmt(bot[field], 2);
        node.classList.remove("pos", "neg");
        if (field.startsWith("pnl")) node.classList.add(pnlClass(bot[field]));
        break;
      case "open_orders":
      case "cycle_count":
        node.textContent = String(bot[field]);
        break;
      case "last_cycle_age_secs":
        node.textContent = bot.last_cycle_age_secs == null ? "never" : Math.round(bot.last_cycle_age_secs) + " s ago";
        node.classList.toggle("warn", !!bot.cycle_is_stale);
        break;
      case "risk_state":
        node.replaceChildren(el("span", { class: "risk risk-" + bot.risk_level, text: bot.risk_state.slice(0, 90) }));
        break;
      case "last_error":
        node.textContent = (bot.last_error || "").slice(0, 120);
        break;
      case "inventory":
        node.replaceChildren(...(bot.inventory.length ? bot.inventory.map((i) => el("div", { class: "inv" }, [
          el("span", { text: i.trading_pair }),
          el("span", { class: "num", text: i.ratio == null ? "no snapshot" : fmt(i.ratio, 2) + " / " + fmt(i.target_ratio, 2) }),
        ])) : [el("span", { class: "muted", text: "—" })]));
        break;
      default:
        break;
    }
  }

  /* The overview and the bots table: subscribe to the tenant group, refresh the summaries. */
  function startTenantPage(options) {
    const summaryUrl = options.summaryUrl;
    const refresh = summaryUrl ? makeRefresher(summaryUrl) : null;
    const eventsBody = document.querySelector("#tenant-events tbody");
    const seen = new Set();
    if (eventsBody) eventsBody.querySelectorAll("tr[data-event-id]").forEach((tr) => seen.add(tr.dataset.eventId));
    const socket = new LiveSocket("/ws/tenant/", {
      onBatch(batch) {
        for (const msg of batch) {
          if (msg.kind === "event" && eventsBody && msg.event_id != null && !seen.has(String(msg.event_id))) {
            seen.add(String(msg.event_id));
            const data = msg.data || {};
            const empty = eventsBody.querySelector(".empty-row");
            if (empty) empty.remove();
            eventsBody.prepend(el("tr", { "data-event-id": String(msg.event_id), class: "flash" }, [
              el("td", { class: "time", text: timeOf(data.created_at) }),
              el("td", { text: "bot " + msg.bot_id }),
              el("td", { text: data.event_type || "" }),
              el("td", { class: "details", text: JSON.stringify(data.payload || {}) }),
            ]));
            while (eventsBody.children.length > 50) eventsBody.lastElementChild.remove();
          }
        }
        if (refresh) refresh();
      },
      onResync() { if (refresh) refresh(); },
    });
    if (refresh) setInterval(refresh, 5000);
    window.MM.socket = socket;
    return socket;
  }

  function makeRefresher(summaryUrl) {
    let inFlight = false, again = false;
    async function run() {
      if (inFlight) { again = true; return; }
      inFlight = true;
      try {
        const response = await fetch(summaryUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (response.ok) applySummaries((await response.json()).bots);
      } catch (err) { /* offline: the socket status already says so */ }
      inFlight = false;
      if (again) { again = false; setTimeout(run, 1000); }
    }
    return run;
  }

  function applySummaries(bots) {
    const table = document.getElementById("bots-table");
    if (!table) return;
    for (const bot of bots) {
      const row = table.querySelector('tr[data-bot-id="' + bot.id + '"]');
      if (!row) { location.reload(); return; }
      row.querySelectorAll("[data-field]").forEach((cell) => renderSummaryField(cell, cell.dataset.field, bot));
    }
  }

  wireForms();
  window.MM = {
    LiveSocket, setStatus, fmt, dec, timeOf, el, wireForms, renderSummaryField, pnlClass, startTenantPage,
    socket: null,
  };
})();
