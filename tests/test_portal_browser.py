"""The applicant's path through a real browser (headless Chromium, driven by Playwright).

Log in at Taoyuan's portal, pick a Doumen item, land on Doumen's portal already signed in,
apply, and watch the case move when Doumen's officer accepts it. On a phone-sized screen.

Chromium: the `chromium` fixture of conftest.py (tests/browserkit.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from browserkit import CHROMIUM_ARGS
from casekit import ONLINE_ITEM, Api, case_federation, make_id, state
from fedkit import DOUMEN, TAOYUAN, DbFactory, Federation, wait_for
from playwright.async_api import async_playwright, expect

from gateway import appkeys as K
from gateway.cases.model import Case
from gateway.sso.accounts import add_local_account

WORKER_ID = make_id("430725", "19880412", "135")
PASSWORD = "taoyuan-2026-worker"


# Posts the page's application form with fetch, as a browser double-submit would.
SUBMIT_TWICE_THEN_CHANGED = """async () => {
  const form = document.querySelector('form[action^="/portal/apply/"]');
  const send = (fields) => fetch(form.action, {method: 'POST', body: fields, redirect: 'manual'})
      .then(r => r.type === 'opaqueredirect' ? 303 : r.status);
  const fields = new URLSearchParams(new FormData(form));
  const first = await send(fields);
  const second = await send(fields);
  fields.set('delivery', 'window');
  return [first, second, await send(fields)];
}"""


async def doumen_cases(fed: Federation) -> list[Case]:
    assert fed[DOUMEN].app is not None
    return await fed[DOUMEN].app[K.CASES].list_cases(top_level=True)


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await case_federation(tmp_path, db_factory)
    try:
        await add_local_account(federation[TAOYUAN].engine, id_number=WORKER_ID,
                                name="王桃源", loa="L4", password=PASSWORD, now=time.time())
        yield federation
    finally:
        await federation.close()


async def test_sign_in_at_home_apply_at_partner(fed: Federation, chromium: str) -> None:
    taoyuan, doumen = fed[TAOYUAN], fed[DOUMEN]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 390, "height": 844},
                                                locale="zh-CN")
            page = await context.new_page()
            await page.goto(taoyuan.url + "/portal/")
            await expect(page.get_by_role("heading", name="统一身份认证登录")).to_be_visible()
            await page.get_by_label("居民身份证号").fill(WORKER_ID)
            await page.get_by_label("密码").fill(PASSWORD)
            await page.get_by_role("button", name="登录").click()
            await expect(page.get_by_text("您好，王**")).to_be_visible()
            # A Doumen item, offered under 跨省通办 on Taoyuan's home page.
            await page.locator(f'button[data-target="{DOUMEN}"][data-item="{ONLINE_ITEM}"]'
                               ).click()
            await page.wait_for_url(re.compile(re.escape(doumen.url) + "/portal/apply/"))
            await expect(page.locator("header h1")).to_contain_text(doumen.config.member.name)
            assert "430725" in await page.locator("input[disabled]").input_value()
            # Nothing fits beyond a phone's width.
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390
            # The same form posted twice (a double click, a flaky network) files one case;
            # posted again with other choices it is refused, and still one case.
            sent = await page.evaluate(SUBMIT_TWICE_THEN_CHANGED)
            assert sent == [303, 303, 409], sent
            assert len(await doumen_cases(fed)) == 1
            await page.get_by_role("button", name="提交申请").click()
            await page.wait_for_url(re.compile(re.escape(doumen.url) + "/portal/cases/"))
            case_id = page.url.rsplit("/", 1)[-1]
            assert [c.case_id for c in await doumen_cases(fed)] == [case_id]
            await expect(page.locator("#state")).to_have_text("办理单位已接收")
            assert await state(doumen, case_id) == "handler_received"
            assert doumen.app is not None
            held = await doumen.app[K.CASES].get(case_id)
            assert held.handler == DOUMEN and held.applicant.id_number == WORKER_ID
            # Doumen's officer accepts; the applicant's page shows it by itself.
            async with aiohttp.ClientSession() as http:
                officer = await Api(http, doumen).as_clerk("officer")
                await officer.call("POST", f"/api/v1/handling/cases/{case_id}/accept", {})
            await expect(page.locator("#state")).to_have_text("已受理", timeout=15_000)
            # Back at home, the home session is still there (cookies are per member).
            await page.goto(taoyuan.url + "/portal/")
            await expect(page.get_by_text("您好，王**")).to_be_visible()
            await page.get_by_role("button", name="退出登录").click()
            await expect(page.get_by_role("heading", name="统一身份认证登录")).to_be_visible()

            async def doumen_session_ended() -> bool:
                await page.goto(doumen.url + "/portal/")
                return await page.get_by_role("heading", name="统一身份认证登录").count() == 1

            await wait_for(doumen_session_ended, what="logout to reach Doumen")
        finally:
            await browser.close()
