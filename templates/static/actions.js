// The app page's actions: a form shows it is being sent (its button
// disabled, so a second click sends nothing), and while a deployment is
// under way the page follows it and re-enables Redeploy when it ends. The
// server refuses a second deployment anyway (409): this only saves a click.
(function () {
  'use strict';
  document.querySelectorAll('form.pending-form').forEach(function (form) {
    form.addEventListener('submit', function () {
      var button = form.querySelector('button[type=submit]');
      if (button) {
        // After this event: disabling first would drop the button's value.
        window.setTimeout(function () {
          button.disabled = true;
          button.setAttribute('aria-busy', 'true');
          button.dataset.label = button.textContent;
          button.textContent = 'Sending…';
        }, 0);
      }
    });
  });
  // Coming back with the browser's Back button shows the page as it was left.
  window.addEventListener('pageshow', function (e) {
    if (!e.persisted) {
      return;
    }
    document.querySelectorAll('button[aria-busy=true]').forEach(function (b) {
      b.disabled = false;
      b.removeAttribute('aria-busy');
      b.textContent = b.dataset.label || b.textContent;
    });
  });

  var flight = document.getElementById('in-flight');
  if (!flight || !flight.dataset.events || !window.EventSource) {
    return;
  }
  var stateEl = document.getElementById('in-flight-state');
  var source = new EventSource(flight.dataset.events);
  source.addEventListener('state', function (e) {
    var msg = JSON.parse(e.data);
    if (stateEl && msg.state === 'running') {
      stateEl.textContent = 'running, at step ' + msg.step;
    }
  });
  source.addEventListener('end', function (e) {
    var msg = JSON.parse(e.data);
    source.close();
    if (stateEl) {
      stateEl.textContent = 'finished: ' + msg.label;
    }
    flight.dataset.ended = 'true';
    var redeploy = document.getElementById('redeploy');
    if (redeploy) {
      redeploy.disabled = false;
      redeploy.removeAttribute('aria-describedby');
    }
    var why = document.getElementById('redeploy-why');
    if (why) {
      why.remove();
    }
  });
}());
