// badsmtp's web page: the sessions the server saw, newest first, refreshed
// without a reload by polling the inspection API (the JSON is described in
// the README, "From any language").  Everything the server reports is shown
// with textContent, never parsed as HTML: a client chooses what it sends.
// URLs are relative, so the page works from any host, port or path prefix.
"use strict";

(() => {
  const API = "api/v1/";
  const POLL_MS = 1000;
  const LIST_LIMIT = 500;

  const state = {
    selected: null, // the session ID in location.hash
    rows: new Map(), // session ID -> its <li> in the list
    summaries: new Map(), // session ID -> its last SessionSummary
    detailKey: null, // the summary the shown detail was fetched for
    detailSeq: 0, // discards a detail response overtaken by a newer one
    messages: new Map(), // message ID -> Promise of its summary (messages do not change)
  };

  // -- small helpers ---------------------------------------------------------
  function el(tag, className, text, attrs) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  async function getJSON(path) {
    const response = await fetch(API + path, { cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function seconds(at) {
    return typeof at === "number" ? `+${at.toFixed(3)} s` : "";
  }

  function clock(iso) {
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return String(iso || "");
    const pad = (n, width) => String(n).padStart(width || 2, "0");
    return `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}` +
      `.${pad(when.getMilliseconds(), 3)}`;
  }

  // Control characters in what a client sent, as the Unicode pictures of them
  // (a bare CR as ␍): a fault the page shows, not one it hides.
  function visible(text) {
    return String(text).replace(/[\x00-\x08\x0a-\x1f\x7f]/g, (c) =>
      String.fromCharCode(c === "\x7f" ? 0x2421 : 0x2400 + c.charCodeAt(0)));
  }

  function plural(count, word) {
    return `${count} ${word}${count === 1 ? "" : "s"}`;
  }

  function tlsKind(s) {
    if (!s.TLS) return "none";
    return s.ImplicitTLS ? "implicit" : "starttls";
  }

  const TLS_LABEL = { none: "plain text", implicit: "implicit TLS", starttls: "STARTTLS" };

  function openLabel(s) {
    if (s.Open) return "open";
    return s.ClosedBy ? `closed by ${s.ClosedBy}` : "closed";
  }

  function setStatus(name, text) {
    const status = document.getElementById("status");
    status.dataset.state = name;
    status.textContent = text;
  }

  // -- the list of sessions --------------------------------------------------
  function fillRow(li, s) {
    li.dataset.open = String(Boolean(s.Open));
    li.dataset.tls = tlsKind(s);
    li.dataset.findings = String(s.Findings || 0);
    const link = el("a", "session-link", null, { href: `#${s.ID}` });
    const head = el("span", "session-head");
    head.append(el("span", "session-client", `${s.ClientIP}:${s.ClientPort}`),
      el("span", "session-started", clock(s.Started)));
    const tags = el("span", "session-tags");
    tags.append(el("span", "tag session-listener", `port ${s.Port}`),
      el("span", "tag session-role", s.Role),
      el("span", `tag session-tls tls-${tlsKind(s)}`, TLS_LABEL[tlsKind(s)]),
      el("span", `tag session-state ${s.Open ? "is-open" : "is-closed"}`, openLabel(s)));
    const counts = el("span", "session-counts",
      `${plural(s.Commands, "command")} · ${plural(s.Messages, "message")}`);
    link.append(head, tags, counts);
    if (s.Findings > 0) {
      link.append(el("span", "findings-badge", plural(s.Findings, "finding"),
        { "data-count": s.Findings, title: "protocol faults the client committed" }));
    }
    li.replaceChildren(link);
  }

  function renderList(data) {
    const list = document.getElementById("session-list");
    const seen = new Set();
    let previous = null;
    for (const s of data.sessions) {
      seen.add(s.ID);
      let li = state.rows.get(s.ID);
      if (!li) {
        li = el("li", "session", null, { "data-session-id": s.ID });
        state.rows.set(s.ID, li);
      }
      if (JSON.stringify(state.summaries.get(s.ID)) !== JSON.stringify(s)) fillRow(li, s);
      state.summaries.set(s.ID, s);
      li.classList.toggle("selected", s.ID === state.selected);
      const wanted = previous ? previous.nextSibling : list.firstChild;
      if (wanted !== li) list.insertBefore(li, wanted);
      previous = li;
    }
    for (const [id, li] of state.rows) {
      if (!seen.has(id)) {
        li.remove();
        state.rows.delete(id);
        state.summaries.delete(id);
      }
    }
    document.getElementById("no-sessions").hidden = data.sessions.length > 0;
    const total = document.getElementById("session-total");
    total.dataset.total = String(data.total);
    total.textContent = `${plural(data.total, "session")} kept`;
  }

  // -- one session's detail --------------------------------------------------
  function summaryBlock(d) {
    const dl = el("dl", "summary");
    const rows = [
      ["Client", `${d.ClientIP}:${d.ClientPort}`],
      ["Listener", `port ${d.Port}, ${d.Role}`],
      ["TLS", TLS_LABEL[tlsKind(d)]],
      ["Started", d.Started],
      ["State", openLabel(d)],
      ["Duration", typeof d.Duration === "number" ? `${d.Duration.toFixed(3)} s` : "still open"],
      ["Commands", d.Commands],
      ["Messages", d.Messages],
      ["Discarded octets", d.DiscardedOctets],
    ];
    for (const [name, value] of rows) {
      dl.append(el("dt", null, name), el("dd", null, value, { "data-field": name }));
    }
    return dl;
  }

  function findingItem(f, index) {
    const li = el("li", `finding severity-${f.Severity}`, null, {
      "data-code": f.Code, "data-severity": f.Severity, "data-index": index,
    });
    li.append(el("span", "severity", f.Severity), el("code", "finding-code", f.Code),
      el("span", "finding-rfc", f.RFC));
    if (f.Command) li.append(el("span", "finding-command", f.Command));
    li.append(el("span", "finding-explanation", f.Explanation));
    return li;
  }

  function findingsBlock(findings) {
    const section = el("section", null, null, { id: "findings" });
    section.append(el("h3", null, `Findings (${findings.length})`));
    if (findings.length === 0) {
      section.append(el("p", "none", "None: the client kept to the protocol as far as badsmtp checks."));
      return section;
    }
    const list = el("ol", "findings-list");
    findings.forEach((f, index) => {
      const li = findingItem(f, index);
      li.prepend(el("span", "at", seconds(f.At)));
      li.addEventListener("click", () => {
        const inline = document.querySelector(`#events .finding[data-index="${index}"]`);
        if (inline) inline.scrollIntoView({ block: "center" });
      });
      list.append(li);
    });
    section.append(list);
    return section;
  }

  function replyLines(ev) {
    const lines = String(ev.Text ?? "").split("\n");
    const enhanced = ev.Enhanced ? `${ev.Enhanced} ` : "";
    return lines.map((line, i) => `${ev.Code}${i === lines.length - 1 ? " " : "-"}${enhanced}${line}`)
      .join("\n");
  }

  function eventBody(ev, li, findingIndex) {
    switch (ev.Type) {
      case "command":
        li.append(el("span", "dir", "C:"), el("code", "line", visible(ev.Line), { "data-verb": ev.Verb }));
        if (ev.Discarded) li.append(el("span", "tag discarded", "discarded"));
        return;
      case "reply":
        li.dataset.code = String(ev.Code);
        li.append(el("span", "dir", "S:"), el("pre", "line reply-text", replyLines(ev)));
        if (ev.Faults) li.append(el("span", "tag reply-faults", ev.Faults));
        return;
      case "content":
        li.append(el("span", "dir", "C:"), el("span", "line",
          `message content: ${plural(ev.Size, "octet")}, until ${seconds(ev.EndedAt)}`));
        return;
      case "tls":
        li.append(el("span", "dir", "⇄"), el("span", "line", "TLS handshake completed"));
        return;
      case "fault": {
        const fields = Object.entries(ev.Fields || {}).map(([k, v]) => `${k}=${v}`).join(" ");
        li.append(el("span", "dir", "!"), el("span", "line", ev.What), el("span", "fields", fields));
        return;
      }
      case "finding":
        li.append(findingItem(ev, findingIndex));
        return;
      default:
        li.append(el("span", "line", JSON.stringify(ev)));
    }
  }

  function batchGroups(events) {
    const groups = [];
    for (const ev of events) {
      const last = groups[groups.length - 1];
      if (last && last.batch === ev.Batch) last.events.push(ev);
      else groups.push({ batch: ev.Batch, events: [ev] });
    }
    return groups;
  }

  function batchBlock(group, counter) {
    const commands = group.events.filter((ev) => ev.Type === "command");
    const pipelined = commands.length > 1;
    const div = el("div", pipelined ? "batch pipelined" : "batch", null, { "data-batch": group.batch });
    if (pipelined) {
      div.append(el("div", "pipelined-label",
        `pipelined: ${commands.map((ev) => ev.Verb).join(", ")} (${commands.length} commands in one read)`));
    }
    const list = el("ol", "events");
    for (const ev of group.events) {
      const li = el("li", `event event-${ev.Type}`, null, { "data-type": ev.Type, "data-at": ev.At });
      li.append(el("span", "at", seconds(ev.At)));
      eventBody(ev, li, ev.Type === "finding" ? counter.findings++ : null);
      list.append(li);
    }
    div.append(list);
    return div;
  }

  function transcriptBlock(events) {
    const section = el("section", null, null, { id: "transcript" });
    section.append(el("h3", null, "Transcript"));
    const box = el("div", null, null, { id: "events" });
    const counter = { findings: 0 };
    for (const group of batchGroups(events)) box.append(batchBlock(group, counter));
    if (events.length === 0) box.append(el("p", "none", "Nothing yet."));
    section.append(box);
    return section;
  }

  function messageSummary(summary) {
    const span = el("span", "message-summary");
    span.append(el("span", "message-from", `from <${summary.From}>`),
      el("span", "message-to", `to ${summary.To.map((to) => `<${to}>`).join(", ")}`),
      el("span", "message-subject", summary.Subject ? `“${summary.Subject}”` : "(no subject)"),
      el("span", "message-size", plural(summary.Size, "octet")));
    return span;
  }

  function messageItem(id) {
    const li = el("li", "message", null, { "data-message-id": id });
    const path = `message/${encodeURIComponent(id)}`;
    li.append(el("a", "raw", "raw", { href: `${API}${path}/raw`, target: "_blank", rel: "noopener" }),
      el("code", "message-id", id));
    if (!state.messages.has(id)) {
      state.messages.set(id, getJSON(path).catch((error) => ({ error })));
    }
    state.messages.get(id).then((summary) => {
      if (summary.error) li.append(el("span", "message-summary gone", summary.error.message));
      else li.append(messageSummary(summary));
    });
    return li;
  }

  function messagesBlock(ids) {
    const section = el("section", null, null, { id: "messages" });
    section.append(el("h3", null, `Messages (${ids.length})`));
    const list = el("ol", "messages-list");
    for (const id of ids) list.append(messageItem(id));
    if (ids.length === 0) section.append(el("p", "none", "No message accepted in this session."));
    else section.append(list);
    return section;
  }

  function renderDetail(d) {
    const box = document.getElementById("detail");
    const head = el("h2", null, null);
    head.append(el("span", null, "Session "), el("code", null, d.ID));
    const article = el("article", "session-detail", null, { "data-session-id": d.ID });
    article.append(head, summaryBlock(d), findingsBlock(d.FindingsList || []),
      messagesBlock(d.MessageIDs || []), transcriptBlock(d.Events || []));
    box.replaceChildren(article);
  }

  function renderDetailMessage(text) {
    document.getElementById("detail").replaceChildren(el("p", null, text, { id: "detail-empty" }));
  }

  async function refreshDetail(force) {
    const id = state.selected;
    if (!id) return;
    const summary = state.summaries.get(id);
    const key = JSON.stringify(summary || null);
    // An open session may gain events (a late reply) without its summary changing.
    if (!force && key === state.detailKey && !(summary && summary.Open)) return;
    const seq = ++state.detailSeq;
    try {
      const detail = await getJSON(`session/${encodeURIComponent(id)}`);
      if (seq !== state.detailSeq) return;
      state.detailKey = key;
      renderDetail(detail);
    } catch (error) {
      if (seq !== state.detailSeq) return;
      state.detailKey = null;
      renderDetailMessage(error.status === 404 ? `Session ${id} is no longer kept.` : `Could not load ${id}: ${error.message}`);
    }
  }

  // -- selection and the polling loop ----------------------------------------
  function selectFromHash() {
    const id = decodeURIComponent(location.hash.slice(1));
    state.selected = id || null;
    for (const [rowId, li] of state.rows) li.classList.toggle("selected", rowId === state.selected);
    if (!state.selected) renderDetailMessage("Select a session to see its transcript.");
    else refreshDetail(true);
  }

  async function poll() {
    try {
      renderList(await getJSON(`sessions?limit=${LIST_LIMIT}`));
      setStatus("live", "live");
      await refreshDetail(false);
    } catch (error) {
      setStatus("offline", `offline (${error.message}), retrying`);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  window.addEventListener("hashchange", selectFromHash);
  selectFromHash();
  poll();
})();
