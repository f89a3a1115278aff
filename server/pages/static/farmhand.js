// Live pages: re-fetch the page's live region every few seconds and swap it in place, so
// counts, agents and runs move without a full reload. The server answers a request carrying
// the X-Farmhand-Live header with only that region. No framework, no CDN.
(function () {
  "use strict";

  const live = document.getElementById("live");
  const notice = document.getElementById("notice");
  if (!live || !live.dataset.refresh) {
    return;
  }
  const every = Math.max(0.2, parseFloat(live.dataset.refresh)) * 1000;
  let stopped = false;

  function say(text) {
    if (notice) {
      notice.textContent = text;
      notice.hidden = !text;
    }
  }

  // Keep expanded log tails expanded across a refresh.
  function openDetails() {
    return new Set(
      Array.from(live.querySelectorAll("details[open][id]"), (el) => el.id)
    );
  }

  function reopen(ids) {
    ids.forEach((id) => {
      const el = document.getElementById(id);
      if (el) {
        el.open = true;
      }
    });
  }

  async function refresh() {
    if (document.hidden) {
      return;
    }
    let response;
    try {
      response = await fetch(window.location.href, {
        headers: { "X-Farmhand-Live": "1" },
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (err) {
      say("The server does not answer; retrying.");
      return;
    }
    if (response.status === 401) {
      stopped = true;
      say("Your session has ended: reload the page to log in again.");
      return;
    }
    if (!response.ok) {
      say("Refresh failed (HTTP " + response.status + "); retrying.");
      return;
    }
    const html = await response.text();
    const open = openDetails();
    live.innerHTML = html;
    reopen(open);
    say("");
  }

  async function loop() {
    await refresh();
    if (!stopped) {
      window.setTimeout(loop, every);
    }
  }

  window.setTimeout(loop, every);
})();
