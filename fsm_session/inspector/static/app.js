// The inspector page: the diagram, the live sessions, and the selected session's transitions.
// Everything shown from the feed is set with textContent: names come from the network.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const query = token ? "?token=" + encodeURIComponent(token) : "";
const sessions = new Map();
let selected = null;

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
    row.addEventListener("click", () => { selected = view.key; render(); });
    body.appendChild(row);
  }
  document.getElementById("empty").hidden = sessions.size > 0;
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
  if (selected !== null && !sessions.has(selected)) selected = null;
  if (selected === null && sessions.size) selected = sessions.keys().next().value;
  renderList();
  renderSelected();
}

function apply(update) {
  if (update.type === "snapshot") {
    sessions.clear();
    for (const view of update.sessions) sessions.set(view.key, view);
  } else if (update.type === "session") {
    const old = sessions.get(update.session.key);
    const view = Object.assign({transitions: old ? old.transitions : []}, update.session);
    if (update.transition) {
      view.transitions = view.transitions.concat([update.transition]).slice(-50);
    }
    sessions.set(view.key, view);
  } else if (update.type === "removed") {
    sessions.delete(update.key);
  }
}

async function loadDiagram() {
  const box = document.getElementById("diagram");
  const reply = await fetch("diagram.svg" + query);
  if (!reply.ok) {
    box.textContent = "the diagram is not available (" + reply.status + ")";
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
  source.onmessage = (message) => { apply(JSON.parse(message.data)); render(); };
}

loadDiagram();
follow();
