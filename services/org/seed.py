"""Seed data for the org service: a demo data set (through the API) and a benchmark-scale one (in bulk).

    python -m services.org.seed demo [--tenant SLUG ...]
    python -m services.org.seed scale [--people N] [--check | --drop]

``demo`` loads, for each of the 7 tenants (or the ones named with --tenant), a small realistic data
set THROUGH THE ORG gRPC API, so every rule applies and every change emits its events: the 34
responsibility items of ``data/responsibilities.toml``; 3-4 communities (泰前街道 includes 嘉德社区,
id ``jiade``, whose alliance has 7 property companies and 5 owners' committees); 2-4 grids per
community as small, non-overlapping rectangles (each tenant in its own area around Tai'an, lon
117.08-117.20, lat 36.15-36.25); compounds with an address and a point inside their grid; a grid
station per grid; party organisations (community committee → grid branches → compound branches);
member units; people (party members with dual-report registration, volunteers with services and
availability, community workers with post and grade); volunteer teams; the three lists (talent,
team services, unit resources); and each community's public-affairs items from
``data/public_affairs.toml``. It talks to the org service at HONGLING_ORG_ADDR / the port from
HONGLING_PORT_BASE as a "service" principal ("seed", all tenants). The data is deterministic
(seeded random) and the run idempotent: a record whose id exists is left alone (Get → NOT_FOUND →
Create), so a second run changes nothing. A record the service refuses because of data already there
(its name taken under another id, say by an earlier version of the demo data) is left out with a
warning and the run goes on (`make up` runs the demo on every start); any other refusal stops it.

``scale`` writes a benchmark data set at the size of the seed report across the 7 tenants: 1,089
grids, 155 grid stations, --people people (default 12,000; 86 % party members, about a third
volunteers of whom 3,000 are in teams), about 1,500 member units, and the three lists (1-3 skills
per person from a vocabulary of 42 skills, team services, unit resources). Going through gRPC one
record at a time would take far too long at this size, so every record is checked in-process by
the same validators and reference checks the handlers run (``handlers.check``: domain.validate_*
plus the storage look-ups, against the records written before it; for the 21,000 talent entries the
same validator and rule with the people read in one batch, see _talent_clean), built as the handlers
build it (mongoengine documents, personal data encrypted and keyed by handlers._protect), and
written in batches with ``insert_many`` into the tenants' own org databases (hl_org_<tenant>, where
the org service reads). **Scale data is written in bulk and emits no events** (nothing reaches
Kafka, other services never hear of it); every id starts with ``scale-``, so ``scale --drop``
removes exactly these records and nothing else. At the
end the tenant generation is bumped so running org processes rebuild their in-memory index. A
finished tenant carries a marker (collection ``scale_seed``); ``scale --check`` exits 0 when all 7
are complete for --people, 1 otherwise; ``scale`` does nothing when they are, and otherwise removes
any partial scale data of a tenant and writes it anew.

Personal data is fake and looks it: mobile numbers 1[3-9]xxxxxxxxx, ID numbers of area 370902
(泰山区) born 1950-2000 with a correct GB 11643 check digit, serial numbers 000-499 in the demo and
500-999 at scale, so the two never collide on the per-tenant unique ID-number key.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import grpc
import pymongo.errors
from google.protobuf import json_format
from hongling.org.v1 import org_pb2 as pb
from hongling.org.v1 import org_pb2_grpc as pb_grpc

from services.common import context, mongo
from services.common.errors import HonglingError, InvalidArgument
from services.common.grpc_client import make_channel
from services.common.grpc_server import TENANT_KEY
from services.common.principal import METADATA_KEY, Principal, mint
from services.common.protect import protector
from services.common.settings import Settings, get_settings
from services.common.tenants import Tenant, all_tenants, get_tenant
from services.org import domain, handlers
from services.org.servicer import ENTITIES

DATA_DIR = Path(__file__).with_name("data")
RESPONSIBILITIES_FILE = DATA_DIR / "responsibilities.toml"
PUBLIC_AFFAIRS_FILE = DATA_DIR / "public_affairs.toml"
SCALE_PREFIX = "scale-"
SCALE_MARKER = "scale_seed"  # collection holding {_id: "scale", people, grids, ...} once a tenant is complete
ORG_SERVICE = "hongling.org.v1.OrgService"

Record = dict[str, Any]


# ---------------------------------------------------------------- default lists (TOML)


def responsibility_items() -> list[Record]:
    """The default responsibility list (责任清单): 34 items across the 6 domains."""
    data = tomllib.loads(RESPONSIBILITIES_FILE.read_text(encoding="utf-8"))
    return [dict(item) for item in data["item"]]


def public_affairs_templates() -> list[Record]:
    """The default public-affairs items (承办 / 协办) every community starts from."""
    data = tomllib.loads(PUBLIC_AFFAIRS_FILE.read_text(encoding="utf-8"))
    return [dict(item) for item in data["item"]]


# ---------------------------------------------------------------- fake personal data


def _words(text: str) -> tuple[str, ...]:
    """A vocabulary written as one space-separated string (Chinese terms hold no spaces)."""
    return tuple(text.split())


SURNAMES = (
    "王张李刘陈赵孙杨徐周吴马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴"
)
GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红玲芬飞鹏辉建国志海燕晓东春梅文斌宇浩凯"
    "健俊帆帅旭宁欣雪琳晨阳佳慧颖鑫峰波亮鹤松柏岩泰岳山岱德福祥瑞庆永长振兴利荣成宏伦新丹彤璐瑶婷悦"
)
MOBILE_PREFIXES = (
    *(f"13{d}" for d in range(10)),
    *(f"15{d}" for d in (0, 1, 2, 3, 5, 6, 7, 8, 9)),
    *(f"18{d}" for d in range(10)),
    "166",
    "173",
    "177",
    "198",
    "199",
)
ID_AREA = "370902"  # 山东省泰安市泰山区
DEMO_SERIALS = (0, 499)
SCALE_SERIALS = (500, 999)


def fake_name(rng: random.Random) -> str:
    # Shandong surnames are concentrated: the first twenty cover most people.
    surname = SURNAMES[min(int(rng.expovariate(1 / 12)), len(SURNAMES) - 1)]
    given = rng.choice(GIVEN_CHARS) + (rng.choice(GIVEN_CHARS) if rng.random() < 0.7 else "")
    return surname + given


def fake_phone(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def fake_landline(rng: random.Random) -> str:
    return f"0538-{rng.choice('2356789')}{rng.randrange(10**6):06d}"  # 0538: Tai'an


def id_check_digit(first17: str) -> str:
    """The GB 11643 check character of the first 17 digits (ISO 7064 MOD 11-2)."""
    return domain.ID_CHECK[sum(int(d) * w for d, w in zip(first17, domain.ID_WEIGHTS, strict=True)) % 11]


def fake_id_number(
    rng: random.Random,
    *,
    serials: tuple[int, int] = DEMO_SERIALS,
    born: tuple[int, int] = (1950, 2000),
    area: str = ID_AREA,
) -> str:
    """An obviously made-up but valid 18-digit ID number: area 370902, a birth date in `born`."""
    first, last = date(born[0], 1, 1), date(born[1], 12, 31)
    birth = first + timedelta(days=rng.randrange((last - first).days + 1))
    body = f"{area}{birth:%Y%m%d}{rng.randint(*serials):03d}"
    return body + id_check_digit(body)


class People:
    """Fake ID numbers, unique among the generators that share `used` (one tenant's, say)."""

    def __init__(self, rng: random.Random, serials: tuple[int, int], used: set[str] | None = None) -> None:
        self.rng = rng
        self.serials = serials
        self.used: set[str] = used if used is not None else set()

    def id_number(self) -> str:
        while True:
            value = fake_id_number(self.rng, serials=self.serials)
            if value not in self.used:
                self.used.add(value)
                return value


# ---------------------------------------------------------------- vocabularies

SKILLS = _words(
    "水电维修 家电维修 法律咨询 心理疏导 助老服务 医疗救护 绿化养护 矛盾调解 电脑维修 管道疏通 "
    "房屋维修 防水补漏 康复护理 中医推拿 育婴护理 理发 烹饪 缝纫 书法 绘画 摄影 文艺演出 舞蹈 "
    "声乐 太极拳 课业辅导 外语翻译 手语 财务会计 消防安全 应急救援 心肺复苏 驾驶 政策宣讲 "
    "网络宣传 视频剪辑 垃圾分类指导 反诈宣传 家庭教育 燃气安全 电梯安全 社会工作"
)
# Skills every demo community has someone for: the needs residents raise most often.
CORE_SKILLS = ("水电维修", "矛盾调解", "助老服务", "医疗救护", "法律咨询", "心理疏导", "家电维修")
SKILL_NOTES = {
    "水电维修": "持低压电工作业证",
    "医疗救护": "执业护士",
    "法律咨询": "执业律师",
    "心理疏导": "心理咨询师（二级）",
    "心肺复苏": "红十字救护员证",
    "驾驶": "C1驾驶证，驾龄10年以上",
    "社会工作": "助理社会工作师",
    "康复护理": "康复治疗师",
    "外语翻译": "英语专业八级",
}
VOLUNTEER_SERVICES = _words(
    "助老服务 环境清洁 文明劝导 政策宣传 治安巡逻 助残服务 心理疏导 课业辅导 文艺演出 疫情防控 "
    "义诊服务 法律咨询 家电维修 水电维修 垃圾分类指导 交通疏导"
)
STATION_SERVICES = _words("政策咨询 代办服务 便民维修 健康监测 图书借阅 法律咨询 心理疏导 助老服务 四点半课堂 矛盾调解")
# (resource, category, quantity range, unit of measure, conditions)
RESOURCES: tuple[tuple[str, str, tuple[float, float], str, str], ...] = (
    ("应急车辆", "vehicle", (1, 3), "辆", "提前一天预约，紧急情况随叫随到"),
    ("小型货车", "vehicle", (1, 2), "辆", "工作日可用，需社区出具用车单"),
    ("中巴车", "vehicle", (1, 2), "辆", "周末可用，提前三天预约"),
    ("会议室", "venue", (1, 3), "间", "工作日晚间和周末向社区开放"),
    ("多功能活动室", "venue", (1, 2), "间", "提前预约，免费使用"),
    ("篮球场", "venue", (1, 2), "处", "下班后和节假日开放"),
    ("停车场", "venue", (20, 200), "个车位", "夜间向周边居民错时开放"),
    ("食堂", "venue", (1, 1), "处", "可为高龄老人提供助餐"),
    ("发电机", "equipment", (1, 2), "台", "应急时调用"),
    ("投影设备", "equipment", (1, 3), "套", "随会议室一并使用"),
    ("消毒喷雾器", "equipment", (5, 30), "台", "疫情防控期间优先保障"),
    ("抽水泵", "equipment", (1, 4), "台", "汛期应急排涝"),
    ("电脑", "equipment", (2, 10), "台", "用于社区培训"),
    ("灭火器", "equipment", (10, 100), "具", "消防演练可借用"),
    ("帐篷", "supplies", (5, 20), "顶", "应急安置使用"),
    ("防疫物资", "supplies", (500, 5000), "件", "口罩、手套、消毒液等"),
    ("米面粮油", "supplies", (50, 500), "份", "用于困难群众走访慰问"),
    ("医疗急救箱", "supplies", (5, 20), "个", ""),
    ("图书", "supplies", (200, 2000), "册", "可捐赠社区书屋"),
    ("桌椅", "supplies", (20, 100), "套", "社区活动可借用"),
    ("共建资金", "funds", (10_000, 100_000), "元", "用于社区公益项目，按季度拨付"),
    ("党建活动经费", "funds", (5_000, 50_000), "元", "用于联建党组织活动"),
)
WORK_UNITS = _words(
    "泰山区人民医院 泰安市中心医院 泰安市中医医院 泰山区实验学校 泰安第一中学 泰山学院 山东农业大学 "
    "国网泰安供电公司 泰安市自来水有限公司 泰山区民政局 泰山区司法局 泰山区住房和城乡建设局 "
    "泰山区卫生健康局 泰山区教育和体育局 泰山区市场监督管理局 泰山区城市管理局 泰安市公安局泰山分局 "
    "中国银行泰安分行 中国建设银行泰安分行 泰安市公交公司 泰安日报社 中国移动泰安分公司"
)
ROADS = {
    "daimiao": ("岱宗大街", "通天街", "擂鼓石大街", "红门路", "升平街"),
    "caiyuan": ("财源大街", "东岳大街", "灵山大街", "迎暄大街", "青年路"),
    "taiqian": ("东岳大街", "望岳东路", "龙潭路", "岱宗大街", "泰前路"),
    "shanggao": ("泮河大街", "奈河路", "灵山大街", "上高街", "温泉路"),
    "xujialou": ("明堂路", "长城路", "泰山大街", "环山路", "南关大街"),
    "shengzhuang": ("省庄路", "泰山大街", "东羊楼路", "104国道", "石腊路"),
    "qiujiadian": ("邱家店大街", "旧县路", "埠阳庄路", "104国道", "泰新路"),
}
COMPOUND_STEMS = _words(
    "泰山 岱宗 东岳 龙潭 温泉 望岳 泮河 明堂 灵芝 御碑 红门 普照 虎山 奈河 天平 凤台 金山 "
    "锦绣 和谐 书香 翰林 瑞丰 福泰 盛世 怡和 天颐 春晖 阳光 岱麓 紫薇"
)
COMPOUND_SUFFIXES = ("花园", "家园", "小区", "苑", "嘉园", "新村", "华庭", "名郡", "雅居", "公寓")
PROPERTY_BRANDS = _words("嘉德 泰和 岱宗 东岳 恒信 金泰 华新 瑞祥 安居 圣地 龙泉 宏达 鲁泰 福瑞 万和 康居")
RESIDENT_UNITS = _words(
    "泰山区第一实验学校 泰安市中医二院 中国银行泰安泰山支行 国网泰安供电公司城区供电中心 "
    "泰安市自来水有限公司营业所 泰安市图书馆 中国移动泰安分公司营业厅 泰安日报社 "
    "泰安市公交公司第二车队 泰山区妇幼保健院 泰安市第六中学 中国邮政泰安分公司 泰安市燃气集团服务站 "
    "泰山区社区卫生服务中心 泰安市消防救援支队特勤站 农业银行泰安泰山支行"
)
DUAL_REPORT_UNITS = _words(
    "泰山区民政局 泰山区司法局 泰山区住房和城乡建设局 泰山区卫生健康局 泰山区教育和体育局 "
    "泰山区市场监督管理局 泰山区人力资源和社会保障局 泰山区退役军人事务局 泰山区文化和旅游局 "
    "泰山区应急管理局 泰山区财政局 泰山区统计局 泰山区医疗保障局 泰山区残疾人联合会 共青团泰山区委 "
    "泰山区妇女联合会 泰山区发展和改革局 泰山区审计局"
)
NEW_ECONOMY = ("社会工作服务中心", "网络科技有限公司", "律师事务所", "家政服务有限公司", "养老服务中心")
SHOPS = ("便民超市", "家电维修部", "理发店", "早餐店", "五金店", "大药房", "洗衣店", "水果店")
PUBLIC_INTEREST = ("志愿者协会", "红十字救护队", "爱心助老服务中心", "青少年成长服务中心", "阳光助残服务社")
GRASSROOTS = ("夕阳红文艺队", "太极拳协会", "书画社", "广场舞队", "象棋协会", "合唱团", "读书会")
TEAM_NAMES = ("红领志愿服务队", "邻里守望队", "平安巡逻队", "银发互助队", "文明劝导队", "青年突击队")
POLICE_STATIONS = {
    "daimiao": "岱庙",
    "caiyuan": "财源",
    "taiqian": "泰前",
    "shanggao": "上高",
    "xujialou": "徐家楼",
    "shengzhuang": "省庄",
    "qiujiadian": "邱家店",
}
ALL_DUTIES = list(domain.DUTIES)


def zh_number(n: int) -> str:
    """1..99 in Chinese numerals (网格 names): 1 → 一, 10 → 十, 12 → 十二, 40 → 四十."""
    digits = "零一二三四五六七八九"
    if not 1 <= n <= 99:
        raise ValueError(f"{n} is outside 1..99")
    if n < 10:
        return digits[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else digits[tens]) + "十" + (digits[ones] if ones else "")


def _day(rng: random.Random, first: date, last: date) -> str:
    return (first + timedelta(days=rng.randrange((last - first).days + 1))).isoformat()


def _availability(rng: random.Random, slots: int) -> list[Record]:
    """Realistic volunteering windows: weekend mornings/afternoons, weekday evenings."""
    choices = [
        (6, "08:00", "12:00"),
        (6, "14:00", "18:00"),
        (7, "08:00", "12:00"),
        (7, "14:00", "18:00"),
        *((w, "18:30", "21:00") for w in range(1, 6)),
        *((w, "09:00", "11:30") for w in range(1, 6)),
    ]
    picked = sorted(rng.sample(choices, slots))
    return [{"weekday": w, "start": s, "end": e} for w, s, e in picked]


# ---------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Rect:
    """A lon/lat rectangle, the shape of every seeded grid."""

    west: float
    south: float
    east: float
    north: float

    def geojson(self) -> str:
        w, s, e, n = self.west, self.south, self.east, self.north
        return json.dumps({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]})

    def inner_point(self, rng: random.Random, margin: float = 0.15) -> Record:
        """A point well inside (never on the boundary), rounded to 6 decimals (~0.1 m)."""
        fx, fy = rng.uniform(margin, 1 - margin), rng.uniform(margin, 1 - margin)
        return {
            "lat": round(self.south + fy * (self.north - self.south), 6),
            "lon": round(self.west + fx * (self.east - self.west), 6),
        }


def lattice(west: float, south: float, cell_w: float, cell_h: float, col: int, row: int, gap: float = 0.0) -> Rect:
    """Cell (col, row) of a regular lattice; neighbours share their edges exactly (same rounding)."""
    return Rect(
        round(west + col * cell_w, 6),
        round(south + row * cell_h, 6),
        round(west + (col + 1) * cell_w, 6),
        round(south + (row + 1) * cell_h - gap, 6),
    )


# ---------------------------------------------------------------- a tenant's data set


KIND_ORDER = (
    "responsibility_item",
    "community",
    "grid",
    "compound",
    "grid_station",
    "volunteer_team",
    "member_unit",  # before the people: a person names the unit it attends for (member_unit_id)
    "person",
    "party_organization",
    "talent_entry",
    "team_service_entry",
    "unit_resource_entry",
    "public_affairs_item",
)
KIND_LABELS = {
    "responsibility_item": "responsibility items",
    "community": "communities",
    "grid": "grids",
    "compound": "compounds",
    "grid_station": "grid stations",
    "volunteer_team": "volunteer teams",
    "person": "people",
    "party_organization": "party organisations",
    "member_unit": "member units",
    "talent_entry": "talent entries",
    "team_service_entry": "team services",
    "unit_resource_entry": "unit resources",
    "public_affairs_item": "public-affairs items",
}


@dataclass
class DataSet:
    """Records of one tenant, in API shape (protobuf JSON field names), by entity kind."""

    tenant: Tenant
    records: dict[str, list[Record]] = field(default_factory=lambda: {k: [] for k in KIND_ORDER})
    # Set once the people exist (a team is created before its members, its leader is one of them).
    team_leaders: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, record: Record) -> Record:
        self.records[kind].append(record)
        return record

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.records.items()}

    def summary(self) -> str:
        main = ("community", "grid", "compound", "grid_station", "party_organization", "member_unit", "person")
        rest = [k for k in KIND_ORDER if k not in main]
        return ", ".join(f"{len(self.records[k])} {KIND_LABELS[k]}" for k in (*main, *rest) if self.records[k])


@dataclass
class Community:
    """What the generators need to know about a community while they fill it."""

    id: str
    name_zh: str
    grids: list[tuple[str, Rect]] = field(default_factory=list)
    compounds: list[Record] = field(default_factory=list)
    party_members: list[Record] = field(default_factory=list)
    volunteers: list[Record] = field(default_factory=list)
    units: list[Record] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)


def _pool(rng: random.Random, items: Sequence[str]) -> Iterator[str]:
    """Items in a shuffled order, then again with a suffix, never the same value twice."""
    order = list(items)
    rng.shuffle(order)
    yield from order
    round_ = 2
    while True:
        for item in order:
            yield f"{item}{zh_number(round_)}部"
        round_ += 1


def _compound_names(rng: random.Random) -> Iterator[str]:
    names = [s + x for s in COMPOUND_STEMS for x in COMPOUND_SUFFIXES]
    return _pool(rng, names)


# ---------------------------------------------------------------- the demo data set

# tenant -> communities: (id, name_zh, name_en, number of grids)
DEMO_COMMUNITIES: dict[str, tuple[tuple[str, str, str, int], ...]] = {
    "daimiao": (
        ("daizong", "岱宗社区", "Daizong Community", 3),
        ("leigushi", "擂鼓石社区", "Leigushi Community", 2),
        ("sanli", "三里社区", "Sanli Community", 3),
        ("tongtianjie", "通天街社区", "Tongtianjie Community", 2),
    ),
    "caiyuan": (
        ("lingzhi", "灵芝社区", "Lingzhi Community", 3),
        ("dongyue", "东岳社区", "Dongyue Community", 3),
        ("yingxuan", "迎暄社区", "Yingxuan Community", 2),
    ),
    "taiqian": (
        ("jiade", "嘉德社区", "Jiade Community", 4),
        ("donghu", "东湖社区", "Donghu Community", 3),
        ("wangyue", "望岳社区", "Wangyue Community", 2),
        ("qingnianlu", "青年路社区", "Qingnianlu Community", 3),
    ),
    "shanggao": (
        ("panhe", "泮河社区", "Panhe Community", 3),
        ("naihe", "奈河社区", "Naihe Community", 2),
        ("shanggao-sq", "上高社区", "Shanggao Community", 3),
    ),
    "xujialou": (
        ("mingtang", "明堂社区", "Mingtang Community", 3),
        ("changcheng", "长城社区", "Changcheng Community", 2),
        ("xujialou-sq", "徐家楼社区", "Xujialou Community", 4),
    ),
    "shengzhuang": (
        ("shengzhuang-sq", "省庄社区", "Shengzhuang Community", 2),
        ("dongyanglou", "东羊楼社区", "Dongyanglou Community", 3),
        ("shila", "石腊社区", "Shila Community", 2),
    ),
    "qiujiadian": (
        ("qiujiadian-sq", "邱家店社区", "Qiujiadian Community", 3),
        ("jiuxian", "旧县社区", "Jiuxian Community", 2),
        ("buyangzhuang", "埠阳庄社区", "Buyangzhuang Community", 3),
        ("qianjie", "前街社区", "Qianjie Community", 2),
    ),
}
# The demo area: 4 x 2 blocks of 0.03° lon x 0.05° lat, one per tenant, in tenants.toml order.
DEMO_WEST, DEMO_SOUTH, DEMO_BLOCK_W, DEMO_BLOCK_H, DEMO_MARGIN = 117.08, 36.15, 0.03, 0.05, 0.002
JIADE_PROPERTY_COMPANIES = 7
JIADE_OWNERS_COMMITTEES = 5


def _demo_block(index: int) -> tuple[float, float]:
    col, row = index % 4, index // 4
    return DEMO_WEST + col * DEMO_BLOCK_W + DEMO_MARGIN, DEMO_SOUTH + row * DEMO_BLOCK_H + DEMO_MARGIN


def demo_dataset(slug: str) -> DataSet:
    """The demo records of one tenant; the same on every run.

    Each community draws from its own random stream (seeded by its id) and its own slice of the compound
    names, so a change to how one thing is generated does not reshuffle everything after it. A record
    whose id exists is never changed by `demo`, so after changing the generator load into a fresh database.
    """
    tenant = get_tenant(slug)
    index = [t.slug for t in all_tenants()].index(slug)
    ds = DataSet(tenant)
    used_id_numbers: set[str] = set()
    for item in responsibility_items():
        ds.add("responsibility_item", {k: item[k] for k in ("id", "domain", "title_zh", "title_en", "unit_kinds")})
    west, south = _demo_block(index)
    row_h = (DEMO_BLOCK_H - 2 * DEMO_MARGIN) / 4
    col_w = (DEMO_BLOCK_W - 2 * DEMO_MARGIN) / 4
    roads = ROADS[slug]
    distinct = len(COMPOUND_STEMS) * len(COMPOUND_SUFFIXES)
    names = list(islice(_compound_names(random.Random(f"hongling-demo-{slug}-compounds")), distinct))
    slice_len = len(names) // len(DEMO_COMMUNITIES[slug])
    templates = public_affairs_templates()
    for row, (cid, name_zh, name_en, n_grids) in enumerate(DEMO_COMMUNITIES[slug]):
        rng = random.Random(f"hongling-demo-{slug}-{cid}")
        people = People(rng, DEMO_SERIALS, used_id_numbers)
        compound_names = iter(names[row * slice_len : (row + 1) * slice_len])
        road = roads[row % len(roads)]
        ds.add(
            "community",
            {
                "id": cid,
                "name_zh": name_zh,
                "name_en": name_en,
                "address": f"山东省泰安市泰山区{tenant.name_zh}{road}{rng.randint(1, 300)}号",
            },
        )
        community = Community(cid, name_zh)
        for k in range(n_grids):
            gid = f"{cid}-g{k + 1:02d}"
            rect = lattice(west, south, col_w, row_h, k, row, gap=0.0005)
            community.grids.append((gid, rect))
            ds.add(
                "grid",
                {
                    "id": gid,
                    "community_id": cid,
                    "name_zh": f"{name_zh}第{zh_number(k + 1)}网格",
                    "boundary_geojson": rect.geojson(),
                },
            )
        per_grid = 2 if cid == "jiade" else None
        for k, (gid, rect) in enumerate(community.grids):
            for n in range(per_grid or rng.randint(1, 2)):
                cname = "嘉德花园" if cid == "jiade" and k == 0 and n == 0 else next(compound_names)
                compound = ds.add(
                    "compound",
                    {
                        "id": f"{gid}-c{n + 1}",
                        "grid_id": gid,
                        "name_zh": cname,
                        "address": f"泰安市泰山区{road}{rng.randint(1, 400)}号{cname}",
                        "point": rect.inner_point(rng),
                        "households": rng.randrange(120, 1200, 10),
                    },
                )
                community.compounds.append(compound)
            ds.add(
                "grid_station",
                {
                    "id": f"{gid}-st",
                    "grid_id": gid,
                    "name_zh": f"{name_zh}第{zh_number(k + 1)}网格驿站",
                    "address": f"泰安市泰山区{road}{rng.randint(1, 400)}号",
                    "point": rect.inner_point(rng),
                    "services": sorted(rng.sample(STATION_SERVICES, rng.randint(3, 6))),
                    "open_hours": rng.choice(("周一至周五 08:30-17:30", "每天 08:00-20:00", "周一至周六 09:00-18:00")),
                },
            )
        _demo_teams(ds, rng, community)
        _demo_people(ds, rng, people, community, [c[0] for c in DEMO_COMMUNITIES[slug]])
        _demo_party(ds, rng, community)
        _demo_units(ds, rng, tenant, community)
        _demo_unit_people(community)
        for t in templates:
            ds.add(
                "public_affairs_item",
                {
                    "id": f"{cid}-pa-{t['code']}",
                    "community_id": cid,
                    "mode": t["mode"],
                    "title_zh": t["title_zh"],
                    "title_en": t["title_en"],
                    "basis": t["basis"],
                },
            )
    # Party organisations go in tree order: committees, then grid branches, then compound branches.
    level = {"community_committee": 0, "grid_branch": 1, "compound_branch": 2}
    ds.records["party_organization"].sort(key=lambda r: level[r["kind"]])
    return ds


def _demo_teams(ds: DataSet, rng: random.Random, community: Community) -> None:
    names = rng.sample(TEAM_NAMES, 2 if len(community.grids) >= 3 else 1)
    for n, team_name in enumerate(names):
        tid = f"{community.id}-team{n + 1}"
        community.teams.append(tid)
        ds.add(
            "volunteer_team",
            {
                "id": tid,
                "community_id": community.id,
                "name_zh": f"{community.name_zh}{team_name}",
                "availability": _availability(rng, 2),
            },
        )
        for k, service in enumerate(rng.sample(VOLUNTEER_SERVICES, rng.randint(2, 4))):
            ds.add(
                "team_service_entry",
                {
                    "id": f"{tid}-s{k + 1}",
                    "team_id": tid,
                    "service": service,
                    "capacity": rng.randint(3, 25),
                    "hours_per_week": float(rng.choice((4, 6, 8, 10, 12, 16))),
                },
            )


def _talents(ds: DataSet, rng: random.Random, person_id: str, skills: Sequence[str], start: int = 0) -> None:
    for k, skill in enumerate(skills, start=start + 1):
        ds.add(
            "talent_entry",
            {
                "id": f"{person_id}-t{k}",
                "person_id": person_id,
                "skill": skill,
                "level": rng.choices((1, 2, 3, 4, 5), weights=(1, 3, 4, 3, 1))[0],
                "note": SKILL_NOTES.get(skill, "") if rng.random() < 0.6 else "",
            },
        )


def _demo_people(
    ds: DataSet, rng: random.Random, people: People, community: Community, tenant_communities: list[str]
) -> None:
    grids = [g for g, _ in community.grids]
    n_party = 3 * len(grids) + 2
    n_volunteer = 2 * len(grids) + 2
    serial = 0

    def person(roles: list[str], grid_id: str) -> Record:
        nonlocal serial
        serial += 1
        pid = f"{community.id}-p{serial:03d}"
        rec: Record = {
            "id": pid,
            "community_id": community.id,
            "grid_id": grid_id,
            "name_zh": fake_name(rng),
            "roles": roles,
            "phone": fake_phone(rng),
            "id_number": people.id_number(),
        }
        return rec

    # 社区工作者 (三岗十八级): a head, a deputy, one or two staff; heads and deputies are party members.
    posts = [("community_secretary", (13, 18)), ("community_deputy", (7, 12)), ("community_staff", (1, 6))]
    if len(grids) >= 3:
        posts.append(("community_staff", (1, 6)))
    for post, (lo, hi) in posts:
        is_party = post != "community_staff" or rng.random() < 0.5
        rec = person(["community_worker", *(["party_member"] if is_party else [])], "")
        rec["worker"] = {"post": post, "grade": rng.randint(lo, hi)}
        if is_party:
            rec["party"] = {"home_community_id": community.id, "work_unit": f"{community.name_zh}居民委员会"}
            community.party_members.append(rec)
        ds.add("person", rec)
        _talents(ds, rng, rec["id"], rng.sample(("政策宣讲", "矛盾调解", "社会工作", "网络宣传"), rng.randint(1, 2)))
    # 在职党员 registered with this community (双报到): spread over the grids, two per grid at least.
    for n in range(n_party):
        roles = ["party_member", *(["volunteer"] if rng.random() < 0.4 else [])]
        rec = person(roles, grids[n % len(grids)])
        home = community.id if rng.random() < 0.85 else rng.choice(tenant_communities)
        rec["party"] = {
            "home_community_id": home,
            "work_unit": rng.choice(WORK_UNITS),
            "dual_report_registered_on": _day(rng, date(2019, 10, 8), date(2020, 5, 15)),
        }
        community.party_members.append(rec)
        ds.add("person", rec)
    # Volunteers who are not party members.
    for n in range(n_volunteer):
        ds.add("person", person(["volunteer"], grids[n % len(grids)]))
    for rec in ds.records["person"]:
        if rec["community_id"] != community.id or "volunteer" not in rec["roles"]:
            continue
        community.volunteers.append(rec)
        rec["volunteer"] = {
            "team_id": rng.choice(community.teams) if rng.random() < 0.7 else "",
            "services": sorted(rng.sample(VOLUNTEER_SERVICES, rng.randint(1, 3))),
            "availability": _availability(rng, rng.randint(1, 3)),
        }
        if rng.random() < 0.75:
            _talents(ds, rng, rec["id"], rng.sample(SKILLS, rng.randint(1, 3)))
    for rec in community.party_members:
        if "volunteer" not in rec["roles"] and "community_worker" not in rec["roles"] and rng.random() < 0.5:
            _talents(ds, rng, rec["id"], rng.sample(SKILLS, rng.randint(1, 2)))
    # Every community has someone for the needs residents raise most often.
    mine = {r["id"] for r in ds.records["person"] if r["community_id"] == community.id}
    entries = [t for t in ds.records["talent_entry"] if t["person_id"] in mine]
    held = {t["skill"] for t in entries}
    helpers = [r for r in ds.records["person"] if r["id"] in mine and "community_worker" not in r["roles"]]
    for n, skill in enumerate(s for s in CORE_SKILLS if s not in held):
        holder = helpers[(3 * n + 1) % len(helpers)]["id"]
        _talents(ds, rng, holder, [skill], start=sum(t["person_id"] == holder for t in entries))
        entries = [t for t in ds.records["talent_entry"] if t["person_id"] in mine]
    for tid in community.teams:
        members = [v["id"] for v in community.volunteers if v["volunteer"]["team_id"] == tid]
        ds.team_leaders[tid] = members[0] if members else community.party_members[0]["id"]


def _demo_party(ds: DataSet, rng: random.Random, community: Community) -> None:
    members = community.party_members
    head = next(p for p in members if (p.get("worker") or {}).get("post") == "community_secretary")
    ds.add(
        "party_organization",
        {
            "id": f"{community.id}-pc",
            "kind": "community_committee",
            "place_id": community.id,
            "name_zh": f"中共{community.name_zh}委员会",
            "secretary_id": head["id"],
            "member_ids": sorted({head["id"], *(p["id"] for p in rng.sample(members, min(5, len(members))))}),
        },
    )
    for k, (gid, _) in enumerate(community.grids):
        in_grid = [p["id"] for p in members if p["grid_id"] == gid]
        ds.add(
            "party_organization",
            {
                "id": f"{gid}-pb",
                "kind": "grid_branch",
                "place_id": gid,
                "name_zh": f"{community.name_zh}第{zh_number(k + 1)}网格党总支",
                "secretary_id": in_grid[0],
                "member_ids": in_grid,
            },
        )
        for compound in (c for c in community.compounds if c["grid_id"] == gid):
            chosen = rng.sample(in_grid, min(len(in_grid), rng.randint(1, 3)))
            ds.add(
                "party_organization",
                {
                    "id": f"{compound['id']}-pb",
                    "kind": "compound_branch",
                    "place_id": compound["id"],
                    "name_zh": f"{compound['name_zh']}党支部",
                    "secretary_id": chosen[0],
                    "member_ids": sorted(chosen),
                },
            )


def _unit(
    ds: DataSet,
    rng: random.Random,
    community: Community,
    kind: str,
    name_zh: str,
    *,
    grids: Sequence[str] = (),
    compounds: Sequence[str] = (),
    joined: tuple[date, date] = (date(2019, 10, 8), date(2020, 5, 15)),
    digits: int = 2,
) -> Record:
    unit = ds.add(
        "member_unit",
        {
            "id": f"{community.id}-u{len(community.units) + 1:0{digits}d}",
            "community_id": community.id,
            "name_zh": name_zh,
            "kind": kind,
            "contact_name": fake_name(rng),
            "contact_phone": fake_phone(rng) if rng.random() < 0.7 else fake_landline(rng),
            "serves_grid_ids": sorted(set(grids)),
            "serves_compound_ids": sorted(set(compounds)),
            "joined_on": _day(rng, *joined),
            "duties_accepted": ALL_DUTIES if rng.random() < 0.8 else sorted(rng.sample(ALL_DUTIES, 3)),
        },
    )
    community.units.append(unit)
    return unit


def _resources(ds: DataSet, rng: random.Random, unit_id: str, count: int) -> None:
    for k, (name, category, (lo, hi), uom, conditions) in enumerate(rng.sample(RESOURCES, count)):
        qty = float(rng.randint(int(lo), int(hi)))
        if category == "funds":
            qty = float(round(qty, -3))
        ds.add(
            "unit_resource_entry",
            {
                "id": f"{unit_id}-r{k + 1}",
                "unit_id": unit_id,
                "resource": name,
                "category": category,
                "quantity": qty,
                "unit_of_measure": uom,
                "conditions": conditions,
            },
        )


def _demo_unit_people(community: Community, per_unit: int = 2) -> None:
    """Who attends for each member unit (Person.member_unit_id): the community's own registered party members
    (双报到, not its workers), two per unit in turn while they last, so a unit can claim posts, sign up and
    check in naming its people. No random draw: the rest of the data set is the same with or without it."""
    free = [
        r
        for r in community.party_members
        if "community_worker" not in r["roles"] and r.get("party", {}).get("home_community_id") == community.id
    ]
    for k, unit in enumerate(community.units):
        for rec in free[k * per_unit : (k + 1) * per_unit]:
            rec["member_unit_id"] = unit["id"]


def _demo_units(ds: DataSet, rng: random.Random, tenant: Tenant, community: Community) -> None:
    grid_ids = [g for g, _ in community.grids]
    grid_of = {c["id"]: c["grid_id"] for c in community.compounds}
    jiade = community.id == "jiade"
    # Property companies: jiade's red property alliance has 7, others 1-3. Each serves compounds.
    n_property = JIADE_PROPERTY_COMPANIES if jiade else rng.randint(1, 3)
    compounds = [c["id"] for c in community.compounds]
    for n, brand in enumerate(rng.sample(PROPERTY_BRANDS, n_property)):
        served = [compounds[n % len(compounds)]]
        if rng.random() < 0.3:
            served.append(rng.choice(compounds))
        unit = _unit(
            ds,
            rng,
            community,
            "property_company",
            f"泰安市{brand}物业服务有限公司",
            grids=[grid_of[c] for c in served],
            compounds=served,
        )
        _resources(ds, rng, unit["id"], rng.randint(1, 2))
    # Owners' committees: one per compound that has one; jiade has 5.
    n_owners = JIADE_OWNERS_COMMITTEES if jiade else rng.randint(1, min(2, len(compounds)))
    for compound in community.compounds[:n_owners]:
        _unit(
            ds,
            rng,
            community,
            "owners_committee",
            f"{compound['name_zh']}业主委员会",
            grids=[compound["grid_id"]],
            compounds=[compound["id"]],
        )
    for name in rng.sample(RESIDENT_UNITS, rng.randint(2, 3) if jiade else rng.randint(1, 2)):
        unit = _unit(ds, rng, community, "resident_unit", name, grids=rng.sample(grid_ids, 1))
        _resources(ds, rng, unit["id"], rng.randint(1, 3))
    for name in rng.sample(DUAL_REPORT_UNITS, rng.randint(2, 3)):
        unit = _unit(ds, rng, community, "dual_report_unit", name, grids=rng.sample(grid_ids, min(2, len(grid_ids))))
        _resources(ds, rng, unit["id"], rng.randint(1, 3))
    station = POLICE_STATIONS[tenant.slug]
    _unit(ds, rng, community, "law_enforcement", f"泰山区综合行政执法局{station}中队", grids=grid_ids)
    if jiade or rng.random() < 0.5:
        _unit(ds, rng, community, "law_enforcement", f"泰安市公安局泰山分局{station}派出所", grids=grid_ids)
    unit = _unit(
        ds, rng, community, "new_economy_social_org", f"泰安市{community.name_zh[:-2]}{rng.choice(NEW_ECONOMY)}"
    )
    _resources(ds, rng, unit["id"], 1)
    for shop in rng.sample(SHOPS, rng.randint(1, 2)):
        _unit(ds, rng, community, "individual_business", f"{fake_name(rng)[0]}记{shop}", grids=rng.sample(grid_ids, 1))
    _unit(ds, rng, community, "public_interest_org", f"泰山区{community.name_zh[:-2]}{rng.choice(PUBLIC_INTEREST)}")
    _unit(ds, rng, community, "grassroots_association", f"{community.name_zh}{rng.choice(GRASSROOTS)}")


# ---------------------------------------------------------------- demo: loading through the org API


class SeedError(Exception):
    """Something the operator has to fix (service unreachable, a record refused)."""


@dataclass
class Outcome:
    """What loading one kind of record did; counted from several threads."""

    created: int = 0
    existing: int = 0
    updated: int = 0
    # Refused because of what the database already holds (see CONFLICTS): "<id>: <the service's reason>".
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, what: str, note: str = "") -> None:
        with self.lock:
            if what == "refused":
                self.refused.append(note)
            else:
                setattr(self, what, getattr(self, what) + 1)


# On a fresh database the demo loads without a single refusal (tests/integration/test_org_seed.py). These
# codes arise when the database holds other records under the demo's names or ids (an earlier version
# of the demo data, records made by hand): the record is left out with a warning and the run goes on,
# since `make up` runs the demo on every start. Any other refusal stops the run.
CONFLICTS = (
    grpc.StatusCode.ALREADY_EXISTS,  # a name the demo uses is taken by a record with another id
    grpc.StatusCode.INVALID_ARGUMENT,  # a reference to a record that could not be created for that reason
    grpc.StatusCode.FAILED_PRECONDITION,  # a party branch whose parent organisation could not be created
)
REFUSALS_SHOWN = 5


class OrgApi:
    """The org gRPC API as the seed uses it: Get, Create, Update by entity kind, as a service principal."""

    TOKEN_REFRESH_SECONDS = 30.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.address = settings.address("org")
        self.channel = make_channel(
            self.address, [ORG_SERVICE], secret=settings.principal_secret, caller="seed", default_timeout=30.0
        )
        self.stub = pb_grpc.OrgServiceStub(self.channel)
        self._lock = threading.Lock()
        self._token = ""
        self._minted = 0.0

    def close(self) -> None:
        self.channel.close()

    def metadata(self, tenant: str) -> list[tuple[str, str]]:
        with self._lock:
            if time.monotonic() - self._minted > self.TOKEN_REFRESH_SECONDS:
                principal = Principal(sub="seed", role="service", tenants=("*",))
                self._token = mint(principal, self.settings.principal_secret, ttl_seconds=120)
                self._minted = time.monotonic()
            return [(METADATA_KEY, self._token), (TENANT_KEY, tenant)]

    def _method(self, verb: str, kind: str) -> Any:
        return getattr(self.stub, f"{verb}{ENTITIES[kind][0].DESCRIPTOR.name}")

    def message(self, kind: str, record: Record) -> Any:
        return json_format.ParseDict(record, ENTITIES[kind][0]())

    def get(self, tenant: str, kind: str, ident: str) -> Any | None:
        try:
            return self._method("Get", kind)(pb.GetRequest(id=ident), metadata=self.metadata(tenant))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise self._error(exc, f"Get{kind} {ident}") from None

    def ensure(self, tenant: str, kind: str, record: Record, outcome: Outcome) -> None:
        """Create the record unless a record with its id exists."""
        if self.get(tenant, kind, record["id"]) is not None:
            outcome.count("existing")
            return
        try:
            self._method("Create", kind)(self.message(kind, record), metadata=self.metadata(tenant))
            outcome.count("created")
        except grpc.RpcError as exc:
            if exc.code() not in CONFLICTS:
                raise self._error(exc, f"Create {kind} {record['id']}") from None
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS and self.get(tenant, kind, record["id"]) is not None:
                outcome.count("existing")  # created meanwhile by a concurrent run
            else:
                outcome.count("refused", f"{record['id']}: {exc.code().name}: {exc.details()}")

    def set_leader(self, tenant: str, team_id: str, leader_id: str, outcome: Outcome) -> None:
        """Give a team its leader unless it has one already (a leader set by hand is kept)."""
        team = self.get(tenant, "volunteer_team", team_id)
        if team is None or team.leader_id:
            return
        team.leader_id = leader_id
        try:
            self.stub.UpdateVolunteerTeam(team, metadata=self.metadata(tenant))
            outcome.count("updated")
        except grpc.RpcError as exc:
            if exc.code() not in CONFLICTS:
                raise self._error(exc, f"UpdateVolunteerTeam {team_id}") from None
            outcome.count("refused", f"{team_id} leader {leader_id}: {exc.code().name}: {exc.details()}")

    def _error(self, exc: grpc.RpcError, what: str) -> SeedError:
        code = exc.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return SeedError(
                f"the org service at {self.address} does not answer ({code.name}): start the system "
                "(make up) or set HONGLING_PORT_BASE / HONGLING_ORG_ADDR to where it runs"
            )
        return SeedError(f"{what} refused: {code.name}: {exc.details()}")


DEMO_WORKERS = 4  # concurrent calls: records of one kind are independent of each other


def _ensure_all(api: OrgApi, slug: str, kind: str, records: Sequence[Record], outcome: Outcome) -> None:
    if not records:
        return
    # The first record alone: the first write into a fresh tenant creates its generation counter by an
    # upsert (handlers.bump_generation), and concurrent first upserts collide on FerretDB (INTERNAL).
    api.ensure(slug, kind, records[0], outcome)
    with ThreadPoolExecutor(max_workers=DEMO_WORKERS, thread_name_prefix="seed") as pool:
        for _ in pool.map(lambda r: api.ensure(slug, kind, r, outcome), records[1:]):
            pass


def load_demo(api: OrgApi, ds: DataSet, tag: str, *, out: Any = None) -> dict[str, Outcome]:
    """Load one tenant's demo records through the API, kind by kind, printing a line per kind."""
    out = out or sys.stdout
    slug = ds.tenant.slug
    outcomes: dict[str, Outcome] = {}
    for kind in KIND_ORDER:
        records = ds.records[kind]
        outcome = outcomes[kind] = Outcome()
        started = time.perf_counter()
        if kind == "party_organization":  # the tree, level by level: a branch needs its parent first
            for level in ("community_committee", "grid_branch", "compound_branch"):
                _ensure_all(api, slug, kind, [r for r in records if r["kind"] == level], outcome)
        else:
            _ensure_all(api, slug, kind, records, outcome)
        if kind == "person":  # teams exist before their members; now they get their leaders
            for team_id, leader in sorted(ds.team_leaders.items()):
                api.set_leader(slug, team_id, leader, outcomes["volunteer_team"])
        note = f", {len(outcome.refused)} NOT LOADED" if outcome.refused else ""
        print(
            f"{tag} {slug} · {KIND_LABELS[kind]}: {len(records)} "
            f"({outcome.created} created, {outcome.existing} existing{note}) {time.perf_counter() - started:.1f} s",
            file=out,
            flush=True,
        )
        for line in sorted(outcome.refused)[:REFUSALS_SHOWN]:
            print(f"{tag}   warning: {kind} {line}", file=out, flush=True)
        if len(outcome.refused) > REFUSALS_SHOWN:
            print(f"{tag}   warning: … and {len(outcome.refused) - REFUSALS_SHOWN} more", file=out, flush=True)
    leaders = outcomes["volunteer_team"].updated
    if leaders:
        print(f"{tag} {slug} · team leaders: {leaders} set", file=out, flush=True)
    return outcomes


def run_demo(settings: Settings, slugs: Sequence[str], *, out: Any = None) -> dict[str, dict[str, Outcome]]:
    out = out or sys.stdout
    api = OrgApi(settings)
    results: dict[str, dict[str, Outcome]] = {}
    started = time.perf_counter()
    try:
        for i, slug in enumerate(slugs, start=1):
            tag = f"[seed {i}/{len(slugs)}]"
            t0 = time.perf_counter()
            ds = demo_dataset(slug)
            print(f"{tag} {slug} ({ds.tenant.name_zh}): loading {ds.summary()}", file=out, flush=True)
            outcomes = results[slug] = load_demo(api, ds, tag, out=out)
            created = sum(o.created for o in outcomes.values())
            existing = sum(o.existing for o in outcomes.values())
            leaders = outcomes["volunteer_team"].updated
            print(
                f"{tag} {slug}: {ds.summary()} — {created} created, {existing} existing"
                + (f", {leaders} team leaders set" if leaders else "")
                + f", {time.perf_counter() - t0:.1f} s",
                file=out,
                flush=True,
            )
    finally:
        api.close()
    total = sum(o.created for r in results.values() for o in r.values())
    refused = sum(len(o.refused) for r in results.values() for o in r.values())
    print(
        f"[seed] demo done: {len(slugs)} tenant(s), {total} records created in {time.perf_counter() - started:.1f} s",
        file=out,
        flush=True,
    )
    if refused:
        print(
            f"[seed] WARNING: {refused} demo records were not loaded: the database already holds other records "
            "under their names (an earlier version of the demo data?). For a clean demo: make down, remove "
            "the state directory (.local/state) and make up again.",
            file=out,
            flush=True,
        )
    return results


# ---------------------------------------------------------------- the scale data set

SCALE_GRIDS = 1089
SCALE_STATIONS = 155
SCALE_UNITS = 1500
SCALE_COMMUNITIES_PER_TENANT = 16
SCALE_PARTY_SHARE = 0.86
SCALE_VOLUNTEER_SHARE = 0.35
SCALE_TEAM_MEMBER_SHARE = 0.25
SCALE_TEAM_SIZE = 12
SCALE_WORKERS_PER_COMMUNITY = 3
# The scale area lies south of the demo area: one column of 0.05° lon per tenant, lat 36.03-36.14.
SCALE_WEST, SCALE_SOUTH, SCALE_COLUMN_W, SCALE_HEIGHT, SCALE_COLS = 117.00, 36.03, 0.05, 0.11, 12
SCALE_COMMUNITY_STEMS = _words(
    "龙潭 温泉 虎山 红门 普照 天平 凤台 金山 玉泉 清泉 文化 光明 和平 幸福 建设 团结 胜利 "
    "朝阳 兴隆 振兴 永安 太平 吉祥 丰泽 仙鹤 白马 青龙 卧龙 泰鑫 碧霞 中天 南天 环山 三合 "
    "五里 六里 七里 八里 双龙 御道"
)
SCALE_STEM_SUFFIXES = ("", "东", "西", "南", "北")


def split(total: int, parts: int) -> list[int]:
    """total split into parts as evenly as possible, larger shares first: split(1089, 7) → 156 x4, 155 x3."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def scale_shares(people: int) -> dict[str, dict[str, int]]:
    """Per tenant: grids, stations, units and people of the scale data set."""
    slugs = [t.slug for t in all_tenants()]
    grids = split(SCALE_GRIDS, len(slugs))
    stations = split(SCALE_STATIONS, len(slugs))
    units = split(SCALE_UNITS, len(slugs))
    shares = [round(people * g / SCALE_GRIDS) for g in grids]
    shares[-1] += people - sum(shares)
    return {
        s: {"grids": grids[i], "stations": stations[i], "units": units[i], "people": shares[i]}
        for i, s in enumerate(slugs)
    }


def _scale_community_names() -> Iterator[str]:
    taken = {name for comms in DEMO_COMMUNITIES.values() for _, name, _, _ in comms}
    for suffix in SCALE_STEM_SUFFIXES:
        for stem in SCALE_COMMUNITY_STEMS:
            name = f"{stem}{suffix}社区"
            if name not in taken:
                yield name
    raise ValueError("ran out of scale community names")


def scale_dataset(slug: str, share: dict[str, int], names: Iterator[str], people: People) -> DataSet:
    """The scale records of one tenant (ids "scale-<tenant>-…"), deterministic for the same share."""
    tenant = get_tenant(slug)
    index = [t.slug for t in all_tenants()].index(slug)
    rng = random.Random(f"hongling-scale-{slug}-{share['people']}")
    ds = DataSet(tenant)
    pre = f"{SCALE_PREFIX}{slug}"
    roads = ROADS[slug]
    rows = math.ceil(share["grids"] / SCALE_COLS)
    cell_w, cell_h = SCALE_COLUMN_W * 0.96 / SCALE_COLS, SCALE_HEIGHT / rows
    west = SCALE_WEST + index * SCALE_COLUMN_W
    community_grids = split(share["grids"], SCALE_COMMUNITIES_PER_TENANT)
    community_people = split(share["people"], SCALE_COMMUNITIES_PER_TENANT)
    community_units = split(share["units"], SCALE_COMMUNITIES_PER_TENANT)
    station_every = share["grids"] / share["stations"]
    station_at = {int(i * station_every) for i in range(share["stations"])}
    communities: list[Community] = []
    cell = 0
    for j in range(SCALE_COMMUNITIES_PER_TENANT):
        cid = f"{pre}-c{j + 1:02d}"
        name_zh = next(names)
        road = roads[j % len(roads)]
        ds.add(
            "community",
            {
                "id": cid,
                "name_zh": name_zh,
                "name_en": "",
                "address": f"山东省泰安市泰山区{tenant.name_zh}{road}{rng.randint(1, 300)}号",
            },
        )
        community = Community(cid, name_zh)
        communities.append(community)
        compound_names = _compound_names(rng)
        for k in range(community_grids[j]):
            gid = f"{pre}-g{cell + 1:03d}"
            rect = lattice(west, SCALE_SOUTH, cell_w, cell_h, cell % SCALE_COLS, cell // SCALE_COLS)
            community.grids.append((gid, rect))
            ds.add(
                "grid",
                {
                    "id": gid,
                    "community_id": cid,
                    "name_zh": f"{name_zh}第{zh_number(k + 1)}网格",
                    "boundary_geojson": rect.geojson(),
                },
            )
            for n in range(rng.randint(1, 2)):
                cname = next(compound_names)
                community.compounds.append(
                    ds.add(
                        "compound",
                        {
                            "id": f"{gid}-c{n + 1}",
                            "grid_id": gid,
                            "name_zh": cname,
                            "address": f"泰安市泰山区{road}{rng.randint(1, 600)}号{cname}",
                            "point": rect.inner_point(rng),
                            "households": rng.randrange(120, 1500, 10),
                        },
                    )
                )
            if cell in station_at:
                ds.add(
                    "grid_station",
                    {
                        "id": f"{pre}-st{len(ds.records['grid_station']) + 1:03d}",
                        "grid_id": gid,
                        "name_zh": f"{name_zh}第{zh_number(k + 1)}网格驿站",
                        "address": f"泰安市泰山区{road}{rng.randint(1, 600)}号",
                        "point": rect.inner_point(rng),
                        "services": sorted(rng.sample(STATION_SERVICES, rng.randint(3, 6))),
                        "open_hours": "每天 08:00-20:00",
                    },
                )
            cell += 1
    community_ids = [c.id for c in communities]
    for j, community in enumerate(communities):
        _scale_people(ds, rng, people, community, community_people[j], community_ids)
        _scale_units(ds, rng, community, community_units[j])
    return ds


def _scale_people(
    ds: DataSet, rng: random.Random, people: People, community: Community, count: int, community_ids: list[str]
) -> None:
    n_party = round(count * SCALE_PARTY_SHARE)
    n_volunteers = max(count - n_party, round(count * SCALE_VOLUNTEER_SHARE))
    n_in_teams = min(n_volunteers, round(count * SCALE_TEAM_MEMBER_SHARE))
    n_teams = max(1, round(n_in_teams / SCALE_TEAM_SIZE)) if n_in_teams else 0
    for t in range(n_teams):
        tid = f"{community.id}-team{t + 1:02d}"
        community.teams.append(tid)
        ds.add(
            "volunteer_team",
            {
                "id": tid,
                "community_id": community.id,
                "name_zh": f"{community.name_zh}{TEAM_NAMES[t % len(TEAM_NAMES)]}"
                + (f"{zh_number(t // len(TEAM_NAMES) + 1)}分队" if t >= len(TEAM_NAMES) else ""),
                "availability": _availability(rng, rng.randint(1, 3)),
            },
        )
        for k, service in enumerate(rng.sample(VOLUNTEER_SERVICES, rng.randint(2, 4))):
            ds.add(
                "team_service_entry",
                {
                    "id": f"{tid}-s{k + 1}",
                    "team_id": tid,
                    "service": service,
                    "capacity": rng.randint(3, 30),
                    "hours_per_week": float(rng.choice((4, 6, 8, 10, 12, 16, 20))),
                },
            )
    # Party members are people 0..n_party-1; the non-members and some members volunteer.
    party_volunteers = set(rng.sample(range(n_party), n_volunteers - (count - n_party)))
    volunteers = [i for i in range(count) if i >= n_party or i in party_volunteers]
    in_team = dict(zip(rng.sample(volunteers, n_in_teams), range(n_in_teams), strict=True))
    workers = {i: post for i, post in zip(range(n_party), ("community_secretary", "community_deputy"), strict=False)}
    for i in range(2, min(n_party, SCALE_WORKERS_PER_COMMUNITY)):
        workers[i] = "community_staff"
    grades = {"community_secretary": (13, 18), "community_deputy": (7, 12), "community_staff": (1, 6)}
    grids = [g for g, _ in community.grids]
    for i in range(count):
        pid = f"{community.id}-p{i + 1:04d}"
        roles = []
        rec: Record = {
            "id": pid,
            "community_id": community.id,
            "grid_id": grids[i % len(grids)],
            "name_zh": fake_name(rng),
            "phone": fake_phone(rng),
            "id_number": people.id_number(),
        }
        if i < n_party:
            roles.append("party_member")
            rec["party"] = {
                "home_community_id": community.id if rng.random() < 0.8 else rng.choice(community_ids),
                "work_unit": rng.choice(WORK_UNITS),
                "dual_report_registered_on": _day(rng, date(2019, 10, 8), date(2024, 12, 31)),
            }
        if i in party_volunteers or i >= n_party:
            roles.append("volunteer")
            team = in_team.get(i)
            rec["volunteer"] = {
                "team_id": community.teams[team % len(community.teams)] if team is not None else "",
                "services": sorted(rng.sample(VOLUNTEER_SERVICES, rng.randint(1, 3))),
                "availability": _availability(rng, rng.randint(1, 3)),
            }
        if i in workers:
            roles.append("community_worker")
            rec["worker"] = {"post": workers[i], "grade": rng.randint(*grades[workers[i]])}
        rec["roles"] = roles
        ds.add("person", rec)
        if "volunteer" in roles and rec["volunteer"]["team_id"] and rec["volunteer"]["team_id"] not in ds.team_leaders:
            ds.team_leaders[rec["volunteer"]["team_id"]] = pid
        _talents(ds, rng, pid, rng.sample(SKILLS, rng.choices((1, 2, 3), weights=(45, 35, 20))[0]))


SCALE_UNIT_KINDS = (
    ("property_company", 3),
    ("owners_committee", 2),
    ("resident_unit", 2),
    ("dual_report_unit", 2),
    ("law_enforcement", 1),
    ("new_economy_social_org", 1),
    ("individual_business", 1),
    ("public_interest_org", 1),
    ("grassroots_association", 1),
)


def _scale_units(ds: DataSet, rng: random.Random, community: Community, count: int) -> None:
    kinds = [k for k, w in SCALE_UNIT_KINDS for _ in range(w)]
    short = community.name_zh[:-2]
    pools = {
        "property_company": _pool(rng, [f"泰安市{b}物业服务有限公司" for b in PROPERTY_BRANDS]),
        "resident_unit": _pool(rng, RESIDENT_UNITS),
        "dual_report_unit": _pool(rng, DUAL_REPORT_UNITS),
        "law_enforcement": _pool(rng, [f"泰山区综合行政执法局{short}执法中队", f"泰安市公安局泰山分局{short}警务室"]),
        "new_economy_social_org": _pool(rng, [f"泰安市{short}{x}" for x in NEW_ECONOMY]),
        "individual_business": _pool(rng, [f"{s}记{x}" for s in SURNAMES[:30] for x in SHOPS]),
        "public_interest_org": _pool(rng, [f"泰山区{short}{x}" for x in PUBLIC_INTEREST]),
        "grassroots_association": _pool(rng, [f"{community.name_zh}{x}" for x in GRASSROOTS]),
    }
    owners = iter(community.compounds)
    grid_ids = [g for g, _ in community.grids]
    grid_of = {c["id"]: c["grid_id"] for c in community.compounds}
    for n in range(count):
        kind = kinds[n % len(kinds)]
        compound = next(owners, None) if kind == "owners_committee" else None
        served_compounds: list[str] = []
        if compound is not None:  # one owners' committee per compound
            name = f"{compound['name_zh']}业主委员会"
            served_compounds = [compound["id"]]
        else:
            kind = "grassroots_association" if kind == "owners_committee" else kind
            name = next(pools[kind])
        if kind == "property_company":
            served_compounds = [c["id"] for c in rng.sample(community.compounds, min(2, len(community.compounds)))]
        served_grids = [grid_of[c] for c in served_compounds] or rng.sample(grid_ids, min(len(grid_ids), 3))
        unit = _unit(
            ds,
            rng,
            community,
            kind,
            name,
            grids=served_grids,
            compounds=served_compounds,
            joined=(date(2019, 10, 8), date(2025, 6, 30)),
            digits=3,
        )
        if kind in ("property_company", "resident_unit", "dual_report_unit", "new_economy_social_org"):
            _resources(ds, rng, unit["id"], rng.randint(1, 3))
        elif kind == "individual_business" and rng.random() < 0.5:
            _resources(ds, rng, unit["id"], 1)


# ---------------------------------------------------------------- scale: bulk writing


SCALE_BATCH = 1000
SCALE_WORKERS = 8


Clean = Callable[[Any, Record, Any, Any], dict[str, Any]]


def _scale_document(sp: Any, record: Record, ctx: Any, now: datetime, clean: Clean) -> dict[str, Any]:
    """The stored form of a new record exactly as handlers.create builds it, minus its events."""
    ident = domain.entity_id(record["id"])
    values = clean(sp, record, None, ctx)  # validators + reference checks + derived fields
    if values.get("id_number_key") == "":
        values["id_number_key"] = f"none:{ident}"
    doc = sp.doc(id=ident, version=1, created_at=now, updated_at=now, **handlers._embedded(sp, values))
    doc.validate()
    return dict(doc.to_mongo().to_dict())


def _talent_clean(slug: str, records: Sequence[Record]) -> Clean:
    """handlers.check for talent entries with the people read in one go instead of one look-up per entry.

    The same validator (the spec's, domain.validate_talent_entry) and the same rule as the spec's
    prepare (handlers._via(PersonDoc, "person_id")): the person must exist in the tenant, and the entry
    takes the person's community_id. One look-up per entry would be 21,000 look-ups into the largest
    collection, each a table scan on FerretDB (it answers `_id` look-ups without its index), which took
    most of a scale run.
    """
    ids = sorted({str(r["person_id"]) for r in records})
    community_of: dict[str, str] = {}
    with context.bound(tenant=slug):
        coll = handlers.SPECS["person"].doc._get_collection()
        for i in range(0, len(ids), 1000):
            for p in coll.find({"_id": {"$in": ids[i : i + 1000]}}, {"community_id": 1}):
                community_of[p["_id"]] = p["community_id"]

    def clean(sp: Any, data: Record, old: Any, ctx: Any) -> dict[str, Any]:
        values: dict[str, Any] = sp.validate(data)
        community = community_of.get(values["person_id"])
        if community is None:
            raise InvalidArgument(
                f"person_id: no person {values['person_id']!r} in this tenant (引用的person不存在)", field="person_id"
            )
        values["community_id"] = community
        return values

    return clean


def _scale_write(slug: str, kind: str, records: Sequence[Record], ctx: Any, pool: ThreadPoolExecutor) -> float:
    """Validate every record (in parallel: the reference checks are look-ups) and insert them in batches."""
    sp = handlers.SPECS[kind]
    now = datetime.now(UTC)
    clean: Clean = _talent_clean(slug, records) if kind == "talent_entry" else handlers.check

    def build(chunk: Sequence[Record]) -> list[dict[str, Any]]:
        with context.bound(tenant=slug):
            return [_scale_document(sp, r, ctx, now, clean) for r in chunk]

    chunks = [records[i : i + 100] for i in range(0, len(records), 100)]
    docs = [doc for built in pool.map(build, chunks) for doc in built]
    started = time.perf_counter()
    with context.bound(tenant=slug):
        coll = sp.doc._get_collection()
        for i in range(0, len(docs), SCALE_BATCH):
            coll.insert_many(docs[i : i + SCALE_BATCH], ordered=True)
    return time.perf_counter() - started


def _scale_collections(slug: str) -> list[Any]:
    with context.bound(tenant=slug):
        return [sp.doc._get_collection() for sp in handlers.SPECS.values()]


def scale_drop(slug: str) -> int:
    """Remove this tenant's scale records (ids "scale-…") and its marker; returns how many went."""
    removed = 0
    prefix_range = {"_id": {"$gte": SCALE_PREFIX, "$lt": SCALE_PREFIX[:-1] + chr(ord(SCALE_PREFIX[-1]) + 1)}}
    for coll in _scale_collections(slug):
        removed += coll.delete_many(prefix_range).deleted_count
    mongo.tenant_database(slug)[SCALE_MARKER].delete_many({})
    with context.bound(tenant=slug):
        handlers.bump_generation()
    return removed


def scale_marker(slug: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = mongo.tenant_database(slug)[SCALE_MARKER].find_one({"_id": "scale"})
    return found


def scale_complete(people: int) -> bool:
    shares = scale_shares(people)
    for slug, share in shares.items():
        marker = scale_marker(slug)
        if marker is None or marker.get("people") != share["people"] or marker.get("grids") != share["grids"]:
            return False
    return True


def run_scale(settings: Settings, people: int, *, drop: bool = False, check: bool = False) -> int:
    mongo.init("org", settings.mongo_uri)
    started = time.perf_counter()
    slugs = [t.slug for t in all_tenants()]
    if check:
        ok = scale_complete(people)
        print(f"[scale] scale data for --people {people}: {'complete' if ok else 'missing or incomplete'}")
        return 0 if ok else 1
    if drop:
        for i, slug in enumerate(slugs, start=1):
            t0 = time.perf_counter()
            removed = scale_drop(slug)
            print(
                f"[scale {i}/{len(slugs)}] {slug}: removed {removed} scale records in {time.perf_counter() - t0:.1f} s"
            )
        print(f"[scale] dropped in {time.perf_counter() - started:.1f} s")
        return 0
    if scale_complete(people):
        print(
            f"[scale] scale data for --people {people} is already complete in all {len(slugs)} tenants: nothing to do"
        )
        return 0
    if people < len(slugs) * SCALE_COMMUNITIES_PER_TENANT:
        raise SeedError(f"--people {people} is too small: at least {len(slugs) * SCALE_COMMUNITIES_PER_TENANT}")
    ctx = handlers.Context(protector(settings.data_key, settings.data_key_accepted))
    shares = scale_shares(people)
    names = _scale_community_names()
    id_numbers = People(random.Random(f"hongling-scale-ids-{people}"), SCALE_SERIALS)
    totals: dict[str, int] = dict.fromkeys(KIND_ORDER, 0)
    with ThreadPoolExecutor(max_workers=SCALE_WORKERS, thread_name_prefix="scale") as pool:
        for i, slug in enumerate(slugs, start=1):
            tag = f"[scale {i}/{len(slugs)}]"
            t0 = time.perf_counter()
            removed = scale_drop(slug)
            if removed:
                print(f"{tag} {slug}: removed {removed} records of an earlier, incomplete scale run", flush=True)
            ds = scale_dataset(slug, shares[slug], names, id_numbers)
            print(f"{tag} {slug} ({ds.tenant.name_zh}): writing {ds.summary()}", flush=True)
            for kind in KIND_ORDER:
                records = ds.records[kind]
                if not records:
                    continue
                k0 = time.perf_counter()
                if kind == "volunteer_team":
                    # Teams go in before their members, without a leader; the leader is set after the people.
                    records = [{**r, "leader_id": ""} for r in records]
                write_s = _scale_write(slug, kind, records, ctx, pool)
                totals[kind] += len(records)
                print(
                    f"{tag} {slug} · {KIND_LABELS[kind]}: {len(records)} validated and written in "
                    f"{time.perf_counter() - k0:.1f} s (insert {write_s:.1f} s)",
                    flush=True,
                )
                if kind == "person":
                    _scale_leaders(slug, ds, ctx)
            marker = {"_id": "scale", **shares[slug], "written_at": datetime.now(UTC), "counts": ds.counts()}
            mongo.tenant_database(slug)[SCALE_MARKER].replace_one({"_id": "scale"}, marker, upsert=True)
            with context.bound(tenant=slug):
                handlers.bump_generation()
            print(f"{tag} {slug}: {ds.summary()} — {time.perf_counter() - t0:.1f} s", flush=True)
    summary = ", ".join(f"{totals[k]} {KIND_LABELS[k]}" for k in KIND_ORDER if totals[k])
    print(f"[scale] done in {time.perf_counter() - started:.1f} s: {summary} (bulk written, no events emitted)")
    return 0


def _scale_leaders(slug: str, ds: DataSet, ctx: Any) -> None:
    """Each team's leader, checked as UpdateVolunteerTeam would check it, now that the people exist."""
    sp = handlers.SPECS["volunteer_team"]
    with context.bound(tenant=slug):
        coll = sp.doc._get_collection()
        for team in ds.records["volunteer_team"]:
            leader = ds.team_leaders.get(team["id"], "")
            if leader:
                values = handlers.check(sp, {**team, "leader_id": leader}, None, ctx)
                coll.update_one({"_id": team["id"]}, {"$set": {"leader_id": values["leader_id"]}})


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.org.seed", description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="load the demo data set through the org gRPC API (idempotent)")
    demo.add_argument(
        "--tenant",
        action="append",
        metavar="SLUG",
        help="only this tenant (repeatable); default: all 7",
    )
    scale = sub.add_parser("scale", help="write the benchmark data set in bulk (ids scale-…, no events)")
    scale.add_argument("--people", type=int, default=12_000, help="people in total (default 12000)")
    mode = scale.add_mutually_exclusive_group()
    mode.add_argument("--drop", action="store_true", help="remove every scale- record and stop")
    mode.add_argument("--check", action="store_true", help="exit 0 if the scale data is complete, 1 if not")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        if args.command == "demo":
            slugs = args.tenant or [t.slug for t in all_tenants()]
            for slug in slugs:
                get_tenant(slug)
            run_demo(settings, slugs)
            return 0
        return run_scale(settings, args.people, drop=args.drop, check=args.check)
    except SeedError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 1
    except HonglingError as exc:  # a record refused by the validators (scale) or an unknown tenant
        print(f"seed: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 1
    except pymongo.errors.ConnectionFailure as exc:
        print(
            f"seed: the store at {settings.mongo_uri} does not answer ({type(exc).__name__}): start it (make up) "
            "or set HONGLING_PORT_BASE / HONGLING_MONGO_URI to where it runs",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
