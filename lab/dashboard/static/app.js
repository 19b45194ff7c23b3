// kubelab dashboard: one EventSource for the cluster's state, small DOM updates, no framework.
// Read-only: every request is a GET; the cookie set by /?token=… authenticates them.
"use strict";
const $ = (sel) => document.querySelector(sel);
let logSource = null;

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(id, rows, render) {
  const body = $(id + " tbody");
  body.replaceChildren();
  for (const r of rows) { const tr = document.createElement("tr"); render(tr, r); body.appendChild(tr); }
}

function usage(u, key) { return u && u[key] ? u[key] : ""; }

function show(state) {
  $("#status").textContent = "live · version " + state.version + (state.error ? " · " + state.error : "");
  document.body.dataset.version = state.version;
  $("#topology").innerHTML = state.svg;
  for (const g of document.querySelectorAll("#topology g.node")) {
    if (g.id.startsWith("svc:")) g.addEventListener("click", () => traceService(g.id.slice(4)));
    if (g.id.startsWith("pod:")) g.addEventListener("click", () => podDetail(g.id.slice(4)));
  }
  $("#metrics-note").textContent = state.metrics ? "(" + state.metrics + ")" : "";
  fill("#nodes", state.nodes, (tr, n) => {
    cell(tr, n.name); cell(tr, n.ip); cell(tr, n.podCIDR);
    cell(tr, n.conditions.join(" "), n.ready ? "" : "bad");
    cell(tr, usage(n.usage, "cpu") || state.metrics); cell(tr, usage(n.usage, "memory") || state.metrics);
  });
  fill("#pods", state.pods, (tr, p) => {
    cell(tr, p.node || "(unscheduled)"); cell(tr, p.namespace + "/" + p.name); cell(tr, p.phase, p.phase);
    cell(tr, p.ip); cell(tr, p.veth);
    cell(tr, p.usage && p.usage.cpu ? p.usage.cpu + " / " + p.usage.memory : state.metrics);
    const td = cell(tr, "");
    for (const c of p.containers) {
      const b = document.createElement("button"); b.type = "button"; b.textContent = c;
      b.addEventListener("click", () => followLogs(p.namespace, p.name, c)); td.appendChild(b);
    }
  });
  fill("#services", state.services, (tr, s) => {
    cell(tr, s.namespace + "/" + s.name); cell(tr, s.type); cell(tr, s.clusterIP); cell(tr, s.ports);
    cell(tr, s.endpoints.join(", "));
  });
  fill("#events", state.events, (tr, e) => {
    cell(tr, e.time); cell(tr, e.type, e.type === "Warning" ? "bad" : ""); cell(tr, e.reason);
    cell(tr, (e.namespace ? e.namespace + "/" : "") + e.object); cell(tr, e.message);
  });
}

function detail(title, text) {
  $("#detail-title").textContent = title;
  $("#detail-text").textContent = text;
  $("#detail").hidden = false;
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.message || r.statusText);
  return body;
}

async function traceService(key) {
  detail("Service " + key, "tracing from the host…");
  try {
    const t = await getJSON("/api/trace/" + key);
    detail("Service " + key + " — $ " + t.command, t.text);
  } catch (e) { detail("Service " + key, String(e)); }
}

async function podDetail(key) {
  detail("Pod " + key, "looking…");
  try {
    const p = await getJSON("/api/pod/" + key);
    detail("Pod " + p.pod + " on " + p.node,
      "netns: " + p.netns + "\nIP:    " + p.ip + "\nveth:  " + (p.veth || "?") + " (on " + p.node + "'s cni0)\n\n" +
      "interfaces (ip -br addr in the pod's netns):\n" + p.interfaces + "\nlook yourself:\n  " + p.commands.join("\n  "));
  } catch (e) { detail("Pod " + key, String(e)); }
}

function followLogs(ns, name, container) {
  if (logSource) logSource.close();
  $("#logs").hidden = false;
  $("#logs-title").textContent = ns + "/" + name + " (" + container + ")";
  const out = $("#logs-text");
  out.textContent = "";
  logSource = new EventSource("/api/logs/" + ns + "/" + name + "?container=" + encodeURIComponent(container));
  logSource.addEventListener("line", (ev) => { out.textContent += ev.data + "\n"; out.scrollTop = out.scrollHeight; });
  logSource.addEventListener("failure", (ev) => { out.textContent += "! " + ev.data + "\n"; });
  logSource.addEventListener("end", () => { logSource.close(); logSource = null; });
}

$("#close-logs").addEventListener("click", () => { if (logSource) logSource.close(); $("#logs").hidden = true; });
$("#close-detail").addEventListener("click", () => { $("#detail").hidden = true; });

const events = new EventSource("/api/stream");
events.addEventListener("state", (ev) => show(JSON.parse(ev.data)));
events.onerror = () => { $("#status").textContent = "disconnected: reconnecting…"; };
