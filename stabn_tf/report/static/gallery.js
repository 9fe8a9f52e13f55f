(function () {
  'use strict';
  var grid = document.getElementById('grid');
  var cards = Array.prototype.slice.call(grid.querySelectorAll('.card'));
  var control = function (id) { return document.getElementById(id); };
  var errorsOnly = control('errors-only'), disagreeOnly = control('disagree-only');
  var classFilter = control('class-filter'), sortBy = control('sort');
  var low = control('conf-min'), high = control('conf-max'), shown = control('shown');
  function number(input, fallback) {
    var value = parseFloat(input.value);
    return isNaN(value) ? fallback : value;
  }
  function apply() {
    var min = number(low, 0), max = number(high, 1), wanted = classFilter.value, count = 0;
    cards.forEach(function (card) {
      var d = card.dataset, confidence = parseFloat(d.confidence);
      var visible = (!errorsOnly.checked || d.error === '1') &&
        (!disagreeOnly || !disagreeOnly.checked || d.disagree === '1') &&
        (wanted === '' || d.trueClass === wanted ||
         (d.trueClass === '' && d.predicted === wanted)) &&
        confidence >= min - 1e-9 && confidence <= max + 1e-9;
      card.hidden = !visible;
      if (visible) { count += 1; }
    });
    shown.textContent = count + ' of ' + cards.length + ' clips';
    var parts = sortBy.value.split(':'), key = parts[0], sign = parts[1] === 'asc' ? 1 : -1;
    cards.slice().sort(function (a, b) {
      if (key === 'name') { return sign * a.dataset.name.localeCompare(b.dataset.name); }
      return sign * (parseFloat(a.dataset[key]) - parseFloat(b.dataset[key])) ||
        a.dataset.name.localeCompare(b.dataset.name);
    }).forEach(function (card) { grid.appendChild(card); });
  }
  [errorsOnly, disagreeOnly, classFilter, sortBy, low, high].forEach(function (input) {
    if (input) { input.addEventListener('input', apply); input.addEventListener('change', apply); }
  });
  apply();
}());
