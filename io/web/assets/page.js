(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var lastImage = null, lastUpdate = null;
  var img = $('snap');
  if (img && img.getAttribute('src')) {
    var m = /[?&]id=([^&]*)/.exec(img.getAttribute('src'));
    if (m) lastImage = decodeURIComponent(m[1]);
  }

  function text(id, v) {
    var e = $(id);
    v = (v === undefined || v === null || v === '') ? '–' : String(v);
    if (e && e.textContent !== v) e.textContent = v;
  }
  function show(id, on) { var e = $(id); if (e) e.hidden = !on; }
  function pad(n, w) { n = String(n); while (n.length < w) n = '0' + n; return n; }
  function clock(s) {
    if (!s || s.indexOf('0001-') === 0) return '–';
    var d = new Date(s);
    if (isNaN(d)) return '–';
    return pad(d.getHours(), 2) + ':' + pad(d.getMinutes(), 2) + ':' + pad(d.getSeconds(), 2) + '.' + pad(d.getMilliseconds(), 3);
  }
  function fix(v, n) { return (typeof v === 'number' && isFinite(v)) ? v.toFixed(n) : '–'; }
  function dur(sec) {
    if (!(sec >= 0)) return '–';
    var s = Math.floor(sec), d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + m + 'm';
    if (m > 0) return m + 'm ' + (s % 60) + 's';
    return s + 's';
  }
  function shortHash(h) { h = (h || '').replace(/^sha256:/, ''); return h.length > 12 ? h.slice(0, 12) : h; }
  function el(tag, cls, txt) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (txt !== undefined) e.textContent = txt;
    return e;
  }
  function vtag(v) { return el('span', 'vtag v-' + v, v); }
  function camClass(s) {
    if (s === 'online') return 'good';
    if (s === 'starting' || s === 'reconnecting') return 'warn';
    return 'bad';
  }
  // The session's CSRF token (absent when the station has no login):
  // every POST carries it in the X-CSRF-Token header.
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute('content') : '';
  function postHeaders(h) {
    if (csrf) h['X-CSRF-Token'] = csrf;
    return h;
  }
  function getJSON(url) {
    return fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' } }).then(function (r) {
      if (r.status === 401 && csrf) { window.location.assign('/login?next=%2F'); }
      if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
      return r.json();
    });
  }

  function renderStatus(st) {
    text('st-id', st.station.id);
    text('st-name', st.station.name);
    text('st-line', st.station.line);
    document.title = (st.station.id || 'station') + ' · inspectd';
    var cam = $('cam');
    cam.className = 'badge ' + camClass(st.camera.state);
    cam.title = st.camera.detail || '';
    text('cam-state', st.camera.state);
    text('cam-detail', st.camera.detail ? 'camera: ' + st.camera.detail : '');
    show('cam-detail', !!st.camera.detail);
    show('paused', st.paused);
    text('trig-mode', st.trigger_mode);
    text('uptime', dur(st.uptime_s));
    text('version', st.version);
    var pl = $('problem-list');
    pl.replaceChildren.apply(pl, (st.problems || []).map(function (p) { return el('li', '', p); }));
    show('problems', !st.healthy);
    text('n-ok', st.counts.ok);
    text('n-ng', st.counts.ng);
    text('n-error', st.counts.error);
    text('n-total', st.counts.total);
    text('rate', fix(st.rate_per_s, 2));
    text('p50', fix(st.latency_ms.p50, 1));
    text('p99', fix(st.latency_ms.p99, 1));
    text('pmax', fix(st.latency_ms.max, 1));
    text('cam-captured', st.camera_counts.captured);
    text('cam-dropped', st.camera_counts.dropped);
    text('cam-reconnects', st.camera_counts.reconnects);
    text('m-product', st.model.product);
    text('m-hash', shortHash(st.model.bundle_hash));
    $('m-hash').title = st.model.bundle_hash || '';
    text('m-provider', st.model.provider);
    text('m-thr', fix(st.model.threshold, 3));
    text('m-pthr', fix(st.model.pixel_threshold, 3));
    text('m-thr-from', st.model.threshold_source);
    show('trigger', st.trigger_mode === 'software');
    renderProducts(st.products || {});
    var sb = $('sinks'), rows = (st.sinks || []).map(function (s) {
      var tr = el('tr'), name = el('td', '', s.name);
      if (s.last_error) name.appendChild(el('div', 'err', s.last_error));
      tr.append(name, el('td', 'num', s.queued + '/' + s.capacity), el('td', 'num', String(s.delivered)),
        el('td', 'num' + (s.dropped ? ' hot' : ''), String(s.dropped)), el('td', 'num' + (s.errors ? ' hot' : ''), String(s.errors)));
      return tr;
    });
    if (!rows.length) { var tr = el('tr'), td = el('td', 'empty', 'no sinks'); td.colSpan = 5; tr.append(td); rows = [tr]; }
    sb.replaceChildren.apply(sb, rows);
  }

  function renderProducts(ps) {
    var list = ps.products || [];
    show('products-card', list.length > 0);
    show('hdr-product-wrap', list.length > 0);
    text('hdr-product', ps.active);
    text('p-active', ps.active);
    text('p-source', ps.source);
    text('p-unavailable', ps.unavailable);
    show('p-unavailable', !!ps.unavailable);
    show('product-form', ps.source === 'http');
    var tb = $('products');
    tb.replaceChildren.apply(tb, list.map(function (p) {
      var tr = el('tr', p.active ? 'active' : ''), h = el('td'), c = el('code', '', shortHash(p.bundle_hash));
      c.title = p.bundle_hash || '';
      h.append(c);
      tr.append(el('td', '', p.name), el('td', 'num', p.code ? String(p.code) : '–'), el('td', '', p.loaded ? 'yes' : 'no'), h,
        el('td', 'num', String(p.counts.ok)), el('td', 'num', String(p.counts.ng)), el('td', 'num', String(p.counts.error)));
      return tr;
    }));
    var sel = $('product-select'), names = list.map(function (p) { return p.name; });
    var have = Array.prototype.map.call(sel.options, function (o) { return o.value; });
    if (names.join('\n') !== have.join('\n')) {
      sel.replaceChildren.apply(sel, names.map(function (n) { var o = el('option', '', n); o.value = n; return o; }));
      sel.value = ps.active || '';
    }
  }

  function renderResults(rs) {
    var res = rs.results || [];
    var last = res[0];
    var lv = $('last-verdict');
    if (last) {
      lv.className = 'verdict v-' + last.verdict;
      text('last-verdict', last.verdict);
      text('last-part', last.part_id);
      text('last-score', fix(last.score, 3));
      text('last-thr', fix(last.threshold, 3));
      text('last-reason', last.reason + (last.detail ? ': ' + last.detail : ''));
      text('last-time', clock(last.verdict_time));
      text('last-ms', fix(last.latency.total_ms, 1));
      var lf = last.faults || [];
      text('last-faults-text', lf.join('; '));
      show('last-faults', lf.length > 0);
    }
    var tb = $('results'), rows = res.map(function (r) {
      var faults = r.faults || [];
      var tr = el('tr', faults.length ? 'faulted' : ''), v = el('td');
      v.append(vtag(r.verdict));
      var reason = el('td', '', r.reason + (r.detail ? ': ' + r.detail : ''));
      if (faults.length) reason.appendChild(el('div', 'err', 'output fault: ' + faults.join('; ')));
      tr.append(el('td', '', clock(r.verdict_time)), el('td', '', r.part_id), v,
        el('td', 'num', fix(r.score, 3)), el('td', 'num', String((r.regions || []).length)),
        el('td', 'num', fix(r.latency.total_ms, 1)), reason);
      return tr;
    });
    if (!rows.length) { var tr = el('tr'), td = el('td', 'empty', 'no results yet'); td.colSpan = 7; tr.append(td); rows = [tr]; }
    tb.replaceChildren.apply(tb, rows);

    var li = rs.latest_image;
    if (li && li.result_id !== lastImage) {
      lastImage = li.result_id;
      img.src = '/api/latest.jpg?id=' + encodeURIComponent(li.result_id);
      img.hidden = false;
      show('snap-none', false);
      var cap = $('snap-caption');
      cap.replaceChildren(vtag(li.verdict), document.createTextNode(' part ' + li.part_id + ' · ' + clock(li.verdict_time)));
    }
  }

  function renderEvents(ev) {
    var ul = $('events'), items = (ev.events || []).map(function (e) {
      var li = el('li', 'sev-' + e.severity);
      li.append(el('span', 'ev-time', clock(e.time)), ' ', el('span', 'ev-kind', e.kind), ' ' + e.message);
      return li;
    });
    if (!items.length) items = [el('li', 'empty', 'no events yet')];
    ul.replaceChildren.apply(ul, items);
  }

  function setConn(ok) {
    if (ok) {
      lastUpdate = new Date();
      text('updated', clock(lastUpdate.toISOString()));
    } else {
      text('conn-since', lastUpdate ? clock(lastUpdate.toISOString()) : 'never');
    }
    show('conn', !ok);
  }

  function tick() {
    Promise.all([getJSON('/api/status'), getJSON('/api/results?n=20'), getJSON('/api/events?n=15')])
      .then(function (a) { renderStatus(a[0]); renderResults(a[1]); renderEvents(a[2]); setConn(true); })
      .catch(function () { setConn(false); })
      .then(function () { setTimeout(tick, 1000); });
  }

  var form = $('trigger');
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var part = $('trigger-part').value.trim();
    text('trigger-msg', 'sending…');
    fetch('/api/trigger', {
      method: 'POST', headers: postHeaders({ 'Content-Type': 'application/json', Accept: 'application/json' }),
      body: JSON.stringify({ part_id: part })
    }).then(function (r) {
      return r.json().then(function (b) {
        text('trigger-msg', r.ok ? 'accepted' + (b.part_id ? ' (part ' + b.part_id + ')' : '') : 'refused: ' + (b.error || r.status));
      });
    }).catch(function (e) { text('trigger-msg', 'failed: ' + e.message); });
  });

  $('clear-fault').addEventListener('submit', function (ev) {
    ev.preventDefault();
    text('clear-msg', 'sending…');
    fetch('/api/clear-fault', { method: 'POST', headers: postHeaders({ Accept: 'application/json' }) }).then(function (r) {
      return r.json().then(function (b) {
        text('clear-msg', r.ok ? 'cleared' + ((b.problems || []).length ? '; still: ' + b.problems.join('; ') : '') : 'refused: ' + (b.error || r.status));
      });
    }).catch(function (e) { text('clear-msg', 'failed: ' + e.message); });
  });

  $('product-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var name = $('product-select').value;
    text('product-msg', 'sending…');
    fetch('/api/product', {
      method: 'POST', headers: postHeaders({ 'Content-Type': 'application/json', Accept: 'application/json' }),
      body: JSON.stringify({ product: name })
    }).then(function (r) {
      return r.json().then(function (b) {
        text('product-msg', r.ok ? 'selected ' + b.product : 'refused: ' + (b.error || r.status));
      });
    }).catch(function (e) { text('product-msg', 'failed: ' + e.message); });
  });

  tick();
})();
