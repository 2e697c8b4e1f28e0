// Follows a running deployment's log: appends each new line the server
// sends, updates the state badge, and stops when the deployment ends.
// Text is inserted with textContent only; classes come from the server's
// fixed set of ANSI colour classes.
(function () {
  'use strict';
  var log = document.getElementById('log');
  if (!log || !log.dataset.events || !window.EventSource) {
    return;
  }
  var status = document.getElementById('live-status');
  var stateEl = document.getElementById('state');
  var descEl = document.getElementById('description');
  var empty = document.getElementById('log-empty');
  var source = new EventSource(log.dataset.events);

  function nearBottom() {
    var page = document.scrollingElement || document.documentElement;
    return page.scrollHeight - page.scrollTop - page.clientHeight < 80;
  }

  function setState(data) {
    var msg = JSON.parse(data);
    if (stateEl) {
      var badge = document.createElement('span');
      badge.className = 'badge ' + msg['class'];
      badge.textContent = msg.label;
      stateEl.replaceChildren(badge);
    }
    if (descEl) {
      descEl.textContent = msg.description;
    }
    return msg;
  }

  source.addEventListener('line', function (e) {
    var msg = JSON.parse(e.data);
    if (document.getElementById('L' + msg.seq)) {
      return; // already on the page
    }
    var follow = nearBottom();
    var line = document.createElement('span');
    line.className = 'line';
    line.id = 'L' + msg.seq;
    msg.segs.forEach(function (seg) {
      if (seg.c) {
        var span = document.createElement('span');
        span.className = seg.c;
        span.textContent = seg.t;
        line.appendChild(span);
      } else {
        line.appendChild(document.createTextNode(seg.t));
      }
    });
    log.appendChild(line);
    log.appendChild(document.createTextNode('\n'));
    if (empty) {
      empty.remove();
      empty = null;
    }
    if (follow) {
      line.scrollIntoView({block: 'end'});
    }
  });

  source.addEventListener('state', function (e) {
    setState(e.data);
  });

  // The facts and steps are the server's to render: once the deployment
  // ends, take them from a fresh copy of this page instead of reloading it,
  // which would lose the reader's place in the log. DOMParser runs no script.
  function refreshSummary(done) {
    if (!window.fetch || !window.DOMParser) {
      return;
    }
    fetch(window.location.href, {credentials: 'same-origin', headers: {'Accept': 'text/html'}})
      .then(function (r) {
        return r.ok ? r.text() : Promise.reject(new Error('HTTP ' + r.status));
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, 'text/html');
        ['facts', 'steps'].forEach(function (id) {
          var now = document.getElementById(id);
          var next = fresh.getElementById(id);
          if (now && next) {
            now.replaceWith(document.importNode(next, true));
          }
        });
        done();
      })
      .catch(function () {}); // the status line still says to reload
  }

  source.addEventListener('end', function (e) {
    var msg = setState(e.data);
    source.close();
    if (status) {
      status.textContent = 'Finished: ' + msg.label + '. Reload for the final steps.';
    }
    refreshSummary(function () {
      if (status) {
        status.textContent = 'Finished: ' + msg.label + '.';
      }
    });
  });

  source.addEventListener('error', function () {
    if (status && source.readyState === EventSource.CONNECTING) {
      status.textContent = 'Reconnecting…';
    } else if (status && source.readyState === EventSource.CLOSED) {
      status.textContent = 'Live updates stopped. Reload the page to resume.';
    }
  });

  source.addEventListener('open', function () {
    if (status) {
      status.textContent = 'Following live…';
    }
  });
}());
