"""The reference system's own vocabulary: its states, clerk actions and codes.

They are deliberately not ours (pinyin initials such as YSL for 已受理, local codes for modes,
results and special procedures), so the mapping files have something real to translate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STATES = {
    "DSL": "待受理", "YSL": "已受理", "BYSL": "不予受理", "DBZ": "待补正", "SCZ": "审查中",
    "TBCX": "特别程序", "BJ": "已办结", "YSD": "已送达", "YCH": "已撤回",
}
# The SOAP face speaks the same states as two-digit codes, as older services do.
SOAP_STATES = {"DSL": "01", "YSL": "02", "BYSL": "03", "DBZ": "04", "SCZ": "05", "TBCX": "06",
               "BJ": "07", "YSD": "08", "YCH": "09"}
PROCEDURES = {"TZ": "听证", "XCHC": "现场核查", "ZJPS": "专家评审", "QT": "其他"}
SOAP_PROCEDURES = {"TZ": "1", "XCHC": "2", "ZJPS": "3", "QT": "9"}
RESULTS = {"PZ": "准予许可", "BPZ": "不予许可"}
SOAP_RESULTS = {"PZ": "1", "BPZ": "0"}
MODES = {"WB": "全程网办", "DB": "异地代收代办", "LB": "多地联办"}
APPLICANT_KINDS = {"GR": "个人", "FR": "法人"}
DELIVERY = {"YJ": "邮寄", "WL": "网络送达", "CK": "窗口领取"}
ITEM_RE = re.compile(r"^[A-Z]{2}-[A-Z]{2}-\d{4}$")
WITHDRAWABLE = ("DSL", "YSL", "DBZ", "SCZ", "TBCX")


@dataclass(frozen=True)
class ClerkAction:
    label: str
    sources: tuple[str, ...]
    target: str


CLERK_ACTIONS = {
    "shouli": ClerkAction("受理", ("DSL",), "YSL"),
    "bushouli": ClerkAction("不予受理", ("DSL",), "BYSL"),
    "buzheng": ClerkAction("一次性告知补正", ("DSL",), "DBZ"),
    "shencha": ClerkAction("开始审查", ("YSL",), "SCZ"),
    "zanting": ClerkAction("进入特别程序", ("SCZ",), "TBCX"),
    "huifu": ClerkAction("恢复审查", ("TBCX",), "SCZ"),
    "banjie": ClerkAction("办结", ("YSL", "SCZ"), "BJ"),
    "songda": ClerkAction("送达", ("BJ",), "YSD"),
}
