// SPDX-License-Identifier: BSL-1.0
//
// The task server's dashboard: one WebSocket (protocol wsmanager.v1) for live updates and
// questions, plus the REST API (/api/tasks) to start tasks and to catch up after (re)connecting.
// Plain JavaScript, no build step, nothing loaded from elsewhere.
'use strict';

(() => {
  const params = new URLSearchParams(location.search);
  const userId = (params.get('user_id') || '').trim() || 'guest';

  const RECONNECT_BASE_MS = 500;
  const RECONNECT_CAP_MS = 5000;
  const PING_EVERY_MS = 20000;
  const PONG_TIMEOUT_MS = 10000;
  const MAX_LOG_LINES = 200;

  const STATE_LABELS = {
    queued: 'Queued',
    running: 'Running',
    waiting_confirmation: 'Needs your answer',
    completed: 'Completed',
    failed: 'Failed',
    cancelled: 'Cancelled',
  };
  const FINAL_STATES = new Set(['completed', 'failed', 'cancelled']);

  const CUSTOM_SAMPLE = {
    name: 'Nightly report',
    steps: [
      { name: 'collect', work_ms: 4000 },
      { name: 'render', work_ms: 3000, fail_attempts: 1, error_code: 'E_RENDER',
        error_message: 'Template engine timed out' },
      { name: 'send', work_ms: 1000, confirm: 'Email the report to 120 recipients?' },
    ],
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    conn: $('conn'),
    connText: $('conn-text'),
    connDetail: $('conn-detail'),
    notice: $('notice'),
    noticeText: $('notice-text'),
    list: $('task-list'),
    empty: $('empty'),
    template: $('task-template'),
    dialog: $('confirm-dialog'),
    feedback: $('confirm-feedback'),
    customJson: $('custom-json'),
    customError: $('custom-error'),
  };

  const app = {
    ws: null,
    attempt: 0,             // reconnect attempts since the last successful connection
    reconnectTimer: null,
    reconnectCountdown: null,  // updates "retrying in Ns"
    countdownTimer: null,      // updates the dialog's timeout
    pingTimer: null,
    pongTimer: null,
    tasks: new Map(),       // task id -> { snapshot, node, lastSeq }
    pending: new Map(),     // callback_id -> { frame, deadline } (questions for this user)
    deferred: new Set(),    // callback_ids the user put off with "Later" / Escape
    shown: null,            // callback_id in the dialog
    noticeTimer: null,
    lastClose: null,        // close event of the last connection that was established
  };

  // ---- helpers ---------------------------------------------------------------------------

  const clock = (seconds) =>
    new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });

  function setConnection(state, text, detail) {
    el.conn.dataset.state = state;
    el.connText.textContent = text;
    document.body.dataset.connection = state;
    if (detail !== undefined) el.connDetail.textContent = detail;
  }

  function showNotice(level, text, sticky) {
    el.notice.hidden = false;
    el.notice.dataset.level = level;
    el.noticeText.textContent = text;
    clearTimeout(app.noticeTimer);
    if (!sticky) app.noticeTimer = setTimeout(() => { el.notice.hidden = true; }, 8000);
  }

  function send(frame) {
    if (!app.ws || app.ws.readyState !== WebSocket.OPEN) return false;
    app.ws.send(JSON.stringify(frame));
    return true;
  }

  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      headers: body ? { 'Content-Type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
      cache: 'no-store',
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = data && data.message ? data.message : `HTTP ${response.status}`;
      throw new Error(message);
    }
    return data;
  }

  // ---- tasks -------------------------------------------------------------------------------

  function taskEntry(id) {
    let entry = app.tasks.get(id);
    if (entry) return entry;
    const node = el.template.content.firstElementChild.cloneNode(true);
    node.dataset.taskId = id;
    node.querySelector('.cancel').addEventListener('click', () => cancelTask(id));
    node.querySelector('.review').addEventListener('click', () => reviewTask(id));
    entry = { snapshot: null, node, lastSeq: 0, firstSeen: Date.now() };
    app.tasks.set(id, entry);
    el.list.prepend(node);
    el.empty.hidden = true;
    return entry;
  }

  // Applies a snapshot unless a newer one is already shown (HTTP answers and frames cross).
  function applySnapshot(snapshot) {
    if (!snapshot || snapshot.user_id !== userId) return;
    const entry = taskEntry(snapshot.id);
    if (entry.snapshot && entry.snapshot.version >= snapshot.version) return;
    entry.snapshot = snapshot;
    const { node } = entry;
    const final = FINAL_STATES.has(snapshot.state);
    node.dataset.state = snapshot.state;
    node.querySelector('.task-name').textContent = snapshot.name;
    node.querySelector('.task-id').textContent = snapshot.id;
    node.querySelector('.task-time').textContent = `started ${clock(snapshot.created_at)}`;
    const badge = node.querySelector('.badge');
    badge.textContent = STATE_LABELS[snapshot.state] || snapshot.state;
    badge.dataset.state = snapshot.state;
    const bar = node.querySelector('.bar');
    bar.value = snapshot.progress;
    bar.setAttribute('aria-label', `${snapshot.name}: ${snapshot.progress}%`);
    node.querySelector('.percent').textContent = `${snapshot.progress}%`;

    let step = 'Waiting to start';
    if (snapshot.step_index > 0) {
      step = `Step ${snapshot.step_index} of ${snapshot.step_count} · ${snapshot.current_step}`;
      if (snapshot.attempt > 1) step += ` · attempt ${snapshot.attempt}`;
    }
    if (final) {
      step = STATE_LABELS[snapshot.state] + (snapshot.outcome ? `: ${snapshot.outcome}` : '');
    }
    node.querySelector('.step').textContent = step;

    const problem = node.querySelector('.task-problem');
    problem.hidden = !snapshot.error_code;
    problem.textContent = snapshot.error_code
      ? `${snapshot.error_code}: ${snapshot.error_message || ''}` : '';

    const cancel = node.querySelector('.cancel');
    cancel.hidden = final;
    if (final) cancel.disabled = true;
    updateReviewButtons();
  }

  function appendLog(taskId, entry) {
    const task = app.tasks.get(taskId);
    if (!task || entry.seq <= task.lastSeq) return;
    task.lastSeq = entry.seq;
    const log = task.node.querySelector('.log');
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    const line = document.createElement('li');
    line.className = `log-line ${entry.level}`;
    const time = document.createElement('time');
    time.textContent = clock(entry.time);
    const text = document.createElement('span');
    text.textContent = entry.text;
    line.append(time, text);
    log.append(line);
    while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild.remove();
    task.node.querySelector('.log-count').textContent = `(${log.childElementCount})`;
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  async function refreshTasks() {
    const started = Date.now();
    try {
      const tasks = await api('GET', `/api/tasks?user_id=${encodeURIComponent(userId)}&log=1`);
      // Oldest first, so that prepending leaves the newest on top.
      for (const task of tasks.reverse()) {
        applySnapshot(task);
        for (const line of task.log || []) appendLog(task.id, line);
      }
      // Cards the server no longer has (it restarted, or dropped them from its history).
      const known = new Set(tasks.map((task) => task.id));
      for (const [id, entry] of app.tasks) {
        if (!known.has(id) && entry.firstSeen < started) {
          entry.node.remove();
          app.tasks.delete(id);
        }
      }
      el.empty.hidden = app.tasks.size > 0;
    } catch (error) {
      showNotice('error', `Could not load tasks: ${error.message}`);
    }
  }

  async function startTask(body, button) {
    button.disabled = true;
    try {
      const created = await api('POST', '/api/tasks', { user_id: userId, ...body });
      applySnapshot(created.task);
      const entry = app.tasks.get(created.task_id);
      if (entry) entry.node.querySelector('.log-box').open = true;
      return true;
    } catch (error) {
      el.customError.textContent = body.task ? error.message : '';
      if (!body.task) showNotice('error', `Could not start the task: ${error.message}`);
      return false;
    } finally {
      button.disabled = false;
    }
  }

  function cancelTask(taskId) {
    const entry = app.tasks.get(taskId);
    if (!entry) return;
    if (send({ action: 'cancel', task_id: taskId, request_id: `cancel-${taskId}` })) {
      const button = entry.node.querySelector('.cancel');
      button.disabled = true;
      button.textContent = 'Cancelling…';
    } else {
      showNotice('error', 'Not connected: the task cannot be cancelled right now');
    }
  }

  function heartbeat(frame) {
    const entry = app.tasks.get(frame.task_id);
    if (!entry) return;
    const beat = entry.node.querySelector('.heartbeat');
    beat.title = `Last heartbeat ${clock(frame.timestamp)}`;
    beat.classList.remove('beat');
    void beat.offsetWidth;  // restart the animation
    beat.classList.add('beat');
    clearTimeout(entry.beatTimer);
    entry.beatTimer = setTimeout(() => beat.classList.remove('beat'), 1500);
  }

  // ---- questions (task_step_result) ----------------------------------------------------

  function addQuestion(frame) {
    if (frame.user_id && frame.user_id !== userId) return;
    if (!app.pending.has(frame.callback_id)) {
      app.pending.set(frame.callback_id, {
        frame,
        deadline: Date.now() + (Number(frame.timeout_s) || 0) * 1000,
      });
    }
    updateReviewButtons();
    showNextQuestion();
  }

  function resolveQuestion(callbackId) {
    app.pending.delete(callbackId);
    app.deferred.delete(callbackId);
    if (app.shown === callbackId) closeDialog();
    updateReviewButtons();
    showNextQuestion();
  }

  function updateReviewButtons() {
    const waiting = new Set([...app.pending.values()].map((q) => q.frame.task_id));
    for (const [id, entry] of app.tasks) {
      entry.node.querySelector('.review').hidden = !waiting.has(id) || app.shown !== null;
    }
  }

  function reviewTask(taskId) {
    for (const [callbackId, question] of app.pending) {
      if (question.frame.task_id === taskId) {
        app.deferred.delete(callbackId);
        if (app.shown !== null) closeDialog();
        openDialog(callbackId);
        return;
      }
    }
  }

  function showNextQuestion() {
    if (app.shown !== null) return;
    for (const callbackId of app.pending.keys()) {
      if (!app.deferred.has(callbackId)) {
        openDialog(callbackId);
        return;
      }
    }
  }

  function openDialog(callbackId) {
    const { frame } = app.pending.get(callbackId);
    const result = frame.step_result || {};
    const details = result.result && typeof result.result === 'object' ? result.result : {};
    const failed = frame.status === 'failed';
    const task = app.tasks.get(frame.task_id);
    const taskName = details.task_name || (task && task.snapshot ? task.snapshot.name : frame.task_id);

    el.dialog.dataset.callbackId = callbackId;
    el.dialog.dataset.taskId = frame.task_id;
    el.dialog.dataset.kind = failed ? 'failure' : 'confirmation';
    $('confirm-eyebrow').textContent = failed ? 'A step failed' : 'Confirmation needed';
    $('confirm-title').textContent = failed
      ? `“${result.step || 'step'}” failed`
      : (frame.message || 'Continue?');
    $('confirm-message').textContent = failed
      ? 'Retry the step, or cancel the task.'
      : 'The task waits for your decision before this step runs.';
    $('confirm-error').hidden = !failed;
    $('confirm-error-code').textContent = result.error_code || '';
    $('confirm-error-message').textContent = result.error_message || '';
    $('confirm-task').textContent = taskName;
    $('confirm-step').textContent = details.step_index
      ? `${details.step_index} of ${details.step_count} · ${result.step}` : (result.step || frame.step);
    $('confirm-attempt').textContent = details.attempt
      ? `${details.attempt} of ${details.max_attempts}` : '1';
    $('confirm-proceed').textContent = failed ? 'Retry step' : 'Proceed';
    el.feedback.value = '';
    app.shown = callbackId;
    updateCountdown();
    clearInterval(app.countdownTimer);
    app.countdownTimer = setInterval(updateCountdown, 1000);
    updateReviewButtons();
    if (!el.dialog.open) el.dialog.showModal();
  }

  function closeDialog() {
    app.shown = null;
    clearInterval(app.countdownTimer);
    if (el.dialog.open) el.dialog.close();
    delete el.dialog.dataset.callbackId;
    updateReviewButtons();
  }

  function updateCountdown() {
    const question = app.pending.get(app.shown);
    if (!question) return;
    const left = Math.max(0, Math.round((question.deadline - Date.now()) / 1000));
    const minutes = Math.floor(left / 60);
    const seconds = String(left % 60).padStart(2, '0');
    $('confirm-timeout').textContent = `Without an answer, the server decides in ${minutes}:${seconds}.`;
  }

  function answer(proceed) {
    const callbackId = app.shown;
    if (callbackId === null) return;
    const feedback = el.feedback.value.trim();
    const frame = { action: 'confirm', callback_id: callbackId, proceed };
    if (feedback) frame.feedback = feedback;
    if (!send(frame)) {
      showNotice('error', 'Not connected: your answer was not sent. It will be asked again.');
      return;
    }
    // Close now; `confirmation_resolved` confirms it (and closes it in the user's other tabs).
    app.pending.delete(callbackId);
    closeDialog();
    showNextQuestion();
  }

  // ---- the WebSocket -----------------------------------------------------------------------

  function connect() {
    clearTimeout(app.reconnectTimer);
    clearInterval(app.reconnectCountdown);
    app.reconnectTimer = null;
    setConnection('connecting', app.attempt ? 'Reconnecting…' : 'Connecting…');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const url = `${scheme}://${location.host}/ws?user_id=${encodeURIComponent(userId)}`;
    const ws = new WebSocket(url, 'wsmanager.v1');
    app.ws = ws;
    let opened = false;
    ws.addEventListener('open', () => { opened = true; });
    ws.addEventListener('message', (event) => {
      if (app.ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      onFrame(frame);
    });
    ws.addEventListener('close', (event) => {
      if (app.ws !== ws) return;
      app.ws = null;
      onClosed(event, opened);
    });
  }

  function onFrame(frame) {
    switch (frame.type) {
      case 'connected':
        app.attempt = 0;
        setConnection('connected', 'Live',
                      `connection ${frame.connection_id} · protocol ${frame.protocol || '(none)'}`);
        startPing();
        refreshTasks();
        break;
      case 'task_update':
        applySnapshot(frame.task);
        break;
      case 'task_log':
        if (frame.user_id === userId) appendLog(frame.task_id, frame.entry);
        break;
      case 'task_step_result':
        addQuestion(frame);
        break;
      case 'confirmation_resolved':
        resolveQuestion(frame.callback_id);
        break;
      case 'task_cancelled': {
        const entry = app.tasks.get(frame.task_id);
        if (entry) entry.node.querySelector('.cancel').disabled = true;
        break;
      }
      case 'heartbeat':
        heartbeat(frame);
        break;
      case 'system_notice':
        showNotice(frame.level === 'warning' ? 'warning' : 'info', frame.message,
                   frame.level === 'warning');
        break;
      case 'pong':
        clearTimeout(app.pongTimer);
        app.pongTimer = null;
        break;
      case 'error':
        showNotice('error', `Server: ${frame.message} (${frame.code})`);
        break;
      default:
        break;
    }
  }

  // `opened`: the connection had been established (not a failed attempt to reconnect).
  function onClosed(event, opened) {
    stopPing();
    if (opened) {
      // How the last live connection ended (1001: the server shut down), for people and tests.
      document.body.dataset.closeCode = String(event.code);
      document.body.dataset.closeReason = event.reason || '';
      app.lastClose = event;
    }
    // Pending questions are asked again on reconnecting; answered ones are not.
    app.pending.clear();
    app.deferred.clear();
    closeDialog();
    const delay = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** app.attempt) *
                  (0.8 + Math.random() * 0.4);
    app.attempt += 1;
    let why = 'Disconnected';
    if (!opened) why = 'Server unreachable';
    else if (event.code === 1001) why = 'Server went away';
    const last = app.lastClose || event;
    const detail = `last connection closed with ${last.code}${last.reason ? ` “${last.reason}”` : ''}`;
    const until = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      setConnection('reconnecting', `${why} · retrying in ${left}s`, detail);
    };
    tick();
    app.reconnectCountdown = setInterval(tick, 500);
    app.reconnectTimer = setTimeout(connect, delay);
  }

  function startPing() {
    stopPing();
    app.pingTimer = setInterval(() => {
      if (!send({ action: 'ping', timestamp: Date.now() / 1000 })) return;
      clearTimeout(app.pongTimer);
      app.pongTimer = setTimeout(() => {
        // No pong: the connection is dead even if the browser has not noticed yet.
        if (app.ws) app.ws.close(4000, 'pong timeout');
      }, PONG_TIMEOUT_MS);
    }, PING_EVERY_MS);
  }

  function stopPing() {
    clearInterval(app.pingTimer);
    clearTimeout(app.pongTimer);
    app.pingTimer = null;
    app.pongTimer = null;
  }

  // ---- wiring ----------------------------------------------------------------------------

  $('user-name').textContent = userId;
  document.title = `Tasks of ${userId} · wsmanager demo`;
  el.customJson.value = JSON.stringify(CUSTOM_SAMPLE, null, 2);

  $('start-sample').addEventListener('click', (event) =>
    startTask({ sample: true }, event.currentTarget));

  $('custom-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    el.customError.textContent = '';
    let task;
    try {
      task = JSON.parse(el.customJson.value);
    } catch (error) {
      el.customError.textContent = `Invalid JSON: ${error.message}`;
      return;
    }
    await startTask({ task }, $('start-custom'));
  });

  $('confirm-proceed').addEventListener('click', () => answer(true));
  $('confirm-cancel').addEventListener('click', () => answer(false));
  $('confirm-later').addEventListener('click', () => {
    if (app.shown !== null) app.deferred.add(app.shown);
    closeDialog();
  });
  // Escape puts the question off, like "Later"; the task's "Answer…" button brings it back.
  el.dialog.addEventListener('cancel', (event) => {
    event.preventDefault();
    if (app.shown !== null) app.deferred.add(app.shown);
    closeDialog();
  });
  // Closed by the browser itself (e.g. Escape pressed twice): the same as "Later".
  el.dialog.addEventListener('close', () => {
    if (app.shown === null) return;
    app.deferred.add(app.shown);
    app.shown = null;
    clearInterval(app.countdownTimer);
    updateReviewButtons();
  });
  $('notice-close').addEventListener('click', () => { el.notice.hidden = true; });
  window.addEventListener('online', () => { if (!app.ws) connect(); });

  connect();
})();
