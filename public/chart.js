/*
 * A small line chart in SVG: epochs on x, one line per series. Each series has its own dash
 * pattern and marker shape as well as its own colour, and a legend in words, so the chart
 * reads in greyscale and in print. ~150 lines instead of a charting library: the pages need
 * two charts of at most a few hundred points, updated one point at a time.
 */
(function () {
  'use strict';
  var NS = 'http://www.w3.org/2000/svg';
  var L = 44, R = 12, T = 12, B = 34;
  var DASH = ['', '8 5', '2 4', '12 4 2 4'];

  function niceStep(range, ticks) {
    var raw = range / Math.max(1, ticks);
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
  }

  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function marker(shape, x, y, cls) {
    if (shape === 1) return el('rect', { x: x - 3.5, y: y - 3.5, width: 7, height: 7, class: cls });
    if (shape === 2) return el('path', { d: 'M' + x + ' ' + (y - 4.5) + 'L' + (x + 4.5) + ' ' + (y + 3.5) + 'L' + (x - 4.5) + ' ' + (y + 3.5) + 'Z', class: cls });
    if (shape === 3) return el('path', { d: 'M' + x + ' ' + (y - 4.5) + 'L' + (x + 4.5) + ' ' + y + 'L' + x + ' ' + (y + 4.5) + 'L' + (x - 4.5) + ' ' + y + 'Z', class: cls });
    return el('circle', { cx: x, cy: y, r: 3.5, class: cls });
  }

  /**
   * opts.series: [{ key, label }], opts.yMin / opts.yMax: fixed bounds (else from the data),
   * opts.digits: y label precision.
   */
  window.trainhookChart = function (container, opts) {
    var rows = [];
    var legend = document.createElement('ul');
    legend.className = 'legend';
    opts.series.forEach(function (s, i) {
      var li = document.createElement('li');
      var sw = el('svg', { width: 34, height: 12, viewBox: '0 0 34 12', 'aria-hidden': 'true', class: 's' + i });
      sw.appendChild(el('line', { x1: 1, y1: 6, x2: 33, y2: 6, 'stroke-dasharray': DASH[i % 4], class: 'line' }));
      sw.appendChild(marker(i % 4, 17, 6, 'pt-key'));
      li.appendChild(sw);
      li.appendChild(document.createTextNode(' ' + s.label));
      legend.appendChild(li);
    });
    var holder = document.createElement('div');
    container.appendChild(holder);
    container.appendChild(legend);

    var W = 600, H = 240;
    function draw() {
      // Drawn at the container's own width, so labels keep their size on a phone.
      W = Math.max(280, Math.min(900, Math.round(container.clientWidth || 600)));
      H = W < 480 ? 200 : 240;
      var svg = el('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'chart-svg', 'aria-hidden': 'true' });
      var values = [];
      rows.forEach(function (r) {
        opts.series.forEach(function (s) {
          var v = r.metrics[s.key];
          if (typeof v === 'number' && isFinite(v)) values.push(v);
        });
      });
      var maxEpoch = rows.length ? rows[rows.length - 1].epoch : 1;
      var x0 = 1, x1 = Math.max(maxEpoch, x0 + 1);
      var y0 = opts.yMin !== undefined ? opts.yMin : Math.min.apply(null, values.concat([0]));
      var y1 = opts.yMax !== undefined ? opts.yMax : Math.max.apply(null, values.concat([y0 + 1e-6]));
      if (opts.yMax === undefined) y1 = y1 + (y1 - y0) * 0.08;
      var sx = function (x) { return L + ((x - x0) / (x1 - x0)) * (W - L - R); };
      var sy = function (y) { return T + (1 - (y - y0) / (y1 - y0 || 1)) * (H - T - B); };

      // No value yet: no scale either (a scale made up from nothing reads 0.00, 0.00, 0.00).
      var empty = values.length === 0;
      var ystep = niceStep(y1 - y0 || 1, 4);
      for (var y = Math.ceil(y0 / ystep) * ystep; !empty && y <= y1 + 1e-9; y += ystep) {
        svg.appendChild(el('line', { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: 'grid' }));
        svg.appendChild(el('text', { x: L - 6, y: sy(y) + 4, 'text-anchor': 'end', class: 'tick' }, y.toFixed(opts.digits === undefined ? 2 : opts.digits)));
      }
      var xstep = Math.max(1, Math.ceil(niceStep(x1 - x0, 6)));
      for (var x = x0; !empty && x <= x1; x += xstep) {
        svg.appendChild(el('text', { x: sx(x), y: H - B + 16, 'text-anchor': 'middle', class: 'tick' }, String(x)));
      }
      svg.appendChild(el('text', { x: W - R, y: H - 4, 'text-anchor': 'end', class: 'axis-label' }, 'epoch'));
      svg.appendChild(el('line', { x1: L, x2: L, y1: T, y2: H - B, class: 'axis' }));
      svg.appendChild(el('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis' }));

      opts.series.forEach(function (s, i) {
        var g = el('g', { class: 's' + i });
        var pts = rows.filter(function (r) {
          return typeof r.metrics[s.key] === 'number' && isFinite(r.metrics[s.key]);
        });
        if (pts.length > 1) {
          g.appendChild(el('polyline', {
            points: pts.map(function (r) { return sx(r.epoch).toFixed(1) + ',' + sy(r.metrics[s.key]).toFixed(1); }).join(' '),
            'stroke-dasharray': DASH[i % 4],
            class: 'line',
          }));
        }
        pts.forEach(function (r) {
          var m = marker(i % 4, sx(r.epoch), sy(r.metrics[s.key]), 'pt');
          m.appendChild(el('title', {}, 'epoch ' + r.epoch + ': ' + s.label + ' ' + r.metrics[s.key].toFixed(4)));
          g.appendChild(m);
        });
        svg.appendChild(g);
      });
      if (empty) {
        svg.appendChild(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty-label' }, 'No data yet'));
      }
      holder.replaceChildren(svg);
      container.dataset.points = String(rows.length);
    }

    var api = {
      set: function (list) {
        rows = [];
        list.forEach(function (r) { api.add(r, true); });
        draw();
      },
      /** Adds or replaces the row of an epoch (a resumed epoch replaces, never doubles). */
      add: function (row, quiet) {
        rows = rows.filter(function (r) { return r.epoch !== row.epoch; });
        rows.push({ epoch: row.epoch, metrics: row.metrics || {} });
        rows.sort(function (a, b) { return a.epoch - b.epoch; });
        if (!quiet) draw();
      },
      points: function () { return rows.length; },
    };
    draw();
    var resizeTimer = null;
    var lastWidth = container.clientWidth;
    window.addEventListener('resize', function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () {
        if (container.clientWidth !== lastWidth) {
          lastWidth = container.clientWidth;
          draw();
        }
      }, 150);
    });
    return api;
  };
})();
