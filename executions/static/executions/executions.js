/*
 * Live execution pages: the list, one execution, the start form.
 *
 * The server renders every page completely (it works without JavaScript);
 * this script keeps it current from the websockets. The words come from the
 * server (the #execution-vocabulary blob, executions/display.py); the few
 * formats below mirror display.py, and a browser test checks that a live
 * page and a reloaded one read the same. Sections marked data-refresh are
 * re-rendered by the server and swapped in, so their text has one source.
 * Data is written with textContent only, never innerHTML: step messages and
 * titles may contain markup.
 */
(function () {
  "use strict";

  var RESYNC_MS = 15000;
  var TICK_MS = 200;
  var REFRESH_MS = 1000;
  var LIST_POLL_MS = 5000;
  var MAX_BACKOFF_MS = 15000;
  var MAX_LOG_LINES = 5000;
  var TERMINAL = ["interrupted", "succeeded", "failed", "lost"];
  var HIDEABLE = ["succeeded", "interrupted", "skipped"];
  var RESUMABLE = ["interrupted", "failed", "lost"];
  var STATUS_CLASS = /^[a-z-]+$/;
  var VOCABULARY = { states: {}, outcomes: {}, sources: {}, strategies: {}, colours: {} };

  // -- formats: the same text display.py renders ------------------------------

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  // `2025-01-31 13:00:05` in the browser's own time zone.
  function localTime(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function utcTime(iso) {
    return iso ? iso.slice(0, 19).replace("T", " ") + " UTC" : "";
  }

  function duration(seconds) {
    if (seconds < 10) return (Math.floor(Math.max(0, seconds) * 10) / 10).toFixed(1) + "s";
    seconds = Math.floor(seconds);
    if (seconds < 60) return seconds + "s";
    if (seconds < 3600) return Math.floor(seconds / 60) + "m " + pad(seconds % 60) + "s";
    return Math.floor(seconds / 3600) + "h " + pad(Math.floor((seconds % 3600) / 60)) + "m";
  }

  function elapsed(started, finished, now) {
    if (!started) return "";
    var end = finished ? Date.parse(finished) : now;
    return duration((end - Date.parse(started)) / 1000);
  }

  // Django's filesizeformat: 1024-based, one decimal, a non-breaking space.
  function fileSize(bytes) {
    var units = ["KB", "MB", "GB", "TB", "PB"];
    if (bytes < 1024) return bytes + "\u00a0" + (bytes === 1 ? "byte" : "bytes");
    var value = bytes;
    var unit = -1;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return value.toFixed(1) + "\u00a0" + units[unit];
  }

  function progressText(progress) {
    var done = progress.done;
    var total = progress.total;
    if (progress.unit === "bytes") {
      return total === null ? fileSize(done) : fileSize(done) + " / " + fileSize(total);
    }
    return total === null ? String(done) : done + " / " + total;
  }

  function fraction(step) {
    if (step.status === "succeeded") return 1;
    if (step.status === "skipped") return 0;
    var total = step.progress.total;
    if (!total || total <= 0) return 0;
    return Math.min(Math.max(step.progress.done / total, 0), 1);
  }

  function overall(steps) {
    var done = steps.filter(function (step) { return step.status === "succeeded"; }).length;
    var finished = steps.filter(function (step) {
      return HIDEABLE.indexOf(step.status) !== -1;
    }).length;
    var sum = steps.reduce(function (total, step) { return total + fraction(step); }, 0);
    // Truncated as display.py truncates (int() of the same float).
    var percent = steps.length ? Math.floor((100 * sum) / steps.length) : 0;
    return {
      finished: finished,
      percent: percent,
      text: done + " of " + steps.length + " steps done · " + percent + " %",
    };
  }

  function stateOf(kind) {
    return VOCABULARY.outcomes[kind] || kind;
  }

  function isTerminal(status) {
    return TERMINAL.indexOf(status) !== -1;
  }

  // Status only moves forward (queued, running, interrupting, then a final
  // state), so a snapshot that would move it back is older than what is
  // shown: an HTTP reply can arrive after the websocket's "finished".
  function rank(status) {
    return isTerminal(status) ? 3 : ["queued", "running", "interrupting"].indexOf(status);
  }

  function isStale(incoming, current) {
    return rank(incoming.status) < rank(current.status);
  }

  // -- DOM helpers -------------------------------------------------------------

  function field(root, name) {
    return root.querySelector('[data-field="' + name + '"]');
  }

  function setText(element, text) {
    if (element) element.textContent = text === null || text === undefined ? "" : String(text);
  }

  function setStatusClass(element, prefix, status) {
    var keep = Array.prototype.filter.call(element.classList, function (name) {
      return name.indexOf(prefix) !== 0;
    });
    element.setAttribute("class", keep.join(" "));
    if (STATUS_CLASS.test(status)) element.classList.add(prefix + status);
  }

  function setBadge(element, status) {
    if (!element) return;
    status = stateOf(status);
    element.textContent = status;
    element.title = VOCABULARY.states[status] || "";
    setStatusClass(element, "status-", status);
  }

  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (time) {
      var iso = time.getAttribute("datetime");
      time.textContent = localTime(iso);
      time.title = utcTime(iso);
    });
  }

  function setTime(element, iso) {
    if (!element) return;
    if (iso) {
      element.setAttribute("datetime", iso);
      element.textContent = localTime(iso);
      element.title = utcTime(iso);
    } else {
      element.removeAttribute("datetime");
      element.textContent = "";
    }
  }

  function setFavicon(status) {
    var link = document.getElementById("favicon");
    var colour = VOCABULARY.colours[stateOf(status)];
    if (link && colour && VOCABULARY.favicon) {
      link.href = VOCABULARY.favicon.replace("{}", colour.replace("#", "%23"));
    }
  }

  function flash(text, level) {
    var list = document.getElementById("messages");
    var item = document.createElement("li");
    item.className = "message " + (level || "info");
    item.textContent = text;
    list.appendChild(item);
    setTimeout(function () { item.remove(); }, 10000);
  }

  // Fetch this page again and swap in its data-refresh sections: the server
  // renders them, so what they say has one source. At most one request at a
  // time and one a second; `keep` runs on each new section before the swap.
  function refresher(keep) {
    var busy = false;
    var again = false;
    var last = 0;
    var timer = null;

    function run() {
      timer = null;
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      last = Date.now();
      fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html");
          fresh.querySelectorAll("[data-refresh][id]").forEach(function (section) {
            var current = document.getElementById(section.id);
            if (!current) return;
            var adopted = document.importNode(section, true);
            if (keep) keep(current, adopted);
            localizeTimes(adopted);
            current.replaceWith(adopted);
          });
        })
        .catch(function () {})
        .then(function () {
          busy = false;
          if (again) {
            again = false;
            schedule();
          }
        });
    }

    function schedule() {
      if (timer !== null) return;
      timer = setTimeout(run, Math.max(0, last + REFRESH_MS - Date.now()));
    }
    return schedule;
  }

  // -- a websocket that reconnects with backoff ------------------------------

  function liveSocket(path, onMessage) {
    var banner = document.getElementById("connection");
    var socket = null;
    var attempt = 0;
    var leaving = false;

    function showBanner(text) {
      banner.textContent = text || "";
      banner.hidden = !text;
    }

    function connect() {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      socket = new WebSocket(scheme + location.host + path);
      socket.addEventListener("open", function () {
        attempt = 0;
        showBanner("");
      });
      socket.addEventListener("message", function (event) {
        var message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        onMessage(message);
      });
      socket.addEventListener("close", function (event) {
        if (leaving) return;
        if (event.code === 4403) {
          showBanner("You do not have permission to watch this any more.");
          return;
        }
        if (event.code === 4404) {
          showBanner("This execution does not exist.");
          return;
        }
        showBanner("Disconnected — reconnecting…");
        var delay = Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, attempt));
        attempt += 1;
        setTimeout(connect, delay + Math.random() * 250);
      });
    }

    // Navigating away closes the socket: that is not a disconnect to report.
    window.addEventListener("pagehide", function () { leaving = true; });
    connect();
    return {
      send: function (message) {
        if (socket && socket.readyState === WebSocket.OPEN) {
          socket.send(JSON.stringify(message));
        }
      },
    };
  }

  // -- the start form ------------------------------------------------------------

  function startForm(form) {
    var select = form.querySelector('select[name="cmd"]');
    var strategy = form.querySelector('select[name="strategy"]');
    var strategyN = document.getElementById("strategy-n");
    var help = document.getElementById("strategy-help");
    function update() {
      form.querySelectorAll("fieldset.params").forEach(function (fieldset) {
        var selected = fieldset.dataset.cmd === select.value;
        fieldset.hidden = !selected;
        // A disabled fieldset is not submitted: only the chosen command's
        // params reach the server.
        fieldset.disabled = !selected;
      });
      strategyN.hidden = strategy.value !== "poll-next-n";
      if (help) {
        help.querySelectorAll("[data-strategy]").forEach(function (item) {
          item.classList.toggle("chosen", item.dataset.strategy === strategy.value);
        });
      }
    }
    select.addEventListener("change", update);
    strategy.addEventListener("change", update);
    update();
  }

  // -- the list page -------------------------------------------------------------

  function listPage(root) {
    var bulk = document.getElementById("bulk-form");

    // A refresh must not undo what the user is choosing.
    function keepSelection(current, fresh) {
      current.querySelectorAll('input[name="ids"]:checked').forEach(function (box) {
        var same = fresh.querySelector('input[name="ids"][value="' + box.value + '"]');
        if (same) same.checked = true;
      });
    }
    var refresh = refresher(keepSelection);

    function updateBulk() {
      if (!bulk) return;
      var chosen = bulk.querySelectorAll('input[name="ids"]:checked').length;
      bulk.querySelectorAll("[data-role^=bulk-]").forEach(function (button) {
        button.disabled = chosen === 0;
      });
    }
    if (bulk) {
      bulk.addEventListener("change", updateBulk);
      updateBulk();
    }

    var filters = document.getElementById("filters");
    if (filters) {
      filters.querySelectorAll("select").forEach(function (select) {
        select.addEventListener("change", function () { filters.requestSubmit(); });
      });
    }

    // The first snapshot says what the page already shows, unless a run in
    // it was created, started, interrupted or finished after the server
    // rendered the page: that event fell before the socket joined.
    var asOf = Date.parse(root.dataset.asOf);
    function changedSince(executions) {
      return executions.some(function (execution) {
        var interrupt = execution.interrupt || {};
        return [
          execution.created_at, execution.started_at, execution.finished_at,
          interrupt.requested_at, interrupt.delivered_at,
        ].some(function (iso) { return iso && !(Date.parse(iso) < asOf); });
      });
    }

    var connected = false;
    liveSocket("/ws/executions/", function (message) {
      if (message.type === "snapshot" && !connected) {
        connected = true;
        if (isNaN(asOf) || changedSince(message.executions || [])) refresh();
        return;
      }
      // Created, status changed, finished (also of runs started in a
      // terminal, which the server relays), or a snapshot after a
      // reconnect: the server says what this page's filters now show.
      if (message.type) refresh();
    });

    setInterval(function () {
      var now = Date.now();
      root.querySelectorAll("[data-since]").forEach(function (cell) {
        cell.textContent = elapsed(cell.dataset.since, null, now);
      });
    }, 1000);
    // The list socket carries no step progress: poll while a run is active.
    setInterval(function () {
      if (root.querySelector("[data-since]")) refresh();
    }, LIST_POLL_MS);
    new MutationObserver(updateBulk).observe(root, { childList: true, subtree: true });
  }

  // -- the detail page -------------------------------------------------------------

  function detailPage(root) {
    var state = JSON.parse(document.getElementById("execution-snapshot").textContent);
    var clockOffset = Number(root.dataset.serverNow) - Date.now();
    var steps = new Map();
    root.querySelectorAll("[data-step-id]").forEach(function (element) {
      steps.set(element.dataset.stepId, element);
    });
    var nodes = new Map();
    root.querySelectorAll("[data-node-id]").forEach(function (element) {
      nodes.set(element.dataset.nodeId, element);
    });
    var form = document.getElementById("interrupt-form");
    var resume = document.getElementById("resume-form");
    var countdown = document.getElementById("force-countdown");
    var jump = document.getElementById("jump-running");
    var announcer = document.getElementById("status-announcer");
    var stepRows = document.getElementById("step-rows");
    var hideFinished = document.getElementById("hide-finished");
    var baseTitle = document.title.replace(/^[a-z-]+ · /, "");
    var refresh = refresher(null);
    var sending = false;
    var shownStatus = state.status;

    function now() {
      return Date.now() + clockOffset;
    }

    function stopping(step) {
      return Boolean(
        state.status === "interrupting" && state.interrupt && state.interrupt.delivered_at &&
        (step.status === "running" || step.status === "stalled")
      );
    }

    function renderStep(step) {
      var element = steps.get(step.id);
      if (!element) return;
      var before = element.dataset.status;
      element.dataset.status = step.status;
      setStatusClass(element, "status-", step.status);
      setBadge(field(element, "status"), step.status);
      var bar = field(element, "bar");
      var progress = step.progress;
      if (progress.total === null && (step.status === "running" || step.status === "stalled")) {
        bar.removeAttribute("value");
      } else if (progress.total === null || progress.total <= 0) {
        bar.max = 1;
        bar.value = step.status === "succeeded" && progress.total !== null ? 1 : 0;
      } else {
        bar.max = progress.total;
        bar.value = Math.min(Math.max(progress.done, 0), progress.total);
      }
      setText(field(element, "progress"), progressText(progress));
      setText(field(element, "elapsed"), elapsed(step.started_at, step.finished_at, now()));
      setText(field(element, "message"), step.message);
      field(element, "stopping").hidden = !stopping(step);
      var error = field(element, "error");
      setText(error, step.error || "");
      error.hidden = !step.error;
      var node = nodes.get(step.id);
      if (node) {
        setStatusClass(node, "status-", step.status);
        setText(field(node, "status"), step.status);
      }
      // A step that started or ended moves the timeline: the server redraws it.
      if (before && before !== step.status) refresh();
    }

    function renderOverall() {
      var summary = overall(state.steps);
      var bar = document.getElementById("overall-bar");
      bar.value = summary.percent;
      setText(field(root, "overall"), summary.text);
      setText(field(root, "finished-count"), summary.finished);
      var running = state.steps.some(function (step) { return step.status === "running" || step.status === "stalled"; });
      jump.hidden = !running;
      setStatusClass(document.getElementById("action-bar"), "status-", state.status);
    }

    function renderCountdown() {
      var interrupt = state.interrupt;
      var pending = state.status === "interrupting" && interrupt && !interrupt.force;
      if (!pending || !state.force_after) {
        countdown.hidden = true;
        return;
      }
      var deadline = Date.parse(interrupt.requested_at) + state.force_after * 1000;
      var left = Math.min(Math.ceil((deadline - now()) / 1000), Math.ceil(state.force_after));
      countdown.hidden = false;
      countdown.textContent = left > 0 ? "forcing in " + left + " s" : "forcing now…";
    }

    function renderForm() {
      if (resume) resume.hidden = RESUMABLE.indexOf(state.status) < 0;
      if (!form) return;
      var button = form.querySelector('[data-role="interrupt"]');
      var force = form.querySelector('[data-role="force"]');
      var pending = sending || state.status === "interrupting";
      form.hidden = isTerminal(state.status);
      button.disabled = pending;
      button.textContent = pending ? "Interrupting…" : "Interrupt";
      force.hidden = !pending || Boolean(state.interrupt && state.interrupt.force);
    }

    function renderTimes() {
      setText(field(root, "elapsed"), elapsed(state.started_at, state.finished_at, now()));
      state.steps.forEach(function (step) {
        var element = steps.get(step.id);
        if (element) setText(field(element, "elapsed"), elapsed(step.started_at, step.finished_at, now()));
      });
      renderCountdown();
    }

    function renderStatus() {
      setBadge(field(root.querySelector("h1"), "status"), state.status);
      document.title = state.status + " · " + baseTitle;
      setFavicon(state.status);
      if (shownStatus !== state.status) {
        shownStatus = state.status;
        announcer.textContent = "Status: " + state.status;
      }
    }

    function render() {
      renderStatus();
      setTime(field(root, "started"), state.started_at);
      setTime(field(root, "finished"), state.finished_at);
      state.steps.forEach(renderStep);
      renderOverall();
      renderTimes();
      renderForm();
    }

    function replace(execution) {
      if (execution && execution.id === state.id && !isStale(execution, state)) {
        state = execution;
        render();
        refresh();
      }
    }

    var live = liveSocket("/ws/executions/" + state.id + "/", function (message) {
      switch (message.type) {
        case "snapshot":
        case "status":
        case "finished":
        case "interrupt":
          replace(message.execution);
          logs.catchUp();
          break;
        case "step":
          // After the end the final snapshot is the truth: a late event
          // must not move a bar back.
          if (message.execution_id === state.id && message.step && !isTerminal(state.status)) {
            state.steps = state.steps.map(function (step) {
              return step.id === message.step.id ? message.step : step;
            });
            renderStep(message.step);
            renderOverall();
          }
          break;
        case "log":
          logs.add(message.lines || []);
          break;
        case "error":
          flash("The server refused a message: " + (message.code || "error") + ".", "error");
          break;
      }
    });

    // Converge to the database even if an event was dropped on the way.
    setInterval(function () {
      if (!isTerminal(state.status)) live.send({ type: "resync" });
    }, RESYNC_MS);
    setInterval(function () {
      if (!isTerminal(state.status)) renderTimes();
    }, TICK_MS);
    // Running bars grow on the timeline as time passes.
    setInterval(function () {
      if (!isTerminal(state.status) && state.started_at) refresh();
    }, 3000);

    function interrupt(force) {
      sending = true;
      renderForm();
      // The page's own form, asking for JSON: recorded as the web page's.
      var body = new FormData(form);
      body.set("force", force ? "1" : "0");
      return fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        body: body,
      })
        .then(function (response) {
          return response.json().then(function (body) {
            if (response.status === 202) {
              replace(body);
            } else if (response.status === 409) {
              flash("Not running: this execution has finished (" + body.status + "). Nothing changed.", "info");
              live.send({ type: "resync" });
            } else {
              flash("The interrupt was refused: " + (body.message || body.error || response.status), "error");
            }
          });
        })
        .catch(function () {
          flash("Could not send the interrupt: the server did not answer.", "error");
        })
        .then(function () {
          sending = false;
          renderForm();
        });
    }

    if (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var submitter = event.submitter;
        interrupt(Boolean(submitter && submitter.value === "1"));
      });
    }
    hideFinished.addEventListener("change", function () {
      stepRows.classList.toggle("hide-finished", hideFinished.checked);
    });
    jump.addEventListener("click", function (event) {
      var running = root.querySelector(".step.status-running, .step.status-stalled");
      if (!running) return;
      event.preventDefault();
      running.scrollIntoView({ block: "center" });
      running.classList.add("flash");
      setTimeout(function () { running.classList.remove("flash"); }, 1200);
    });

    var logs = logPanel(root, state.id);
    render();
  }

  // The step logs: the API's lines, then the socket's `log` events. Quietly
  // absent where the server has no logs endpoint (404).
  function logPanel(root, executionId) {
    var panel = document.getElementById("logs");
    var list = document.getElementById("log-lines");
    var stepFilter = document.getElementById("log-step");
    var follow = document.getElementById("log-follow");
    var dropped = document.getElementById("log-dropped");
    var after = 0;
    var absent = false;
    var seen = new Set();
    var ready = false;
    var early = [];

    function visible(line) {
      return !stepFilter.value || line.step === stepFilter.value;
    }

    function add(lines) {
      if (!ready) {
        early = early.concat(lines);
        return;
      }
      lines.forEach(function (line) {
        if (seen.has(line.seq)) return;
        seen.add(line.seq);
        var item = document.createElement("li");
        item.className = "log-line level-" + String(line.level || "info").toLowerCase().replace(/[^a-z]/g, "");
        item.dataset.step = line.step || "";
        item.hidden = !visible(line);
        var at = document.createElement("time");
        at.setAttribute("datetime", line.at);
        at.textContent = localTime(line.at).slice(11);
        at.title = utcTime(line.at);
        var step = document.createElement("code");
        step.textContent = line.step || "";
        var text = document.createElement("span");
        text.textContent = line.text;
        item.append(at, " ", step, " ", text);
        list.appendChild(item);
      });
      while (list.childElementCount > MAX_LOG_LINES) list.firstElementChild.remove();
      if (seen.size) panel.hidden = false;
      if (follow.checked) list.scrollTop = list.scrollHeight;
    }

    stepFilter.addEventListener("change", function () {
      list.querySelectorAll(".log-line").forEach(function (item) {
        item.hidden = Boolean(stepFilter.value) && item.dataset.step !== stepFilter.value;
      });
    });

    // A page of lines from the API after the last one shown: on load, and
    // whenever the socket (re)connects or the run ends, so lines sent
    // before this page listened are not missed. A 404 (no logs endpoint)
    // leaves the panel hidden.
    var fetching = false;
    function catchUp() {
      if (fetching || absent) return;
      fetching = true;
      var url = root.dataset.logsUrl + "?after=" + encodeURIComponent(after);
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 404) absent = true;
          return response.ok ? response.json() : null;
        })
        .then(function (body) {
          if (!body || !Array.isArray(body.lines)) return;
          ready = true;
          if (body.dropped) {
            dropped.hidden = false;
            dropped.textContent = body.dropped + " older lines were dropped (the log keeps the newest).";
          }
          add(body.lines.concat(early));
          early = [];
          if (body.next !== undefined && body.next !== null) after = body.next;
          var more = body.lines.length > 0 && body.next !== undefined;
          fetching = false;
          if (more) catchUp();
        })
        .catch(function () {})
        .then(function () { fetching = false; });
    }
    catchUp();
    return { add: add, catchUp: catchUp };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var vocabulary = document.getElementById("execution-vocabulary");
    if (vocabulary) VOCABULARY = JSON.parse(vocabulary.textContent);
    localizeTimes(document);
    var form = document.getElementById("start-form");
    if (form) startForm(form);
    var list = document.getElementById("executions");
    if (list) listPage(list);
    var execution = document.getElementById("execution");
    if (execution) detailPage(execution);
  });
})();
