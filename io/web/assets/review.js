// Review view keyboard: j/k next/prev, g good, d defect (then 1-9 for the
// type, Enter for the selected one, Esc to cancel), u unsure, z undo (the
// last label given from this tab goes back to what it replaced). Reading
// works without this script; the buttons post the form without it.
(function () {
  "use strict";
  var rows = Array.prototype.slice.call(document.querySelectorAll("#results tr.row"));
  var detail = document.getElementById("detail");
  var msg = document.getElementById("review-msg");
  var keys = document.getElementById("defect-keys");
  var picker = document.getElementById("defect-type");
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var cur = -1;
  rows.forEach(function (r, i) { if (r.classList.contains("sel")) { cur = i; } });
  var id = detail && detail.dataset.id;
  var picking = false;
  var busy = false;

  function say(text) { msg.textContent = text; msg.hidden = !text; }

  function go(i) {
    if (i >= 0 && i < rows.length) { location.href = rows[i].dataset.href; return; }
    var page = document.getElementById(i < 0 ? "prev-page" : "next-page");
    if (page) { location.href = page.getAttribute("href"); }
  }

  function post(body, then) {
    if (busy) { return; }
    busy = true;
    var headers = { "Content-Type": "application/json" };
    if (csrf) { headers["X-CSRF-Token"] = csrf; }
    fetch("/api/labels", { method: "POST", headers: headers, body: JSON.stringify(body), credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, j: j }; }); })
      .then(function (res) {
        busy = false;
        if (!res.ok) { say("label refused: " + (res.j.error || "error")); return; }
        then(res.j.label);
      })
      .catch(function (e) { busy = false; say("label failed: " + e); });
  }

  function label(name, type) {
    if (!id) { return; }
    var note = document.getElementById("note");
    post({ result_id: id, label: name, defect_type: type || "", note: note ? note.value : "" }, function (e) {
      try {
        sessionStorage.setItem("inspectd-undo", JSON.stringify({ id: e.result_id, label: e.previous, type: e.previous_defect_type }));
      } catch (err) { /* private mode: no undo */ }
      if (cur >= 0 && cur + 1 < rows.length) { go(cur + 1); } else { location.reload(); }
    });
  }

  function undo() {
    var u = null;
    try { u = JSON.parse(sessionStorage.getItem("inspectd-undo") || "null"); } catch (err) { u = null; }
    if (!u) { say("nothing to undo from this tab"); return; }
    if (!u.label) { say("the first label of " + u.id + " cannot be removed, only changed: select it and press g, d or u"); return; }
    post({ result_id: u.id, label: u.label, defect_type: u.type || "", note: "undo" }, function () {
      sessionStorage.removeItem("inspectd-undo");
      location.href = "/review?id=" + encodeURIComponent(u.id);
    });
  }

  function pick(on) { picking = on; if (keys) { keys.hidden = !on; } }

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var t = ev.target && ev.target.tagName;
    if (t === "INPUT" || t === "SELECT" || t === "TEXTAREA") { return; }
    if (picking) {
      ev.preventDefault();
      if (ev.key === "Escape") { pick(false); return; }
      var types = picker ? Array.prototype.map.call(picker.options, function (o) { return o.value; }) : [];
      var n = parseInt(ev.key, 10);
      if (ev.key === "Enter" && picker) { pick(false); label("defect", picker.value); return; }
      if (n >= 1 && n <= types.length) { pick(false); label("defect", types[n - 1]); }
      return;
    }
    switch (ev.key) {
      case "j": ev.preventDefault(); go(cur + 1); break;
      case "k": ev.preventDefault(); go(cur - 1); break;
      case "g": ev.preventDefault(); label("good"); break;
      case "u": ev.preventDefault(); label("unsure"); break;
      case "d": ev.preventDefault(); if (id) { pick(true); } break;
      case "z": ev.preventDefault(); undo(); break;
    }
  });
})();
