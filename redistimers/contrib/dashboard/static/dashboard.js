// redistimers dashboard: local times, confirmations, and the overview's refresh.
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

  function setCell(row, name, value, text) {
    var cell = row.querySelector("td." + name);
    if (!cell) { return; }
    cell.setAttribute("data-value", value === null ? "" : String(value));
    var link = cell.querySelector("a");
    (link || cell).textContent = text;
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
        var seen = {};
        data.topics.forEach(function (t) {
          seen[t.topic] = true;
          var row = table.querySelector('tr[data-topic="' + CSS.escape(t.topic) + '"]');
          if (!row) { status.textContent = "New topics: reload the page"; return; }
          ["pending", "due", "leased", "dead"].forEach(function (name) {
            setCell(row, name, t[name], numbers.format(t[name]));
          });
          setCell(row, "lag", t.lag, t.lag === null ? "–" : span(t.lag));
          row.classList.toggle("trouble", t.dead > 0 || t.lag !== null);
        });
        var redis = document.getElementById("redis");
        if (redis) {
          redis.setAttribute("data-version", data.redis.version);
          redis.setAttribute("data-used-memory", String(data.redis.used_memory));
        }
        if (status.textContent.indexOf("New topics") !== 0) { status.textContent = ""; }
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
