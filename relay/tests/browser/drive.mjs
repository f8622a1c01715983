// Drives headless chromium against a running sse-relay; run by ../browser.rs.
//
//   node drive.mjs RELAY_URL OTHER_ORIGIN_PAGE_URL
//
// The relay must end streams after a few seconds (--max-stream-secs) with a retry hint of a few
// seconds (--retry). Two pages subscribe: the relay's own live page, and a page from another origin
// whose EventSource points at the relay. Both must show events published after they opened, in order;
// the relay's page must also show an event of a type nobody told it about, with that type. After the
// relay ends their streams, both must reconnect and show what was published while they were away,
// exactly once and in order. Prints what it does; exits non-zero with the reason on failure.

import { chromium } from 'playwright-core';

const [relayUrl, otherPageUrl] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 25_000;

function fail(message) {
  throw new Error(message);
}

// Polls `probe` until `done(value)` holds; fails after WAIT_MS with what it saw last.
async function waitFor(what, probe, done) {
  const deadline = Date.now() + WAIT_MS;
  let seen;
  for (;;) {
    seen = await probe();
    if (done(seen)) return seen;
    if (Date.now() > deadline) fail(`timed out waiting until ${what}; last seen: ${JSON.stringify(seen)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

// Publishes `event`'s data, with its type unless it is `message`, and records the id the relay gave
// it. A typed event goes as the README's `curl -d DATA '/publish?event=TYPE'` sends it: the body is
// the data.
async function publish(event) {
  const typed = event.type !== 'message';
  const url = typed
    ? `${relayUrl}/publish?event=${encodeURIComponent(event.type)}`
    : `${relayUrl}/publish?data=${encodeURIComponent(event.data)}`;
  const answer = await fetch(url, { method: 'POST', body: typed ? event.data : undefined });
  if (!answer.ok) fail(`publishing ${event.data} answered ${answer.status}`);
  const published = await answer.json();
  if (typeof published.id !== 'string') fail(`"${event.data}" was published without an id: ${JSON.stringify(published)}`);
  event.id = published.id;
  return published;
}

function watch(name, page, readEvents) {
  const streamRequests = [];
  page.on('request', async (request) => {
    if (new URL(request.url()).pathname === '/events' && request.method() === 'GET') {
      const headers = await request.allHeaders();
      streamRequests.push(headers['last-event-id'] ?? null);
    }
  });
  page.on('console', (message) => console.log(`[${name} console] ${message.text()}`));
  page.on('pageerror', (error) => console.log(`[${name} error] ${error.message}`));
  return {
    name,
    page,
    streamRequests,
    events: () => page.evaluate(readEvents),
    status: () => page.evaluate(() => ({ state: document.body.dataset.state, drops: Number(document.body.dataset.drops) })),
  };
}

// An event to publish; its id is the relay's, known once published.
const event = (data, type = 'message') => ({ id: null, type, data });
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--no-first-run', '--disable-quic', '--disable-sync'],
  timeout: WAIT_MS,
});
try {
  const context = await browser.newContext();
  context.setDefaultTimeout(WAIT_MS);
  const relayPage = watch('relay page', await context.newPage(), () =>
    [...document.querySelectorAll('#events tr.event')].reverse().map((row) =>
      ({ id: row.dataset.id, type: row.dataset.type, data: row.querySelector('td.data').textContent })));
  const otherPage = watch('other origin', await context.newPage(), () =>
    [...document.querySelectorAll('#events li')].map((item) =>
      ({ id: item.dataset.id, type: item.dataset.type, data: item.textContent })));
  const pages = [relayPage, otherPage];

  // Opened together, so the relay ends both streams at about the same time.
  await Promise.all([relayPage.page.goto(`${relayUrl}/`), otherPage.page.goto(otherPageUrl)]);
  for (const p of pages) await waitFor(`the ${p.name} is connected`, p.status, (s) => s.state === 'open');
  console.log('both pages connected');

  // The page's own stream parser, on line endings the relay never sends: CR, CRLF, and a CRLF split
  // between two reads.
  const parsed = await relayPage.page.evaluate(() => {
    const seen = [];
    const parser = new StreamParser((e) => seen.push(e), '');
    for (const chunk of ['data: a\r', '\ndata: b\r\r', 'id: 9\r\nevent: x\r\n: a comment\n', 'data: c\n\n']) {
      parser.feed(chunk);
    }
    return seen;
  });
  const parsedWell = [{ type: 'message', data: 'a\nb', lastEventId: '' }, { type: 'x', data: 'c', lastEventId: '9' }];
  if (!same(parsed, parsedWell)) fail(`the page's parser read ${JSON.stringify(parsed)}`);
  console.log("the page's parser takes CR, LF and CRLF line endings");

  const live = [event('one'), event('two'), event('three')];
  for (const e of live) await publish(e);
  for (const p of pages) {
    await waitFor(`the ${p.name} shows the live events in order`, p.events, (e) => same(e, live));
  }
  console.log('both pages show the live events in order');

  // A type the relay's page was never told about. The other page's EventSource has only `onmessage`,
  // so it does not see this one (that is how EventSource works), but its last event id moves on.
  const deploy = event('deployed', 'deploy');
  await publish(deploy);
  await waitFor('the relay page shows the deploy event with its type', relayPage.events,
    (e) => same(e, [...live, deploy]));
  console.log('the relay page shows an event of a type it did not know about, with its type');

  // The relay ends each stream; while both pages wait to reconnect, more is published.
  const dropsSoFar = await Promise.all(pages.map(async (p) => (await p.status()).drops));
  await waitFor('both streams have been ended by the relay',
    () => Promise.all(pages.map((p) => p.status())),
    (statuses) => statuses.every((s, i) => s.drops > dropsSoFar[i] && s.state === 'reconnecting'));
  const lastSeenId = deploy.id;
  const meanwhile = [event('four'), event('five')];
  for (const e of meanwhile) {
    const answer = await publish(e);
    if (answer.connections !== 0) fail(`"${e.data}" was published to ${answer.connections} open streams, not while both were away`);
  }
  console.log('published while both pages were away');

  const shown = new Map([[relayPage, [...live, deploy, ...meanwhile]], [otherPage, [...live, ...meanwhile]]]);
  for (const p of pages) {
    await waitFor(`the ${p.name} shows what was published while it was away, once and in order`, p.events,
      (e) => same(e, shown.get(p)));
    await waitFor(`the ${p.name} is connected again`, p.status, (s) => s.state === 'open');
    const resumedFrom = p.streamRequests.slice(1);
    if (!resumedFrom.includes(lastSeenId)) {
      fail(`the ${p.name} did not reconnect with Last-Event-ID ${lastSeenId}: ${JSON.stringify(p.streamRequests)}`);
    }
  }
  const notes = await relayPage.page.$$eval('#events tr.note', (rows) => rows.map((row) => row.textContent));
  if (!notes.some((note) => note.includes(`resuming after id ${lastSeenId}`))) {
    fail(`the relay page does not show its reconnection: ${JSON.stringify(notes)}`);
  }
  console.log('both pages reconnected and resumed from the last event id');
} finally {
  await browser.close();
}
