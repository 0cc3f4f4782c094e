/* mmplatform dashboard: the bot page.
 *
 * State comes from state.json (on load, after a reconnect, after a status change); live pushes on
 * ws/bots/<id>/ update orders, fills, events, status and snapshots in between, one render per
 * animation frame. The ladder polls book.json (the engine's cached book) once a second.
 */
(function () {
  "use strict";
  const { LiveSocket, fmt, dec, timeOf, el, renderSummaryField, EventLog, Counters } = window.MM;
  const LWC = window.LightweightCharts;

  const COLORS = { mid: "#56657a", bid: "#1c8a52", ask: "#c53a3a", buyFill: "#0d6efd", sellFill: "#e0a100",
                   pnl: "#1f5fbf", ratio: "#1f5fbf", target: "#6b7585" };
  const OPEN = new Set(["pending", "open", "partially_filled", "cancel_pending"]);

  function startBotPage(cfg) {
    const page = {
      cfg, pair: null, state: null, orders: new Map(), fills: [], riskEvents: [],
      charts: null, dirty: new Set(), loading: false, reloadAgain: false, notQuoting: "",
      log: new EventLog(document.getElementById("events"), { limit: 200, filter: document.getElementById("event-filter"),
        emptyText: "No events yet. Start the bot to see its lifecycle here." }),
      counters: new Counters(), pushedAt: new Map(),
    };
    const tabs = document.querySelectorAll("#pair-tabs .tab");
    page.pair = tabs.length ? tabs[0].dataset.pair : null;
    tabs.forEach((tab) => tab.addEventListener("click", () => {
      tabs.forEach((t) => t.classList.toggle("active", t === tab));
      page.pair = tab.dataset.pair;
      renderCharts(page, true);
      pollBook(page);
    }));

    page.charts = makeCharts();
    page.socket = new LiveSocket("/ws/bots/" + cfg.botId + "/", {
      onBatch: (batch) => applyBatch(page, batch),
      onResync: () => loadState(page),
      onFinal: () => {},
      onCounters: (msg) => page.counters.apply(msg, (bot) => applyCounters(page, bot)),
    });
    window.MM.socket = page.socket;
    window.MM.botPage = page;
    loadState(page);
    setInterval(() => { if (!document.hidden) pollBook(page); }, 1000);
    setInterval(() => { if (!document.hidden) loadState(page); }, 15000);
    pollBook(page);
  }

  // --- state -------------------------------------------------------------------------------------

  async function loadState(page) {
    if (page.loading) { page.reloadAgain = true; return; }
    page.loading = true;
    try {
      const response = await fetch(page.cfg.stateUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.status === 404) { notice("This bot no longer exists in your firm."); return; }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const state = await response.json();
      page.state = state;
      page.orders = new Map(state.open_orders.map((o) => [o.client_order_id, o]));
      page.fills = state.fills;
      page.log.set(state.events);
      page.riskEvents = state.risk_events;
      if (page.socket.lastEventId === null || state.last_event_id > page.socket.lastEventId) {
        page.socket.lastEventId = state.last_event_id;
      }
      notice(null);
      renderAll(page);
    } catch (err) {
      notice("Could not load the bot's state (" + err.message + "). Retrying…");
      setTimeout(() => loadState(page), 5000);
    } finally {
      page.loading = false;
      if (page.reloadAgain) { page.reloadAgain = false; setTimeout(() => loadState(page), 500); }
    }
  }

  function notice(text) {
    let node = document.getElementById("state-notice");
    if (!text) { if (node) node.remove(); return; }
    if (!node) {
      node = el("div", { id: "state-notice", class: "banner banner-warn" });
      document.getElementById("banners").prepend(node);
    }
    node.textContent = text;
  }

  function applyBatch(page, batch) {
    let needState = false;
    for (const msg of batch) {
      const data = msg.data || {};
      if (msg.kind === "event") {
        if (!page.log.add(data)) continue;
        page.dirty.add("events");
        if (["KillSwitchEngaged", "MarketMakingStarted", "MarketMakingStopped", "BotError", "RiskEventHandled",
             "Reconciled"].includes(data.event_type)) needState = true;
      } else if (msg.kind === "orders") {
        for (const order of data.placed || []) {
          page.pushedAt.set(order.client_order_id, Date.now());
          if (OPEN.has(order.status)) page.orders.set(order.client_order_id, order);
          if (order.level === 0 && page.charts && order.pair === page.pair) pushQuotePoint(page, order);
        }
        for (const id of data.cancelled || []) { page.orders.delete(id); page.pushedAt.set(id, Date.now()); }
        for (const order of data.updated || []) {
          page.pushedAt.set(order.client_order_id, Date.now());
          if (OPEN.has(order.status)) page.orders.set(order.client_order_id, order);
          else page.orders.delete(order.client_order_id);
        }
        page.dirty.add("orders");
      } else if (msg.kind === "fills") {
        for (const fill of data.fills || []) {
          page.fills.unshift(fill);
          if (page.charts && fill.pair === page.pair) pushFillPoint(page, fill);
        }
        page.fills.length = Math.min(page.fills.length, 200);
        page.dirty.add("fills");
        needState = true;
      } else if (msg.kind === "snapshot") {
        if (page.charts && data.taken_at) {
          const t = secs(data.taken_at);
          const net = Number(data.realised_pnl_quote) + Number(data.unrealised_pnl_quote) - Number(data.fees_paid_quote);
          safeUpdate(page.charts.pnl, { time: t, value: net });
          fit(page);
          chartNote("pnl-chart", false, "");
        }
        needState = true;
      } else if (msg.kind === "status") {
        setStatus(data.status, data.reason);
        needState = true;
      } else if (msg.kind === "quoting") {
        const status = document.getElementById("bot-status");
        const running = status && status.dataset.status === "running";
        const reasons = data.reasons || {};
        setNotQuoting(running ? notQuotingText(reasons) : "");
      }
    }
    if (page.dirty.has("events")) page.log.render();
    if (page.dirty.has("orders")) { renderOrders(page); if (page.lastBook) renderBook(page, page.lastBook); }
    if (page.dirty.has("fills")) renderFills(page);
    page.dirty.clear();
    if (needState) scheduleState(page);
  }

  function scheduleState(page) {
    clearTimeout(page.stateTimer);
    page.stateTimer = setTimeout(() => loadState(page), 300);
  }

  // --- rendering ---------------------------------------------------------------------------------

  function renderAll(page) {
    const bot = page.state.bot;
    if (bot) {
      setStatus(bot.status, bot.status_reason);
      document.querySelectorAll("#bot-cards [data-field]").forEach((node) => renderSummaryField(node, node.dataset.field, bot));
      // a state read before the last counters frame answers after it: the cycle count never goes back (the
      // socket sends a count once, so a stale state's would stay until the next re-read, 15 s later)
      const live = page.counters.bots.get(bot.id);
      if (live && live.cycle_count > bot.cycle_count) {
        document.querySelectorAll('#bot-cards [data-field="cycle_count"]').forEach((n) => { n.textContent = String(live.cycle_count); });
      }
      renderBanners(bot);
    }
    renderControls(page.state.actions || []);
    renderOrders(page);
    renderFills(page);
    renderHedging(page);
    page.log.render();
    renderRisk(page);
    renderCharts(page, true);
  }

  function setStatus(status, reason) {
    const badge = document.getElementById("bot-status");
    if (!badge || !status) return;
    badge.className = "status status-" + status;
    badge.dataset.status = status;
    badge.textContent = status.charAt(0).toUpperCase() + status.slice(1);
    const reasonNode = document.getElementById("bot-status-reason");
    if (reasonNode) reasonNode.textContent = reason || "";
  }

  function renderBanners(bot) {
    const banners = document.getElementById("banners");
    const keep = document.getElementById("state-notice");
    banners.replaceChildren(...(keep ? [keep] : []));
    if (bot.status === "error") {
      banners.appendChild(el("div", { class: "banner banner-danger", id: "error-banner" }, [
        el("strong", { text: "The bot stopped on an error. " }), bot.last_error || "No error text was recorded.",
        el("div", { class: "sub", text: "Check the event log below; fix the cause (exchange account, credentials, configuration in the admin), then start it again." }),
      ]));
    }
    if (bot.kill_switch_engaged || bot.risk_state === "tenant kill switch engaged") {
      banners.appendChild(el("div", { class: "banner banner-danger", id: "kill-banner",
        text: "The kill switch is engaged. Release it before starting the bot again." }));
    }
    setNotQuoting(bot.status === "running" ? bot.not_quoting_text || "" : "");
    if (bot.cycle_is_stale) {
      banners.appendChild(el("div", { class: "banner banner-warn", id: "stale-banner",
        text: "No monitoring cycle for " + Math.round(bot.last_cycle_age_secs) + " s although the bot is running. Is a Celery worker running?" }));
    }
  }

  /* "Running — not quoting: …" (bots.wire.not_quoting_text): a banner at the top of the page, from the
   * state, the "quoting" pushes and the live counters; removed as soon as the reason is gone. */
  function notQuotingText(reasons) {
    const pairs = Object.keys(reasons).sort();
    return pairs.length ? "Running — not quoting: " + pairs.map((p) => reasons[p]).join("; ") : "";
  }

  function setNotQuoting(text) {
    let node = document.getElementById("not-quoting-banner");
    if (!text) { if (node) node.remove(); return; }
    if (!node) {
      node = el("div", { class: "banner banner-warn", id: "not-quoting-banner" });
      const banners = document.getElementById("banners");
      const notice = document.getElementById("state-notice");
      if (notice) notice.after(node); else banners.prepend(node);
    }
    node.textContent = text;
  }

  function applyCounters(page, bot) {
    document.querySelectorAll('#bot-cards [data-field="cycle_count"]').forEach((n) => { n.textContent = String(bot.cycle_count); });
    const badge = document.getElementById("bot-status");
    if (badge && badge.dataset.status !== bot.status) scheduleState(page);  // a status change: the whole page follows
    setNotQuoting(bot.status === "running" ? bot.not_quoting_text : "");
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function renderControls(actions) {
    const box = document.getElementById("bot-controls");
    if (!box) return;  // viewers have no controls at all
    const confirms = { kill: "Engage the kill switch? Every order is cancelled now and the bot stops.",
                       stop: "Stop the bot and cancel its orders?",
                       hedge_accept: "Accept the unhedged exposure? It stays in the bot's positions and its maker accounts quote again." };
    box.replaceChildren(...actions.map((a) => {
      const form = el("form", { method: "post", action: a.url, class: "inline" }, [
        el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: csrfToken() }),
        el("button", { type: "submit", "data-action": a.name, text: a.label,
          class: "btn" + (a.name === "kill" ? " btn-danger" : (a.name === "start" || a.name === "resume") ? " btn-primary" : "") }),
      ]);
      if (confirms[a.name]) form.dataset.confirm = confirms[a.name];
      return form;
    }));
  }

  function fillBody(tableId, rows, columns, emptyText) {
    const body = document.querySelector("#" + tableId + " tbody");
    if (!body) return;
    if (!rows.length) {
      body.replaceChildren(el("tr", { class: "empty-row" }, [el("td", { colSpan: columns, class: "muted", text: emptyText })]));
      return;
    }
    body.replaceChildren(...rows);
  }

  function sideCell(side) { return el("td", { class: "side-" + side, text: side }); }

  function renderOrders(page) {
    const orders = Array.from(page.orders.values()).sort((a, b) =>
      a.pair.localeCompare(b.pair) || a.side.localeCompare(b.side) || Number(b.price) - Number(a.price));
    document.getElementById("open-orders-count").textContent = String(orders.length);
    fillBody("open-orders", orders.map((o) => el("tr", { "data-order": o.client_order_id }, [
      el("td", { text: o.pair }), el("td", { class: "venue", text: venueOf(page, o) }), sideCell(o.side),
      el("td", { class: "num", text: String(o.level) }),
      el("td", { class: "num", text: dec(o.price) }), el("td", { class: "num", text: dec(o.amount) }),
      el("td", { class: "num", text: dec(o.filled) }), el("td", { text: o.status }),
    ])), 8, "No open orders. A running bot places its quotes within one monitoring cycle.");
  }

  /* The venue of an order or a fill row: its account as the state names it (bots.wire.venues_json). */
  function venueOf(page, row) {
    const venues = (page.state && page.state.venues) || {};
    return venues[String(row.exchange_account_id)] || "—";
  }

  function renderFills(page) {
    fillBody("fills", page.fills.slice(0, 100).map((f) => el("tr", { "data-trade": f.trade_id, class: f.is_hedge ? "hedge-fill" : "" }, [
      el("td", { class: "time", text: timeOf(f.executed_at) }), el("td", { text: f.pair }),
      el("td", { class: "venue", text: venueOf(page, f) }), sideCell(f.side),
      el("td", { class: "kind kind-" + (f.kind || ""), text: f.kind || "" }),
      el("td", { class: "num", text: dec(f.price) }), el("td", { class: "num", text: dec(f.amount) }),
      el("td", { class: "num", text: dec(f.fee || "0") + " " + (f.fee_currency || "") }),
    ])), 8, "No fills yet.");
  }

  /* Cross-venue hedging (bots.wire.hedging_json): the setting, the status, what is owed and the open hedges. */
  function renderHedging(page) {
    const panel = document.getElementById("hedging-panel");
    const h = page.state && page.state.hedging;
    if (!panel) return;
    panel.hidden = !h || (!h.enabled && !h.open.length && !h.unhedged.length);
    if (panel.hidden) return;
    document.getElementById("hedging-setting").textContent = h.enabled
      ? "on " + h.hedge_account + ", at most " + h.max_slippage_bps + " bps from the fill's price" : "off";
    const owed = h.unhedged.map((u) => u.pair + ": " + u.text).join(" · ");
    const status = document.getElementById("hedging-status");
    status.className = "hedging-status hedge-" + h.status;
    status.textContent = h.status_text + (owed ? " — unhedged exposure " + owed : "");
    fillBody("hedges", h.open.map((r) => el("tr", { "data-hedge": String(r.id), class: "hedge-" + r.status }, [
      el("td", { class: "time", text: timeOf(r.created_at) }), el("td", { text: r.pair }),
      el("td", { class: "venue", text: r.maker }), el("td", { text: r.status_label }),
      el("td", { class: "num", text: r.unhedged_text }), el("td", { class: "num", text: r.limit_price ? dec(r.limit_price) : "—" }),
      el("td", { class: "num", text: String(r.attempts) }), el("td", { text: r.reason || "" }),
    ])), 8, "No hedge owed.");
  }

  function renderRisk(page) {
    fillBody("risk-events", page.riskEvents.map((r) => el("tr", {}, [
      el("td", { class: "time", text: timeOf(r.created_at) }), el("td", { text: r.event_type }),
      el("td", { text: r.trading_pair || "—" }), el("td", { text: r.message }), el("td", { text: r.action_taken || "" }),
    ])), 5, "No risk events: every limit has held.");
  }

  // --- order book ladder ---------------------------------------------------------------------------

  async function pollBook(page) {
    if (page.bookInFlight || !page.pair) return;
    page.bookInFlight = true;
    try {
      const response = await fetch(page.cfg.bookUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      reconcileOrders(page, data);
      renderBook(page, data);
    } catch (err) {
      document.getElementById("book-age").textContent = "book unavailable (" + err.message + ")";
    } finally {
      page.bookInFlight = false;
    }
  }

  /* The open orders as the database has them now (book.json, every second) correct the ones kept from
   * the state and the pushes: a push that raced a state reload can leave a cancelled order behind.
   * An order a push brought in the last PUSH_GRACE_MS is kept (the poll may have been read before it). */
  const PUSH_GRACE_MS = 10000;

  function reconcileOrders(page, data) {
    if (!page.state) return;  // the first state load draws the tables
    const fresh = new Map();
    for (const book of Object.values(data.books || {})) for (const o of book.own || []) fresh.set(o.client_order_id, o);
    let changed = false;
    const now = Date.now();
    for (const [id, order] of page.orders) {
      if (!fresh.has(id) && now - (page.pushedAt.get(id) || 0) > PUSH_GRACE_MS) { page.orders.delete(id); changed = true; }
      else if (fresh.has(id) && (fresh.get(id).status !== order.status || fresh.get(id).filled !== order.filled)) {
        page.orders.set(id, fresh.get(id)); changed = true;
      }
    }
    for (const [id, order] of fresh) {  // not re-added when a push just closed it (this read may predate that)
      if (!page.orders.has(id) && now - (page.pushedAt.get(id) || 0) > PUSH_GRACE_MS) { page.orders.set(id, order); changed = true; }
    }
    for (const [id, at] of page.pushedAt) if (now - at > PUSH_GRACE_MS) page.pushedAt.delete(id);
    if (changed) renderOrders(page);
  }

  /* The ladder: the cached book's levels (bots.selectors.ladder) with the bot's own orders marked from
   * the same orders the open-orders table shows (resting ones: open or partially filled), matched by
   * exact price, so the ladder and the table never disagree. A level our order rests on that the
   * cached book does not have yet (read before the order was placed) shows our size as its size. */
  const ON_BOOK = new Set(["open", "partially_filled"]);

  /* A pair quoted on several venues has a ladder per venue (book.venues): one tab each above the ladder. */
  function venueTabs(page, pairBook) {
    const box = document.getElementById("venue-tabs");
    const names = pairBook && pairBook.venues ? Object.keys(pairBook.venues) : [];
    if (box) box.hidden = names.length < 2;
    if (!names.length) return pairBook;
    if (!names.includes(page.venue)) page.venue = names[0];
    if (box && box.dataset.names !== names.join("|")) {
      box.dataset.names = names.join("|");
      box.replaceChildren(...names.map((name) => {
        const tab = el("button", { type: "button", role: "tab", class: "tab", "data-venue": name,
                                   text: pairBook.venues[name].venue || name });
        tab.addEventListener("click", () => { page.venue = name; if (page.lastBook) renderBook(page, page.lastBook); });
        return tab;
      }));
    }
    if (box) box.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.venue === page.venue));
    return pairBook.venues[page.venue];
  }

  function renderBook(page, data) {
    const book = venueTabs(page, data.books[page.pair]);
    const problem = document.getElementById("book-problem");
    const body = document.querySelector("#ladder tbody");
    const age = document.getElementById("book-age");
    if (!book) return;
    page.lastBook = data;
    age.textContent = book.age_secs == null ? "no data" : "as of " + book.age_secs.toFixed(1) + " s ago";
    problem.hidden = !book.problem;
    problem.className = "state-note problem";
    problem.textContent = book.problem || "";
    const own = new Map();  // "side:price" -> [remaining, count]
    for (const o of page.orders.values()) {
      if (o.pair !== page.pair || !ON_BOOK.has(o.status)) continue;
      if (book.exchange_account_id != null && String(o.exchange_account_id) !== String(book.exchange_account_id)) continue;
      const key = o.side + ":" + dec(o.price);
      const entry = own.get(key) || [0, 0];
      own.set(key, [entry[0] + Number(o.amount) - Number(o.filled || 0), entry[1] + 1]);
    }
    const ladder = book.ladder || { bids: [], asks: [] };
    const side = (name, levels, bestFirst) => {
      const rows = new Map();
      for (const level of levels) {
        if (level.in_book === false) continue;  // only the server's own order made this level
        rows.set(dec(level.price), { price: dec(level.price), size: Number(level.size) });
      }
      for (const [key, [remaining, count]] of own) {
        const [s, price] = key.split(":");
        if (s !== name) continue;
        const row = rows.get(price) || { price, size: 0 };
        row.size = Math.max(row.size, remaining);
        row.own = remaining;
        row.count = count;
        rows.set(price, row);
      }
      return Array.from(rows.values()).sort((a, b) => bestFirst ? Number(b.price) - Number(a.price)
                                                                : Number(a.price) - Number(b.price));
    };
    const bids = side("buy", ladder.bids, true), asks = side("sell", ladder.asks, false);
    if (!asks.length && !bids.length) {
      body.replaceChildren(el("tr", {}, [el("td", { colSpan: 5, class: "muted", text: book.problem || "The book is empty." })]));
      return;
    }
    const row = (name, level) => {
      const mine = level.own !== undefined;
      const amount = mine ? dec(Number(level.own.toFixed(12))) : "";
      const ownCell = el("td", { class: "own-mark", text: mine ? (name === "sell" ? "◆ " + amount : amount + " ◆") : "" });
      if (mine && level.count > 1) ownCell.title = level.count + " orders";
      const price = el("td", { class: "price", text: level.price });
      const size = el("td", { class: "size", text: dec(Number(level.size.toFixed(12))) });
      const cells = name === "sell" ? [el("td"), el("td"), price, size, ownCell] : [ownCell, size, price, el("td"), el("td")];
      return el("tr", { class: (name === "sell" ? "ask" : "bid") + (mine ? " own" : ""), "data-side": name,
                        "data-price": level.price }, cells);
    };
    const rows = asks.slice().reverse().map((level) => row("sell", level));
    if (ladder.mid != null) {
      rows.push(el("tr", { class: "spread" }, [el("td", { colSpan: 5,
        text: "mid " + dec(ladder.mid, 2, true) + " · spread " + fmt(ladder.spread_bps, 1) + " bps" })]));
      if (page.charts && book.fetched_at) safeUpdate(page.charts.mid, { time: Math.floor(book.fetched_at), value: Number(ladder.mid) });
    }
    rows.push(...bids.map((level) => row("buy", level)));
    body.replaceChildren(...rows);
  }

  // --- charts --------------------------------------------------------------------------------------

  function secs(value) {
    if (typeof value === "number") return Math.floor(value);
    return Math.floor(new Date(value).getTime() / 1000);
  }

  function makeCharts() {
    const containers = ["price-chart", "pnl-chart", "inventory-chart"].map((id) => document.getElementById(id));
    if (!LWC) {
      containers.forEach((c) => { c.replaceChildren(el("div", { class: "state-note problem", text: "The chart library did not load; tables below are still live." })); });
      return null;
    }
    const base = { autoSize: true, layout: { background: { color: "#ffffff" }, textColor: "#44505f", fontSize: 11 },
      grid: { vertLines: { color: "#f0f2f5" }, horzLines: { color: "#f0f2f5" } },
      // a few points spread over the whole width (fitContent below), labels never cut at the right edge
      timeScale: { timeVisible: true, secondsVisible: true, rightOffset: 0, minBarSpacing: 0.05, borderColor: "#e1e5eb",
                   tickMarkFormatter: (time, type) => clock(time, type === 4).replace(" UTC", "") },
      localization: { timeFormatter: (time) => clock(time, true) },
      rightPriceScale: { borderColor: "#e1e5eb", scaleMargins: { top: 0.15, bottom: 0.15 } },
      handleScroll: true, handleScale: true };
    containers.forEach((c) => c.replaceChildren());
    const price = LWC.createChart(containers[0], base);
    const pnlChart = LWC.createChart(containers[1], base);
    const invChart = LWC.createChart(containers[2], base);
    [price, pnlChart, invChart].forEach((chart, i) => {  // the user scrolled or zoomed: stop re-fitting (double-click resumes)
      const mark = () => { chart.__userMoved = true; };
      containers[i].addEventListener("wheel", mark, { passive: true });
      containers[i].addEventListener("mousedown", mark);
      containers[i].addEventListener("dblclick", () => { chart.__userMoved = false; chart.timeScale().fitContent(); });
    });
    const line = (chart, color, extra) => chart.addSeries(LWC.LineSeries, Object.assign(
      { color, lineWidth: 2, priceLineVisible: false, lastValueVisible: true }, extra || {}));
    return {
      price, pnlChart, invChart,
      mid: line(price, COLORS.mid, { lineWidth: 1 }),
      bid: line(price, COLORS.bid, { lineType: 1 }),
      ask: line(price, COLORS.ask, { lineType: 1 }),
      fills: line(price, COLORS.sellFill, { lineVisible: false, pointMarkersVisible: true, pointMarkersRadius: 4, lastValueVisible: false }),
      pnl: line(pnlChart, COLORS.pnl),
      ratio: line(invChart, COLORS.ratio),
      target: line(invChart, COLORS.target, { lineStyle: 2, lineWidth: 1 }),
    };
  }

  /* Axis labels in UTC: HH:MM (HH:MM:SS in the crosshair). */
  function clock(time, seconds) {
    const iso = new Date(time * 1000).toISOString();
    return iso.substring(11, seconds ? 19 : 16) + (seconds ? " UTC" : "");
  }

  /* Show every point: called after each full redraw, and after a live point while the user has not
   * scrolled or zoomed the chart. */
  function fit(page) {
    const c = page.charts;
    if (!c) return;
    const charts = [[c.price, [c.mid, c.bid, c.ask, c.fills]], [c.pnlChart, [c.pnl]], [c.invChart, [c.ratio, c.target]]];
    for (const [chart, series] of charts) {
      if (chart.__userMoved) continue;
      const times = new Set();
      for (const s of series) for (const point of s.data()) times.add(point.time);
      if (!times.size) continue;
      // logical indexes run over the union of the series' times: show them all, with a margin so no
      // point or axis label sits on an edge
      const pad = Math.max(0.5, times.size * 0.03);
      chart.timeScale().setVisibleLogicalRange({ from: -pad, to: times.size - 1 + pad });
    }
  }

  /* Lightweight Charts wants strictly ascending times: keep the last value of each second. */
  function series(points, valueOf, extra) {
    const bySecond = new Map();
    for (const p of points) bySecond.set(Math.floor(p[0]), Object.assign({ time: Math.floor(p[0]), value: valueOf(p) }, extra ? extra(p) : {}));
    return Array.from(bySecond.values()).sort((a, b) => a.time - b.time);
  }

  function safeUpdate(s, point) {
    try { s.update(point); } catch (err) { /* an older point than the last one: skipped */ }
  }

  function renderCharts(page, full) {
    const c = page.charts;
    if (!c || !page.state || !full) return;
    const charts = page.state.charts;
    const p = charts.price[page.pair] || { mid: [], bid: [], ask: [], fills: [] };
    c.mid.setData(series(p.mid, (x) => x[1]));
    c.bid.setData(series(p.bid, (x) => x[1]));
    c.ask.setData(series(p.ask, (x) => x[1]));
    c.fills.setData(series(p.fills, (x) => x[1], (x) => ({ color: x[2] === "buy" ? COLORS.buyFill : COLORS.sellFill })));
    c.pnl.setData(series(charts.pnl, (x) => x[1]));
    const inv = charts.inventory[page.pair] || [];
    c.ratio.setData(series(inv, (x) => x[1]));
    c.target.setData(series(inv, (x) => x[2]));
    fit(page);
    chartNote("price-chart", !p.mid.length && !p.bid.length, "No prices yet: the chart fills in while the bot runs.");
    chartNote("pnl-chart", !charts.pnl.length, "No performance snapshot yet (one per metrics interval while running).");
    chartNote("inventory-chart", !inv.length, "No inventory snapshot yet.");
  }

  function chartNote(id, show, text) {
    const container = document.getElementById(id);
    let note = container.querySelector(".chart-note");
    if (!show) { if (note) note.remove(); return; }
    if (!note) {
      note = el("div", { class: "state-note chart-note" });
      note.style.cssText = "position:absolute;top:8px;left:8px;z-index:3;background:#fff";
      container.appendChild(note);
    }
    note.textContent = text;
  }

  function pushQuotePoint(page, order) {
    safeUpdate(order.side === "buy" ? page.charts.bid : page.charts.ask, { time: Math.floor(Date.now() / 1000), value: Number(order.price) });
  }

  function pushFillPoint(page, fill) {
    safeUpdate(page.charts.fills, { time: secs(fill.executed_at), value: Number(fill.price),
      color: fill.side === "buy" ? COLORS.buyFill : COLORS.sellFill });
  }

  window.MM.startBotPage = startBotPage;
})();
