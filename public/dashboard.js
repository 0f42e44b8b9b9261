/*
 * The dashboard, live: progress of a running job is updated in place; anything that moves a
 * job between sections (queued, started, finished) reloads the live part from
 * /partials/dashboard (rendered by the same templates as the page); resource samples are
 * applied in place (the section is reloaded only when the set of GPUs changes); the live part is
 * also reloaded every 15 s, for the nodes' heartbeat ages.
 */
(function () {
  'use strict';
  var root = document.getElementById('dashboard');
  if (!root || !window.trainhookLive) return;
  var f = window.trainhookFormat;
  var IN_PLACE = { progress: 1, epoch: 1, phase: 1 };

  function set(card, name, text) {
    var el = card.querySelector('[data-f="' + name + '"]');
    if (el) el.textContent = text;
  }

  function updateCard(d) {
    var cards = root.querySelectorAll('.card[data-job]');
    var card = null;
    for (var i = 0; i < cards.length; i++) if (cards[i].dataset.job === d.job_id) card = cards[i];
    if (!card) return false;
    var bar = card.querySelector('[data-f="bar"]');
    if (bar) {
      bar.value = d.progress;
      bar.textContent = d.progress + '%';
    }
    set(card, 'progress-text', Math.round(d.progress) + '% · Epoch ' + d.epoch + '/' + d.total_epochs + ' · ' + f.phase(d.phase));
    var key = d.headline_keys && d.headline_keys[0];
    if (key) set(card, 'headline', f.num(d[key]));
    set(card, 'loss', f.num(d.loss));
    set(card, 'eta', f.eta(d.status, d.phase, d.eta_seconds));
    set(card, 'status', f.status(d.status));
    return true;
  }

  function throttled(fn, ms) {
    var timer = null, again = false;
    return function run() {
      if (timer) {
        again = true;
        return;
      }
      fn();
      timer = setTimeout(function () {
        timer = null;
        if (again) {
          again = false;
          run();
        }
      }, ms);
    };
  }

  function reload(url, target) {
    return fetch(url, { credentials: 'same-origin', headers: { accept: 'text/html' } })
      .then(function (r) {
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && target) target.innerHTML = html;
        if (window.trainhookTables) window.trainhookTables();
      })
      .catch(function () {});
  }

  var refresh = throttled(function () {
    reload('/partials/dashboard', root);
  }, 1000);
  var refreshResources = throttled(function () {
    if (document.visibilityState === 'hidden') return;
    reload('/partials/resources', document.getElementById('resources'));
  }, 2000);

  function pct(v) {
    return typeof v === 'number' && isFinite(v) ? v.toFixed(0) + '%' : '—';
  }
  function gb(v) {
    return typeof v === 'number' && isFinite(v) ? v.toFixed(1) + ' GB' : '—';
  }
  function meter(scope, key, value, text) {
    var m = scope.querySelector('[data-r="' + key + '"]');
    if (!m) return false;
    var bar = m.querySelector('progress');
    if (bar) bar.value = typeof value === 'number' ? value : 0;
    var out = m.querySelector('.meter-value');
    if (out) out.textContent = text;
    return true;
  }

  /** A resource sample, applied in place; a different set of GPUs reloads the section. */
  function applyResources(r) {
    var box = document.getElementById('resources');
    if (!box || !r) return;
    var shown = box.querySelectorAll('[data-device]');
    var same = shown.length === r.gpus.length && r.gpus.every(function (g, i) {
      return shown[i].dataset.device === g.device;
    });
    if (!same || !box.querySelector('[data-r="cpu"]')) return refreshResources();
    r.gpus.forEach(function (g, i) {
      var el = shown[i];
      meter(el, 'util', g.utilization, pct(g.utilization));
      meter(el, 'mem', g.memory_percent, gb(g.memory_used_gb) + ' / ' + gb(g.memory_total_gb) + ' (' + pct(g.memory_percent) + ')');
      var t = el.querySelector('[data-r="temp"] b');
      if (t) t.textContent = g.temperature_c === null ? '—' : g.temperature_c + ' °C';
    });
    meter(box, 'cpu', r.cpu.percent, pct(r.cpu.percent) + ' of ' + r.cpu.cores + ' cores');
    meter(box, 'ram', r.ram.percent, gb(r.ram.used_gb) + ' / ' + gb(r.ram.total_gb) + ' (' + pct(r.ram.percent) + ')');
    if (r.disk) meter(box, 'disk', r.disk.percent, gb(r.disk.used_gb) + ' / ' + gb(r.disk.total_gb) + ' (' + gb(r.disk.free_gb) + ' free)');
    var s = box.querySelector('[data-r="sampled"]');
    if (s) s.textContent = 'Sampled ' + f.date(r.sampled_at);
  }

  window.trainhookLive(root.dataset.stream, root.dataset.lastEventId, {
    job: function (d) {
      if (IN_PLACE[d.change] && d.status === 'training' && updateCard(d)) return;
      refresh();
    },
    snapshot: refresh,
    resources: applyResources,
  });
  // Nodes tick without job changes: their heartbeat ages and statuses are read again now and then.
  setInterval(function () {
    if (document.visibilityState !== 'hidden') refresh();
  }, 15000);
})();
