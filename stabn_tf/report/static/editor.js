// The clip page's editor: boxes and action frames drawn over the frames the model saw.
// Boxes are edited in canvas pixels of the shown frame (the model's centre crop, drawn
// `display` pixels wide) and stored in normalised coordinates of the full source frame,
// under the frame's source index, through STABN_STORE. Mouse, touch and pen go through
// Pointer Events; the keyboard draws, moves and resizes boxes on the focused frame; every
// change can be undone (STABN_UNDO).
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('editor-data').textContent);
  var store = window.STABN_STORE, undo = window.STABN_UNDO;
  var D = data.display, S = data.image_size, crop = data.crop, indices = data.frame_indices;
  var HANDLE = 6, MIN_SIDE = 3;
  // Keyboard steps in canvas pixels (Ctrl or ⌘ held: the fine one), and the side of the
  // square a new box starts as, in the frame's middle.
  var STEP = 4, FINE_STEP = 1, NEW_SIDE = Math.round(D / 4);
  var COLORS = {object: '#f59e0b', hand: '#06b6d4'};
  var canvases = Array.prototype.slice.call(document.querySelectorAll('#frames canvas'));
  var checks = Array.prototype.slice.call(document.querySelectorAll('#frames input.active'));
  var control = function (id) { return document.getElementById(id); };
  var overlay = control('overlay'), newRole = control('new-role'), boxRole = control('box-role');
  var deleteButton = control('delete-box'), status = control('editor-status');
  var live = control('editor-live');
  var strip = new Image();
  var boxes = indices.map(function () { return []; });  // per shown frame: {v: [y0, x0, y1, x1] px, role}
  var selected = null, drag = null, heat = null;
  // Where the shown corrections come from: 'browser' (kept in this browser's storage),
  // 'file' (the box file loaded with --corrections, not stored here) or null (neither);
  // and the boxes the entry holds on frames this page does not show (kept as they are).
  var source = null, unshown = {};

  function round(value) { return Math.round(value * 1e6) / 1e6; }
  function toSource(v) {  // canvas pixels → normalised source frame
    return [round(crop[0] + crop[2] * v[0] / D), round(crop[1] + crop[3] * v[1] / D),
            round(crop[0] + crop[2] * v[2] / D), round(crop[1] + crop[3] * v[3] / D)];
  }
  function toCanvas(b) {
    return [(b[0] - crop[0]) / crop[2] * D, (b[1] - crop[1]) / crop[3] * D,
            (b[2] - crop[0]) / crop[2] * D, (b[3] - crop[1]) / crop[3] * D];
  }
  function load() {
    var entry = store.read(data.checkpoint, data.clip);
    source = entry ? entry.source : null;
    entry = entry || {frames: {}, active_frames: []};
    unshown = {};
    Object.keys(entry.frames).forEach(function (key) {
      if (indices.indexOf(Number(key)) < 0) { unshown[key] = entry.frames[key]; }
    });
    boxes = indices.map(function (index) {
      return (entry.frames[String(index)] || []).map(function (item) {
        var plain = Array.isArray(item);
        var box = plain ? item : item.box, v = toCanvas(box);
        // `loaded`: the stored box and where it was drawn, so an untouched box is saved
        // as it was (not re-rounded through the canvas).
        return {v: v, role: plain ? 'object' : item.role || 'object',
                loaded: {box: box, v: v.slice()}};
      });
    });
    checks.forEach(function (box, t) { box.checked = store.isActive(entry.active_frames, indices[t]); });
  }
  // Stores the page's boxes and ticks when they differ from what is stored (or loaded), and
  // records the change (`what` it was) for Undo; `offer` shows the Undo notice at once.
  function save(what, offer) {
    var frames = JSON.parse(JSON.stringify(unshown));
    boxes.forEach(function (list, t) {
      if (!list.length) { return; }
      frames[String(indices[t])] = list.map(function (b) {
        var box = b.loaded && b.v.every(function (value, k) {
          return value === b.loaded.v[k];
        }) ? b.loaded.box : toSource(b.v);
        return b.role === 'hand' ? {box: box, role: 'hand'} : box;
      });
    });
    var marked = checks.map(function (box) { return box.checked; });
    var entry = {frames: frames, active_frames: store.activeFrames(indices, marked)};
    if (store.same(entry, store.read(data.checkpoint, data.clip))) {
      showStatus();
      return;
    }
    var before = store.snapshot(data.checkpoint, data.clip);
    try {
      store.write(data.checkpoint, data.clip, entry);
    } catch (e) {  // storage off or full: say so instead of losing edits silently
      status.textContent = 'NOT SAVED: this browser refuses to store the edits (' + e.name + ')';
      return;
    }
    source = 'browser';
    undo.record({checkpoint: data.checkpoint, clip: data.clip, before: before, what: what,
                 then: reload}, offer);
    showStatus();
  }
  function reload(step) {  // after Undo put the stored text back
    load();
    select(null);
    showStatus();
    announce('Undone: ' + step.what);
  }
  var WHERE = {browser: 'kept in this browser',
               file: 'from the corrections file; not stored in this browser until edited'};
  function showStatus() {
    var count = boxes.reduce(function (n, list) { return n + list.length; }, 0);
    var framed = boxes.filter(function (list) { return list.length; }).length;
    var active = checks.filter(function (box) { return box.checked; }).length;
    status.textContent = count + (count === 1 ? ' box on ' : ' boxes on ') + framed +
      (framed === 1 ? ' frame, ' : ' frames, ') + active +
      (active === 1 ? ' action frame (' : ' action frames (') +
      (WHERE[source] || 'nothing stored yet') + ')';
  }
  function announce(text) { live.textContent = text; }
  // "box 1 of 2 on frame 12 (object): top 40, left 48, bottom 120, right 152 of 224 px"
  function describe(t, i) {
    var b = boxes[t][i], v = b.v.map(Math.round);
    return 'box ' + (i + 1) + ' of ' + boxes[t].length + ' on frame ' + indices[t] + ' (' +
      b.role + '): top ' + v[0] + ', left ' + v[1] + ', bottom ' + v[2] + ', right ' + v[3] +
      ' of ' + D + ' px';
  }
  // Ms of frame t as a small canvas, one pixel per map cell, coloured on the fixed 0..1
  // scale of the report's pictures (data.scale: the same colour map and opacity); drawn
  // scaled up without smoothing, so each cell shows as a square.
  var stops = (data.scale && data.scale.stops || []).map(function (hex) {
    return [1, 3, 5].map(function (i) { return parseInt(hex.slice(i, i + 2), 16); });
  });
  function heatmap(t) {
    var map = data.ms && data.ms[t];
    if (!map || !stops.length) { return null; }
    var h = map.length, w = map[0].length;
    var small = document.createElement('canvas');
    small.width = w; small.height = h;
    var ctx = small.getContext('2d'), image = ctx.createImageData(w, h);
    for (var y = 0; y < h; y += 1) {
      for (var x = 0; x < w; x += 1) {
        var v = Math.min(1, Math.max(0, map[y][x])), k = 4 * (y * w + x);
        var rgb = stops[Math.round(v * (stops.length - 1))];
        image.data[k] = rgb[0]; image.data[k + 1] = rgb[1]; image.data[k + 2] = rgb[2];
        image.data[k + 3] = 255;
      }
    }
    ctx.putImageData(image, 0, 0);
    return small;
  }
  function handles(v) {
    return [[v[0], v[1]], [v[0], v[3]], [v[2], v[1]], [v[2], v[3]]];
  }
  function draw(t) {
    var ctx = canvases[t].getContext('2d');
    ctx.clearRect(0, 0, D, D);
    if (strip.complete && strip.naturalWidth) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(strip, t * S, 0, S, S, 0, 0, D, D);
    }
    if (overlay.checked && heat && heat[t]) {
      ctx.save();
      ctx.imageSmoothingEnabled = false;
      ctx.globalAlpha = data.scale.alpha;
      ctx.drawImage(heat[t], 0, 0, D, D);
      ctx.restore();
    }
    boxes[t].forEach(function (b, i) {
      var v = b.v, chosen = selected && selected.t === t && selected.i === i;
      ctx.lineWidth = chosen ? 3 : 2;
      ctx.strokeStyle = COLORS[b.role] || COLORS.object;
      ctx.strokeRect(v[1], v[0], v[3] - v[1], v[2] - v[0]);
      ctx.fillStyle = ctx.strokeStyle;  // the role on a tab of the box's colour
      ctx.font = '11px system-ui, sans-serif';
      var top = v[0] >= 14 ? v[0] - 14 : v[0];
      ctx.fillRect(v[1], top, ctx.measureText(b.role).width + 6, 14);
      ctx.fillStyle = '#1f2933';
      ctx.fillText(b.role, v[1] + 3, top + 11);
      ctx.fillStyle = ctx.strokeStyle;
      if (chosen) {
        handles(v).forEach(function (p) {
          ctx.fillRect(p[1] - HANDLE / 2, p[0] - HANDLE / 2, HANDLE, HANDLE);
        });
      }
    });
  }
  function drawAll() { canvases.forEach(function (c, t) { draw(t); }); }
  function select(next) {
    selected = next;
    deleteButton.disabled = boxRole.disabled = !selected;
    if (selected) { boxRole.value = boxes[selected.t][selected.i].role; }
    drawAll();
  }
  // The canvas pixel under a pointer, whole (a page scrolled by a fraction of a pixel
  // draws the same box as the keyboard's whole steps).
  function point(canvas, event) {
    var rect = canvas.getBoundingClientRect();
    return {y: Math.min(Math.max(Math.round((event.clientY - rect.top) * D / rect.height), 0), D),
            x: Math.min(Math.max(Math.round((event.clientX - rect.left) * D / rect.width), 0), D)};
  }
  function inside(v, p) { return p.y >= v[0] && p.y <= v[2] && p.x >= v[1] && p.x <= v[3]; }
  // The selected box's handle or inside under p ({i, corner}: corner -1 for the inside).
  function grab(t, p) {
    if (!selected || selected.t !== t) { return null; }
    var v = boxes[t][selected.i].v, corners = handles(v);
    for (var c = 0; c < 4; c += 1) {
      if (Math.abs(corners[c][0] - p.y) <= HANDLE && Math.abs(corners[c][1] - p.x) <= HANDLE) {
        return {i: selected.i, corner: c};
      }
    }
    return inside(v, p) ? {i: selected.i, corner: -1} : null;
  }
  // The smallest box under p (what a click selects), or -1.
  function under(t, p) {
    var best = -1, area = Infinity;
    boxes[t].forEach(function (b, i) {
      var size = (b.v[2] - b.v[0]) * (b.v[3] - b.v[1]);
      if (inside(b.v, p) && size < area) { best = i; area = size; }
    });
    return best;
  }
  // Pressing on the selected box moves it (on a corner handle: resizes it); anywhere
  // else a drag draws a new box, and a click selects the box under it. One pointer at a
  // time (mouse, finger or pen), captured by its canvas until it lifts.
  function onDown(event) {
    if (!event.isPrimary || event.button !== 0 || drag) { return; }
    var canvas = event.currentTarget, t = Number(canvas.dataset.t), p = point(canvas, event);
    var found = grab(t, p);
    event.preventDefault();
    canvas.focus();
    try { canvas.setPointerCapture(event.pointerId); } catch (e) { /* not an active pointer */ }
    if (found) {
      drag = {mode: found.corner >= 0 ? 'resize' : 'move', corner: found.corner, t: t,
              start: p, original: boxes[t][found.i].v.slice(), canvas: canvas};
    } else {
      var clicked = under(t, p);
      boxes[t].push({v: [p.y, p.x, p.y, p.x], role: newRole.value});
      select({t: t, i: boxes[t].length - 1});
      drag = {mode: 'draw', t: t, start: p, canvas: canvas, clicked: clicked};
    }
    drag.pointer = event.pointerId;
  }
  function onMove(event) {
    if (!drag || event.pointerId !== drag.pointer) { return; }
    var p = point(drag.canvas, event), b = boxes[drag.t][selected.i], o = drag.original;
    if (drag.mode === 'draw') {
      b.v = [Math.min(drag.start.y, p.y), Math.min(drag.start.x, p.x),
             Math.max(drag.start.y, p.y), Math.max(drag.start.x, p.x)];
    } else if (drag.mode === 'move') {
      var dy = Math.min(Math.max(p.y - drag.start.y, -o[0]), D - o[2]);
      var dx = Math.min(Math.max(p.x - drag.start.x, -o[1]), D - o[3]);
      b.v = [o[0] + dy, o[1] + dx, o[2] + dy, o[3] + dx];
    } else {  // resize: the dragged corner follows the pointer, the opposite one stays
      var fixed = handles(o)[3 - drag.corner];
      b.v = [Math.min(fixed[0], p.y), Math.min(fixed[1], p.x),
             Math.max(fixed[0], p.y), Math.max(fixed[1], p.x)];
    }
    draw(drag.t);
  }
  function onUp(event) {
    if (!drag || event.pointerId !== drag.pointer) { return; }
    var b = boxes[drag.t][selected.i], mode = drag.mode;
    if (b.v[2] - b.v[0] < MIN_SIDE || b.v[3] - b.v[1] < MIN_SIDE) {
      if (drag.mode === 'draw') {  // a click, not a drag: no box; select the one under it
        boxes[drag.t].splice(selected.i, 1);
        selected = drag.clicked >= 0 ? {t: drag.t, i: drag.clicked} : null;
        mode = 'select';
      } else {
        b.v = drag.original;
      }
    }
    drag = null;
    select(selected);
    save({draw: 'drew a box', move: 'moved a box', resize: 'resized a box'}[mode] || 'edit');
    announce(selected ? describe(selected.t, selected.i) : 'no box selected');
  }
  function onCancel(event) {  // the system took the pointer (a scroll, a palm): as before
    if (!drag || event.pointerId !== drag.pointer) { return; }
    if (drag.mode === 'draw') {
      boxes[drag.t].splice(selected.i, 1);
      selected = null;
    } else {
      boxes[drag.t][selected.i].v = drag.original;
    }
    drag = null;
    select(selected);
  }
  function deleteSelected() {
    if (!selected) { return; }
    var frame = indices[selected.t];
    boxes[selected.t].splice(selected.i, 1);
    select(null);
    save('deleted a box on frame ' + frame, true);
    announce('');  // the Undo notice says it
  }
  // The keyboard on a focused frame: N starts a box in its middle, Space or Enter selects
  // its next box, arrows move the selected box and Shift+arrows move its bottom or right
  // edge (STEP pixels; FINE_STEP with Ctrl or ⌘), clamped to the frame.
  var ARROWS = {ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1]};
  function onKey(event) {
    var t = Number(event.currentTarget.dataset.t), key = event.key, arrow = ARROWS[key];
    var plain = !event.ctrlKey && !event.metaKey && !event.altKey;
    if ((key === 'n' || key === 'N') && plain) {
      var a = Math.round((D - NEW_SIDE) / 2);
      boxes[t].push({v: [a, a, a + NEW_SIDE, a + NEW_SIDE], role: newRole.value});
      select({t: t, i: boxes[t].length - 1});
      save('drew a box');
      announce('New ' + describe(t, selected.i));
    } else if ((key === ' ' || key === 'Enter') && plain) {
      if (!boxes[t].length) {
        announce('No boxes on frame ' + indices[t] + ': N draws one');
      } else {
        select({t: t, i: selected && selected.t === t ? (selected.i + 1) % boxes[t].length : 0});
        announce(describe(t, selected.i));
      }
    } else if (arrow && !event.altKey) {
      if (!selected || selected.t !== t) {
        announce('No box selected on frame ' + indices[t] + ': N draws one, Space selects one');
      } else {
        var step = event.ctrlKey || event.metaKey ? FINE_STEP : STEP;
        var v = boxes[t][selected.i].v, dy = arrow[0] * step, dx = arrow[1] * step;
        if (event.shiftKey) {  // resize: the bottom and right edges, keeping MIN_SIDE
          v[2] = Math.min(Math.max(v[2] + dy, v[0] + MIN_SIDE), D);
          v[3] = Math.min(Math.max(v[3] + dx, v[1] + MIN_SIDE), D);
        } else {
          dy = Math.min(Math.max(dy, -v[0]), D - v[2]);
          dx = Math.min(Math.max(dx, -v[1]), D - v[3]);
          boxes[t][selected.i].v = [v[0] + dy, v[1] + dx, v[2] + dy, v[3] + dx];
        }
        draw(t);
        save(event.shiftKey ? 'resized a box' : 'moved a box');
        announce(describe(t, selected.i));
      }
    } else {
      return;
    }
    event.preventDefault();  // no page scroll, no button press
  }
  // "Start from the model": on each frame without boxes, the cells around Ms's peak
  // (4-connected) that reach half way from the map's lowest value to the peak, as a box
  // to accept or adjust.
  function propose() {
    boxes.forEach(function (list, t) {
      var map = data.ms && data.ms[t];
      if (list.length || !map) { return; }
      var h = map.length, w = map[0].length, peak = [0, 0], low = Infinity;
      for (var y = 0; y < h; y += 1) {
        for (var x = 0; x < w; x += 1) {
          if (map[y][x] > map[peak[0]][peak[1]]) { peak = [y, x]; }
          low = Math.min(low, map[y][x]);
        }
      }
      var threshold = (low + map[peak[0]][peak[1]]) / 2, seen = {}, queue = [peak];
      var box = [peak[0], peak[1], peak[0], peak[1]];
      seen[peak] = true;
      while (queue.length) {
        var c = queue.pop();
        box = [Math.min(box[0], c[0]), Math.min(box[1], c[1]), Math.max(box[2], c[0]),
               Math.max(box[3], c[1])];
        [[1, 0], [-1, 0], [0, 1], [0, -1]].forEach(function (d) {
          var n = [c[0] + d[0], c[1] + d[1]];
          if (n[0] >= 0 && n[0] < h && n[1] >= 0 && n[1] < w && !seen[n] &&
              map[n[0]][n[1]] >= threshold) {
            seen[n] = true;
            queue.push(n);
          }
        });
      }
      list.push({v: [box[0] * D / h, box[1] * D / w, (box[2] + 1) * D / h, (box[3] + 1) * D / w],
                 role: 'object'});
    });
    select(null);
    save('proposed boxes from the model', true);
    announce('');
  }

  canvases.forEach(function (canvas) {
    canvas.addEventListener('pointerdown', onDown);
    canvas.addEventListener('keydown', onKey);
    canvas.addEventListener('focus', function () {  // the keys act on this frame's boxes
      if (selected && selected.t !== Number(canvas.dataset.t) && !drag) { select(null); }
    });
  });
  // On the window: a captured pointer's events come through the canvas, and a pointer
  // the browser would not capture still ends its drag wherever it lifts.
  window.addEventListener('pointermove', onMove);
  window.addEventListener('pointerup', onUp);
  window.addEventListener('pointercancel', onCancel);
  document.addEventListener('keydown', function (event) {
    var tag = event.target.tagName;
    if (tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA') { return; }
    if ((event.key === 'Delete' || event.key === 'Backspace') && selected) {
      event.preventDefault();
      deleteSelected();
    } else if (event.key === 'Escape' && selected) {
      select(null);
      announce('No box selected');
    }
  });
  deleteButton.addEventListener('click', deleteSelected);
  boxRole.addEventListener('change', function () {
    if (selected) {
      boxes[selected.t][selected.i].role = boxRole.value;
      drawAll();
      save('made a box ' + boxRole.value);
    }
  });
  checks.forEach(function (box, t) {
    box.addEventListener('change', function () {
      save((box.checked ? 'ticked' : 'unticked') + ' action on frame ' + indices[t]);
    });
  });
  overlay.addEventListener('change', function () {
    if (overlay.checked && !heat) { heat = indices.map(function (_, t) { return heatmap(t); }); }
    drawAll();
  });
  control('propose').addEventListener('click', propose);
  control('clear-clip').addEventListener('click', function () {
    boxes = indices.map(function () { return []; });
    unshown = {};
    checks.forEach(function (box) { box.checked = false; });
    select(null);
    save('cleared this clip', true);
    announce('');
  });
  load();
  showStatus();
  strip.onload = drawAll;
  strip.src = data.strip;
  drawAll();
}());
