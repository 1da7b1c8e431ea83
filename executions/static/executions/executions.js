/*
 * Live execution pages: the list and one execution.
 *
 * The server renders every page completely (it works without JavaScript);
 * this script keeps it current from the websockets and submits the Interrupt
 * form in place. Data is written with textContent only, never innerHTML:
 * step messages and titles may contain markup.
 */
(function () {
  "use strict";

  var RESYNC_MS = 15000;
  var TICK_MS = 200;
  var MAX_BACKOFF_MS = 15000;
  var TERMINAL = ["interrupted", "succeeded", "failed", "lost"];
  var STATUS_CLASS = /^[a-z-]+$/;

  // -- formatting: the same text the server renders (see views.py) ----------

  function timestamp(iso) {
    return iso ? iso.slice(0, 19).replace("T", " ") : "";
  }

  function duration(seconds) {
    if (seconds < 10) return (Math.floor(Math.max(0, seconds) * 10) / 10).toFixed(1) + "s";
    seconds = Math.floor(seconds);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
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
    return total === null ? done + " steps" : done + " / " + total + " steps";
  }

  var RESUMABLE = ["interrupted", "failed", "lost"];

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
    element.className = keep.join(" ");
    if (STATUS_CLASS.test(status)) element.classList.add(prefix + status);
  }

  function setBadge(element, status) {
    if (!element) return;
    element.textContent = status;
    setStatusClass(element, "status-", status);
  }

  function flash(text, level) {
    var list = document.getElementById("messages");
    var item = document.createElement("li");
    item.className = "message " + (level || "info");
    item.textContent = text;
    list.appendChild(item);
    setTimeout(function () { item.remove(); }, 10000);
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

  // -- the list page -------------------------------------------------------------

  function startForm(form) {
    var select = form.querySelector('select[name="cmd"]');
    var strategy = form.querySelector('select[name="strategy"]');
    var strategyN = document.getElementById("strategy-n");
    function update() {
      form.querySelectorAll("fieldset.params").forEach(function (fieldset) {
        var selected = fieldset.dataset.cmd === select.value;
        fieldset.hidden = !selected;
        // A disabled fieldset is not submitted: only the chosen command's
        // params reach the server.
        fieldset.disabled = !selected;
      });
      strategyN.hidden = strategy.value !== "poll-next-n";
    }
    select.addEventListener("change", update);
    strategy.addEventListener("change", update);
    update();
  }

  function listPage(table) {
    var body = table.tBodies[0];
    var template = document.getElementById("execution-row");
    var empty = document.getElementById("no-executions");
    var rows = new Map();
    body.querySelectorAll("tr[data-execution-id]").forEach(function (row) {
      rows.set(row.dataset.executionId, row);
    });

    function fill(row, execution) {
      row.dataset.executionId = execution.id;
      row.dataset.createdAt = execution.created_at;
      setText(field(row, "cmd"), execution.cmd);
      setText(field(row, "title"), execution.title);
      setText(field(row, "profile"), execution.profile || "");
      setBadge(field(row, "status"), execution.status);
      setText(field(row, "created"), timestamp(execution.created_at));
      setText(field(row, "started"), timestamp(execution.started_at));
      setText(field(row, "finished"), timestamp(execution.finished_at));
      setText(field(row, "by"), execution.created_by || "—");
      setText(field(row, "from"), SOURCES[execution.created_from] || execution.created_from);
      field(row, "title").href = execution.url;
      field(row, "link").href = execution.url;
    }

    function upsert(execution) {
      var row = rows.get(execution.id);
      if (row && isStale(execution, { status: field(row, "status").textContent })) return;
      if (!row) {
        row = template.content.firstElementChild.cloneNode(true);
        rows.set(execution.id, row);
        // Newest first: before the first row created earlier than this one.
        var before = Array.prototype.find.call(body.rows, function (other) {
          return other.dataset.createdAt < execution.created_at;
        });
        body.insertBefore(row, before || null);
      }
      fill(row, execution);
      empty.hidden = true;
    }

    liveSocket("/ws/executions/", function (message) {
      if (message.type === "snapshot" && Array.isArray(message.executions)) {
        message.executions.forEach(upsert);
      } else if (message.execution && message.execution.id) {
        upsert(message.execution);
      }
    });
  }

  // -- the detail page -------------------------------------------------------------

  function detailPage(root) {
    var state = JSON.parse(document.getElementById("execution-snapshot").textContent);
    var clockOffset = Number(root.dataset.serverNow) - Date.now();
    var steps = new Map();
    root.querySelectorAll("[data-step-id]").forEach(function (element) {
      steps.set(element.dataset.stepId, element);
    });
    var form = document.getElementById("interrupt-form");
    var resume = document.getElementById("resume-form");
    var sending = false;

    function now() {
      return Date.now() + clockOffset;
    }

    function renderStep(step) {
      var element = steps.get(step.id);
      if (!element) return;
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
      var error = field(element, "error");
      setText(error, step.error || "");
      error.hidden = !step.error;
    }

    function renderList(list, ids) {
      var titles = {};
      state.steps.forEach(function (step) { titles[step.id] = step.title; });
      list.replaceChildren();
      ids.forEach(function (id) {
        var item = document.createElement("li");
        var code = document.createElement("code");
        code.textContent = id;
        item.appendChild(code);
        item.appendChild(document.createTextNode(" " + (titles[id] || id)));
        list.appendChild(item);
      });
      if (!ids.length) {
        var none = document.createElement("li");
        none.className = "muted";
        none.textContent = "none";
        list.appendChild(none);
      }
    }

    function renderOutcome() {
      var section = document.getElementById("outcome");
      var outcome = state.outcome;
      section.hidden = !outcome;
      if (!outcome) return;
      setBadge(field(section, "outcome-kind"), outcome.kind);
      renderList(field(section, "processed"), outcome.steps_processed);
      renderList(field(section, "not-processed"), outcome.steps_not_processed);
      var errors = field(section, "errors");
      var ids = Object.keys(outcome.errors || {}).sort();
      errors.replaceChildren();
      ids.forEach(function (id) {
        var term = document.createElement("dt");
        var code = document.createElement("code");
        code.textContent = id;
        term.appendChild(code);
        var detail = document.createElement("dd");
        detail.textContent = outcome.errors[id];
        errors.append(term, detail);
      });
      field(section, "errors-block").hidden = !ids.length;
    }

    function renderInterrupt() {
      var section = document.getElementById("interrupt-info");
      var interrupt = state.interrupt;
      section.hidden = !interrupt;
      if (!interrupt) return;
      setText(field(section, "interrupt-by"), interrupt.by || "—");
      setText(field(section, "interrupt-at"), timestamp(interrupt.requested_at));
      setText(field(section, "interrupt-source"), SOURCES[interrupt.source] || interrupt.source);
      setText(field(section, "interrupt-force"), interrupt.force ? "yes" : "no");
      setText(field(section, "interrupt-reason"), interrupt.reason || "—");
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
    }

    function render() {
      setBadge(field(root, "status"), state.status);
      setText(field(root, "created"), timestamp(state.created_at));
      setText(field(root, "started"), timestamp(state.started_at));
      setText(field(root, "finished"), timestamp(state.finished_at));
      state.steps.forEach(renderStep);
      renderTimes();
      renderInterrupt();
      renderOutcome();
      renderForm();
    }

    function replace(execution) {
      if (execution && execution.id === state.id && !isStale(execution, state)) {
        state = execution;
        render();
      }
    }

    var live = liveSocket("/ws/executions/" + state.id + "/", function (message) {
      switch (message.type) {
        case "snapshot":
        case "status":
        case "finished":
        case "interrupt":
          replace(message.execution);
          break;
        case "step":
          // After the end the final snapshot is the truth: a late event
          // must not move a bar back.
          if (message.execution_id === state.id && message.step && !isTerminal(state.status)) {
            state.steps = state.steps.map(function (step) {
              return step.id === message.step.id ? message.step : step;
            });
            renderStep(message.step);
          }
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
    render();
  }

  var SOURCES = {};

  document.addEventListener("DOMContentLoaded", function () {
    var sources = document.getElementById("execution-sources");
    if (sources) SOURCES = JSON.parse(sources.textContent);
    var form = document.getElementById("start-form");
    if (form) startForm(form);
    var table = document.getElementById("execution-list");
    if (table) listPage(table);
    var execution = document.getElementById("execution");
    if (execution) detailPage(execution);
  });
})();
