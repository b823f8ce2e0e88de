// Opens the unit board in headless Chromium as a signed-in user and reports what it shows.
// Config (JSON in BATON_BOARD): {url, token, task?, screenshot?}. Prints one JSON line when the
// board is live (the units offered, the task's escalation level); with `task`, then waits for
// that task's row to show a higher escalation level without a reload, takes the screenshot and
// prints a second line.
import { chromium } from "playwright-core";

const config = JSON.parse(process.env.BATON_BOARD);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1500 } });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  await page.goto(`${config.url}/board#token=${encodeURIComponent(config.token)}`);
  await page.locator("#live.on").waitFor({ timeout: 20000 });
  const units = await page.$$eval("#unit option", (options) => options.map((o) => o.value));
  const fragment = await page.evaluate(() => location.hash);
  // Keyboard: the first Tab reaches the unit selector.
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.id ?? null);
  const ready = { ready: true, units, fragment, focused, errors };
  if (!config.task) {
    console.log(JSON.stringify(ready));
  } else {
    const row = `tr[data-task-id="${config.task}"]`;
    await page.locator(row).waitFor({ timeout: 20000 });
    const level = Number(await page.getAttribute(row, "data-escalation-level"));
    // Marks this page: a reload would lose it.
    await page.evaluate(() => { window.__sameBoard = true; });
    console.log(JSON.stringify({ ...ready, level }));
    await page.waitForFunction(
      ([selector, before]) => {
        const r = document.querySelector(selector);
        return r && Number(r.dataset.escalationLevel) > before;
      },
      [row, level],
      { timeout: 30000 },
    );
    const after = await page.$eval(row, (r) => ({
      level: Number(r.dataset.escalationLevel),
      text: r.innerText,
      first: r === document.querySelector("#tasks tbody tr"),
    }));
    const same = await page.evaluate(() => window.__sameBoard === true);
    if (config.screenshot) await page.screenshot({ path: config.screenshot, fullPage: true });
    console.log(JSON.stringify({ escalated: true, ...after, same, errors }));
  }
} finally {
  await browser.close();
}
