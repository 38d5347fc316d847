// A JupyterLab notebook in a real, headless Chromium, driven one step at a time over stdin and
// stdout: jssh's browser end-to-end test (tests/integration/browser.rs) and the benchmark's
// user-visible recovery (scripts/lib/browser_bench.py) measure what a user in a browser sees
// after a fault, not what a probe sees.
//
//   JSSH_TEST_BROWSER_DIR=DIR node notebook.mjs
//
// DIR holds node_modules/playwright-core (scripts/install-deps installs it and prints DIR).
// The browser is Debian's /usr/bin/chromium (JSSH_TEST_CHROMIUM overrides), with a fresh
// profile in a temp dir that is removed on quit.
//
// One JSON object per line on stdin, one answer per line on stdout (anything else goes to
// stderr, including the page's console: JupyterLab logs its reconnects there):
//
//   {"cmd":"open","url":URL,"timeout_ms":N}
//       opens JupyterLab at URL (its workspace reset, so no tab from an earlier session comes
//       back), creates a notebook with File › New › Notebook and the kernel dialog, waits until
//       its kernel is idle → {"ok":true,"kernel":ID,"path":"Untitled.ipynb","seconds":S}
//   {"cmd":"run","code":"x + 1","expect":"42","timeout_ms":N,"persist":false}
//       types code into a new cell at the end and presses Shift+Enter; waits until that cell's
//       output is exactly `expect` (without "expect": until the cell has an execution count)
//       → {"ok":true,"seconds":S,"dialog":false,"dialogs":[],"kernel":ID}
//       seconds: from the keypress to the output, both timed inside the page. dialog: whether
//       any .jp-Dialog (e.g. "Server Connection Error") appeared meanwhile; it is dismissed
//       after being recorded so that the next run can type. With "persist":true it acts as a
//       user who does not give up: accepts each dialog's default as it appears and runs the
//       cell again while it has not started ("reruns" counts these; the time still runs from
//       the first keypress). On timeout: {"ok":false,
//       "error":"timeout", "outputs":[…], "prompt":"[*]:", "dialogs":[…], …}.
//   {"cmd":"quit"} → {"ok":true}, then the browser is closed and the driver exits.
//
// Any failure answers {"ok":false,"error":MESSAGE}; the driver keeps reading.

import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const browserDir = process.env.JSSH_TEST_BROWSER_DIR;
if (!browserDir) {
  console.error('notebook.mjs: JSSH_TEST_BROWSER_DIR is not set (scripts/install-deps prints it)');
  process.exit(2);
}
// ESM ignores NODE_PATH: resolve playwright-core from the install dir, not from this file.
const { chromium } = createRequire(join(browserDir, 'package.json'))('playwright-core');

const CHROMIUM = process.env.JSSH_TEST_CHROMIUM || '/usr/bin/chromium';
// The machine is offline: without the background-networking flags Chromium floods the closed
// network with connection attempts (component updates, sync, safe browsing...). QUIC is off so
// that every request takes the TCP path through the tunnel.
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let context = null;
let profile = null;
let page = null;
let token = null;
// The notebook this driver created: its panel's DOM id and its server-side path.
let panelId = null;
let notebookPath = null;

function log(...args) {
  console.error(`notebook.mjs ${new Date().toISOString()}`, ...args);
}

async function launch() {
  profile = mkdtempSync(join(tmpdir(), 'jssh-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 800 },
  });
  page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => log(`console.${m.type()}:`, m.text()));
  page.on('pageerror', (e) => log('pageerror:', e.message));
  page.on('websocket', (ws) => {
    log('websocket open:', redact(ws.url()));
    ws.on('close', () => log('websocket closed:', redact(ws.url())));
  });
}

function redact(text) {
  return token ? text.split(token).join('<token>') : text;
}

/** The server's sessions, asked from inside the page (same origin: its cookie and token).
 * Bounded: after a failed run the server may not answer at all. */
async function sessions() {
  return page.evaluate(async (tok) => {
    const r = await fetch('/api/sessions', {
      headers: { Authorization: `token ${tok}` },
      cache: 'no-store',
      signal: AbortSignal.timeout(5000),
    });
    if (!r.ok) throw new Error(`GET /api/sessions: ${r.status}`);
    return r.json();
  }, token);
}

async function kernelId() {
  const s = (await sessions()).find((x) => x.path === notebookPath);
  return s && s.kernel ? s.kernel.id : null;
}

/** Records every .jp-Dialog that appears, with its time on the page's clock. */
async function watchDialogs() {
  await page.evaluate(() => {
    if (window.__jssh) return;
    window.__jssh = { dialogs: [] };
    const seen = new WeakSet();
    const scan = () => {
      for (const d of document.querySelectorAll('.jp-Dialog')) {
        if (!seen.has(d)) {
          seen.add(d);
          window.__jssh.dialogs.push({ t: performance.now(), text: d.innerText.trim().slice(0, 300) });
        }
      }
    };
    new MutationObserver(scan).observe(document.body, { childList: true, subtree: true });
    scan();
  });
}

/** Closes whatever dialog is open (its default button), so that typing reaches the cell. */
async function dismissDialogs() {
  for (let i = 0; i < 5; i++) {
    const dialog = page.locator('.jp-Dialog').first();
    if ((await dialog.count()) === 0) return;
    const accept = dialog.locator('.jp-Dialog-button.jp-mod-accept');
    if ((await accept.count()) > 0) await accept.first().click({ timeout: 5000 });
    else await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached', timeout: 5000 }).catch(() => {});
  }
}

async function open({ url, timeout_ms: timeout = 120000 }) {
  const started = Date.now();
  if (!context) await launch();
  const u = new URL(url);
  token = u.searchParams.get('token');
  // `reset`: the workspace is kept on the server, and would reopen an earlier run's notebook.
  u.searchParams.set('reset', '');
  page.setDefaultTimeout(timeout);
  await page.goto(u.toString(), { timeout });
  const fileMenu = page.locator('#jp-MainMenu .lm-MenuBar-item', { hasText: /^File$/ });
  await fileMenu.waitFor();
  const before = new Set(await page.locator('.jp-NotebookPanel').evaluateAll((ps) => ps.map((p) => p.id)));

  await fileMenu.click();
  await page.locator('.lm-Menu .lm-Menu-item[data-type="submenu"]', { hasText: /^New$/ }).click();
  await page.locator('.lm-Menu .lm-Menu-item[data-command="notebook:create-new"]').click();
  // The kernel dialog: pick the Python kernel explicitly, whatever the default.
  const dialog = page.locator('.jp-Dialog', { hasText: 'Select Kernel' });
  await dialog.waitFor();
  const select = dialog.locator('select');
  const python = await select.locator('option').evaluateAll((os) =>
    os.filter((o) => /python/i.test(o.textContent) && o.value.includes('"name"')).map((o) => o.value),
  );
  if (python.length === 0) throw new Error('the kernel dialog offers no Python kernel');
  await select.selectOption(python[0]);
  await dialog.locator('.jp-Dialog-button.jp-mod-accept').click();
  await dialog.waitFor({ state: 'detached' });

  const panel = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden)');
  await panel.waitFor();
  panelId = await panel.getAttribute('id');
  if (before.has(panelId)) throw new Error('no new notebook panel opened');
  const tabId = await panel.getAttribute('aria-labelledby');
  const title = (await page.locator(`[id="${tabId}"]`).getAttribute('title')) || '';
  notebookPath = (title.match(/^Path: (.*)$/m) || [])[1];
  if (!notebookPath) throw new Error(`no path in the notebook tab's title: ${JSON.stringify(title)}`);
  // Idle in the notebook's own toolbar: the kernel started and its websocket is connected.
  await page.locator(`[id="${panelId}"] .jp-Notebook-ExecutionIndicator[data-status="idle"]`).waitFor();
  await page.locator(`[id="${panelId}"] .jp-Cell .cm-content`).first().waitFor();
  await watchDialogs();
  const kernel = await kernelId();
  if (!kernel) throw new Error(`no session for ${notebookPath}`);
  return { ok: true, kernel, path: notebookPath, seconds: (Date.now() - started) / 1000 };
}

/** The last cell of our notebook, empty and without output: a new one when it is not. */
async function freshLastCell() {
  const cells = page.locator(`[id="${panelId}"] .jp-Notebook .jp-Cell`);
  const last = () => cells.last();
  const used = async () =>
    last().evaluate(
      (c) =>
        c.querySelector('.cm-content').textContent.trim() !== '' ||
        c.querySelectorAll('.jp-OutputArea-output').length > 0 ||
        /\d/.test(c.querySelector('.jp-InputArea-prompt')?.textContent || ''),
    );
  if (await used()) {
    const count = await cells.count();
    await last().locator('.cm-content').click();
    await page.keyboard.press('Escape');
    await page.keyboard.press('b');
    await page.waitForFunction(
      ([id, n]) => document.querySelectorAll(`[id="${id}"] .jp-Notebook .jp-Cell`).length > n,
      [panelId, count],
    );
  }
  return last();
}

async function run({ code, expect = null, timeout_ms: timeout = 60000, persist = false }) {
  if (!page || !panelId) throw new Error('no notebook: send "open" first');
  await dismissDialogs();
  const cell = await freshLastCell();
  await cell.locator('.cm-content').click();
  // insertText, not typing key by key: the editor's bracket auto-closing cannot change it.
  await page.keyboard.insertText(code);
  const handle = await cell.elementHandle();
  // Both ends are timed inside the page: the Shift+Enter keydown, and the mutation that puts
  // the expected output (or the execution count) into this cell.
  await page.evaluate(
    ([c, want]) => {
      const run = { start: null, end: null };
      window.__jssh.run = run;
      const done = () => {
        if (want === null) return /^\[\d+\]:$/.test((c.querySelector('.jp-InputArea-prompt')?.textContent || '').trim());
        return [...c.querySelectorAll('.jp-OutputArea-output')].some((o) => o.textContent.trim() === want);
      };
      const onKey = (e) => {
        if (e.key === 'Enter' && e.shiftKey && run.start === null) run.start = performance.now();
      };
      window.addEventListener('keydown', onKey, { capture: true });
      const observer = new MutationObserver(() => {
        if (run.start !== null && run.end === null && done()) {
          run.end = performance.now();
          observer.disconnect();
          window.removeEventListener('keydown', onKey, { capture: true });
        }
      });
      observer.observe(c, { childList: true, subtree: true, characterData: true });
    },
    [handle, expect],
  );
  await page.keyboard.press('Shift+Enter');
  const deadline = Date.now() + timeout;
  let timedOut = false;
  let reruns = 0;
  if (persist) {
    ({ timedOut, reruns } = await persevere(handle, deadline));
  } else {
    await page
      .waitForFunction(() => window.__jssh.run.end !== null, null, { timeout, polling: 20 })
      .catch((e) => {
        if (e.name !== 'TimeoutError') throw e;
        timedOut = true;
      });
  }
  const state = await page.evaluate(
    ([c]) => ({
      run: window.__jssh.run,
      dialogs: window.__jssh.dialogs.filter((d) => d.t >= (window.__jssh.run.start ?? 0)),
      outputs: [...c.querySelectorAll('.jp-OutputArea-output')].map((o) => o.textContent.trim().slice(0, 300)),
      prompt: (c.querySelector('.jp-InputArea-prompt')?.textContent || '').trim(),
    }),
    [handle],
  );
  await handle.dispose();
  const dialogs = state.dialogs.map((d) => d.text);
  const answer = { dialog: dialogs.length > 0, dialogs };
  if (persist) answer.reruns = reruns;
  if (timedOut || state.run.start === null) {
    Object.assign(answer, {
      ok: false,
      error: state.run.start === null ? 'the Shift+Enter never reached the page' : 'timeout',
      outputs: state.outputs,
      prompt: state.prompt,
    });
  } else {
    Object.assign(answer, { ok: true, seconds: (state.run.end - state.run.start) / 1000 });
  }
  // The kernel that answered (after a failed run, perhaps none can be asked).
  answer.kernel = await kernelId().catch((e) => {
    answer.kernel_error = e.message;
    return null;
  });
  await dismissDialogs();
  return answer;
}

/** What a user does when a cell does not run. After a Jupyter crash the kernel is gone: the
 * cell never starts (its prompt stays "[ ]:"), and JupyterLab asks which kernel to start only
 * when a cell is run again. So: accept each dialog's default as it appears, and run the cell
 * again whenever it has not started 1 s after the last keypress. Polls every 100 ms until the
 * output shows or `deadline`. */
async function persevere(handle, deadline) {
  let reruns = 0;
  let lastPress = Date.now();
  while (Date.now() < deadline) {
    if (await page.evaluate(() => window.__jssh.run.end !== null)) return { timedOut: false, reruns };
    const accept = page.locator('.jp-Dialog .jp-Dialog-button.jp-mod-accept').first();
    if ((await accept.count()) > 0) {
      await accept.click({ timeout: 5000 }).catch(() => {});
      lastPress = Date.now();
      continue;
    }
    // The cell's element, not `cells.last()`: running the last cell appended a new one.
    const prompt = await handle.$eval('.jp-InputArea-prompt', (p) => p.textContent.trim()).catch(() => '');
    if (prompt === '[ ]:' && Date.now() - lastPress > 1000) {
      await (await handle.$('.cm-content')).click();
      await page.keyboard.press('Shift+Enter');
      lastPress = Date.now();
      reruns += 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { timedOut: true, reruns };
}

async function quit() {
  if (context) await context.close().catch(() => {});
  if (profile) rmSync(profile, { recursive: true, force: true });
  context = null;
  return { ok: true };
}

const commands = { open, run, quit };

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  let request = {};
  try {
    request = JSON.parse(line);
    const fn = commands[request.cmd];
    if (!fn) throw new Error(`unknown command ${JSON.stringify(request.cmd)} (open, run, quit)`);
    answer = await fn(request);
  } catch (e) {
    answer = { ok: false, error: redact(String(e && e.message ? e.message : e)) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
  if (request.cmd === 'quit') break;
}
// stdin closed (or quit): never leave a Chromium behind.
await quit();
process.exit(0);
