// The overview's live updates: one server-sent event stream (/live), one
// whole snapshot each half second. Every page works without this script;
// it only saves reloading the overview.
"use strict";

(function () {
  const live = document.querySelectorAll("[data-live]");
  if (live.length === 0 || !("EventSource" in window)) {
    return;
  }
  const state = document.getElementById("live-state");
  const slot = (name) => document.querySelector(`[data-live="${name}"]`);
  const number = (n) => Number(n).toLocaleString("en-US");
  // As the server renders times: to the millisecond, in UTC.
  const when = (at) => {
    const [date, time = ""] = at.replace(/Z$/, "").split("T");
    const [seconds, fraction = ""] = time.split(".");
    return `${date} ${seconds}.${(fraction + "000").slice(0, 3)} UTC`;
  };
  const ms = (n) => (n === undefined || n === null ? "–" : `${number(n)} ms`);

  function cell(tag, text, className) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function code(text) {
    const td = cell("td");
    if (text) td.appendChild(cell("code", text));
    return td;
  }

  function show(s) {
    for (const key of ["placed", "in_flight", "confirmed", "cancelled_total", "rejected"]) {
      slot(key).textContent = number(s[key]);
    }
    slot("stuck").textContent =
      s.stuck === null ? "?" : number(s.stuck) + (s.stuck_more ? "+" : "");
    slot("placed_per_second").textContent = s.placed_per_second.toFixed(1);
    slot("finished_per_second").textContent = s.finished_per_second.toFixed(1);
    const latency = s.latency || {};
    slot("p50_ms").textContent = ms(latency.p50_ms);
    slot("p90_ms").textContent = ms(latency.p90_ms);
    slot("p99_ms").textContent = ms(latency.p99_ms);
    slot("max_ms").textContent = ms(latency.max_ms);

    const reasons = Object.entries(s.cancelled).map(([reason, count]) => {
      const row = cell("tr");
      row.append(code(reason), cell("td", number(count), "num"));
      return row;
    });
    if (reasons.length === 0) {
      const row = cell("tr");
      const td = cell("td", "None cancelled.", "muted");
      td.colSpan = 2;
      row.append(td);
      reasons.push(row);
    }
    slot("cancelled").replaceChildren(...reasons);

    slot("recent").replaceChildren(
      ...s.recent.map((order) => {
        const row = cell("tr");
        row.dataset.order = order.order_id;
        const link = cell("a", order.order_id);
        link.href = `/sagas/${encodeURIComponent(order.order_id)}`;
        const id = cell("td");
        id.append(link);
        const status = cell("td");
        status.append(cell("span", order.status, `status ${order.status.toLowerCase()}`));
        const seen = cell("td");
        const time = cell("time", when(order.at));
        time.dateTime = order.at;
        seen.append(time);
        row.append(id, status, code(order.reason), seen);
        return row;
      })
    );
  }

  const source = new EventSource("/live");
  source.addEventListener("snapshot", (event) => {
    show(JSON.parse(event.data));
    state.textContent = "Live.";
  });
  source.addEventListener("error", () => {
    state.textContent = "Live updates paused: reconnecting…";
  });
})();
