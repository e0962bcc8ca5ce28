// The live articles page (bffproxy/events_demo.py): list the newest articles, refetch on each event.
// Every URL is relative to the page, so it works under a tenant's path prefix (/t/beta/events/demo).
"use strict";

const ARTICLES_URL =
  "../api/articles?fields[0]=title&fields[1]=updatedAt&sort[0]=updatedAt:desc&pagination[pageSize]=10";
const EVENTS_URL = "../api/events?collections=articles";
const CONTENT_EVENTS = ["created", "updated", "published", "unpublished", "deleted", "draft_discarded"];
const RECONNECT_PAUSE_MS = 5000; // after the server ended the stream, or refused it (503 when busy)
const FETCH_TIMEOUT_MS = 15000; // a hung refetch must not hold back every later one
const EVENTS_SHOWN = 8;

const list = document.getElementById("articles");
const empty = document.getElementById("empty");
const problem = document.getElementById("problem");
const state = document.getElementById("state");
const eventsShown = document.getElementById("events");

let source = null;
let lastEventId = "";
let changed = new Set(); // documentIds named by events since the last refetch started
let loading = false;
let loadAgain = false;

function showState(name) {
  state.textContent = name;
  state.dataset.state = name;
}

function showProblem(text) {
  problem.textContent = text;
  problem.hidden = !text;
}

// One refetch at a time; events arriving meanwhile ask for one more, so the last answer is fresh.
async function refresh() {
  if (loading) {
    loadAgain = true;
    return;
  }
  loading = true;
  try {
    do {
      loadAgain = false;
      await load();
    } while (loadAgain);
  } finally {
    loading = false;
  }
}

async function load() {
  const highlight = changed;
  changed = new Set();
  try {
    // no-cache: revalidate with the server (an ETag round trip), never a stale browser copy
    const answer = await fetch(ARTICLES_URL, {
      cache: "no-cache",
      headers: { Accept: "application/json" },
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    const body = await answer.json();
    render(Array.isArray(body.data) ? body.data : [], highlight);
    showProblem("");
  } catch (error) {
    highlight.forEach((id) => changed.add(id)); // still to show on the next successful load
    showProblem(`The articles could not be loaded (${error.message}).`);
  }
}

// Update the list in place: keep each article's element, move it, drop the ones gone.
function render(articles, highlight) {
  const old = new Map(Array.from(list.children, (item) => [item.dataset.documentId, item]));
  const items = articles.map((article) => {
    const item = old.get(article.documentId) || newItem(article.documentId);
    item.querySelector(".title").textContent = String(article.title ?? "");
    const time = item.querySelector("time");
    const updated = new Date(article.updatedAt);
    time.dateTime = Number.isNaN(updated.getTime()) ? "" : updated.toISOString();
    time.textContent = time.dateTime ? `updated ${updated.toLocaleString()}` : "";
    return item;
  });
  list.replaceChildren(...items);
  empty.hidden = items.length > 0;
  if (highlight.size > 0) {
    for (const item of items) {
      item.classList.remove("changed");
      if (highlight.has(item.dataset.documentId)) {
        void item.offsetWidth; // restart the highlight's animation
        item.classList.add("changed");
      }
    }
  }
}

function newItem(documentId) {
  const item = document.createElement("li");
  item.dataset.documentId = documentId;
  const title = document.createElement("span");
  title.className = "title";
  item.append(title, document.createElement("time"));
  return item;
}

function logEvent(text) {
  const line = document.createElement("li");
  line.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  eventsShown.prepend(line);
  while (eventsShown.children.length > EVENTS_SHOWN) eventsShown.lastElementChild.remove();
}

function onContentEvent(event) {
  lastEventId = event.lastEventId;
  const data = JSON.parse(event.data);
  changed.add(data.documentId);
  logEvent(`${data.type} ${data.documentId}`);
  refresh();
}

function onResync(event) {
  lastEventId = event.lastEventId;
  logEvent("resync: history is gone, reloading everything");
  refresh();
}

function onEnd(event) {
  const reason = JSON.parse(event.data).reason;
  logEvent(`stream ended (${reason}), reconnecting`);
  reconnectLater();
}

// EventSource reconnects by itself after a network error; after a refusal (any answer but 200) it
// cannot. The refusal may be of the id itself (a log that changed kind: 400), so start afresh: the
// list is refetched when the stream opens anyway.
function onError() {
  if (source.readyState !== EventSource.CLOSED) {
    showState("reconnecting");
    return;
  }
  lastEventId = "";
  reconnectLater();
}

function reconnectLater() {
  source.close();
  showState("reconnecting");
  setTimeout(connect, RECONNECT_PAUSE_MS);
}

function connect() {
  // A new EventSource sends no Last-Event-ID: name it, so the server replays what was missed.
  const url = lastEventId ? `${EVENTS_URL}&lastEventId=${encodeURIComponent(lastEventId)}` : EVENTS_URL;
  source = new EventSource(url);
  source.addEventListener("open", () => {
    showState("live");
    refresh(); // whatever changed while the page was not listening
  });
  source.addEventListener("error", onError);
  for (const type of CONTENT_EVENTS) source.addEventListener(type, onContentEvent);
  source.addEventListener("resync", onResync);
  source.addEventListener("end", onEnd);
}

showState("connecting");
refresh();
connect();
