// redistimers dashboard: local times, confirmations, and the overview's refresh (its
// topics and live workers, rebuilt every 5 s).
// Every value is set as text (textContent), never as markup.
(function () {
  "use strict";
  var numbers = new Intl.NumberFormat();

  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) {
        el.textContent = el.getAttribute("title") + " (" + when.toLocaleString() + " local)";
      }
    });
  }

  function confirmations() {
    document.querySelectorAll("form.action:not(.confirm)").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var question = form.getAttribute("data-confirm") || "Are you sure?";
        var when = form.querySelector("input[name=when]");
        if (when) { question = question.replace("the time given", when.value); }
        if (!window.confirm(question)) { event.preventDefault(); return; }
        var yes = document.createElement("input");
        yes.type = "hidden"; yes.name = "confirmed"; yes.value = "yes";
        form.appendChild(yes);
      });
    });
  }

  function span(seconds) {
    var s = Math.floor(Math.abs(seconds)), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
        m = Math.floor(s % 3600 / 60), r = s % 60;
    if (d) { return d + " d" + (h ? " " + h + " h" : ""); }
    if (h) { return h + " h" + (m ? " " + m + " min" : ""); }
    if (m) { return m + " min" + (r && m < 10 ? " " + r + " s" : ""); }
    return r + " s";
  }

  function cell(className, value, text) {
    var td = document.createElement("td");
    td.className = className;
    if (value !== undefined) { td.setAttribute("data-value", value === null ? "" : String(value)); }
    td.textContent = text;
    return td;
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function topicRow(t) {
    var row = document.createElement("tr");
    row.setAttribute("data-topic", t.topic);
    if (t.dead > 0 || t.lag !== null) { row.className = "trouble"; }
    var name = cell("topic");
    name.appendChild(link(t.url, t.topic));
    row.appendChild(name);
    ["pending", "due", "leased"].forEach(function (key) {
      row.appendChild(cell("num " + key, t[key], numbers.format(t[key])));
    });
    var dead = cell("num dead", t.dead, t.dead ? "" : "0");
    if (t.dead) { dead.appendChild(link(t.dead_url, numbers.format(t.dead))); }
    row.appendChild(dead);
    row.appendChild(cell("num lag", t.lag === null ? null : t.lag.toFixed(3),
                         t.lag === null ? "\u2013" : span(t.lag)));
    row.appendChild(cell("num delivered", t.delivered, numbers.format(t.delivered)));
    row.appendChild(cell("num failed", t.failed, numbers.format(t.failed)));
    return row;
  }

  function workerRow(w) {
    var row = document.createElement("tr");
    row.setAttribute("data-worker-id", w.worker_id);
    if (!w.healthy) { row.className = "trouble"; }
    row.appendChild(cell("", undefined, w.host + (w.healthy ? "" : " (unhealthy)")));
    row.appendChild(cell("num", undefined, String(w.pid)));
    row.appendChild(cell("", undefined, w.topics.join(", ")));
    row.appendChild(cell("num running", w.running, numbers.format(w.running)));
    row.appendChild(cell("num delivered", w.delivered, numbers.format(w.delivered)));
    row.appendChild(cell("num failed", w.failed, numbers.format(w.failed)));
    var seen = (Date.now() - new Date(w.last_seen).getTime()) / 1000;
    var last = document.createElement("td");
    var time = document.createElement("time");
    time.setAttribute("datetime", w.last_seen);
    time.title = new Date(w.last_seen).toLocaleString();
    time.textContent = seen < 1 ? "just now" : span(seen) + " ago";
    last.appendChild(time);
    row.appendChild(last);
    return row;
  }

  function showIf(id, shown) {
    var el = document.getElementById(id);
    if (el) { el.hidden = !shown; }
  }

  function replaceRows(table, rows) {
    var body = table.querySelector("tbody");
    while (body.firstChild) { body.removeChild(body.firstChild); }
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function refresh(table, status) {
    fetch(table.getAttribute("data-refresh"), {credentials: "same-origin",
                                               headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (response.status === 503) { throw new Error("Redis unreachable"); }
        if (response.status === 401) { throw new Error("Signed out: reload the page"); }
        if (!response.ok) { throw new Error("API unreachable"); }
        return response.json();
      }, function () { throw new Error("API unreachable"); })
      .then(function (data) {
        replaceRows(table, data.topics.map(topicRow));
        showIf("no-topics", data.topics.length === 0);
        var workers = document.querySelector("table#workers");
        if (workers) { replaceRows(workers, data.workers.map(workerRow)); }
        showIf("no-workers", data.workers.length === 0);
        var redis = document.getElementById("redis");
        if (redis) {
          redis.setAttribute("data-version", data.redis.version);
          redis.setAttribute("data-used-memory", String(data.redis.used_memory));
        }
        status.textContent = "";
      })
      .catch(function (error) { status.textContent = error.message; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    confirmations();
    var table = document.querySelector("table#topics[data-refresh]");
    var status = document.getElementById("status");
    if (table && status) {
      window.setInterval(function () { refresh(table, status); }, 5000);
    }
  });
})();
