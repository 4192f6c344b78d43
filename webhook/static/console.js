// pushbuild's console: what makes the server-rendered pages live. Every page reads without it.
"use strict";

// The builds list: re-render its rows every few seconds while the tab is visible.
function refreshBuilds(body) {
  const url = body.dataset.refresh;
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const reply = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (reply.ok) {
        const html = await reply.text();
        if (html !== body.dataset.last) {
          body.innerHTML = html;
          body.dataset.last = html;
        }
      }
    } catch (e) {
      // offline for a moment: the next tick tries again
    } finally {
      busy = false;
    }
  };
  setInterval(tick, 3000);
  document.addEventListener("visibilitychange", tick);
}

// A running build: its log streams in (Server-Sent Events; the browser resumes with Last-Event-ID).
function followLog(log) {
  const events = new EventSource(log.dataset.events);
  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  events.addEventListener("log", (event) => {
    const stick = atBottom();
    log.insertAdjacentHTML("beforeend", event.data);
    if (stick) log.scrollTop = log.scrollHeight;
  });
  events.addEventListener("state", (event) => {
    document.querySelectorAll("h1 .state").forEach((badge) => {
      if (badge.dataset.state !== event.data) showState(badge, event.data);
    });
  });
  events.addEventListener("end", () => {
    events.close();
    window.location.reload(); // the finished page: phases, tags, digest, statuses and hooks
  });
  log.scrollTop = log.scrollHeight;
}

const ICONS = { queued: "◷", running: "◐", succeeded: "✓", failed: "✗", cancelled: "⊘", skipped: "↷" };

function showState(badge, state) {
  badge.className = "state " + state;
  badge.dataset.state = state;
  badge.replaceChildren();
  const icon = document.createElement("span");
  icon.className = "icon";
  icon.setAttribute("aria-hidden", "true");
  icon.textContent = ICONS[state] || "";
  badge.append(icon, " " + state);
}

// Copy buttons beside tags, digests and the webhook URL.
function enableCopy(button) {
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = "Copied";
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(button.previousElementSibling);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const builds = document.getElementById("builds");
  if (builds && builds.dataset.refresh) refreshBuilds(builds);
  const log = document.getElementById("log");
  if (log && log.dataset.events) followLog(log);
  document.querySelectorAll("button.copy").forEach(enableCopy);
});
