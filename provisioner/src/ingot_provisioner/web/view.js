// ingot.metal provisioner: live updates of the read-only web view through server-sent events.
// Served by the service itself (no CDN). Without JavaScript the pages are plain tables; this script only
// sets text (textContent) and classes: nothing received is ever parsed as HTML.
(function () {
  'use strict';
  var body = document.body;
  var base = body.getAttribute('data-base');
  var view = body.getAttribute('data-view');
  var live = document.getElementById('live');
  var STATES = ['discovered', 'ready', 'allocated', 'deploying', 'deployed', 'deploy_failed', 'releasing',
                'release_failed'];

  function setText(el, value) { if (el) { el.textContent = value === null || value === undefined ? '' : String(value); } }

  function age(iso) {
    if (!iso) { return ''; }
    var sec = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
    if (sec < 60) { return sec + 's'; }
    if (sec < 3600) { return Math.floor(sec / 60) + 'm'; }
    if (sec < 86400) { return Math.floor(sec / 3600) + 'h' + ('0' + Math.floor((sec % 3600) / 60)).slice(-2) + 'm'; }
    return Math.floor(sec / 86400) + 'd' + Math.floor((sec % 86400) / 3600) + 'h';
  }

  function tickAges() {
    var cells = document.querySelectorAll('[data-since]');
    for (var i = 0; i < cells.length; i++) {
      if (cells[i] !== body) { setText(cells[i], age(cells[i].getAttribute('data-since'))); }
    }
  }

  function setState(holder, state) {
    if (!holder) { return; }
    var span = holder.querySelector('.state');
    if (!span) { span = document.createElement('span'); holder.insertBefore(span, holder.firstChild); }
    span.className = 'state st-' + (STATES.indexOf(state) >= 0 ? state : 'unknown');
    span.textContent = state;
  }

  function fmt(n) { return n === null || n === undefined ? '?' : Number(n).toLocaleString('en-US'); }

  // the node's fields, in the rack row (class c-NAME) or on the node page (id n-NAME)
  function showNode(n, get) {
    setState(get('state'), n.state);
    var ageEl = get('age');
    ageEl.setAttribute('data-since', n.state_changed_at || '');
    setText(ageEl, age(n.state_changed_at));
    setText(get('alloc'), n.allocation_name);
    setText(get('owner'), n.owner);
    setText(get('error'), n.last_error);
    setText(get('ip'), n.ip_address);
    setText(get('docker'), n.docker_url);
  }

  function rackUpdate(item) {
    var row = document.getElementById('node-' + item.node.id);
    if (!row) { return; }
    showNode(item.node, function (name) { return row.querySelector('.c-' + name); });
    row.className = '';
    void row.offsetWidth;
    row.className = 'new';
  }

  function rackCounts(counts) {
    var total = 0;
    for (var i = 0; i < STATES.length; i++) {
      var c = counts[STATES[i]] || 0;
      total += c;
      setText(document.getElementById('count-' + STATES[i]), c);
    }
    setText(document.getElementById('count-all'), total);
  }

  function nodeUpdate(item) {
    var n = item.node, e = item.event, p = item.progress;
    showNode(n, function (name) { return document.getElementById('n-' + name); });
    setText(document.getElementById('n-image'), n.image);
    if (p) {
      var box = document.getElementById('progress-box');
      var bar = document.getElementById('progress');
      var written = p.bytes_written || 0;
      var max = p.size || Math.max(written, 1);
      box.hidden = false;
      bar.max = max;
      bar.value = Math.min(written, max);
      setText(document.getElementById('progress-text'), fmt(p.bytes_written || 0) + ' of ' + fmt(p.size) + ' bytes');
    }
    var tbody = document.querySelector('#events tbody');
    var tr = document.createElement('tr');
    tr.setAttribute('data-id', String(e.id));
    tr.className = 'new';
    [e.time, e.kind, e.message].forEach(function (v) {
      var td = document.createElement('td');
      td.textContent = v === null || v === undefined ? '' : String(v);
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
    while (tbody.rows.length > 500) { tbody.deleteRow(0); }
  }

  setInterval(tickAges, 5000);
  if (!window.EventSource || (view !== 'rack' && view !== 'node')) { return; }
  var url = view === 'rack' ? base + '/events' : base + '/nodes/' + encodeURIComponent(body.getAttribute('data-node')) + '/events';
  var source = new EventSource(url + '?since=' + encodeURIComponent(body.getAttribute('data-since') || ''));
  source.onopen = function () { setText(live, 'live'); live.className = 'live on'; };
  source.onerror = function () { setText(live, 'reconnecting'); live.className = 'live off'; };
  source.addEventListener('node', function (m) {
    var item = JSON.parse(m.data);
    if (view === 'rack') { rackUpdate(item); } else { nodeUpdate(item); }
  });
  source.addEventListener('counts', function (m) { rackCounts(JSON.parse(m.data)); });
}());
