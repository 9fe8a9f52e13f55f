// Corrections kept in this browser (localStorage, one item per checkpoint and clip), merged
// over the box file loaded with --corrections (window.STABN_CORRECTIONS_FILE), and written
// out in the box format of docs/boxes.md. An entry is that format's per-video object:
// {"frames": {source frame index: [box | {"box": box, "role": "hand"}]},
//  "active_frames": [source index | [first, last]]}, plus "updated" (ms since 1970).
(function () {
  'use strict';
  var PREFIX = 'stabn-corrections/';
  var file = window.STABN_CORRECTIONS_FILE || {};

  function itemKey(checkpoint, clip) {
    return PREFIX + JSON.stringify([checkpoint, clip]);
  }
  function parseKey(key) {
    if (key.indexOf(PREFIX) !== 0) { return null; }
    try { return JSON.parse(key.slice(PREFIX.length)); } catch (e) { return null; }
  }
  function copy(value) { return JSON.parse(JSON.stringify(value)); }
  function fromFile(clip) {
    var entry = Object.prototype.hasOwnProperty.call(file, clip) ? file[clip] : null;
    if (!entry || typeof entry !== 'object') { return null; }
    return {frames: copy(entry.frames || {}), active_frames: copy(entry.active_frames || []),
            updated: 0, source: 'file'};
  }
  // The browser's entry when it has one (its edits are the newer ones), else the file's;
  // "source" says which ("browser" or "file").
  function read(checkpoint, clip) {
    var text = snapshot(checkpoint, clip);
    if (text) {
      try {
        var entry = JSON.parse(text);
        entry.source = 'browser';
        return entry;
      } catch (e) { /* a damaged item: fall back */ }
    }
    return fromFile(clip);
  }
  // The clip's stored text as it is (null when this browser keeps nothing for it), and
  // that text put back (null: the item removed): what Undo restores.
  function snapshot(checkpoint, clip) {
    try { return window.localStorage.getItem(itemKey(checkpoint, clip)); } catch (e) {
      return null;  // storage off
    }
  }
  function restore(checkpoint, clip, text) {
    if (text === null) {
      window.localStorage.removeItem(itemKey(checkpoint, clip));
    } else {
      window.localStorage.setItem(itemKey(checkpoint, clip), text);
    }
  }
  // Whether two entries hold the same corrections (what is stored, not when).
  function same(a, b) {
    function text(entry) {
      var frames = (entry && entry.frames) || {};
      return JSON.stringify([Object.keys(frames).sort().map(function (key) {
        return [key, frames[key]];
      }), (entry && entry.active_frames) || []]);
    }
    return text(a) === text(b);
  }
  function write(checkpoint, clip, entry) {
    entry.updated = Date.now();
    delete entry.source;
    window.localStorage.setItem(itemKey(checkpoint, clip), JSON.stringify(entry));
  }
  function forget(checkpoint, clip) {
    // An empty entry, not a removed one: it also hides the loaded file's version.
    write(checkpoint, clip, {frames: {}, active_frames: []});
  }
  function isEmpty(entry) {
    return !entry || (Object.keys(entry.frames || {}).length === 0 &&
                      (entry.active_frames || []).length === 0);
  }
  // Every clip with corrections for this checkpoint: the file's, then the browser's over them.
  function all(checkpoint) {
    var out = {};
    Object.keys(file).forEach(function (clip) {
      var entry = fromFile(clip);
      if (entry) { out[clip] = entry; }
    });
    for (var i = 0; i < window.localStorage.length; i += 1) {
      var parts = parseKey(window.localStorage.key(i));
      if (parts && parts[0] === checkpoint) { out[parts[1]] = read(parts[0], parts[1]); }
    }
    Object.keys(out).forEach(function (clip) { if (isEmpty(out[clip])) { delete out[clip]; } });
    return out;
  }
  // Marked shown frames (by position) → "active_frames": runs of consecutive marked frames
  // become inclusive [first, last] source ranges, single ones a source index.
  function activeFrames(frameIndices, marked) {
    var out = [], t = 0;
    while (t < frameIndices.length) {
      if (!marked[t]) { t += 1; continue; }
      var end = t;
      while (end + 1 < frameIndices.length && marked[end + 1]) { end += 1; }
      out.push(end > t && frameIndices[end] !== frameIndices[t] ?
        [frameIndices[t], frameIndices[end]] : frameIndices[t]);
      t = end + 1;
    }
    return out;
  }
  function isActive(activeItems, index) {
    return (activeItems || []).some(function (item) {
      return Array.isArray(item) ? item[0] <= index && index <= item[1] : item === index;
    });
  }
  // The export: one box file, videos and frames in a stable order.
  function exportObject(checkpoint) {
    var entries = all(checkpoint), out = {};
    Object.keys(entries).sort().forEach(function (clip) {
      var entry = entries[clip], frames = {};
      Object.keys(entry.frames || {}).sort(function (a, b) { return a - b; })
        .forEach(function (key) { frames[key] = entry.frames[key]; });
      out[clip] = {frames: frames};
      if ((entry.active_frames || []).length) { out[clip].active_frames = entry.active_frames; }
    });
    return out;
  }
  window.STABN_STORE = {read: read, write: write, forget: forget, all: all, isEmpty: isEmpty,
                        snapshot: snapshot, restore: restore, same: same,
                        activeFrames: activeFrames, isActive: isActive,
                        exportObject: exportObject};
}());
