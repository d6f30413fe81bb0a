"""The reference system's database: its cases and an append-only feed of what happened.

Plain sqlite3 behind one lock, called from a worker thread (`asyncio.to_thread`): a stand-in for
a city's system needs correctness (every change and its feed entry in one transaction, a case
created once per external number) more than throughput. The feed's sequence number is the
cursor; it only grows, so a reader that keeps its cursor misses nothing and repeats nothing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.reference.states import (
    APPLICANT_KINDS,
    CLERK_ACTIONS,
    DELIVERY,
    ITEM_RE,
    MODES,
    PROCEDURES,
    RESULTS,
    WITHDRAWABLE,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS banjian (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bjbh TEXT NOT NULL UNIQUE,
    wbbh TEXT NOT NULL UNIQUE,
    sxbm TEXT NOT NULL,
    bllx TEXT NOT NULL,
    sqr TEXT NOT NULL,
    bd TEXT NOT NULL,
    cl TEXT NOT NULL,
    sdfs TEXT NOT NULL,
    sjd TEXT NOT NULL,
    sjsj REAL,
    zt TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    jsdm TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS shijian (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bjbh TEXT NOT NULL,
    wbbh TEXT NOT NULL,
    zt TEXT NOT NULL,
    yzt TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""
TEXT_LIMIT = 2000


class Invalid(Exception):
    """The request is wrong (400 / a SOAP Client fault)."""


class NotFound(Exception):
    pass


class Conflict(Exception):
    """Not allowed in the case's current state (409)."""


@dataclass(frozen=True)
class Material:
    bm: str  # 编码
    mc: str  # 名称
    hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"bm": self.bm, "mc": self.mc}
        if self.hash:
            out["hash"] = self.hash
        return out


@dataclass(frozen=True)
class NewCase:
    wbbh: str  # 外部编号: the federation's case id
    sxbm: str  # 事项编码
    bllx: str  # 办理类型
    sqr: Mapping[str, str]  # 申请人: lx 类型, xm 姓名, zjhm 证件号码, tyshxydm, lxdh 电话
    bd: Mapping[str, Any]  # 表单
    cl: Sequence[Material]
    sdfs: Mapping[str, str]  # 送达方式: fs 方式, dz 地址
    sjd: str  # 收件地
    sjsj: float | None  # 收件时间
    # 接收代码: the coded fields (bllx, sqr.lx, sdfs.fs) exactly as the face received them,
    # when its codes are not the system's own (the SOAP face's numbers); None: they are.
    jsdm: Mapping[str, str] | None = None

    def received_codes(self) -> dict[str, str]:
        if self.jsdm is not None:
            return dict(self.jsdm)
        return {"bllx": self.bllx, "sqr.lx": self.sqr.get("lx", ""),
                "sdfs.fs": self.sdfs.get("fs", "")}


@dataclass(frozen=True)
class Case:
    bjbh: str
    wbbh: str
    sxbm: str
    bllx: str
    sqr: dict[str, str]
    bd: dict[str, Any]
    cl: list[Material]
    sdfs: dict[str, str]
    sjd: str
    sjsj: float | None
    zt: str
    created: float
    updated: float
    # The coded fields as the face received them: what a mapping sent, before the SOAP face's
    # numbers became the system's letters, so a mapping's code tables can be checked per face.
    jsdm: dict[str, str]


@dataclass(frozen=True)
class Event:
    seq: int
    bjbh: str
    wbbh: str
    zt: str
    yzt: str  # 原状态: the state the case left ("" for a new case)
    at: float
    detail: dict[str, Any]


def text(value: Any, what: str, *, required: bool = True, limit: int = TEXT_LIMIT) -> str:
    if value is None or value == "":
        if required:
            raise Invalid(f"{what} 不能为空")
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise Invalid(f"{what} 须为不超过 {limit} 字的文本")
    return value


def check_new(case: NewCase) -> NewCase:
    text(case.wbbh, "wbbh", limit=200)
    if not ITEM_RE.match(case.sxbm or ""):
        raise Invalid(f"事项编码 {case.sxbm!r} 不符合本地编码规则")
    if case.bllx not in MODES:
        raise Invalid(f"办理类型 {case.bllx!r} 未知")
    if case.sqr.get("lx") not in APPLICANT_KINDS:
        raise Invalid(f"申请人类型 {case.sqr.get('lx')!r} 未知")
    text(case.sqr.get("xm"), "申请人姓名", limit=200)
    if case.sdfs.get("fs") not in DELIVERY:
        raise Invalid(f"送达方式 {case.sdfs.get('fs')!r} 未知")
    for m in case.cl:
        text(m.bm, "材料编码", limit=64)
        text(m.mc, "材料名称", limit=200)
    return case


class Store:
    def __init__(self, path: Path | str, *, prefix: str = "BJ",
                 clock: Callable[[], float] = time.time) -> None:
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._prefix = prefix
        self._clock = clock
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(SCHEMA)
            columns = {r["name"] for r in self._conn.execute("PRAGMA table_info(banjian)")}
            if "jsdm" not in columns:  # a database from before the received codes were kept
                self._conn.execute("ALTER TABLE banjian ADD COLUMN jsdm TEXT NOT NULL "
                                   "DEFAULT '{}'")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- from the federation (through either face) -----------------------------------------
    def create(self, new: NewCase) -> tuple[Case, bool]:
        """Create once per external number: a repeat returns the case it made the first time."""
        check_new(new)
        now = self._clock()
        with self._tx() as db:
            row = db.execute("SELECT * FROM banjian WHERE wbbh = ?", (new.wbbh,)).fetchone()
            if row is not None:
                return _case(row), False
            cur = db.execute(
                "INSERT INTO banjian (bjbh, wbbh, sxbm, bllx, sqr, bd, cl, sdfs, sjd, sjsj, zt,"
                " created, updated, jsdm) VALUES ('', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'DSL', ?, ?, ?)",
                (new.wbbh, new.sxbm, new.bllx, _dump(dict(new.sqr)), _dump(dict(new.bd)),
                 _dump([m.to_json() for m in new.cl]), _dump(dict(new.sdfs)), new.sjd,
                 new.sjsj, now, now, _dump(new.received_codes())))
            bjbh = f"{self._prefix}{cur.lastrowid:08d}"
            db.execute("UPDATE banjian SET bjbh = ? WHERE id = ?", (bjbh, cur.lastrowid))
            self._log(db, bjbh, new.wbbh, "", "DSL", {}, now)
            row = db.execute("SELECT * FROM banjian WHERE bjbh = ?", (bjbh,)).fetchone()
        return _case(row), True

    def supplement(self, bjbh: str, wbbh: str, materials: Sequence[Material]) -> Case:
        """Materials supplied after 补正告知; a repeat (the case already back at 待受理) only
        merges them again, so a retried call is harmless."""
        if not materials:
            raise Invalid("补正材料不能为空")
        now = self._clock()
        with self._tx() as db:
            case = self._locked(db, bjbh, wbbh)
            if case.zt not in ("DBZ", "DSL"):
                raise Conflict(f"办件 {bjbh} 状态为 {case.zt}，不能补正")
            merged = {m.bm: m for m in case.cl}
            merged.update({m.bm: m for m in materials})
            db.execute("UPDATE banjian SET cl = ?, zt = 'DSL', updated = ? WHERE bjbh = ?",
                       (_dump([m.to_json() for m in merged.values()]), now, bjbh))
            if case.zt == "DBZ":
                self._log(db, bjbh, wbbh, "DBZ", "DSL", {"bzcl": [m.mc for m in materials]}, now)
            return self._locked(db, bjbh, wbbh)

    def withdraw(self, bjbh: str, wbbh: str, reason: str) -> Case:
        now = self._clock()
        with self._tx() as db:
            case = self._locked(db, bjbh, wbbh)
            if case.zt == "YCH":
                return case
            if case.zt not in WITHDRAWABLE:
                raise Conflict(f"办件 {bjbh} 状态为 {case.zt}，不能撤回")
            db.execute("UPDATE banjian SET zt = 'YCH', updated = ? WHERE bjbh = ?", (now, bjbh))
            self._log(db, bjbh, wbbh, case.zt, "YCH", {"yy": text(reason, "撤回原因")}, now)
            return self._locked(db, bjbh, wbbh)

    # --- from the clerk page ------------------------------------------------------------------
    def act(self, bjbh: str, action: str, form: Mapping[str, str]) -> Case:
        step = CLERK_ACTIONS.get(action)
        if step is None:
            raise NotFound(f"没有操作 {action}")
        now = self._clock()
        with self._tx() as db:
            case = self._locked(db, bjbh, None)
            if case.zt not in step.sources:
                raise Conflict(f"办件状态为 {case.zt}，不能{step.label}")
            detail = _detail(action, form, case)
            db.execute("UPDATE banjian SET zt = ?, updated = ? WHERE bjbh = ?",
                       (step.target, now, bjbh))
            self._log(db, bjbh, case.wbbh, case.zt, step.target, detail, now)
            return self._locked(db, bjbh, None)

    # --- reading ----------------------------------------------------------------------------
    def case(self, bjbh: str) -> Case | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM banjian WHERE bjbh = ?", (bjbh,)).fetchone()
        return None if row is None else _case(row)

    def by_external(self, wbbh: str) -> list[Case]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM banjian WHERE wbbh = ?", (wbbh,)).fetchall()
        return [_case(r) for r in rows]

    def cases(self, limit: int = 200) -> list[Case]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM banjian ORDER BY id DESC LIMIT ?",
                                      (limit,)).fetchall()
        return [_case(r) for r in rows]

    def events_after(self, seq: int, limit: int = 100) -> list[Event]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM shijian WHERE seq > ? ORDER BY seq LIMIT ?",
                                      (seq, limit)).fetchall()
        return [_event(r) for r in rows]

    def events_of(self, bjbh: str) -> list[Event]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM shijian WHERE bjbh = ? ORDER BY seq",
                                      (bjbh,)).fetchall()
        return [_event(r) for r in rows]

    def meta(self, key: str, default: str = "") -> str:
        with self._lock:
            row = self._conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return default if row is None else str(row["v"])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE "
                       "SET v = excluded.v", (key, value))

    # --- inside a transaction -----------------------------------------------------------------
    def _locked(self, db: sqlite3.Connection, bjbh: str, wbbh: str | None) -> Case:
        row = db.execute("SELECT * FROM banjian WHERE bjbh = ?", (bjbh,)).fetchone()
        if row is None:
            raise NotFound(f"没有办件 {bjbh}")
        case = _case(row)
        if wbbh is not None and case.wbbh != wbbh:
            raise Conflict(f"办件 {bjbh} 的外部编号不是 {wbbh}")
        return case

    @staticmethod
    def _log(db: sqlite3.Connection, bjbh: str, wbbh: str, yzt: str, zt: str,
             detail: Mapping[str, Any], now: float) -> None:
        db.execute("INSERT INTO shijian (bjbh, wbbh, zt, yzt, at, detail) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (bjbh, wbbh, zt, yzt, now, _dump(dict(detail))))


def _detail(action: str, form: Mapping[str, str], case: Case) -> dict[str, Any]:
    """What a clerk's step records, checked as the local rules want it."""
    if action == "shouli":
        return {"slhzh": text(form.get("slhzh"), "受理回执号", required=False, limit=64)
                or f"{case.bjbh}-SL"}
    if action == "bushouli":
        return {"yy": text(form.get("yy"), "不予受理理由")}
    if action == "buzheng":
        names = [n.strip() for n in text(form.get("bzcl"), "补正材料").splitlines() if n.strip()]
        if not names or len(names) > 50 or any(len(n) > 200 for n in names):
            raise Invalid("补正材料须逐行列明（一次性告知），最多 50 项")
        return {"yy": text(form.get("yy"), "补正原因"), "bzcl": names}
    if action == "zanting":
        if form.get("tbcx") not in PROCEDURES:
            raise Invalid("请选择特别程序")
        return {"yy": text(form.get("yy"), "特别程序原因"), "tbcx": form["tbcx"]}
    if action == "banjie":
        result = form.get("bjjg")
        if result not in RESULTS:
            raise Invalid("请选择办结结果")
        detail = {"bjjg": result, "jgsm": text(form.get("jgsm"), "结果说明")}
        zzbh = text(form.get("zzbh"), "证照编号", required=False, limit=128)
        if zzbh:
            if result != "PZ":
                raise Invalid("不予许可不能出具证照")
            detail["zzbh"] = zzbh
            detail["zzmc"] = text(form.get("zzmc"), "证照名称", required=False, limit=200)
        return {k: v for k, v in detail.items() if v}
    if action == "songda":
        tracking = text(form.get("kddh"), "快递单号", required=False, limit=64)
        return {"kddh": tracking} if tracking else {}
    return {}


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _case(row: sqlite3.Row) -> Case:
    sqr, sdfs = json.loads(row["sqr"]), json.loads(row["sdfs"])
    # A case from before the received codes were kept: its own codes are the best account.
    jsdm = json.loads(row["jsdm"]) or {"bllx": row["bllx"], "sqr.lx": sqr.get("lx", ""),
                                       "sdfs.fs": sdfs.get("fs", "")}
    return Case(bjbh=row["bjbh"], wbbh=row["wbbh"], sxbm=row["sxbm"], bllx=row["bllx"],
                sqr=sqr, bd=json.loads(row["bd"]),
                cl=[Material(**m) for m in json.loads(row["cl"])],
                sdfs=sdfs, sjd=row["sjd"], sjsj=row["sjsj"], zt=row["zt"],
                created=row["created"], updated=row["updated"], jsdm=jsdm)


def _event(row: sqlite3.Row) -> Event:
    return Event(seq=row["seq"], bjbh=row["bjbh"], wbbh=row["wbbh"], zt=row["zt"],
                 yzt=row["yzt"], at=row["at"], detail=json.loads(row["detail"]))
