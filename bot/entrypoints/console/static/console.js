// vibe-bot console: live updates of a running iteration over server-sent events.
// Served by the bot itself (no CDN) so it runs under the pages' Content-Security-Policy.
// Step cards arrive rendered and escaped by the server; the figures arrive as JSON and are
// set with textContent.
"use strict";

function follow(card) {
  const steps = card.querySelector(".agent-steps");
  const known = steps.querySelectorAll("[data-step]");
  const last = known.length ? known[known.length - 1].dataset.step : "0";
  const url = "/console/tasks/" + encodeURIComponent(card.dataset.task) +
    "/iterations/" + encodeURIComponent(card.dataset.number) + "/events?after=" + encodeURIComponent(last);
  const source = new EventSource(url);
  source.addEventListener("step", (event) => {
    const data = JSON.parse(event.data);
    if (!document.getElementById("step-" + data.id)) {
      steps.insertAdjacentHTML("beforeend", data.html);
    }
  });
  source.addEventListener("iteration", (event) => {
    const it = JSON.parse(event.data);
    const set = (selector, text) => {
      const node = card.querySelector(selector);
      if (node) node.textContent = text;
    };
    set(".cost", "$" + it.cost.toFixed(4));
    set(".steps", it.steps + " steps");
    set(".duration", it.duration + " s");
    set(".badge.outcome", it.outcome);
    set(".tokens", it.tokens.input + " in · " + it.tokens.cache_write + " cache write · " +
      it.tokens.cache_read + " cache read · " + it.tokens.output + " out");
  });
  source.addEventListener("end", (event) => {
    const data = JSON.parse(event.data);
    source.close();
    card.dataset.running = "no";
    card.classList.add("outcome-" + data.outcome);
    const live = card.querySelector(".live");
    if (live) live.textContent = "Ended: " + data.outcome + ". Reload for the checks and commits.";
  });
  source.onerror = () => {
    // The server ends the stream when the iteration ends; a broken connection is retried
    // by the browser. Nothing to do here but not to loop on a closed source.
    if (source.readyState === EventSource.CLOSED) card.dataset.running = "no";
  };
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("article.iteration[data-running='yes']").forEach(follow);
});
