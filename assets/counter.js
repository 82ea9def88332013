/* viewcounter counter.js: ES5, no dependencies. docs/embed.md */
(function (w, d) {
  var s = d.currentScript || d.querySelector('script[src*="/v1/counter.js"]');
  if (!s || w.viewcounter) return;
  var api = s.src.replace(/\/v1\/counter\.js.*/, '/v1/'), own = at(s, 'article'), counts = {}, sent;
  w.viewcounter = 1;

  function at(el, name) { return el.getAttribute && el.getAttribute('data-' + name); }

  function idOf(el) { // nearest data-article up the tree, else the page's
    while (el && !at(el, 'article')) el = el.parentNode;
    return el ? at(el, 'article') : own;
  }

  function send(ev) { // a string body is text/plain: no CORS preflight
    var url = api + 'events', body = JSON.stringify(ev);
    try { if (navigator.sendBeacon(url, body)) return; } catch (e) {}
    if (w.fetch) fetch(url, { method: 'POST', body: body, keepalive: true })['catch'](Object);
  }

  function view() {
    if (!sent && own) send({ type: 'view', article: own, section: at(s, 'section') || null,
      lang: at(s, 'lang') || null });
    sent = 1;
  }

  function each(fn) {
    var els = d.querySelectorAll('[data-views],[data-shares]');
    for (var i = 0; i < els.length; i++) fn(els[i], idOf(els[i]));
  }

  function paint() {
    each(function (el, id) {
      var c = counts[id], n = at(el, 'shares');
      if (c) el.textContent = n == null ? c.views : n ? c.shares[n] || 0 : c.shares_total;
    });
  }

  // The view waits for the read (one per 100 ids), so the count shown includes it
  // without racing the beacon; leaving or a slow read send it at once.
  function start() {
    var ids = [], left, i;
    each(function (el, id) { if (/^[\w.-]{1,64}$/.test(id) && ids.indexOf(id) < 0) ids.push(id); });
    left = Math.ceil(ids.length / 100) + 1; // +1: the call after the loop
    function done() {
      if (--left) return;
      if (!sent && counts[own]) counts[own].views++;
      view();
      paint();
    }
    for (i = 0; i < ids.length; i += 100) (function (x) {
      x.open('GET', api + 'articles?ids=' + ids.slice(i, i + 100));
      x.onloadend = function () {
        try { JSON.parse(x.responseText).articles.forEach(function (a) { counts[a.article] = a; }); } catch (e) {}
        done();
      };
      x.send();
    })(new XMLHttpRequest());
    done();
    setTimeout(view, 3000);
    w.addEventListener('pagehide', view);
    d.addEventListener('visibilitychange', function () { if (d.hidden) view(); });
  }

  d.addEventListener('click', function (e) {
    for (var el = e.target; el && !at(el, 'share'); el = el.parentNode);
    if (!el) return;
    var net = at(el, 'share'), id = idOf(el), c = counts[id];
    if (id) send({ type: 'share', article: id, network: net });
    if (c) { c.shares[net] = (c.shares[net] || 0) + 1; c.shares_total++; paint(); }
  }, true);

  function go() {
    if (d.readyState == 'loading') d.addEventListener('DOMContentLoaded', start);
    else start();
  }
  if (d.prerendering) d.addEventListener('prerenderingchange', go); // not a view until shown
  else go();
})(window, document);
