"""The alliance admin's path through the console in a real browser (headless Chromium).

Log in on the operator's console, suspend Doumen, and see the suspension reach Taoyuan's
registry (and Taoyuan's own console). A member admin on the operator sees no suspend control,
and a suspension posted by hand with that admin's valid session and CSRF token is refused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from browserkit import CHROMIUM_ARGS
from casekit import PASSWORD, add_clerk_with_role, case_federation
from fedkit import DOUMEN, TAOYUAN, DbFactory, Federation, Node, wait_for
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from gateway import appkeys as K
from gateway.console import ALLIANCE_ADMIN


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await case_federation(tmp_path, db_factory, (DOUMEN, TAOYUAN))
    try:
        await add_clerk_with_role(federation.operator, "alliance", ALLIANCE_ADMIN)
        yield federation
    finally:
        await federation.close()


def status_in_registry(node: Node, member_id: str) -> str | None:
    assert node.app is not None
    snapshot = node.app[K.HOLDER].current
    member = snapshot.member(member_id) if snapshot is not None else None
    return member.status.value if member is not None else None


async def log_in(context: BrowserContext, node: Node, username: str) -> Page:
    page = await context.new_page()
    await page.goto(node.url + "/admin/")
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("#who")).to_contain_text(username)
    return page


async def test_alliance_admin_suspends_a_member(fed: Federation, chromium: str) -> None:
    operator, taoyuan = fed.operator, fed[TAOYUAN]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True,
                                           args=CHROMIUM_ARGS)
        try:
            # The alliance admin, on the operator's console.
            ally = await log_in(await browser.new_context(locale="zh-CN"), operator,
                                "alliance")
            await expect(ally.locator("#who")).to_contain_text(ALLIANCE_ADMIN)
            await ally.get_by_role("link", name="成员").click()
            doumen_row = ally.locator(f'tr[data-member="{DOUMEN}"]')
            await expect(doumen_row.locator(".status")).to_have_text("active")
            await ally.get_by_role("button", name=f"暂停 {DOUMEN}").click()
            await expect(ally.get_by_role("status")).to_contain_text("已发布注册表")
            await expect(doumen_row.locator(".status")).to_have_text("suspended")
            assert status_in_registry(operator, DOUMEN) == "suspended"

            # Another member's gateway takes up the new version by itself.
            async def taoyuan_sees_it() -> bool:
                return status_in_registry(taoyuan, DOUMEN) == "suspended"

            await wait_for(taoyuan_sees_it, what="the suspension to reach Taoyuan's registry")
            auditor = await log_in(await browser.new_context(locale="zh-CN"), taoyuan,
                                   "auditor")
            await auditor.goto(taoyuan.url + "/admin/members")
            await expect(auditor.locator(f'tr[data-member="{DOUMEN}"] .status')
                         ).to_have_text("suspended")
            # The diff of the two newest versions names the change.
            await ally.get_by_role("link", name="注册表版本").click()
            await ally.get_by_role("button", name="比较").click()
            await expect(ally.locator("#diff tr.change-status")).to_contain_text(DOUMEN)

            # A member admin: no suspend control, and a forged post is refused.
            context = await browser.new_context(locale="zh-CN")
            admin = await log_in(context, operator, "admin")
            await admin.goto(operator.url + "/admin/members")
            await expect(admin.locator(f'tr[data-member="{TAOYUAN}"] .status')
                         ).to_have_text("active")
            assert await admin.get_by_role("button", name=f"暂停 {TAOYUAN}").count() == 0
            assert await admin.locator('form[action$="/status"]').count() == 0
            csrf = await admin.locator('input[name="csrf"]').first.input_value()
            refused = await context.request.post(
                operator.url + f"/admin/members/{TAOYUAN}/status",
                form={"status": "suspended", "csrf": csrf}, max_redirects=0)
            assert refused.status == 403
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert json.loads(await refused.text())["type"] == "urn:tongban:error:forbidden"
            assert status_in_registry(operator, TAOYUAN) == "active"
        finally:
            await browser.close()
