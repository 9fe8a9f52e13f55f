// The gallery: every clip's card data is one compact array (#gallery-data); only the cards
// in (or near) the window are in the page, so a split of 25,000 clips filters, sorts and
// scrolls as fast as one of 50. Sorted orders are computed once per key and kept.
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('gallery-data').textContent);
  var F = {};
  data.fields.forEach(function (name, i) { F[name] = i; });
  var cards = data.cards, total = cards.length;
  // The filtered fields as typed columns: a filter is one tight loop over them.
  var confidence = new Float64Array(total), truth = new Int32Array(total);
  var predicted = new Int32Array(total), flags = new Uint8Array(total);
  cards.forEach(function (c, i) {
    confidence[i] = c[F.confidence];
    truth[i] = c[F['true']];
    predicted[i] = c[F.predicted];
    flags[i] = (c[F.error] ? 1 : 0) | (c[F.disagree] ? 2 : 0);
  });
  var grid = document.getElementById('grid');
  var control = function (id) { return document.getElementById(id); };
  var errorsOnly = control('errors-only'), disagreeOnly = control('disagree-only');
  var classFilter = control('class-filter'), sortBy = control('sort');
  var low = control('conf-min'), high = control('conf-max'), shown = control('shown');
  var MIN_WIDTH = 168, GAP = 10, SPARE_ROWS = 2;
  var orders = {};  // 'key:asc|desc' -> Int32Array of card indices
  var visible = new Int32Array(0);  // the filtered, sorted card indices
  var rowHeight = 0, painted = '', frame = 0;

  function number(input, fallback) {
    var value = parseFloat(input.value);
    return isNaN(value) ? fallback : value;
  }
  // Cards come sorted by clip id; ties in any sort keep that order.
  function sorted(spec) {
    if (orders[spec]) { return orders[spec]; }
    var parts = spec.split(':'), field = F[parts[0]], sign = parts[1] === 'asc' ? 1 : -1;
    var order = new Int32Array(total), i;
    for (i = 0; i < total; i += 1) { order[i] = i; }
    if (parts[0] === 'name') {
      if (sign < 0) { order.reverse(); }
    } else {
      var values = new Float64Array(total);
      for (i = 0; i < total; i += 1) { values[i] = cards[i][field]; }
      order.sort(function (a, b) { return sign * (values[a] - values[b]) || a - b; });
    }
    orders[spec] = order;
    return order;
  }
  function filtered() {
    var min = number(low, 0) - 1e-9, max = number(high, 1) + 1e-9;
    var wanted = classFilter.value === '' ? -1 : parseInt(classFilter.value, 10);
    var need = (errorsOnly.checked ? 1 : 0) | (disagreeOnly && disagreeOnly.checked ? 2 : 0);
    var order = sorted(sortBy.value), out = new Int32Array(total), count = 0;
    for (var k = 0; k < total; k += 1) {
      var i = order[k], conf = confidence[i];
      if ((flags[i] & need) !== need || conf < min || conf > max ||
          (wanted >= 0 && truth[i] !== wanted && !(truth[i] < 0 && predicted[i] === wanted))) {
        continue;
      }
      out[count] = i;
      count += 1;
    }
    return out.subarray(0, count);
  }
  function spark(values) {  // per-frame weights (0..100) as a small area chart
    var n = values.length, w = 120, h = 28;
    if (!n) { return ''; }
    var points = [], peak = 0;
    for (var t = 0; t < n; t += 1) {
      var x = n > 1 ? 1 + t * (w - 2) / (n - 1) : w / 2;
      var y = (h - 1) - Math.min(1, Math.max(0, values[t] / 100)) * (h - 2);
      points.push([x.toFixed(1), y.toFixed(1)]);
      if (values[t] > values[peak]) { peak = t; }
    }
    var line = points.map(function (p) { return p.join(','); }).join(' ');
    return '<svg class="spark" width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + ' ' +
      h + '" role="img" aria-label="temporal weight per frame"><polygon points="' +
      points[0][0] + ',' + (h - 1) + ' ' + line + ' ' + points[n - 1][0] + ',' + (h - 1) +
      '" fill="#f6c89f"/><polyline points="' + line + '" fill="none" stroke="#c2410c" ' +
      'stroke-width="1.5"/><circle cx="' + points[peak][0] + '" cy="' + points[peak][1] +
      '" r="2.2" fill="#7c2d12"/></svg>';
  }
  function line(parent, className, text) {
    var div = document.createElement('div');
    if (className) { div.className = className; }
    div.textContent = text;
    parent.appendChild(div);
    return div;
  }
  function card(index) {  // text through textContent only: names may hold markup
    var c = cards[index], a = document.createElement('a'), truth = c[F['true']];
    var stem = c[F.stem];
    a.className = 'card' + (c[F.error] ? ' err' : '');
    a.href = 'clips/' + encodeURIComponent(stem) + '.html';
    a.dataset.name = stem;
    a.dataset.trueClass = truth < 0 ? '' : truth;
    a.dataset.predicted = c[F.predicted];
    a.dataset.confidence = c[F.confidence];
    a.dataset.spread = c[F.spread];
    a.dataset.error = c[F.error];
    a.dataset.disagree = c[F.disagree];
    if (c[F.thumb]) {
      var img = document.createElement('img');
      img.src = data.media + encodeURIComponent(stem) + data.thumb_suffix;
      img.alt = '';
      img.width = img.height = 144;
      img.className = 'thumb';
      a.appendChild(img);
    } else {
      line(a, 'thumb', '');  // keeps every card the same height
    }
    line(a, 'name', c[F.clip]).title = c[F.clip];
    line(a, '', truth < 0 ? '\u00a0' : 'true: ' + data.classes[truth]);
    var verdict = line(a, c[F.error] ? 'wrong' : 'right',
                       'predicted: ' + data.classes[c[F.predicted]] + ' ');
    var b = document.createElement('b');
    b.textContent = Math.round(c[F.confidence] * 100) + '%';
    verdict.appendChild(b);
    var chart = document.createElement('div');
    chart.innerHTML = spark(c[F.mt]);  // numbers only
    a.appendChild(chart);
    c[F.others].forEach(function (text) { line(a, 'other', text); });
    return a;
  }
  function columns() {
    return Math.max(1, Math.floor((grid.clientWidth + GAP) / (MIN_WIDTH + GAP)));
  }
  // Draws the rows in (or SPARE_ROWS around) the window; the padding stands for the rest.
  function paint(force) {
    frame = 0;
    var cols = columns(), rows = Math.ceil(visible.length / cols);
    if (!rowHeight && visible.length) {  // one card, measured once
      grid.style.paddingTop = grid.style.paddingBottom = '0px';
      grid.replaceChildren(card(visible[0]));
      rowHeight = grid.firstChild.offsetHeight + GAP;
      grid.style.gridAutoRows = (rowHeight - GAP) + 'px';
    }
    var top = -grid.getBoundingClientRect().top;
    var first = rowHeight ? Math.max(0, Math.floor(top / rowHeight) - SPARE_ROWS) : 0;
    var last = rowHeight ? Math.min(rows, Math.ceil((top + window.innerHeight) / rowHeight) +
                                    SPARE_ROWS) : 0;
    first = Math.min(first, last);
    var key = first + ':' + last + ':' + cols;
    if (!force && key === painted) { return; }
    painted = key;
    var nodes = [];
    for (var i = first * cols; i < Math.min(visible.length, last * cols); i += 1) {
      nodes.push(card(visible[i]));
    }
    grid.style.paddingTop = first * rowHeight + 'px';
    grid.style.paddingBottom = (rows - last) * rowHeight + 'px';
    grid.replaceChildren.apply(grid, nodes);
  }
  function schedule() {
    if (!frame) { frame = window.requestAnimationFrame(function () { paint(false); }); }
  }
  // Filters and sorts from the controls' state and repaints (what every control calls).
  function apply() {
    visible = filtered();
    shown.textContent = visible.length + ' of ' + total + ' clips';
    paint(true);
  }
  [errorsOnly, disagreeOnly, classFilter, sortBy, low, high].forEach(function (input) {
    if (input) { input.addEventListener('input', apply); input.addEventListener('change', apply); }
  });
  window.addEventListener('scroll', schedule, {passive: true});
  window.addEventListener('resize', function () { rowHeight = 0; painted = ''; schedule(); });
  window.STABN_GALLERY = {apply: apply, shown: function () { return visible.length; },
                          total: total};
  apply();
  // The other sorts, once the first cards are on screen, so choosing one only filters.
  Array.prototype.forEach.call(sortBy.options, function (option, i) {
    window.setTimeout(function () { sorted(option.value); }, 50 * (i + 1));
  });
}());
