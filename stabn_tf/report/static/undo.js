// Undo for the pages that change corrections (a clip page's editor, the Corrections page).
// Each change is recorded with the text the browser's storage held for its clip before it
// (STABN_STORE.snapshot, null when nothing was kept), so Undo (the notice's button or
// Ctrl+Z) puts back exactly that: the boxes, the action frames, and whether the clip was
// kept in this browser at all or came from the corrections file.
(function () {
  'use strict';
  var store = window.STABN_STORE;
  var steps = [];  // {checkpoint, clip, before, what, then}, newest last
  var bar = null, message = null, button = null;

  function notice() {
    if (bar) { return; }
    bar = document.createElement('div');
    bar.className = 'undo';
    bar.hidden = true;
    message = document.createElement('span');
    message.setAttribute('role', 'status');
    message.setAttribute('aria-live', 'polite');
    button = document.createElement('button');
    button.type = 'button';
    button.id = 'undo';
    button.textContent = 'Undo';
    button.title = 'Ctrl+Z';
    button.addEventListener('click', undo);
    bar.appendChild(message);
    bar.appendChild(button);
    document.body.appendChild(bar);
  }
  function say(text, undoable) {
    notice();
    message.textContent = text;
    button.hidden = !undoable;
    bar.hidden = false;
  }
  // Remembers a change; `offer` shows the notice with its Undo button (for the changes
  // that remove things), any other change hides a notice about an older one.
  function record(step, offer) {
    steps.push(step);
    if (offer) {
      say(step.what.charAt(0).toUpperCase() + step.what.slice(1) + '.', true);
    } else if (bar) {
      bar.hidden = true;
    }
  }
  function undo() {
    var step = steps.pop();
    if (!step) { return false; }
    try {
      store.restore(step.checkpoint, step.clip, step.before);
    } catch (e) {
      steps.push(step);
      say('Could not undo: this browser refuses to store the edits (' + e.name + ').', false);
      return true;
    }
    if (step.then) { step.then(step); }
    say('Undone: ' + step.what + '.', steps.length > 0);
    return true;
  }
  function typing(target) {
    var tag = target && target.tagName;
    return tag === 'TEXTAREA' || (tag === 'INPUT' && !/^(checkbox|radio|button)$/.test(target.type));
  }
  document.addEventListener('keydown', function (event) {
    if ((event.ctrlKey || event.metaKey) && !event.shiftKey && !event.altKey &&
        (event.key === 'z' || event.key === 'Z') && !typing(event.target)) {
      event.preventDefault();
      if (!undo()) { say('Nothing to undo.', false); }
    }
  });
  notice();  // the live region is there before anything is said in it
  window.STABN_UNDO = {record: record, undo: undo, say: say};
}());
