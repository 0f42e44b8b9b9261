/*
 * A stream that stays open: on an error the EventSource is closed and opened
 * again after 1 s, 2 s, 4 s … up to 30 s (with jitter), resuming from the last event id it saw
 * (?last_event_id=, since a new EventSource does not send Last-Event-ID itself). A stream that
 * stays silent for three heartbeats is treated as dead too (a half-open mobile connection).
 * The status line says, in words, whether the page is live.
 */
(function () {
  'use strict';
  var statusEl = document.getElementById('live-status');
  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  window.trainhookLive = function (url, lastEventId, handlers) {
    var retries = 0;
    var es = null;
    var stopped = false;
    var lastId = lastEventId || '';
    var retryTimer = null;
    var watchdog = null;
    var heartbeatMs = Number(document.body.dataset.heartbeatMs || 15000);

    function alive() {
      clearTimeout(watchdog);
      watchdog = setTimeout(function () {
        if (es) es.close();
        fail();
      }, heartbeatMs * 3 + 2000);
    }

    function fail() {
      if (stopped) return;
      clearTimeout(watchdog);
      var delay = Math.min(1000 * Math.pow(2, retries), 30000) * (0.8 + Math.random() * 0.4);
      retries++;
      setStatus('retry', 'Live: disconnected, retrying in ' + Math.max(1, Math.round(delay / 1000)) + ' s');
      clearTimeout(retryTimer);
      retryTimer = setTimeout(open, delay);
    }

    function open() {
      if (stopped) return;
      var u = new URL(url, location.href);
      if (lastId) u.searchParams.set('last_event_id', lastId);
      es = new EventSource(u.toString());
      es.onopen = function () {
        retries = 0;
        setStatus('on', 'Live: connected');
        alive();
      };
      es.onerror = function () {
        es.close();
        fail();
      };
      es.addEventListener('heartbeat', alive);
      Object.keys(handlers).forEach(function (name) {
        es.addEventListener(name, function (e) {
          alive();
          if (e.lastEventId) lastId = e.lastEventId;
          var data;
          try {
            data = JSON.parse(e.data);
          } catch (err) {
            return;
          }
          try {
            handlers[name](data);
          } catch (err) {
            if (window.console) console.error('live update failed', err);
          }
        });
      });
    }

    open();
    return {
      close: function (text) {
        stopped = true;
        clearTimeout(retryTimer);
        clearTimeout(watchdog);
        if (es) es.close();
        setStatus('off', text || 'Live: closed');
      },
    };
  };

  window.trainhookFormat = {
    num: function (v, digits) {
      return typeof v === 'number' && isFinite(v) ? v.toFixed(digits === undefined ? 3 : digits) : '—';
    },
    duration: function (seconds) {
      if (seconds === null || seconds === undefined || !isFinite(seconds) || seconds < 0) return '—';
      var s = Math.round(seconds);
      var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
      if (d > 0) return d + 'd ' + h + 'h';
      if (h > 0) return h + 'h ' + m + 'm';
      if (m > 0) return m + 'm ' + sec + 's';
      return sec + 's';
    },
    date: function (iso) {
      if (!iso) return '—';
      var d = new Date(iso);
      return isNaN(d.getTime()) ? '—' : d.toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
    },
    phase: function (p) {
      return p ? p.charAt(0).toUpperCase() + p.slice(1) : '';
    },
    /* The same rule as src/ui/render.ts eta: the phase while validating, nothing when not training. */
    eta: function (status, phase, seconds) {
      if (status !== 'training') return '—';
      if (phase === 'validating' || phase === 'finalizing') return phase;
      if (phase !== 'training' && !seconds) return '—';
      return window.trainhookFormat.duration(seconds);
    },
    status: function (s) {
      var map = {
        queued: '◷ Queued',
        training: '▶ Training',
        completed: '✔ Completed',
        failed: '✖ Failed',
        cancelled: '⊘ Cancelled',
      };
      return map[s] || s;
    },
  };
})();
