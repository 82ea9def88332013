// viewcounter newsroom: rankings, filters kept in the URL, an article view with its
// series. Reads only the public API of the same origin; refreshes in place every 15 s
// (rows are moved and updated, never rebuilt, so nothing flickers).
'use strict';
(() => {
  const REFRESH_MS = 15000;
  const LIMIT = 20;
  const DEFAULTS = { metric: 'views', window: '24h', section: '', lang: '', network: '', article: '' };
  // Absolute and without user info: fetch() refuses a URL with credentials, which a
  // relative one inherits from a page opened with user:password@ in its address.
  const API = (() => {
    const u = new URL('../v1/', location.href);
    u.username = '';
    u.password = '';
    return u.href;
  })();
  const $ = (css) => document.querySelector(css);
  const numbers = new Intl.NumberFormat(navigator.language || 'en');
  const fmt = (n) => (n == null ? '–' : numbers.format(n));
  const state = { ...DEFAULTS };
  const rows = new Map(); // article id -> { tr, cells, spark }
  const titles = new Map(); // article id -> { title, url }, from the rankings
  let charts = {};
  let lastOk = null;
  let timer = null;
  let generation = 0;

  // ---- URL <-> state ---------------------------------------------------------------
  function readUrl() {
    const q = new URLSearchParams(location.search);
    for (const k of Object.keys(DEFAULTS)) state[k] = q.get(k) || DEFAULTS[k];
    if (!['views', 'shares'].includes(state.metric)) state.metric = DEFAULTS.metric;
    if (!['15m', '1h', '24h', '7d', '30d', 'all'].includes(state.window)) state.window = DEFAULTS.window;
  }

  function writeUrl(push) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(state)) if (v && v !== DEFAULTS[k]) q.set(k, v);
    const url = location.pathname + (q.toString() ? '?' + q : '');
    if (url !== location.pathname + location.search) history[push ? 'pushState' : 'replaceState'](null, '', url);
  }

  // ---- fetching ------------------------------------------------------------------------
  async function getJson(path) {
    const r = await fetch(API + path, { headers: { accept: 'application/json' } });
    if (!r.ok) {
      const e = new Error(`${path}: ${r.status}`);
      e.status = r.status;
      e.code = await r.json().then((b) => b.error.code, () => '');
      throw e;
    }
    return r.json();
  }

  // The filter a 400 refused, by its error code: a mistyped or stale link, not an outage.
  const FILTER_OF = {
    invalid_section: 'section',
    invalid_lang: 'lang',
    invalid_network: 'network',
    invalid_article: 'article',
  };

  // Clears the filter the service refused and says so; false when the error was no
  // filter's (the service is then treated as down).
  function clearRefusedFilter(e) {
    const key = FILTER_OF[e.code];
    if (e.status !== 400 || !key || state[key] === DEFAULTS[key]) return false;
    const notice = $('#notice');
    notice.textContent = `The link's ${key} "${state[key]}" is not valid; it was cleared.`;
    notice.hidden = false;
    state[key] = DEFAULTS[key];
    writeUrl(false);
    return true;
  }

  const seriesOf = (id, window) => getJson(`articles/${encodeURIComponent(id)}/series?window=${window}`);

  function topQuery() {
    const q = new URLSearchParams({ metric: state.metric, window: state.window, limit: String(LIMIT) });
    if (state.section) q.set('section', state.section);
    if (state.lang) q.set('lang', state.lang);
    if (state.metric === 'shares' && state.network) q.set('network', state.network);
    return q;
  }

  // ---- status ------------------------------------------------------------------------
  function up() {
    lastOk = new Date();
    $('#down').hidden = true;
    $('#status').textContent = `Updated ${lastOk.toLocaleTimeString()}`;
    document.body.classList.remove('offline');
  }

  function down() {
    $('#down-since').textContent = lastOk ? lastOk.toLocaleTimeString() : 'before the service stopped answering';
    $('#down').hidden = false;
    $('#status').textContent = 'Service unreachable';
    document.body.classList.add('offline');
  }

  // ---- filters -------------------------------------------------------------------------
  function fillSelect(sel, values, chosen) {
    const want = ['', ...values];
    if (chosen && !want.includes(chosen)) want.push(chosen); // a shared link's filter
    const have = [...sel.options].map((o) => o.value);
    if (have.join('\n') !== want.join('\n')) {
      sel.replaceChildren(...want.map((v) => new Option(v || 'All', v)));
    }
    sel.value = chosen;
  }

  function showFilters() {
    for (const b of document.querySelectorAll('[data-metric]')) b.setAttribute('aria-pressed', b.dataset.metric === state.metric);
    for (const b of document.querySelectorAll('[data-window]')) b.setAttribute('aria-pressed', b.dataset.window === state.window);
    $('#count-head').textContent = `${state.metric === 'shares' ? 'Shares' : 'Views'} (${state.window})`;
  }

  async function loadMeta() {
    const meta = await getJson('meta');
    fillSelect($('#section'), meta.sections, state.section);
    fillSelect($('#lang'), meta.langs, state.lang);
    fillSelect($('#network'), meta.networks, state.network);
  }

  // ---- the board -----------------------------------------------------------------------
  function cell(tr, cls) {
    const td = document.createElement('td');
    td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function newRow(id) {
    const tr = document.createElement('tr');
    tr.dataset.article = id;
    const cells = {};
    for (const c of ['rank num', 'title', 'section meta', 'lang meta', 'count num', 'views num views-col', 'visitors num wide', 'shares shares-col', 'spark']) {
      cells[c.split(' ')[0]] = cell(tr, c);
    }
    tr.addEventListener('click', (e) => {
      if (e.target.closest('a')) return; // the title link opens the article itself
      openArticle(id);
    });
    return { tr, cells, spark: null };
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function showTitle(td, id, entry) {
    const key = `${entry.title || ''}\n${entry.url || ''}`;
    if (td.dataset.key === key) return;
    td.dataset.key = key;
    const label = document.createElement(entry.url ? 'a' : 'span');
    label.textContent = entry.title || id;
    if (entry.url) {
      label.href = entry.url;
      label.target = '_blank';
      label.rel = 'noopener';
    }
    const parts = [label];
    if (entry.title) {
      const small = document.createElement('small');
      small.textContent = id;
      parts.push(small);
    }
    td.replaceChildren(...parts);
  }

  function showShares(td, shares) {
    const key = JSON.stringify(shares || {});
    if (td.dataset.key === key) return;
    td.dataset.key = key;
    const chips = Object.entries(shares || {})
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([net, n]) => {
        const s = document.createElement('span');
        s.className = 'chip';
        s.dataset.network = net;
        s.textContent = `${net} ${fmt(n)}`;
        return s;
      });
    td.replaceChildren(...chips);
  }

  function color(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
  }

  function xy(series) {
    return [series.points.map((p) => Date.parse(p.t) / 1000), series.points.map((p) => p.views), series.points.map((p) => p.shares)];
  }

  function sparkline(row, series) {
    if (!series || typeof uPlot === 'undefined') return;
    const data = xy(series).slice(0, 2);
    const width = window.matchMedia('(max-width: 700px)').matches ? 76 : 120;
    if (row.spark) {
      row.spark.setData(data);
      if (row.spark.width !== width) row.spark.setSize({ width, height: 30 });
      return;
    }
    row.spark = new uPlot({
      width, height: 30, pxAlign: false, cursor: { show: false }, legend: { show: false },
      select: { show: false }, axes: [{ show: false }, { show: false }],
      scales: { x: { time: false }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      series: [{}, { stroke: color('--views'), fill: color('--views') + '22', width: 1.5, points: { show: false } }],
    }, data, row.cells.spark);
  }

  async function renderBoard(gen) {
    const top = await getJson('top?' + topQuery());
    const ids = top.articles.map((a) => a.article);
    const [reads, series] = await Promise.all([
      ids.length ? getJson('articles?ids=' + ids.map(encodeURIComponent).join(',')) : { articles: [] },
      Promise.all(ids.map((id) => seriesOf(id, '24h').catch(() => null))),
    ]);
    if (gen !== generation) return; // a newer request owns the page
    const tbody = $('#top tbody');
    const seen = new Set();
    top.articles.forEach((entry, i) => {
      const id = entry.article;
      seen.add(id);
      const read = reads.articles[i] || {};
      const known = { title: entry.title || read.title, url: entry.url || read.url };
      if (known.title || known.url) titles.set(id, known);
      let row = rows.get(id);
      if (!row) {
        row = newRow(id);
        rows.set(id, row);
      }
      const c = row.cells;
      setText(c.rank, String(i + 1));
      showTitle(c.title, id, known);
      setText(c.section, entry.section || read.section || '');
      setText(c.lang, entry.lang || read.lang || '');
      setText(c.count, fmt(entry.count));
      setText(c.views, fmt(read.views));
      setText(c.visitors, fmt(read.visitors));
      showShares(c.shares, read.shares);
      if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
      sparkline(row, series[i]);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        if (row.spark) row.spark.destroy();
        rows.delete(id);
      }
    }
    $('#empty').hidden = ids.length > 0;
  }

  // ---- the article view ---------------------------------------------------------------
  function chart(el, title, series, old) {
    const data = xy(series);
    // What the chart shows, for a reader of the DOM (and the browser test).
    el.dataset.points = String(series.points.length);
    el.dataset.views = String(data[1].reduce((a, b) => a + b, 0));
    el.dataset.shares = String(data[2].reduce((a, b) => a + b, 0));
    const width = Math.max(280, el.clientWidth || el.parentNode.clientWidth || 600);
    if (old) {
      old.setData(data);
      if (old.width !== width) old.setSize({ width, height: 220 });
      return old;
    }
    el.replaceChildren();
    const axis = { stroke: color('--muted'), grid: { stroke: color('--line') }, ticks: { stroke: color('--line') } };
    return new uPlot({
      title, width, height: 220,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [axis, { ...axis, size: 50 }],
      series: [
        { value: (u, v) => (v == null ? '–' : new Date(v * 1000).toISOString().slice(0, series.step === '1h' ? 16 : 10).replace('T', ' ')) },
        { label: 'Views', stroke: color('--views'), fill: color('--views') + '1f', width: 2 },
        { label: 'Shares', stroke: color('--shares'), width: 2 },
      ],
    }, data, el);
  }

  async function renderArticle(gen) {
    const id = state.article;
    const [read, hours, days] = await Promise.all([
      getJson(`articles/${encodeURIComponent(id)}`),
      seriesOf(id, '48h'),
      seriesOf(id, '90d'),
    ]);
    if (gen !== generation) return;
    const known = { ...(titles.get(id) || {}), ...(read.title ? { title: read.title } : {}), ...(read.url ? { url: read.url } : {}) };
    setText($('#a-title'), known.title || id);
    setText($('#a-id'), known.title ? id : '');
    setText($('#a-section'), read.section ? `· ${read.section}` : '');
    setText($('#a-lang'), read.lang ? `· ${read.lang}` : '');
    const link = $('#a-link');
    link.hidden = !known.url;
    if (known.url) link.href = known.url;
    setText($('#a-views'), fmt(read.views));
    setText($('#a-visitors'), fmt(read.visitors));
    setText($('#a-shares'), fmt(read.shares_total));
    charts.hours = chart($('#chart-hours'), 'Per hour', hours, charts.hours);
    charts.days = chart($('#chart-days'), 'Per day', days, charts.days);
    const max = Math.max(1, ...Object.values(read.shares || {}));
    const body = $('#a-networks tbody');
    const key = JSON.stringify(read.shares || {});
    if (body.dataset.key !== key) {
      body.dataset.key = key;
      const entries = Object.entries(read.shares || {}).sort((a, b) => b[1] - a[1]);
      body.replaceChildren(...entries.map(([net, n]) => {
        const tr = document.createElement('tr');
        tr.dataset.network = net;
        const name = document.createElement('td');
        name.textContent = net;
        const bar = document.createElement('td');
        const line = document.createElement('div');
        line.className = 'barline';
        line.style.width = `${Math.round((100 * n) / max)}%`;
        bar.appendChild(line);
        const count = document.createElement('td');
        count.textContent = fmt(n);
        tr.append(name, bar, count);
        return tr;
      }));
      if (!entries.length) {
        const tr = document.createElement('tr');
        tr.innerHTML = '<td>No shares yet.</td>';
        body.appendChild(tr);
      }
    }
  }

  function closeCharts() {
    for (const c of Object.values(charts)) c.destroy();
    charts = {};
  }

  function openArticle(id) {
    state.article = id;
    writeUrl(true);
    show();
  }

  // ---- the loop -------------------------------------------------------------------------
  async function refresh() {
    clearTimeout(timer);
    const gen = ++generation;
    try {
      const meta = loadMeta();
      if (state.article) await renderArticle(gen);
      else await renderBoard(gen);
      await meta;
      if (gen === generation) up();
    } catch (e) {
      if (gen !== generation) return;
      if (clearRefusedFilter(e)) {
        show();
        return;
      }
      down();
    } finally {
      if (gen === generation) timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  function show() {
    showFilters();
    const article = Boolean(state.article);
    $('#board').hidden = article;
    $('#article').hidden = !article;
    if (!article) closeCharts();
    document.title = article ? `${(titles.get(state.article) || {}).title || state.article} · Newsroom` : 'Newsroom · viewcounter';
    refresh();
  }

  function change(k, v) {
    $('#notice').hidden = true;
    state[k] = v;
    if (k === 'network' && v) state.metric = 'shares'; // a network ranks its shares
    writeUrl(false);
    show();
  }

  function wire() {
    for (const b of document.querySelectorAll('[data-metric]')) b.addEventListener('click', () => change('metric', b.dataset.metric));
    for (const b of document.querySelectorAll('[data-window]')) b.addEventListener('click', () => change('window', b.dataset.window));
    for (const k of ['section', 'lang', 'network']) $('#' + k).addEventListener('change', (e) => change(k, e.target.value));
    $('#back').addEventListener('click', (e) => {
      e.preventDefault();
      state.article = '';
      writeUrl(true);
      show();
    });
    window.addEventListener('popstate', () => {
      readUrl();
      show();
    });
    let resized = null;
    window.addEventListener('resize', () => {
      clearTimeout(resized);
      resized = setTimeout(refresh, 200);
    });
  }

  readUrl();
  wire();
  show();
})();
