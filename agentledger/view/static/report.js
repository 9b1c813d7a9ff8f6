// agentledger report: the trace matrix and each trace's detail, from the JSON inside this
// file. Every recorded text is put in with textContent (never as markup), and the page
// makes no request of any kind.
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var cols = {};
  data.columns.forEach(function (name, i) { cols[name] = i; });
  var PAGE = 100;
  var page = 0;
  var shown = data.rows;

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }
  function ms(v) {
    if (v === null || v === undefined) { return "-"; }
    return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(1) + " ms";
  }
  function asText(v) {
    if (v === null || v === undefined) { return ""; }
    return typeof v === "string" ? v : JSON.stringify(v, null, 2);
  }
  function pre(v) { return el("pre", asText(v), "text"); }
  function badge(status) { return el("span", status, "badge " + status); }

  var personas = {};
  data.rows.forEach(function (r) { if (r[cols.persona]) { personas[r[cols.persona]] = true; } });
  var select = document.getElementById("f-persona");
  Object.keys(personas).sort().forEach(function (p) { select.appendChild(el("option", p)); });

  function filter() {
    var status = document.getElementById("f-status").value;
    var persona = select.value;
    var text = document.getElementById("f-text").value.toLowerCase();
    shown = data.rows.filter(function (r) {
      if (status && r[cols.status] !== status) { return false; }
      if (persona && r[cols.persona] !== persona) { return false; }
      if (!text) { return true; }
      var input = data.inputs[String(r[cols.input_index])] || "";
      return [r[cols.trace_id], r[cols.persona] || "", input, r[cols.error_type] || "",
        r[cols.error_message] || ""].some(function (f) { return f.toLowerCase().indexOf(text) >= 0; });
    });
    page = 0;
    draw();
  }

  function draw() {
    var body = document.querySelector("#trace-matrix tbody");
    body.replaceChildren();
    shown.slice(page * PAGE, (page + 1) * PAGE).forEach(function (r) {
      var tr = el("tr", null, r[cols.status]);
      var link = el("a", r[cols.trace_id]);
      link.href = "#trace=" + encodeURIComponent(r[cols.trace_id]);
      var first = el("td"); first.appendChild(link); tr.appendChild(first);
      tr.appendChild(el("td", r[cols.input_index], "num"));
      tr.appendChild(el("td", r[cols.iteration], "num"));
      tr.appendChild(el("td", r[cols.persona] || ""));
      var input = data.inputs[String(r[cols.input_index])] || "";
      tr.appendChild(el("td", input.length > 80 ? input.slice(0, 79) + "…" : input));
      var st = el("td"); st.appendChild(badge(r[cols.status])); tr.appendChild(st);
      tr.appendChild(el("td", ms(r[cols.duration_ms]), "num"));
      tr.appendChild(el("td", r[cols.attempts], "num"));
      tr.appendChild(el("td", r[cols.model_calls], "num"));
      tr.appendChild(el("td", r[cols.tokens], "num"));
      tr.appendChild(el("td", r[cols.error_type] ? r[cols.error_type] + ": " + r[cols.error_message] : ""));
      if (Object.keys(data.scores).length) { tr.appendChild(el("td", data.scores[r[cols.trace_id]] || "")); }
      body.appendChild(tr);
    });
    var pager = document.getElementById("matrix-pager");
    pager.replaceChildren();
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    if (page > 0) { var prev = el("button", "← previous"); prev.type = "button"; prev.onclick = function () { page -= 1; draw(); }; pager.appendChild(prev); }
    pager.appendChild(el("span", "page " + (page + 1) + " of " + pages + " (" + shown.length + ")"));
    if (page + 1 < pages) { var next = el("button", "next →"); next.type = "button"; next.onclick = function () { page += 1; draw(); }; pager.appendChild(next); }
  }

  function message(m) {
    var box = el("div", null, "message " + (m.role || "?"));
    var role = el("div", m.role || "?", "role");
    if (m.tool_call_id) { role.appendChild(el("span", " (tool call " + m.tool_call_id + ")", "muted")); }
    box.appendChild(role);
    if (m.content !== null && m.content !== undefined) { box.appendChild(pre(m.content)); }
    if (m.tool_calls) { box.appendChild(el("div", "tool calls:", "muted")); box.appendChild(pre(m.tool_calls)); }
    return box;
  }

  function detail(id) {
    var panel = document.getElementById("trace-detail");
    panel.replaceChildren();
    var row = data.rows.filter(function (r) { return r[cols.trace_id] === id; })[0];
    if (!row) { panel.hidden = true; return; }
    panel.hidden = false;
    var h = el("h2", "Trace " + id + " "); h.appendChild(badge(row[cols.status])); panel.appendChild(h);
    panel.appendChild(el("p", "input #" + row[cols.input_index] + " · iteration " + row[cols.iteration] +
      (row[cols.persona] ? " · persona " + row[cols.persona] : "") + " · " + ms(row[cols.duration_ms]) +
      " · " + row[cols.model_calls] + " model calls · " + row[cols.tokens] + " tokens", "facts"));
    if (data.scores[id]) { panel.appendChild(el("p", "Evaluation: " + data.scores[id])); }
    var d = data.details[id];
    if (!d) {
      panel.appendChild(el("p", "This report carries the detail of the first traces only; open the trace with agentledger view.", "muted"));
      panel.scrollIntoView();
      return;
    }
    panel.appendChild(el("h3", "Input")); panel.appendChild(pre(d.input));
    if (d.output !== null) { panel.appendChild(el("h3", "Output")); panel.appendChild(pre(d.output)); }
    if (d.error) {
      var err = el("div", null, "error");
      err.appendChild(el("h3", "Failure: " + d.error.type + " (" + d.error.reason + ")"));
      err.appendChild(pre(d.error.message));
      if (d.error.traceback) { err.appendChild(el("h4", "Traceback")); err.appendChild(pre(d.error.traceback)); }
      panel.appendChild(err);
    }
    if (d.attempts.length) { panel.appendChild(el("h3", "Retries")); panel.appendChild(pre(d.attempts)); }
    panel.appendChild(el("h3", "Conversation"));
    if (d.turns.length) {
      d.turns.forEach(function (t) {
        panel.appendChild(el("h4", "Turn " + t.turn));
        panel.appendChild(message({ role: "user", content: t.user }));
        if (t.assistant !== null) { panel.appendChild(message({ role: "assistant", content: t.assistant })); }
        if (t.supervisor) { panel.appendChild(el("p", "Supervisor: " + t.supervisor.decision + (t.supervisor.reason ? ": " + t.supervisor.reason : ""), "supervisor")); }
      });
    } else {
      d.conversation.forEach(function (m) { panel.appendChild(message(m)); });
    }
    panel.appendChild(el("h3", "Model calls (" + d.model_calls.length + ")"));
    d.model_calls.forEach(function (c) {
      var box = el("section", null, "call " + c.status);
      box.id = "call-" + c.index;
      var title = el("h4", "#" + c.index + " " + c.model + " "); title.appendChild(badge(c.status)); box.appendChild(title);
      var usage = c.usage ? " · tokens " + (c.usage.prompt_tokens || 0) + " in / " + (c.usage.completion_tokens || 0) + " out" : "";
      box.appendChild(el("p", "latency " + ms(c.latency_ms) + usage + (c.attempts > 1 ? " · " + c.attempts + " attempts" : ""), "facts"));
      var cols2 = el("div", null, "columns");
      var req = el("div"); req.appendChild(el("h4", "Request messages"));
      c.messages.forEach(function (m) { req.appendChild(message(m)); });
      var res = el("div"); res.appendChild(el("h4", "Response"));
      if (c.response) { res.appendChild(message(c.response)); }
      if (c.error) { res.appendChild(pre(c.error)); }
      cols2.appendChild(req); cols2.appendChild(res); box.appendChild(cols2);
      panel.appendChild(box);
    });
    if (d.tool_calls.length) { panel.appendChild(el("h3", "Tool calls")); panel.appendChild(pre(d.tool_calls)); }
    if (d.observations.length) {
      panel.appendChild(el("h3", "Observations (" + d.observation_count + ")"));
      panel.appendChild(pre(d.observations));
    }
    panel.scrollIntoView();
  }

  function route() {
    var m = /^#trace=(.*)$/.exec(location.hash);
    if (m) { detail(decodeURIComponent(m[1])); }
  }

  ["f-status", "f-persona", "f-text"].forEach(function (id) {
    document.getElementById(id).addEventListener("input", filter);
  });
  window.addEventListener("hashchange", route);
  draw();
  route();
})();
