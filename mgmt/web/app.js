// Edge SBC web UI: a small single-page app over the REST API (/api/v1). No framework, no CDN, no
// inline script (the Content-Security-Policy forbids it). Every value from the API is shown with
// textContent, never as HTML. Views are chosen by the URL hash (#/dashboard, #/calls, ...).
"use strict";

const API = "/api/v1";
const REFRESH_MS = 2000;
const ROLES = ["read-only", "operator", "admin"];
const state = { session: null, csrf: null, timer: null, view: null, pendingTotp: false };

// ---- helpers ------------------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function when(unix) {
  if (unix === null || unix === undefined) return "–";
  return new Date(unix * 1000).toLocaleString();
}

function bytes(n) {
  if (typeof n !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function allows(needed) {
  return state.session && ROLES.indexOf(state.session.role) >= ROLES.indexOf(needed);
}

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const resp = await fetch(API + path, init);
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    if (resp.status === 401 && path !== "/auth/login") showLogin();
    throw new ApiError(resp.status, typeof data === "object" ? data : { detail: data });
  }
  return data;
}

function flash(message, kind) {
  const box = $("flash");
  box.textContent = message;
  box.className = `banner ${kind || "info"}`;
  box.hidden = !message;
}

// ---- session -----------------------------------------------------------------------------------
function showOnly(view) {
  for (const section of document.querySelectorAll("section.view")) section.hidden = section.id !== `view-${view}`;
}

function showLogin() {
  stopTimer();
  state.session = null;
  state.csrf = null;
  $("top").hidden = true;
  $("pending-banner").hidden = true;
  showOnly("login");
  $("login-totp-row").hidden = !state.pendingTotp;
}

function startSession(session) {
  state.session = session;
  state.csrf = session.csrf_token;
  state.pendingTotp = false;
  $("top").hidden = false;
  $("who").textContent = `${session.user} (${session.role})`;
  for (const link of document.querySelectorAll("#nav a[data-role]")) link.hidden = !allows(link.dataset.role);
  if (session.must_change_password) {
    showOnly("password");
    return;
  }
  route();
}

async function onLogin(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const body = { username: $("login-user").value, password: $("login-password").value };
  if (state.pendingTotp && $("login-totp").value) body.totp = $("login-totp").value.trim();
  try {
    const session = await api("POST", "/auth/login", body);
    $("login-password").value = "";
    $("login-totp").value = "";
    startSession(session);
  } catch (err) {
    if (err.problem.field === "totp") {
      state.pendingTotp = true;
      $("login-totp-row").hidden = false;
      $("login-totp").focus();
    }
    $("login-error").textContent = err.message;
  }
}

async function onPasswordChange(event) {
  event.preventDefault();
  $("password-error").textContent = "";
  try {
    await api("POST", "/auth/password", { current_password: $("pw-current").value, new_password: $("pw-new").value });
    startSession(await api("GET", "/auth/session"));
  } catch (err) {
    $("password-error").textContent = err.message;
  }
}

async function onLogout() {
  try { await api("POST", "/auth/logout"); } catch (err) { /* the session is gone either way */ }
  showLogin();
}

// ---- routing and refresh -----------------------------------------------------------------------
const VIEWS = {
  dashboard: { load: loadDashboard, refresh: true },
  calls: { load: loadCalls, refresh: true },
  config: { load: loadConfig },
  revisions: { load: loadRevisions },
  users: { load: loadUsers },
  logs: { load: loadLogs },
};

function stopTimer() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

function route() {
  if (!state.session) return;
  const name = (location.hash.replace(/^#\//, "") || "dashboard").split("?")[0];
  const view = VIEWS[name] ? name : "dashboard";
  state.view = view;
  stopTimer();
  showOnly(view);
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === view);
  const run = () => VIEWS[view].load().catch((err) => flash(err.message, "bad"));
  run();
  if (VIEWS[view].refresh) state.timer = setInterval(run, REFRESH_MS);
  refreshPending();
}

async function refreshPending() {
  try {
    const status = await api("GET", "/status");
    showPending(status.config.pending);
  } catch (err) { /* shown by the view that failed */ }
}

function showPending(pending) {
  const banner = $("pending-banner");
  banner.hidden = !pending;
  if (!pending) return;
  $("pending-text").textContent =
    `Revision ${pending.revision} (by ${pending.author}) reverts to revision ${pending.previous} at ` +
    `${new Date(pending.deadline * 1000).toLocaleTimeString()} unless confirmed.`;
  $("pending-confirm").hidden = !allows("operator");
}

async function onConfirm() {
  try {
    const result = await api("POST", "/config/confirm");
    flash(`Revision ${result.confirmed} confirmed.`, "info");
    showPending(null);
  } catch (err) {
    flash(err.message, "bad");
  }
}

// ---- dashboard ---------------------------------------------------------------------------------
function mediaModes(calls) {
  const modes = { xdp: 0, userspace: 0, direct: 0 };
  for (const call of calls) {
    const legs = call.streams.flatMap((s) => [s.a, s.b]).filter(Boolean);
    if (call.media_mode === "direct") modes.direct += 1;
    else if (legs.some((leg) => leg.in_kernel)) modes.xdp += 1;
    else modes.userspace += 1;
  }
  return modes;
}

async function loadDashboard() {
  const [status, alarms, calls] = await Promise.all([
    api("GET", "/status"),
    api("GET", "/alarms"),
    api("GET", "/calls").catch(() => ({ calls: [] })),
  ]);
  const sbc = status.sbc;
  $("d-sbc-error").textContent = status.sbc_error ? `The SBC does not answer: ${status.sbc_error}` : "";
  $("d-calls").textContent = sbc ? sbc.active_calls : "–";
  $("d-max").textContent = sbc && sbc.max_calls ? `of at most ${sbc.max_calls}` : "";
  $("d-cps").textContent = sbc && typeof sbc.calls_per_second === "number" ? sbc.calls_per_second.toFixed(2) : "–";
  $("d-regs").textContent = sbc ? sbc.registrations : "–";
  const modes = mediaModes(calls.calls);
  $("d-media").textContent = modes.xdp + modes.userspace + modes.direct;
  $("d-media-modes").textContent = `XDP ${modes.xdp} · userspace ${modes.userspace} · direct ${modes.direct}`;
  $("d-dataplane").textContent = sbc ? sbc.dataplane.toUpperCase() : "–";
  $("d-dataplane-note").textContent = sbc && sbc.dataplane_note ? sbc.dataplane_note : "";
  const host = status.host || {};
  $("d-cpu").textContent = typeof host.cpu_percent === "number" ? `${host.cpu_percent.toFixed(0)} %` : "–";
  $("d-load").textContent = host.load_average ? `load ${host.load_average.join(" ")}` : "";
  const mem = host.memory;
  $("d-mem").textContent = mem ? `${Math.round((100 * mem.used_bytes) / mem.total_bytes)} %` : "–";
  $("d-mem-sub").textContent = mem ? `${bytes(mem.used_bytes)} of ${bytes(mem.total_bytes)}` : "";
  $("d-alarm-count").textContent = alarms.alarms.length;
  fill($("d-alarms"), alarms.alarms.length ? alarms.alarms.map(alarmRow) :
    [el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No active alarms." }))]);
  const trunks = sbc ? sbc.trunks : [];
  fill($("d-trunks"), trunks.length ? trunks.map((t) => el("tr", {},
    el("td", { text: t.name }), el("td", { text: t.address }),
    el("td", { class: `state-${t.state}`, text: t.state }),
    el("td", { text: t.last_rtt_ms === null ? "–" : `${t.last_rtt_ms} ms` }),
  )) : [el("tr", {}, el("td", { colspan: 4, class: "muted", text: "No monitored trunks (peer keepalive_s)." }))]);
  fill($("d-realms"), (sbc ? sbc.realms : []).map((r) => el("tr", {},
    el("td", { text: r.name }), el("td", { text: r.address }), el("td", { text: r.listen.join(" ") }),
    el("td", { text: r.media }),
  )));
  showPending(status.config.pending);
}

function alarmRow(alarm) {
  const clear = allows("operator") ? el("button", {
    class: "small secondary", type: "button", text: "Clear",
    onclick: async () => {
      try { await api("DELETE", `/alarms/${encodeURIComponent(alarm.id)}`); await loadDashboard(); }
      catch (err) { flash(err.message, "bad"); }
    },
  }) : null;
  return el("tr", { "data-alarm": alarm.name },
    el("td", { class: `sev sev-${alarm.severity}`, text: alarm.severity }), el("td", { text: alarm.name }),
    el("td", { text: when(alarm.raised_at) }), el("td", { text: alarm.text }), el("td", {}, clear));
}

// ---- live calls --------------------------------------------------------------------------------
const FLOW_TEXT = { both: "both ways", none: "no media", a_only: "ONE-WAY (only A sends)", b_only: "ONE-WAY (only B sends)", unknown: "…" };

async function loadCalls() {
  const data = await api("GET", "/calls");
  const calls = data.calls;
  $("c-count").textContent = `(${calls.length})`;
  $("c-empty").hidden = calls.length > 0;
  const rows = [];
  for (const call of calls) {
    const streams = call.streams.length ? call.streams : [null];
    streams.forEach((stream, index) => {
      for (const legName of ["a", "b"]) {
        const leg = stream ? stream[legName] : null;
        const first = index === 0 && legName === "a";
        const oneWay = stream && (stream.flow === "a_only" || stream.flow === "b_only");
        rows.push(el("tr", { class: first ? "call-first" : "", "data-call": call.call },
          el("td", { text: first ? call.call : "" }),
          el("td", { text: first ? `${call.route} (${call.a_realm} → ${call.b_realm})` : "" }),
          el("td", { text: first ? call.state : "" }),
          el("td", { text: first ? `${call.age_s} s` : "" }),
          el("td", { text: first ? `${call.media_mode}${call.hairpin ? " hairpin" : ""}` : "" }),
          el("td", { text: stream ? `#${index} ${legName}-leg${leg && leg.in_kernel ? " [XDP]" : ""}` : "no media" }),
          el("td", { text: leg ? leg.packets_in : "–" }),
          el("td", { text: leg ? leg.packets_out : "–" }),
          el("td", { text: leg ? `${leg.lost} (${leg.loss_pct} %)` : "–" }),
          el("td", { text: leg ? `${leg.jitter_ms} ms` : "–" }),
          el("td", { text: leg && leg.mos !== null ? leg.mos : "–" }),
          el("td", { class: oneWay ? "flag-bad" : `flow-${stream ? stream.flow : ""}`,
            text: stream && legName === "a" ? FLOW_TEXT[stream.flow] || stream.flow : "" }),
        ));
      }
    });
  }
  fill($("c-rows"), rows);
  const cdrs = await api("GET", "/cdrs?lines=20");
  fill($("cdr-rows"), cdrs.records.slice().reverse().map((r) => {
    const mos = r.streams.map((st) => ["a", "b"].map((k) => (st[k] && st[k].mos) ?? "–").join(" / "));
    return el("tr", {}, el("td", { text: when(r.recorded_at) }),
      el("td", { text: r.call }), el("td", { text: `${r.route} (${r.a_realm} → ${r.b_realm})` }),
      el("td", { text: r.status }), el("td", { text: `${r.duration_s} s` }), el("td", { text: r.reason }),
      el("td", { text: r.media_mode }), el("td", { text: mos.join(", ") || "–" }));
  }));
}

// ---- configuration editor ----------------------------------------------------------------------
let badLines = new Set();

function renderGutter() {
  const text = $("cfg-text").value;
  const count = text.split("\n").length;
  const lines = [];
  for (let i = 1; i <= count; i += 1) lines.push(el("span", { class: badLines.has(i) ? "bad" : "" }, `${i}\n`));
  $("cfg-gutter").replaceChildren(...lines);
  $("cfg-gutter").scrollTop = $("cfg-text").scrollTop;
}

function selectLine(line) {
  const area = $("cfg-text");
  const lines = area.value.split("\n");
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i += 1) start += lines[i].length + 1;
  area.focus();
  area.setSelectionRange(start, start + (lines[line - 1] || "").length);
  const lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 19;
  area.scrollTop = Math.max(0, (line - 5) * lineHeight);
  renderGutter();
}

function showErrors(errors) {
  badLines = new Set(errors.map((e) => e.line).filter((n) => typeof n === "number"));
  fill($("cfg-errors"), errors.map((e) => el("li", { onclick: () => e.line && selectLine(e.line) },
    `line ${e.line ?? "?"}: ${e.field ? e.field + ": " : ""}${e.message}`)));
  renderGutter();
}

function setResult(message, kind) {
  $("cfg-result").replaceChildren(el("p", { class: kind, text: message }));
}

async function loadConfig() {
  $("cfg-diff-box").hidden = true;
  showErrors([]);
  setResult("", "");
  if (!allows("operator")) {
    $("cfg-text").value = "";
    $("cfg-text").readOnly = true;
    setResult("Reading and changing the configuration needs the operator role.", "error");
    return;
  }
  const config = await api("GET", "/config");
  let text = config.text;
  if (config.candidate) {
    const cand = await api("GET", "/config/candidate");
    text = cand.text;
    setResult(`Showing the staged candidate (by ${cand.author}); Reload active to start from the running one.`, "muted");
  }
  $("cfg-text").readOnly = false;
  $("cfg-text").value = text;
  $("cfg-revision").textContent = `active revision ${config.revision}`;
  renderGutter();
}

async function onValidate() {
  $("cfg-diff-box").hidden = true;
  const result = await api("POST", "/config/validate", { text: $("cfg-text").value });
  showErrors(result.errors);
  if (result.valid) {
    const s = result.summary;
    setResult(`Valid: ${s.realms} realms, ${s.routes} routes, ${s.header_rules} header rules.`, "ok");
  } else {
    setResult(`Not valid: ${result.errors.length} problem(s). Nothing was changed.`, "error");
    const first = result.errors.find((e) => typeof e.line === "number");
    if (first) selectLine(first.line);
  }
  return result.valid;
}

async function onStage() {
  $("cfg-diff-box").hidden = true;
  try {
    await api("PUT", "/config/candidate", { text: $("cfg-text").value });
  } catch (err) {
    showErrors(err.problem.errors || [{ line: null, field: err.problem.field, message: err.message }]);
    setResult(`Not staged: ${err.message}`, "error");
    return;
  }
  showErrors([]);
  const diff = await api("GET", "/config/diff");
  const lines = diff.diff ? diff.diff.split("\n") : ["(no change)"];
  fill($("cfg-diff-text"), lines.map((line) => el("span", {
    class: line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : "",
  }, `${line}\n`)));
  $("cfg-diff-box").hidden = false;
  setResult("Staged. Check the difference, then commit.", "ok");
  $("cfg-diff-box").scrollIntoView({ block: "start" });
}

async function onCommit() {
  const body = { comment: $("cfg-comment").value };
  const confirmIn = $("cfg-confirm").value;
  if (confirmIn) body.confirm_timeout_s = Number(confirmIn);
  try {
    const result = await api("POST", "/config/commit", body);
    const reload = result.reload;
    let message = `Committed as revision ${result.revision.number}.`;
    if (reload.error) message += ` The SBC could not be asked to reload: ${reload.error}.`;
    else if (reload.applied) message += " The SBC applied it; live calls stay up.";
    if (reload.restart_required.length) message += ` Needs a restart: ${reload.restart_required.join(", ")}.`;
    $("cfg-diff-box").hidden = true;
    $("cfg-comment").value = "";
    setResult(message, "ok");
    $("cfg-revision").textContent = `active revision ${result.revision.number}`;
    showPending(result.pending);
  } catch (err) {
    setResult(`Not committed: ${err.message}`, "error");
  }
}

async function onDiscard() {
  await api("DELETE", "/config/candidate");
  await loadConfig();
  const config = await api("GET", "/config");
  $("cfg-text").value = config.text;
  renderGutter();
  setResult("The staged candidate was dropped.", "muted");
}

async function onReloadActive() {
  const config = await api("GET", "/config");
  $("cfg-text").value = config.text;
  showErrors([]);
  $("cfg-diff-box").hidden = true;
  setResult(`Active revision ${config.revision} loaded into the editor.`, "muted");
}

// ---- revisions ---------------------------------------------------------------------------------
async function loadRevisions() {
  const data = await api("GET", "/config/revisions");
  $("rev-diff-box").hidden = true;
  const rows = data.revisions.slice().reverse().map((rev) => {
    const actions = el("td", {});
    if (rev.number > 1 && allows("operator")) {
      actions.append(el("button", { class: "small secondary", type: "button", text: "Diff",
        onclick: () => showRevisionDiff(rev.number - 1, rev.number).catch((err) => flash(err.message, "bad")) }));
    }
    if (rev.number !== data.active && allows("operator")) {
      const button = el("button", { class: "small danger", type: "button", text: "Roll back to this",
        "data-rollback": rev.number });
      button.addEventListener("click", async () => {
        if (button.dataset.armed !== "yes") {
          button.dataset.armed = "yes";
          button.textContent = `Really roll back to r${rev.number}?`;
          return;
        }
        try {
          const result = await api("POST", "/config/rollback", { revision: rev.number });
          flash(`Rolled back: revision ${result.revision.number} restores revision ${rev.number}.`, "info");
          await loadRevisions();
        } catch (err) {
          flash(err.message, "bad");
        }
      });
      actions.append(" ", button);
    }
    return el("tr", { class: rev.number === data.active ? "active" : "", "data-revision": rev.number },
      el("td", { text: rev.number === data.active ? `${rev.number} (active)` : rev.number }),
      el("td", { text: when(rev.time) }), el("td", { text: rev.author }), el("td", { text: rev.kind }),
      el("td", { text: rev.comment }), actions);
  });
  fill($("rev-rows"), rows);
  showPending(data.pending);
}

async function showRevisionDiff(from, to) {
  const diff = await api("GET", `/config/diff?from=${from}&to=${to}`);
  $("rev-diff-title").textContent = `Revision ${from} → ${to}`;
  $("rev-diff-text").textContent = diff.diff || "(no change)";
  $("rev-diff-box").hidden = false;
}

// ---- users, TOTP, tokens -----------------------------------------------------------------------
async function loadUsers() {
  $("totp-state").textContent = state.session.totp_enrolled
    ? "TOTP is set up for your account: logins ask for a code."
    : "TOTP is not set up for your account.";
  $("totp-enroll").hidden = state.session.totp_enrolled;
  if (!allows("admin")) {
    fill($("u-rows"), [el("tr", {}, el("td", { colspan: 5, class: "muted", text: "Managing users needs the admin role." }))]);
    return;
  }
  const [users, tokens] = await Promise.all([api("GET", "/users"), api("GET", "/auth/tokens")]);
  fill($("u-rows"), users.users.map((user) => {
    const role = el("select", { "aria-label": `role of ${user.name}` },
      ...ROLES.map((r) => el("option", { value: r, selected: r === user.role }, r)));
    role.addEventListener("change", () => patchUser(user.name, { role: role.value }));
    const toggle = el("button", { class: "small secondary", type: "button", text: user.disabled ? "Enable" : "Disable",
      onclick: () => patchUser(user.name, { disabled: !user.disabled }) });
    const remove = el("button", { class: "small danger", type: "button", text: "Delete" });
    remove.addEventListener("click", async () => {
      if (remove.dataset.armed !== "yes") { remove.dataset.armed = "yes"; remove.textContent = "Really delete?"; return; }
      try { await api("DELETE", `/users/${encodeURIComponent(user.name)}`); await loadUsers(); }
      catch (err) { $("u-error").textContent = err.message; }
    });
    return el("tr", { "data-user": user.name }, el("td", { text: user.name }), el("td", {}, role),
      el("td", { text: user.totp_enrolled ? "yes" : "no" }),
      el("td", { text: user.disabled ? "disabled" : user.must_change_password ? "must change password" : "active" }),
      el("td", {}, toggle, " ", remove));
  }));
  fill($("t-rows"), tokens.tokens.map((t) => el("tr", {}, el("td", { text: t.name }), el("td", { text: t.user }),
    el("td", { text: t.expires ? when(t.expires) : "never" }),
    el("td", {}, el("button", { class: "small danger", type: "button", text: "Revoke",
      onclick: async () => { await api("DELETE", `/auth/tokens/${encodeURIComponent(t.id)}`); await loadUsers(); } })))));
}

async function patchUser(name, change) {
  $("u-error").textContent = "";
  try { await api("PATCH", `/users/${encodeURIComponent(name)}`, change); }
  catch (err) { $("u-error").textContent = err.message; }
  await loadUsers();
}

async function onCreateUser(event) {
  event.preventDefault();
  $("u-error").textContent = "";
  try {
    await api("POST", "/users", { name: $("u-name").value, role: $("u-role").value, password: $("u-password").value });
    $("u-name").value = "";
    $("u-password").value = "";
    await loadUsers();
  } catch (err) {
    $("u-error").textContent = err.message;
  }
}

async function onTotpEnroll(event) {
  event.preventDefault();
  $("totp-error").textContent = "";
  try {
    const result = await api("POST", "/auth/totp/enroll", { password: $("totp-password").value });
    $("totp-password").value = "";
    $("totp-secret").textContent = `${result.secret}\n${result.otpauth_uri}`;
    $("totp-secret-box").hidden = false;
  } catch (err) {
    $("totp-error").textContent = err.message;
  }
}

async function onTotpVerify(event) {
  event.preventDefault();
  $("totp-error").textContent = "";
  try {
    await api("POST", "/auth/totp/verify", { code: $("totp-code").value.trim() });
    $("totp-secret-box").hidden = true;
    state.session = await api("GET", "/auth/session");
    await loadUsers();
  } catch (err) {
    $("totp-error").textContent = err.message;
  }
}

async function onCreateToken(event) {
  event.preventDefault();
  const result = await api("POST", "/auth/tokens", { name: $("t-name").value });
  $("t-name").value = "";
  $("t-secret").textContent = `Copy this token now, it is not shown again:\n${result.token}`;
  $("t-secret").hidden = false;
  await loadUsers();
}

// ---- audit log ---------------------------------------------------------------------------------
async function loadLogs() {
  const data = await api("GET", "/logs?lines=300");
  fill($("l-rows"), data.entries.slice().reverse().map((e) => el("tr", {},
    el("td", { text: when(e.time) }), el("td", { text: e.user ?? "" }), el("td", { text: e.source ?? "" }),
    el("td", { text: e.action }), el("td", { text: e.target ?? "" }),
    el("td", { class: e.outcome === "ok" ? "ok" : "error", text: e.outcome }))));
}

// ---- start -------------------------------------------------------------------------------------
function bind() {
  $("login-form").addEventListener("submit", onLogin);
  $("password-form").addEventListener("submit", onPasswordChange);
  $("logout").addEventListener("click", onLogout);
  $("pending-confirm").addEventListener("click", onConfirm);
  const guard = (fn) => () => fn().catch((err) => setResult(err.message, "error"));
  $("cfg-validate").addEventListener("click", guard(onValidate));
  $("cfg-diff").addEventListener("click", guard(onStage));
  $("cfg-commit").addEventListener("click", guard(onCommit));
  $("cfg-discard").addEventListener("click", guard(onDiscard));
  $("cfg-reload").addEventListener("click", guard(onReloadActive));
  $("cfg-text").addEventListener("input", () => { badLines = new Set(); renderGutter(); });
  $("cfg-text").addEventListener("scroll", () => { $("cfg-gutter").scrollTop = $("cfg-text").scrollTop; });
  $("cfg-text").addEventListener("keydown", (event) => {
    if (event.key === "Tab") {  // two spaces, as YAML wants
      event.preventDefault();
      const area = event.target;
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
      renderGutter();
    }
  });
  $("u-form").addEventListener("submit", onCreateUser);
  $("totp-enroll").addEventListener("submit", onTotpEnroll);
  $("totp-verify").addEventListener("submit", onTotpVerify);
  $("t-form").addEventListener("submit", (e) => onCreateToken(e).catch((err) => flash(err.message, "bad")));
  window.addEventListener("hashchange", route);
}

async function start() {
  bind();
  try {
    startSession(await api("GET", "/auth/session"));
  } catch (err) {
    showLogin();
  }
}

document.addEventListener("DOMContentLoaded", start);
