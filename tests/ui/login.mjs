// The login form of a collector with read tokens: node login.mjs <collector-url> <token>
// A page shows the form; a wrong token is refused with a message; the right one is
// kept in an HttpOnly cookie (not readable by script) and the page loads. Exits 1 on a
// failed check.
import { chromium } from 'playwright-core';

const [base, token] = process.argv.slice(2);
const failures = [];
const check = (ok, msg, detail) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${msg}${!ok && detail !== undefined ? ` -- ${JSON.stringify(detail)}` : ''}`);
  if (!ok) failures.push(msg);
};
const browser = await chromium.launch({ executablePath: process.env.CALM_CHROMIUM || '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
const page = await browser.newPage();
page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
page.on('dialog', (d) => {
  failures.push(`dialog: ${d.message()}`);
  d.dismiss().catch(() => {});
});
page.on('console', (m) => {
  // The 401s that lead to the form are logged by Chromium as resource errors.
  if ((m.type() === 'error' || m.type() === 'warning') && !m.text().includes('401')) failures.push(`console: ${m.text()}`);
});
await page.goto(`${base}/fleet`);
await page.waitForSelector('input[type=password]', { timeout: 20000 });
check((await page.textContent('h1')) === 'Sign in', 'without the cookie the page asks for a read token');
await page.fill('input[type=password]', 'not-the-token');
await page.click('button:text-is("Sign in")');
await page.waitForSelector('[role=alert]', { timeout: 10000 });
check((await page.textContent('[role=alert]')).includes('not a read token'), 'a wrong token is refused with a message');
await page.fill('input[type=password]', token);
await page.click('button:text-is("Sign in")');
await page.waitForFunction(() => document.querySelector('h1')?.textContent === 'Fleet', null, { timeout: 20000 }).catch(() => {});
check((await page.textContent('h1')) === 'Fleet', 'with the right token the fleet page loads');
const cookies = await page.context().cookies();
const c = cookies.find((x) => x.name === 'calm_token');
check(c && c.httpOnly && c.sameSite === 'Strict', 'the token is kept in an HttpOnly SameSite=Strict cookie', cookies);
check(!(await page.evaluate(() => document.cookie)).includes(token), 'script cannot read the token');
await page.goto(`${base}/issues`);
await page.waitForSelector('#issues', { timeout: 20000 }).catch(() => {});
check((await page.$('#issues')) !== null, 'other pages load with the cookie');
await browser.close();
console.log(JSON.stringify({ failures }));
process.exit(failures.length ? 1 : 0);
