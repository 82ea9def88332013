/* viewcounter counter.js: ES5, no dependencies, throws nothing. docs/embed.md */
(function (w, d) {
  var s = d.currentScript || d.querySelector('script[src*="/v1/counter.js"]');
  if (!s || w.viewcounter) return;
  var api = s.src.replace(/\/v1\/counter\.js.*/, '/v1/'), own = at(s, 'article'), counts = {}, fmts = {},
    info = {}, key = 'viewcounter:' + own, rec, counting, sent, FIELDS = ['section', 'lang', 'title', 'url', 'exp', 'sig'];
  w.viewcounter = 1;

  function at(el, name) { return el && el.getAttribute ? el.getAttribute('data-' + name) : null; }

  function idOf(el) { // nearest data-article up the tree, else the page's
    while (el && !at(el, 'article')) el = el.parentNode;
    return el ? at(el, 'article') : own;
  }

  function page() { // what the view carries besides the article (and what a signature covers)
    var c = d.querySelector('link[rel=canonical]');
    for (var i = 0; i < FIELDS.length; i++) info[FIELDS[i]] = at(s, FIELDS[i]);
    info.title = info.title || d.title;
    info.url = info.url || (c && c.href) || location.href.split(/[?#]/)[0];
  }

  function withPage(ev) {
    for (var i = 0; i < FIELDS.length; i++) if (info[FIELDS[i]]) ev[FIELDS[i]] = info[FIELDS[i]];
    return ev;
  }

  function send(ev) { // a string body is text/plain: no CORS preflight
    var url = api + 'events', body = JSON.stringify(ev);
    try { if (navigator.sendBeacon(url, body)) return; } catch (e) {}
    try { fetch(url, { method: 'POST', body: body, keepalive: true })['catch'](Object); } catch (e) {}
  }

  // One view per article per browser within data-dedupe minutes (default 30, "0": every
  // load); without storage (private mode, blocked) every load counts. The record also
  // keeps the counts this browser last showed: a read answered from a cache (made
  // before this browser's last view or share) then never shows fewer.
  function fresh() {
    var m = at(s, 'dedupe'), ms = (m == null || m === '' ? 30 : +m) * 6e4, now = +new Date();
    try { rec = JSON.parse(w.localStorage.getItem(key)) || {}; } catch (e) { rec = null; }
    if (rec && ms > 0 && rec.t && now - rec.t < ms && now >= rec.t) return 0;
    if (rec) rec.t = now;
    keep();
    return 1;
  }

  function keep() { try { if (rec) w.localStorage.setItem(key, JSON.stringify(rec)); } catch (e) {} }

  function floor(c, add) { // no lower than last shown, plus this load's view
    var n, r = rec || {}, seen = r.s || {};
    if (r.v > c.views) c.views = r.v;
    c.views += add;
    for (n in seen) if (seen[n] > (c.shares[n] || 0)) {
      c.shares_total += seen[n] - (c.shares[n] || 0);
      c.shares[n] = seen[n];
    }
    if (rec) { rec.v = c.views; rec.s = c.shares; keep(); }
  }

  function view() {
    if (!sent && own && counting) send(withPage({ type: 'view', article: own }));
    sent = 1;
  }

  function num(el, n) { // the page's language; data-format="compact" gives 1.2K
    var lang = d.documentElement.lang || info.lang || undefined,
      compact = (at(el, 'format') || at(s, 'format')) == 'compact', k = lang + compact;
    try {
      fmts[k] = fmts[k] || new Intl.NumberFormat(lang, compact ? { notation: 'compact', maximumFractionDigits: 1 } : {});
      return fmts[k].format(n);
    } catch (e) { return '' + n; }
  }

  // GET api + path; cb(body) once, with null on an error or no answer within 3 s.
  function get(path, cb) {
    var x = new XMLHttpRequest(), done;
    function end(v) { if (!done) { done = 1; try { cb(v); } catch (e) {} } }
    try {
      x.open('GET', api + path);
      x.timeout = 3000;
      x.onload = function () {
        var v = null;
        try { if (x.status == 200) v = JSON.parse(x.responseText); } catch (e) {}
        end(v);
      };
      x.onerror = x.ontimeout = x.onabort = function () { end(null); };
      x.send();
    } catch (e) { end(null); }
  }

  function each(fn) {
    var els = d.querySelectorAll('[data-views],[data-shares],[data-visitors]');
    for (var i = 0; i < els.length; i++) fn(els[i], idOf(els[i]));
  }

  function paint() { // an article the service did not answer for shows nothing, not "…"
    each(function (el, id) {
      var c = counts[id], n = at(el, 'shares'), v;
      if (c) v = at(el, 'visitors') != null ? c.visitors : n == null ? c.views : n ? c.shares[n] || 0 : c.shares_total;
      el.textContent = v == null ? '' : num(el, v);
    });
  }

  function top(el) { // a data-top list: the most read, as links
    var q = 'top?limit=' + (at(el, 'limit') || 5), p = ['window', 'section', 'lang'], i;
    for (i = 0; i < p.length; i++) if (at(el, p[i])) q += '&' + p[i] + '=' + encodeURIComponent(at(el, p[i]));
    get(q, function (r) {
      el.textContent = '';
      for (var i = 0; r && i < r.articles.length; i++) {
        var a = r.articles[i], li = d.createElement('li'), url = /^https?:\/\//i.test(a.url) && a.url,
          link = d.createElement(url ? 'a' : 'span'), n = d.createElement('small');
        if (url) link.href = url;
        link.textContent = a.title || a.article;
        n.textContent = ' ' + num(el, a.count);
        li.appendChild(link);
        li.appendChild(n);
        el.appendChild(li);
      }
    });
  }

  // The view waits for the read (one per 100 ids), so the count shown includes it
  // without racing the beacon; leaving or a slow read send it at once.
  function start() {
    var ids = [], left, i, lists = d.querySelectorAll('[data-top]');
    page();
    counting = own && fresh();
    each(function (el, id) { if (/^[\w.-]{1,64}$/.test(id) && ids.indexOf(id) < 0) ids.push(id); });
    left = Math.ceil(ids.length / 100) + 1; // +1: the call after the loop
    function done() {
      if (--left) return;
      if (counts[own]) floor(counts[own], !sent && counting ? 1 : 0);
      view();
      paint();
    }
    for (i = 0; i < ids.length; i += 100) get('articles?ids=' + ids.slice(i, i + 100), function (r) {
      for (var j = 0; r && j < r.articles.length; j++) counts[r.articles[j].article] = r.articles[j];
      done();
    });
    done();
    for (i = 0; i < lists.length; i++) top(lists[i]);
    setTimeout(view, 3000);
    w.addEventListener('pagehide', view);
    d.addEventListener('visibilitychange', function () { if (d.hidden) view(); });
  }

  d.addEventListener('click', function (e) {
    try {
      for (var el = e.target; el && !at(el, 'share'); el = el.parentNode);
      if (!el) return;
      var net = at(el, 'share'), id = idOf(el), c = counts[id], ev = { type: 'share', article: id, network: net };
      // A signed page's share carries the signed fields, so the same signature holds.
      if (id) send(id == own && info.sig ? withPage(ev) : ev);
      if (c) { c.shares[net] = (c.shares[net] || 0) + 1; c.shares_total++; if (id == own) floor(c, 0); paint(); }
    } catch (x) {}
  }, true);

  function safeStart() { try { start(); } catch (e) {} }
  function go() {
    if (d.readyState == 'loading') d.addEventListener('DOMContentLoaded', safeStart);
    else safeStart();
  }
  if (d.prerendering) d.addEventListener('prerenderingchange', go); // not a view until shown
  else go();
})(window, document);
