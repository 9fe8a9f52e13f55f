// The Corrections page: every clip corrected in this browser (or loaded with
// --corrections), with a thumbnail of its first boxed frame, and one export as a box file.
(function () {
  'use strict';
  var info = JSON.parse(document.getElementById('clips-data').textContent);
  var store = window.STABN_STORE, undo = window.STABN_UNDO;
  var COLORS = {object: '#f59e0b', hand: '#06b6d4'};
  var THUMB = 96;
  var body = document.querySelector('#corrections tbody');
  var link = document.getElementById('export-link');
  var preview = document.getElementById('export-preview');

  function text(tag, content) {
    var node = document.createElement(tag);
    node.textContent = content;
    return node;
  }
  function boxOf(item) {
    return Array.isArray(item) ? {box: item, role: 'object'} : {box: item.box, role: item.role};
  }
  function thumbnail(clip, entry) {  // the first boxed frame that the page shows, boxes drawn
    var canvas = document.createElement('canvas'), shown = info.clips[clip];
    canvas.width = canvas.height = THUMB;
    var keys = Object.keys(entry.frames).filter(function (k) { return entry.frames[k].length; });
    if (!shown || !keys.length) { return canvas; }
    var t = -1, key = null;
    for (var k = 0; k < keys.length && t < 0; k += 1) {
      t = shown.frame_indices.indexOf(Number(keys[k]));
      key = keys[k];
    }
    if (t < 0) { return canvas; }
    var crop = shown.crop, S = shown.image_size, image = new Image();
    image.onload = function () {
      var ctx = canvas.getContext('2d');
      ctx.drawImage(image, t * S, 0, S, S, 0, 0, THUMB, THUMB);
      entry.frames[key].map(boxOf).forEach(function (b) {
        var v = [(b.box[0] - crop[0]) / crop[2] * THUMB, (b.box[1] - crop[1]) / crop[3] * THUMB,
                 (b.box[2] - crop[0]) / crop[2] * THUMB, (b.box[3] - crop[1]) / crop[3] * THUMB];
        ctx.strokeStyle = COLORS[b.role] || COLORS.object;
        ctx.lineWidth = 2;
        ctx.strokeRect(v[1], v[0], v[3] - v[1], v[2] - v[0]);
      });
    };
    image.src = shown.strip;
    return canvas;
  }
  function describeBoxes(entry) {
    return Object.keys(entry.frames).sort(function (a, b) { return a - b; }).map(function (key) {
      var list = entry.frames[key].map(boxOf).map(function (b) {
        return '[' + b.box.map(function (v) { return v.toFixed(3); }).join(', ') + '] ' + b.role;
      });
      return key + ': ' + (list.length ? list.join('; ') : 'nothing to look at');
    }).join('\n');
  }
  function describeActive(entry) {
    return (entry.active_frames || []).map(function (item) {
      return Array.isArray(item) ? item[0] + '–' + item[1] : String(item);
    }).join(', ') || '—';
  }
  function show() {
    var entries = store.all(info.checkpoint), clips = Object.keys(entries).sort();
    body.textContent = '';
    clips.forEach(function (clip) {
      var entry = entries[clip], row = document.createElement('tr'), shown = info.clips[clip];
      row.dataset.clip = clip;
      var name = document.createElement('td');
      if (shown) {
        var a = text('a', shown.stem);
        a.href = shown.page;
        name.appendChild(a);
      } else {
        name.textContent = 'not in this report';
      }
      row.appendChild(name);
      var picture = document.createElement('td');
      picture.appendChild(thumbnail(clip, entry));
      row.appendChild(picture);
      row.appendChild(text('td', clip));
      var boxes = text('td', describeBoxes(entry));
      boxes.className = 'boxes';
      row.appendChild(boxes);
      row.appendChild(text('td', describeActive(entry)));
      row.appendChild(text('td', entry.source === 'browser' ? 'this browser' :
                                   'corrections file'));
      var cell = document.createElement('td'), forget = text('button', 'forget');
      forget.type = 'button';
      forget.addEventListener('click', function () {
        var before = store.snapshot(info.checkpoint, clip);
        try {
          store.forget(info.checkpoint, clip);
        } catch (e) {
          undo.say('Not forgotten: this browser refuses to store the change (' + e.name + ').',
                   false);
          return;
        }
        undo.record({checkpoint: info.checkpoint, clip: clip, before: before,
                     what: 'forgot ' + (shown ? shown.stem : clip), then: show}, true);
        show();
      });
      cell.appendChild(forget);
      row.appendChild(cell);
      body.appendChild(row);
    });
    document.getElementById('corrections-count').textContent = clips.length +
      (clips.length === 1 ? ' corrected clip' : ' corrected clips');
    document.getElementById('no-corrections').hidden = clips.length > 0;
  }
  document.getElementById('export').addEventListener('click', function () {
    // Indented, with each box and range on one line.
    var content = JSON.stringify(store.exportObject(info.checkpoint), null, 1)
      .replace(/\[\s*(-?[\d.e+-]+(?:,\s*-?[\d.e+-]+)*)\s*\]/g, function (all, numbers) {
        return '[' + numbers.split(/,\s*/).join(', ') + ']';
      }) + '\n';
    if (link.href) { URL.revokeObjectURL(link.href); }
    link.href = URL.createObjectURL(new Blob([content], {type: 'application/json'}));
    link.hidden = false;
    preview.textContent = content;
    preview.hidden = false;
    link.click();
  });
  show();
}());
