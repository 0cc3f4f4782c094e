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
      this.onCounters = options.onCounters || function () {};
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
          this.send({ type: "counters" });  // live cycle counts, ages, "not quoting" (bots.consumers.CounterWatch)
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
        case "counters":
          this.stats.counters = (this.stats.counters || 0) + 1;
          try { this.onCounters(msg); } catch (err) { if (window.console) console.error("counters render failed", err); }
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
  const MAX_PLACES = 8;  // bots.wire.MAX_PLACES
  const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;

  /* A decimal text without exponent: "-1.5e-7" -> "-0.00000015" (exact, on the digits). */
  function plain(text) {
    const m = /^([-+]?)(\d*)\.?(\d*)(?:e([-+]?\d+))?$/i.exec(text);
    const sign = m[1] === "-" ? "-" : "";
    let digits = (m[2] || "") + (m[3] || "");
    let point = (m[2] || "").length + Number(m[4] || 0);
    if (point <= 0) { digits = "0".repeat(1 - point) + digits; point = 1; }
    if (point > digits.length) digits += "0".repeat(point - digits.length);
    const whole = digits.slice(0, point).replace(/^0+(?=\d)/, "");
    const frac = digits.slice(point);
    return sign + (whole || "0") + (frac ? "." + frac : "");
  }

  /* Round a plain decimal text to `places` decimals, half to even (Python's Decimal.quantize default). */
  function roundHalfEven(text, places) {
    const sign = text[0] === "-" ? "-" : "";
    const [whole, frac = ""] = (sign ? text.slice(1) : text).split(".");
    if (frac.length <= places) return sign + whole + (places ? "." + frac.padEnd(places, "0") : "");
    const kept = (whole + frac.slice(0, places)).split("");
    const first = frac[places], tail = frac.slice(places + 1);
    if (first > "5" || (first === "5" && (/[1-9]/.test(tail) || Number(kept[kept.length - 1]) % 2 === 1))) {
      let k = kept.length - 1;
      while (k >= 0 && kept[k] === "9") { kept[k] = "0"; k -= 1; }
      if (k < 0) kept.unshift("1"); else kept[k] = String(Number(kept[k]) + 1);
    }
    const cut = kept.length - places;
    return sign + kept.slice(0, cut).join("") + (places ? "." + kept.slice(cut).join("") : "");
  }

  /* A number as bots.wire.format_decimal shows it, digit for digit: never exponent notation ("0E-12" is
   * "0"), no trailing zeros unless `places` fixes the decimals (half-even rounding on the decimal
   * digits, not on a binary float), no negative zero; `grouping` adds commas. */
  function dec(value, places, grouping) {
    if (value === null || value === undefined || value === "") return "—";
    let text = typeof value === "number" ? String(value) : String(value).trim();
    if (!NUMBER.test(text)) return text;
    text = plain(text);
    if (places !== undefined && places !== null) {
      text = roundHalfEven(text, places);
    } else {
      if ((text.split(".")[1] || "").length > MAX_PLACES) text = roundHalfEven(text, MAX_PLACES);
      if (text.includes(".")) text = text.replace(/0+$/, "").replace(/\.$/, "");
    }
    if (/^-0(\.0*)?$/.test(text)) text = text.slice(1);
    if (grouping) {
      const [whole, frac] = text.split(".");
      text = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (frac !== undefined ? "." + frac : "");
    }
    return text;
  }

  /* Quote-currency money (bots.wire.format_money): "-1,234.50". */
  function money(value) { return dec(value, 2, true); }

  /* A display number with fixed decimals and separators (chart/ladder floats). */
  function fmt(value, digits) { return dec(value, digits, true); }

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
        node.replaceChildren(el("span", { class: "status status-" + bot.status, text: bot.status_label || bot.status }));
        if (bot.not_quoting_text) node.appendChild(el("div", { class: "sub warn-text not-quoting", text: bot.not_quoting_text }));
        else if (bot.status_reason) node.appendChild(el("div", { class: "sub", text: bot.status_reason.slice(0, 80) }));
        break;
      case "pnl_today_quote":
      case "pnl_total_quote":
      case "realised_pnl_quote":
      case "unrealised_pnl_quote":
      case "fees_paid_quote":
        node.textContent = money(bot[field]);
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
        node.replaceChildren(...(bot.inventory.length ? bot.inventory.flatMap((i) => [el("div", { class: "inv" }, [
          el("span", { text: i.trading_pair }),
          el("span", { class: "num", text: i.ratio == null ? "no snapshot" : fmt(i.ratio, 2) + " / " + fmt(i.target_ratio, 2) }),
        ]), ...((i.venues || []).length ? [el("div", { class: "sub venue-split",  // the split per account
          text: i.venues.map((v) => v.venue + " " + dec(v.base_position)).join(" · ") })] : [])])
          : [el("span", { class: "muted", text: "—" })]));
        break;
      default:
        break;
    }
  }

  /* Live counters (the socket's "counters" frames, every ~2 s when something moved): the cycle count,
   * the last cycle's age (ticking locally between frames), open orders, "not quoting". */
  class Counters {
    constructor() { this.bots = new Map(); this.offset = 0; setInterval(() => this.tickAges(), 1000); }

    apply(msg, onBot) {
      if (typeof msg.server_time === "number") this.offset = msg.server_time - Date.now() / 1000;
      for (const bot of msg.bots || []) {
        this.bots.set(bot.id, bot);
        onBot(bot);
      }
      this.tickAges();
    }

    age(bot) {
      return bot.last_cycle_at == null ? null : Math.max(0, Date.now() / 1000 + this.offset - bot.last_cycle_at);
    }

    tickAges() {
      for (const [id, bot] of this.bots) {
        const age = this.age(bot);
        document.querySelectorAll('[data-live-age="' + id + '"]').forEach((node) => {
          node.textContent = age == null ? "never" : Math.round(age) + " s ago";
          node.classList.toggle("warn", bot.status === "running" && age != null && age > bot.stale_after_secs);
        });
      }
    }
  }

  /* The event logs (overview and bot page): one rendering of bots.wire.event_json dicts, whether they
   * came with the page, from a push or from a catch-up. Runs of routine events (OrdersAdjusted) of one
   * bot within a minute are one row ("×37 in 54 s"); a type filter; the raw payload on demand. */
  const ROUTINE_WINDOW_SECS = 60;

  function secsOf(iso) { return new Date(iso).getTime() / 1000; }

  function groupEvents(events) {
    const groups = [];
    for (const e of events) {
      const last = groups[groups.length - 1];
      if (e.routine && last && last.routine && last.event_type === e.event_type && last.bot_id === e.bot_id
          && secsOf(last.events[0].created_at) - secsOf(e.created_at) <= ROUTINE_WINDOW_SECS) {
        last.events.push(e);
      } else {
        groups.push({ routine: e.routine, event_type: e.event_type, bot_id: e.bot_id, events: [e] });
      }
    }
    return groups;
  }

  function eventRow(group, showBot) {
    // a stored summary of routine events counts `count` events from `first_at` (bots/events.py)
    const e = group.events[0], oldest = group.events[group.events.length - 1];
    const n = group.events.reduce((sum, x) => sum + (x.count || 1), 0);
    let summary = e.summary || "";
    if (n > 1) {
      const span = Math.max(1, Math.round(secsOf(e.created_at) - secsOf(oldest.first_at || oldest.created_at)));
      summary = "×" + n + " in " + span + " s · latest " + summary;
    }
    const type = el("td", { class: "etype", text: e.event_type });
    if (n > 1) type.appendChild(el("span", { class: "count", text: " ×" + n }));
    return el("tr", { "data-event-id": String(e.event_id), "data-event-type": e.event_type, class: n > 1 ? "aggregate" : "" }, [
      el("td", { class: "time", text: timeOf(e.created_at) }),
      ...(showBot ? [el("td", { class: "bot", text: e.bot_name || "" })] : []),
      type,
      el("td", { class: "details" }, [
        el("span", { class: "summary", text: summary }),
        el("details", { class: "raw" }, [el("summary", { text: "raw" }),
          el("pre", { text: JSON.stringify(e.payload || {}, null, 1) })]),
      ]),
    ]);
  }

  class EventLog {
    constructor(table, options) {
      this.table = table;
      this.body = table.querySelector("tbody");
      this.showBot = !!options.showBot;
      this.limit = options.limit || 200;
      this.emptyText = options.emptyText || "No events yet.";
      this.filter = options.filter || null;  // a <select>
      this.events = [];
      this.ids = new Set();
      if (this.filter) this.filter.addEventListener("change", () => this.render());
    }

    set(events) {
      this.events = events.slice().sort((a, b) => b.event_id - a.event_id).slice(0, this.limit);
      this.ids = new Set(this.events.map((e) => e.event_id));
      this.render();
    }

    add(event) {
      if (event.event_id == null || this.ids.has(event.event_id)) return false;
      this.ids.add(event.event_id);
      this.events.push(event);
      this.events.sort((a, b) => b.event_id - a.event_id);
      if (this.events.length > this.limit) this.events.length = this.limit;
      return true;
    }

    render() {
      if (this.filter) {
        const types = Array.from(new Set(this.events.map((e) => e.event_type))).sort();
        const chosen = this.filter.value;
        const wanted = ["", ...types];
        if (chosen && !wanted.includes(chosen)) wanted.push(chosen);
        const have = Array.from(this.filter.options).map((o) => o.value);
        if (have.join("|") !== wanted.join("|")) {
          this.filter.replaceChildren(...wanted.map((t) => el("option", { value: t, text: t || "All events" })));
          this.filter.value = chosen;
        }
      }
      const chosen = this.filter ? this.filter.value : "";
      const shown = chosen ? this.events.filter((e) => e.event_type === chosen) : this.events;
      const columns = this.showBot ? 4 : 3;
      if (!shown.length) {
        this.body.replaceChildren(el("tr", { class: "empty-row" }, [el("td", { colSpan: columns, class: "muted",
          text: chosen ? "No " + chosen + " event in this log." : this.emptyText })]));
        return;
      }
      this.body.replaceChildren(...groupEvents(shown).map((g) => eventRow(g, this.showBot)));
    }
  }

  function jsonScript(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  /* The overview and the bots table: subscribe to the tenant group, refresh the summaries. */
  function startTenantPage(options) {
    const summaryUrl = options.summaryUrl;
    const refresh = summaryUrl ? makeRefresher(summaryUrl) : null;
    const table = document.getElementById("tenant-events");
    const log = table ? new EventLog(table, { showBot: true, limit: 100, filter: document.getElementById("tenant-event-filter"),
      emptyText: "No events yet. They appear here as bots start, quote and fill." }) : null;
    if (log) log.set(jsonScript("recent-events") || []);
    const counters = new Counters();
    const socket = new LiveSocket("/ws/tenant/", {
      onBatch(batch) {
        let added = false;
        for (const msg of batch) {
          if (msg.kind === "event" && log && msg.data) added = log.add(msg.data) || added;
        }
        if (added) log.render();
        if (refresh) refresh();
      },
      onResync() { if (refresh) refresh(); },
      onCounters(msg) { counters.apply(msg, applyCounters); },
    });
    if (refresh) setInterval(refresh, 5000);
    window.MM.socket = socket;
    window.MM.eventLog = log;
    return socket;
  }

  function applyCounters(bot) {
    const row = document.querySelector('#bots-table tr[data-bot-id="' + bot.id + '"]');
    if (!row) return;
    row.querySelectorAll("[data-field]").forEach((cell) => {
      const field = cell.dataset.field;
      if (field === "cycle_count" || field === "open_orders") cell.textContent = String(bot[field]);
      else if (field === "status") {
        const badge = cell.querySelector(".status");
        if (badge && badge.dataset.status !== undefined && badge.dataset.status !== bot.status) return;  // the summary refresh redraws it
        let note = cell.querySelector(".not-quoting");
        if (bot.not_quoting_text) {
          if (!note) { note = el("div", { class: "sub warn-text not-quoting" }); cell.appendChild(note); }
          note.textContent = bot.not_quoting_text;
        } else if (note) note.remove();
      }
    });
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
    LiveSocket, setStatus, fmt, dec, money, timeOf, el, wireForms, renderSummaryField, pnlClass, startTenantPage,
    EventLog, Counters, jsonScript, socket: null,
  };
})();
