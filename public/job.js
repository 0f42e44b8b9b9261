/*
 * The job page, live: progress, phase, ETA and metrics from /stream/progress/{id}; each epoch
 * adds a point to both charts and a row to the epoch table; a snapshot (after a gap) replaces
 * them. Cancel asks first and posts the form with fetch (the form works without JS too).
 */
(function () {
  'use strict';
  var root = document.getElementById('job');
  if (!root || !window.trainhookChart) return;
  var f = window.trainhookFormat;
  var TERMINAL = { completed: 1, failed: 1, cancelled: 1 };
  function readJson(id, fallback) {
    try {
      return JSON.parse(document.getElementById(id).textContent || '');
    } catch (e) {
      return fallback;
    }
  }
  var epochs = readJson('epochs-data', []);
  // What the job's engine shows: its charts, the columns of the epoch table, the best metric.
  var view = readJson('metrics-view', { charts: [], table: [], best: { key: '' } });
  var charts = view.charts.map(function (c) {
    var opts = { series: c.series };
    for (var k in c.range) opts[k] = c.range[k];
    return window.trainhookChart(document.getElementById('chart-' + c.id), opts);
  });
  function chartsSet(rows) {
    charts.forEach(function (c) {
      c.set(rows);
    });
  }
  chartsSet(epochs);

  function $(name) {
    return root.querySelector('[data-f="' + name + '"]');
  }
  function set(name, text) {
    var e = $(name);
    if (e) e.textContent = text;
  }

  var tbody = document.querySelector('#epoch-table tbody');
  function tableRow(row) {
    var m = row.metrics || {};
    var tr = document.createElement('tr');
    tr.dataset.epoch = String(row.epoch);
    [String(row.epoch)].concat(view.table.map(function (c) {
      return f.num(m[c.key]);
    }), [f.duration(row.epoch_seconds)]).forEach(function (t) {
      var td = document.createElement('td');
      td.textContent = t;
      tr.appendChild(td);
    });
    var old = tbody.querySelector('tr[data-epoch="' + row.epoch + '"]');
    if (old) old.replaceWith(tr);
    else tbody.appendChild(tr);
    set('epoch-count', String(tbody.children.length));
  }

  function addEpoch(row) {
    charts.forEach(function (c) {
      c.add(row);
    });
    tableRow(row);
  }

  function setStatus(status, phase) {
    root.dataset.status = status;
    var badge = $('status');
    if (badge) {
      badge.textContent = f.status(status);
      badge.className = 'badge badge-' + status;
    }
    if (phase) set('phase', f.phase(phase));
    if (TERMINAL[status]) {
      var form = $('cancel-form');
      if (form) form.remove();
      set('eta', '—');
    }
  }

  function apply(d) {
    setStatus(d.status, d.phase);
    var bar = $('bar');
    if (bar && typeof d.progress === 'number') {
      bar.value = d.progress;
      bar.textContent = d.progress + '%';
      set('progress-text', d.progress.toFixed(1) + '% complete');
    }
    if (typeof d.epoch === 'number') set('epoch', String(d.epoch));
    if (typeof d.total_epochs === 'number') set('total-epochs', String(d.total_epochs));
    if (!TERMINAL[d.status]) set('eta', f.eta(d.status, d.phase || root.dataset.phase, d.eta_seconds));
    if (d.started_at) {
      root.dataset.startedAt = d.started_at;
      set('started', f.date(d.started_at));
    }
    if (d.finished_at) {
      root.dataset.finishedAt = d.finished_at;
      set('finished', f.date(d.finished_at));
    }
    var cur = (d.metrics && d.metrics.current) || null;
    if (cur) {
      root.querySelectorAll('[data-m]').forEach(function (e) {
        e.textContent = f.num(cur[e.dataset.m]);
      });
    }
    var best = (d.metrics && d.metrics.best) || null;
    var bestKey = view.best.key;
    if (best && typeof best[bestKey] === 'number') set('best', f.num(best[bestKey]) + (best.epoch ? ' (epoch ' + best.epoch + ')' : ''));
    if (d.resources) showResources(d.resources);
    if (d.error && d.status === 'failed') {
      var box = $('error-box');
      if (box) box.hidden = false;
      set('error-code', d.error.code);
      set('error-message', d.error.message);
      if (d.error.phase) {
        var where = d.error.phase === 'checking' ? 'dataset checks' : 'phase ' + d.error.phase;
        set('error-phase', '(' + where + (d.error.epoch ? ', epoch ' + d.error.epoch : '') + ')');
      }
    }
    tick();
  }

  function showResources(r) {
    var dl = $('resources');
    if (!dl) return;
    var gb = function (v) {
      return typeof v === 'number' ? v.toFixed(1) + ' GB' : '—';
    };
    var put = function (key, text) {
      var e = dl.querySelector('[data-res="' + key + '"]');
      if (e) e.textContent = text;
    };
    put('gpu_utilization', typeof r.gpu_utilization === 'number' ? r.gpu_utilization.toFixed(0) + '%' : '—');
    put('memory', gb(r.memory_used_gb) + ' (peak ' + gb(r.peak_memory_used_gb) + ')');
    put('temperature', (typeof r.temperature_c === 'number' ? r.temperature_c + ' °C' : '—') + (r.peak_temperature_c ? ' (peak ' + r.peak_temperature_c + ' °C)' : ''));
    put('sampled', f.date(r.sampled_at));
    dl.hidden = false;
    var empty = $('resources-empty');
    if (empty) empty.hidden = true;
  }

  function tick() {
    var s = root.dataset.startedAt;
    if (!s) return;
    var end = root.dataset.finishedAt ? new Date(root.dataset.finishedAt).getTime() : Date.now();
    set('elapsed', f.duration((end - new Date(s).getTime()) / 1000));
  }
  var ticker = setInterval(tick, 1000);

  var live = null;
  function finish(d) {
    apply(d);
    var note = $('final-notice');
    if (note) note.hidden = false;
    clearInterval(ticker);
    tick();
    if (live) live.close('Live: job ' + d.status);
  }

  if (TERMINAL[root.dataset.status]) {
    clearInterval(ticker);
    var st = document.getElementById('live-status');
    if (st) st.textContent = 'Job ' + root.dataset.status;
  } else {
    live = window.trainhookLive(root.dataset.stream, root.dataset.lastEventId, {
      progress: function (d) {
        if (d.snapshot && Array.isArray(d.epochs)) {
          chartsSet(d.epochs);
          d.epochs.forEach(tableRow);
        }
        if (d.epoch_metrics) addEpoch(d.epoch_metrics);
        if (TERMINAL[d.status]) finish(d);
        else apply(d);
      },
      completed: finish,
      failed: finish,
      cancelled: finish,
    });
  }

  var form = document.getElementById('cancel-form');
  if (form) {
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (!window.confirm('Cancel this training job? The worker stops at the next batch and keeps last.pt.')) return;
      var button = form.querySelector('button');
      button.disabled = true;
      button.textContent = 'Cancelling…';
      fetch(form.action, {
        method: 'POST',
        body: new URLSearchParams(new FormData(form)),
        credentials: 'same-origin',
        headers: { accept: 'application/json' },
      })
        .then(function (r) {
          return r.json().then(function (body) {
            if (r.ok || r.status === 409) {
              setStatus(r.ok ? 'cancelled' : root.dataset.status);
              if (!r.ok) button.textContent = 'Already finished';
              return;
            }
            button.disabled = false;
            button.textContent = '⊘ Cancel training';
            window.alert('Not cancelled: ' + ((body.error && body.error.message) || r.status));
          });
        })
        .catch(function () {
          button.disabled = false;
          button.textContent = '⊘ Cancel training';
        });
    });
  }

  // An export runs while the form waits (a minute for a big model): say so, and no second click.
  var exportForm = document.getElementById('export-form');
  if (exportForm) {
    exportForm.addEventListener('submit', function () {
      var button = exportForm.querySelector('button');
      setTimeout(function () {
        button.disabled = true;
        button.textContent = 'Exporting… (this can take a minute)';
      }, 0);
    });
  }
})();
