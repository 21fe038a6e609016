// The inspector page: the diagram, the live sessions, and the selected session's transitions.
// Everything shown from the feed is set with textContent: names come from the network.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const query = token ? "?token=" + encodeURIComponent(token) : "";
const sessions = new Map();
let selected = null;
let listed = {shown: 0, total: 0};  // the last snapshot's: it lists a bounded number of sessions

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
}

function label(view) {
  return view.name || view.participant || "(not open)";
}

function renderList() {
  const body = document.querySelector("#sessions tbody");
  body.replaceChildren();
  for (const view of sessions.values()) {
    const row = document.createElement("tr");
    row.dataset.key = view.key;
    row.dataset.state = view.state;
    if (view.key === selected) row.classList.add("selected");
    cell(row, label(view));
    cell(row, view.external_id);
    cell(row, view.participant === null ? "" : view.ghost ? "ghost" : "named");
    cell(row, view.state);
    cell(row, view.grace ? "in grace" : view.connected ? "connected" : "not connected");
    cell(row, view.node);
    row.addEventListener("click", () => { selected = view.key; render(); loadSelected(); });
    body.appendChild(row);
  }
  document.getElementById("empty").hidden = sessions.size > 0;
  const more = document.getElementById("more");
  more.hidden = listed.total <= listed.shown;
  more.textContent = "the last snapshot listed " + listed.shown + " of " + listed.total
                     + " sessions; the others show when they change";
}

function highlight(view) {
  const svg = document.querySelector("#diagram svg");
  if (!svg) return;
  const last = view && view.transitions.length ? view.transitions[view.transitions.length - 1]
                                               : null;
  for (const group of svg.querySelectorAll("g.node, g.edge")) {
    const title = group.querySelector("title");
    const name = title ? title.textContent : "";
    if (group.classList.contains("node")) {
      group.classList.toggle("current", view !== null && name === view.state);
    } else {
      group.classList.toggle("last", last !== null && name === last.source + "->" + last.dest);
    }
  }
}

function renderSelected() {
  const view = selected === null ? null : sessions.get(selected) || null;
  const state = document.getElementById("state");
  state.dataset.state = view ? view.state : "";
  state.textContent = view ? view.state : "no session selected";
  document.getElementById("selected").textContent = view ? "of " + label(view) : "";
  const list = document.getElementById("transitions");
  list.replaceChildren();
  if (view) {
    for (const move of view.transitions.slice().reverse()) {
      const item = document.createElement("li");
      item.dataset.seq = move.seq;
      item.textContent = move.source + " -> " + move.dest + " on " + move.trigger + " ";
      const rule = document.createElement("span");
      rule.className = "rule";
      rule.textContent = move.rule ? "(" + move.rule + ")" : "";
      item.appendChild(rule);
      list.appendChild(item);
    }
  }
  highlight(view);
}

function render() {
  const before = selected;
  if (selected !== null && !sessions.has(selected)) selected = null;
  if (selected === null && sessions.size) selected = sessions.keys().next().value;
  renderList();
  renderSelected();
  if (selected !== before) loadSelected();
}

// Transitions in order of seq, each once, the last 50 (the server's ring).
function merge(moves, more) {
  const bySeq = new Map();
  for (const move of moves.concat(more)) bySeq.set(move.seq, move);
  return Array.from(bySeq.values()).sort((a, b) => a.seq - b.seq).slice(-50);
}

function apply(update) {
  if (update.type === "snapshot") {
    // A snapshot carries no transitions: keep those already shown, fetch the selected one's.
    const old = new Map(sessions);
    sessions.clear();
    for (const view of update.sessions) {
      const before = old.get(view.key);
      view.transitions = before ? before.transitions : [];
      sessions.set(view.key, view);
    }
    listed = {shown: update.sessions.length, total: update.total};
    return true;
  } else if (update.type === "session") {
    const old = sessions.get(update.session.key);
    const view = Object.assign({transitions: old ? old.transitions : []}, update.session);
    if (update.transition) view.transitions = merge(view.transitions, [update.transition]);
    sessions.set(view.key, view);
  } else if (update.type === "removed") {
    sessions.delete(update.key);
  }
  return false;
}

// The selected session's recent transitions, which snapshots leave out.
async function loadSelected() {
  const key = selected;
  if (key === null) return;
  const reply = await fetch("session.json?key=" + encodeURIComponent(key) + query.replace("?", "&"));
  if (!reply.ok) return;  // it ended meanwhile
  const full = await reply.json();
  const view = sessions.get(key);
  if (!view) return;
  view.transitions = merge(view.transitions, full.transitions);
  render();
}

async function loadDiagram() {
  const box = document.getElementById("diagram");
  const reply = await fetch("diagram.svg" + query);
  if (!reply.ok) {
    const why = (await reply.text()).trim();  // e.g. how to install Graphviz
    box.textContent = why || "the diagram is not available (" + reply.status + ")";
    return;
  }
  box.innerHTML = await reply.text();  // our own renderer's SVG, from our own table
  render();
}

function follow() {
  const feed = document.getElementById("feed");
  const source = new EventSource("events" + query);
  source.onopen = () => { feed.dataset.feed = "live"; feed.textContent = "live"; };
  source.onerror = () => { feed.dataset.feed = "lost"; feed.textContent = "reconnecting"; };
  source.onmessage = (message) => {
    if (apply(JSON.parse(message.data))) loadSelected();
    render();
  };
}

loadDiagram();
follow();
