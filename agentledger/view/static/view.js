// agentledger view: live refresh over server-sent events, and the integrity check.
// Recorded text only ever arrives inside server-rendered, escaped HTML; this script moves
// such HTML around (parsed as an inert document) and never builds markup from strings.
"use strict";
(function () {
  var source = null;
  var pending = false;
  var last = 0;

  function loadIntegrity() {
    var box = document.getElementById("integrity");
    if (!box || !box.dataset.src) { return; }
    fetch(box.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("integrity");
        if (fresh) { box.replaceWith(document.adoptNode(fresh)); }
      })
      .catch(function () { box.dataset.src = ""; });
  }

  function refresh() {
    pending = false;
    last = Date.now();
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var main = doc.getElementById("main");
        var current = document.getElementById("main");
        if (!main || !current) { return; }
        var integrity = document.getElementById("integrity");
        current.replaceWith(document.adoptNode(main));
        var slot = document.getElementById("integrity");
        if (integrity && slot && !integrity.dataset.src) { slot.replaceWith(integrity); }
        else { loadIntegrity(); }
        var position = doc.getElementById("position");
        var shown = document.getElementById("position");
        if (position && shown) { shown.textContent = position.textContent; }
        if (!doc.body.dataset.live) { stop("finished"); }
      })
      .catch(function () { /* the next event retries */ });
  }

  function schedule() {
    if (pending) { return; }
    pending = true;
    setTimeout(refresh, Math.max(0, 700 - (Date.now() - last)));
  }

  function stop(reason) {
    if (source) { source.close(); source = null; }
    var state = document.getElementById("live-state");
    if (state) { state.classList.remove("on"); state.textContent = reason; }
  }

  function start() {
    var url = document.body.dataset.live;
    if (!url || !window.EventSource) { return; }
    source = new EventSource(url);
    var state = document.getElementById("live-state");
    if (state) { state.classList.add("on"); state.textContent = "live"; }
    source.onmessage = schedule;
    source.onerror = function () {
      if (state) { state.classList.remove("on"); state.textContent = "reconnecting"; }
    };
    source.onopen = function () {
      if (state) { state.classList.add("on"); state.textContent = "live"; }
    };
  }

  document.addEventListener("DOMContentLoaded", function () { loadIntegrity(); start(); });
})();
