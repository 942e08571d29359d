// npm run test:e2e: the demo in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core). Checks that two players each see only their own hand (DOM and WebSocket
// frames), that a play shows as speculative and then confirmed, and that killing a chain node
// mid-game loses no move. Saves screenshots in e2e-screenshots/ and prints click-to-view times.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startDemo } from './demo.ts';

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (!existsSync(chromiumPath)) {
  console.error(`test:e2e: no browser at ${chromiumPath}. Install Debian's chromium (apt-get update && apt-get install -y chromium) or set CHROMIUM_PATH.`);
  process.exit(1);
}
const shots = path.resolve('e2e-screenshots');
mkdirSync(shots, { recursive: true });
const data = mkdtempSync(path.join(tmpdir(), 'adama-e2e-'));
const step = (line: string): void => console.log(`e2e: ${line}`);

// Short-lived pane tokens (8 s): the page must renew them (reauth) while the test runs.
const tokenTtlMs = 8_000;
const demo = await startDemo({ nodes: 3, chains: 3, k: 3, port: 0, dataDir: data, restartAfterMs: 1_500, tokenTtlMs });
const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  // Every WebSocket frame the page receives, by viewer (each pane has its own connection).
  const frames = new Map<string, string[]>();
  page.on('websocket', (ws) => {
    let viewer = '';
    const pending: string[] = [];
    ws.on('framereceived', (f) => {
      const text = String(f.payload);
      if (viewer === '') {
        const m = /"type":"welcome","viewer":"([^"]+)"/.exec(text);
        if (m !== null) {
          viewer = m[1] as string;
          frames.set(viewer, [...(frames.get(viewer) ?? []), ...pending]);
        } else pending.push(text);
      }
      if (viewer !== '') frames.set(viewer, [...(frames.get(viewer) ?? []), text]);
    });
  });
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  // Without the admin key the page gets no tokens, and the admin API refuses the page's own requests.
  const keyless = await browser.newPage();
  await keyless.goto(demo.url);
  const refused = await keyless.evaluate(async () => (await fetch('/api/latency', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ms":5}' })).status);
  assert.equal(refused, 401, 'the admin API answered a request without the admin key');
  await keyless.close();
  await page.goto(demo.adminUrl);
  const pane = (viewer: string) => page.locator(`[data-pane=${viewer}]`);
  for (const v of ['alice', 'bob', 'carol']) await pane(v).locator('.badge', { hasText: 'confirmed' }).waitFor({ timeout: 15_000 });
  step('three panes connected (alice, bob, carol the spectator)');

  const acked = (viewer: string, count: number) =>
    page.waitForFunction(
      ([v, n]) => (window as unknown as { __timings: { viewer: string; confirmedMs?: number }[] }).__timings.filter((t) => t.viewer === v && t.confirmedMs !== undefined).length >= (n as number),
      [viewer, count],
      { timeout: 30_000 },
    );
  await pane('alice').locator('[data-action=sit]').click();
  await acked('alice', 1);
  await pane('bob').locator('[data-action=sit]').click();
  await acked('bob', 1);
  await pane('alice').locator('[data-action=start]').click();
  await acked('alice', 2);
  await pane('alice').locator('.hand button').nth(4).waitFor();
  await pane('bob').locator('.hand button').nth(4).waitFor();
  const hand = async (v: string): Promise<string[]> => pane(v).locator('.hand button').allTextContents();
  const aliceCards = await hand('alice');
  const bobCards = await hand('bob');
  assert.equal(aliceCards.length, 5);
  assert.equal(bobCards.length, 5);
  await page.screenshot({ path: path.join(shots, '1-dealt.png') });
  step(`dealt: alice holds ${aliceCards.join(' ')}, bob holds ${bobCards.join(' ')}`);

  const words = async (v: string): Promise<Set<string>> => new Set((await pane(v).innerText()).split(/\s+/));
  const noneOf = (cards: string[], seen: Set<string>, what: string) => {
    for (const card of cards) assert.ok(!seen.has(card), `${what} shows ${card}`);
  };
  noneOf(aliceCards, await words('bob'), "bob's pane");
  noneOf(aliceCards, await words('carol'), "carol's pane");
  noneOf(bobCards, await words('alice'), "alice's pane");
  noneOf(bobCards, await words('carol'), "carol's pane");
  const inFrames = (viewer: string, cards: string[]) => (frames.get(viewer) ?? []).filter((text) => cards.some((c) => text.includes(`"${c}"`)));
  assert.deepEqual(inFrames('bob', aliceCards), [], "a WebSocket frame to bob held alice's cards");
  assert.deepEqual(inFrames('carol', [...aliceCards, ...bobCards]), [], 'a WebSocket frame to the spectator held a card');
  assert.deepEqual(inFrames('alice', bobCards), [], "a WebSocket frame to alice held bob's cards");
  assert.ok((frames.get('alice') ?? []).length > 0 && (frames.get('bob') ?? []).length > 0, 'no WebSocket frames were seen: the check would be empty');
  step("neither player sees the other one's cards, in the DOM or in any WebSocket frame");

  // A play with a visible gap: 400 ms added to every forward along the chain.
  type AdminPage = { __admin: (path: string, body: unknown) => Promise<unknown> };
  await page.evaluate(() => (window as unknown as AdminPage).__admin('/api/latency', { ms: 400 }));
  const turn = /turn (\w+)/.exec(await pane('alice').innerText())?.[1] as string;
  assert.ok(turn === 'alice' || turn === 'bob', `unexpected turn ${turn}`);
  const card = (await hand(turn))[0] as string;
  await pane(turn).locator(`[data-card="${card}"]`).click();
  await pane(turn).locator('.pane.pending, .badge', { hasText: 'pending' }).first().waitFor({ timeout: 2_000 });
  await page.screenshot({ path: path.join(shots, '2-speculative.png') });
  assert.ok((await pane(turn).locator('.pile').innerText()).includes(card), 'the played card is not on the speculative pile');
  await pane(turn).locator('.badge', { hasText: 'confirmed' }).waitFor({ timeout: 10_000 });
  await page.screenshot({ path: path.join(shots, '3-confirmed.png') });
  step(`${turn} played ${card}: shown at once as pending, then confirmed`);
  await page.evaluate(() => (window as unknown as AdminPage).__admin('/api/latency', { ms: 0 }));

  // Click-to-view times, no added delay: chat messages (no turns).
  await page.selectOption('#type', 'chat');
  await page.fill('#doc', 'room-e2e');
  await page.click('#open');
  for (const v of ['alice', 'bob', 'carol']) await pane(v).locator('.badge', { hasText: 'confirmed' }).waitFor({ timeout: 15_000 });
  await page.evaluate(() => ((window as unknown as { __timings: unknown[] }).__timings = []));
  await pane('alice').locator('[data-action=join]').click();
  await acked('alice', 1);
  const says = 20;
  for (let i = 0; i < says; i++) {
    await pane('alice').locator('[data-input=text]').fill(`hello-${i}`);
    await pane('alice').locator('[data-action=say]').click();
    await acked('alice', 2 + i);
  }
  const timings = (await page.evaluate(() => (window as unknown as { __timings: { label: string; speculativeMs?: number; confirmedMs?: number }[] }).__timings)).filter((t) =>
    t.label.startsWith('say'),
  );
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] as number;
  const speculativeP50 = median(timings.map((t) => t.speculativeMs ?? Number.NaN));
  const confirmedP50 = median(timings.map((t) => t.confirmedMs ?? Number.NaN));
  step(`click to speculative view p50 ${speculativeP50.toFixed(1)} ms, click to confirmed (ack) p50 ${confirmedP50.toFixed(1)} ms over ${timings.length} chat messages`);

  // Kill the document's chain head mid-conversation: every message still commits, once.
  const doc = 'room-e2e';
  const cluster = await page.evaluate(async (d) => (await fetch(`/api/cluster?doc=${d}`)).json(), doc);
  const head = (cluster.chains as { chain: string; members: string[] }[]).find((c) => c.chain === cluster.docChain)?.members[0] as string;
  await page.evaluate((n) => (window as unknown as AdminPage).__admin('/api/kill', { node: n }), head);
  step(`killed ${head}, the head of ${cluster.docChain}`);
  const before = timings.length + 1;
  const more = 10;
  for (let i = 0; i < more; i++) {
    await pane('alice').locator('[data-input=text]').fill(`after-kill-${i}`);
    await pane('alice').locator('[data-action=say]').click();
  }
  await acked('alice', before + more);
  await page.waitForFunction(() => document.querySelector('[data-pane=bob]')?.textContent?.includes('after-kill-9'), undefined, { timeout: 20_000 });
  await page.screenshot({ path: path.join(shots, '4-after-kill.png') });
  const all = await page.evaluate(() => (window as unknown as { __timings: { label: string; error?: string; seq?: number }[] }).__timings);
  assert.deepEqual(
    all.filter((t) => t.error !== undefined),
    [],
    'a move failed',
  );
  const seqs = all.filter((t) => t.seq !== undefined).map((t) => t.seq);
  assert.equal(new Set(seqs).size, seqs.length, 'two moves got the same seq');
  const bobText = await pane('bob').innerText();
  for (let i = 0; i < more; i++) assert.ok(bobText.includes(`after-kill-${i}`), `bob never saw after-kill-${i}`);
  step(`after the kill: ${more} more messages, all committed once and seen by bob`);

  // The panes' tokens live 8 s: each pane renewed its token on its open connection (reauth), and none was closed for an expired token.
  await page.waitForFunction(() => Object.values((window as unknown as { __panes: Record<string, { client: { reauths: number } }> }).__panes).every((p) => p.client.reauths >= 2), undefined, {
    timeout: 3 * tokenTtlMs,
  });
  const closes = await page.evaluate(() => Object.values((window as unknown as { __panes: Record<string, { status: string }> }).__panes).map((p) => p.status));
  assert.deepEqual(closes, ['open', 'open', 'open'], 'a pane is not open after its token was renewed');
  step('every pane renewed its 8 s token on its open connection (reauth) and stayed open');
  console.log(JSON.stringify({ e2e: 'passed', speculativeP50Ms: Number(speculativeP50.toFixed(1)), confirmedP50Ms: Number(confirmedP50.toFixed(1)), messages: timings.length, screenshots: shots }));
} catch (error) {
  failed = true;
  console.error(`e2e: FAILED: ${(error as Error).stack ?? String(error)}`);
} finally {
  await browser.close();
  await demo.stop();
  rmSync(data, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
