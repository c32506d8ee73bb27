"""Static vocabularies for the synthetic data: real divisions, names, authorities, violations.

Everything here is a constant table; `generator.py` and `records.py` draw from it with a seeded
`random.Random`, so the order of every tuple is part of the dataset's determinism. Append to a
table rather than reorder it, and bump `generator.GENERATOR_VERSION` when you change one (stores
built by the old generator are then rebuilt instead of reused).
"""

from __future__ import annotations

from typing import NamedTuple


class Division(NamedTuple):
    """A real GB/T 2260 county-level division and the way local documents abbreviate it."""

    code: str  # six digits, positions 3-8 of a USCC
    province: str  # empty for the municipalities, whose `local` already starts with it
    local: str  # the prefix of local authorities' names: 上海市浦东新区, 深圳市南山区, 昆山市
    abbr: str  # prefix of decision numbers: 沪浦, 京朝, 深南


DIVISIONS: tuple[Division, ...] = (
    Division("110101", "", "北京市东城区", "京东"),
    Division("110102", "", "北京市西城区", "京西"),
    Division("110105", "", "北京市朝阳区", "京朝"),
    Division("110106", "", "北京市丰台区", "京丰"),
    Division("110108", "", "北京市海淀区", "京海"),
    Division("110112", "", "北京市通州区", "京通"),
    Division("110115", "", "北京市大兴区", "京兴"),
    Division("120101", "", "天津市和平区", "津和"),
    Division("120116", "", "天津市滨海新区", "津滨"),
    Division("310101", "", "上海市黄浦区", "沪黄"),
    Division("310104", "", "上海市徐汇区", "沪徐"),
    Division("310106", "", "上海市静安区", "沪静"),
    Division("310107", "", "上海市普陀区", "沪普"),
    Division("310110", "", "上海市杨浦区", "沪杨"),
    Division("310112", "", "上海市闵行区", "沪闵"),
    Division("310115", "", "上海市浦东新区", "沪浦"),
    Division("310117", "", "上海市松江区", "沪松"),
    Division("320102", "江苏省", "南京市玄武区", "宁玄"),
    Division("320106", "江苏省", "南京市鼓楼区", "宁鼓"),
    Division("320211", "江苏省", "无锡市滨湖区", "锡滨"),
    Division("320506", "江苏省", "苏州市吴中区", "苏吴"),
    Division("320583", "江苏省", "昆山市", "昆"),
    Division("330102", "浙江省", "杭州市上城区", "杭上"),
    Division("330106", "浙江省", "杭州市西湖区", "杭西"),
    Division("330108", "浙江省", "杭州市滨江区", "杭滨"),
    Division("330212", "浙江省", "宁波市鄞州区", "甬鄞"),
    Division("330782", "浙江省", "义乌市", "义"),
    Division("350203", "福建省", "厦门市思明区", "厦思"),
    Division("370202", "山东省", "青岛市市南区", "青南"),
    Division("420106", "湖北省", "武汉市武昌区", "汉昌"),
    Division("440103", "广东省", "广州市荔湾区", "穗荔"),
    Division("440106", "广东省", "广州市天河区", "穗天"),
    Division("440113", "广东省", "广州市番禺区", "穗番"),
    Division("440303", "广东省", "深圳市罗湖区", "深罗"),
    Division("440304", "广东省", "深圳市福田区", "深福"),
    Division("440305", "广东省", "深圳市南山区", "深南"),
    Division("440306", "广东省", "深圳市宝安区", "深宝"),
    Division("440307", "广东省", "深圳市龙岗区", "深龙"),
    Division("440604", "广东省", "佛山市禅城区", "佛禅"),
    Division("441900", "广东省", "东莞市", "莞"),
    Division("510104", "四川省", "成都市锦江区", "蓉锦"),
    Division("510107", "四川省", "成都市武侯区", "蓉武"),
)


class Agency(NamedTuple):
    """A kind of local authority: how its name is built and how its documents are numbered."""

    key: str
    suffix: str  # appended to Division.local: 市场监督管理局
    abbr: str  # decision-number infix: 市监


AGENCIES: dict[str, Agency] = {
    a.key: a
    for a in (
        Agency("samr", "市场监督管理局", "市监"),
        Agency("tax", "税务局", "税"),
        Agency("eco", "生态环境局", "环"),
        Agency("safety", "应急管理局", "应急"),
        Agency("health", "卫生健康委员会", "卫健"),
        Agency("transport", "交通运输局", "交"),
        Agency("housing", "住房和城乡建设局", "建"),
        Agency("hrss", "人力资源和社会保障局", "人社"),
    )
}

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
)
GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂英华建国志红玉兰文斌鹏飞宇浩然欣怡子涵梓轩俊杰"
    "晓东海燕春梅凤林波辉秀云亮晨佳琪思雨嘉怡博文一鸣雪峰瑞丹颖慧鑫磊婷婷"
)
TRADE_CHARS = (
    "鑫源达华泰恒瑞信诚宏博盛嘉联通和丰安康锦润天正利隆兴昌永德海金科创远卓中新美佳"
    "汇晟启航"
)
INDUSTRIES = (
    "信息科技", "网络科技", "商贸", "餐饮管理", "食品", "建筑工程", "物流", "医药", "环保科技",
    "机械设备", "电子", "房地产开发", "贸易", "文化传媒", "生物科技", "新能源科技", "装饰工程",
    "化工", "服装", "汽车销售服务",
)
SHOP_KINDS = ("便利店", "餐馆", "五金店", "理发店", "水果店", "小吃店", "副食品店", "服装店")
COOP_KINDS = ("蔬菜种植", "水产养殖", "茶叶", "果品", "农机服务", "生猪养殖")
SCHOOL_KINDS = ("职业技能培训学校", "艺术培训中心", "养老服务中心")
ROADS = (
    "建设路", "人民路", "中山路", "解放路", "科技路", "创新大道", "长江路", "和平路", "新华路",
    "文化路", "工业园路", "学院路", "滨河路", "东风路", "振兴大道",
)


class Violation(NamedTuple):
    """A kind of violation; in `facts`, `{d}` is a date and `{v}` an amount of yuan."""

    agency: str
    violation_type: str  # CF_WFXW
    facts: str  # CF_SY
    legal_basis: str  # CF_YJ
    severities: tuple[str, ...]  # the severities a penalty for it can carry


VIOLATIONS: tuple[Violation, ...] = (
    Violation(
        "samr", "销售不符合食品安全标准的食品",
        "经抽样检验，当事人于{d}销售的食品不符合食品安全标准，货值金额{v}元。",
        "《中华人民共和国食品安全法》第一百二十四条第一款", ("ordinary", "serious"),
    ),
    Violation(
        "samr", "虚假宣传",
        "当事人在其网站及宣传资料中对商品功效作虚假宣传，经查于{d}起发布，无法提供依据。",
        "《中华人民共和国反不正当竞争法》第二十条第一款", ("minor", "ordinary"),
    ),
    Violation(
        "samr", "未按规定公示年度报告", "当事人未在规定期限内公示{d}所属年度报告。",
        "《企业信息公示暂行条例》第十八条", ("minor",),
    ),
    Violation(
        "samr", "使用未经检验的特种设备", "当事人于{d}起使用未经定期检验的电梯一台。",
        "《中华人民共和国特种设备安全法》第八十四条第一项", ("ordinary", "serious"),
    ),
    Violation(
        "samr", "价格违法行为", "当事人于{d}起在销售商品时未明码标价，违法所得{v}元。",
        "《价格违法行为行政处罚规定》第十三条", ("minor", "ordinary"),
    ),
    Violation(
        "tax", "未按规定期限办理纳税申报", "当事人未按规定期限办理{d}所属期增值税纳税申报。",
        "《中华人民共和国税收征收管理法》第六十二条", ("minor",),
    ),
    Violation(
        "tax", "未按规定开具发票", "当事人于{d}起发生经营业务未按规定开具发票，涉及金额{v}元。",
        "《中华人民共和国发票管理办法》第三十五条", ("minor", "ordinary"),
    ),
    Violation(
        "tax", "偷税", "当事人于{d}起采取虚假申报手段少缴税款{v}元。",
        "《中华人民共和国税收征收管理法》第六十三条第一款", ("serious",),
    ),
    Violation(
        "eco", "超标排放大气污染物",
        "经监测，当事人于{d}排放的废气中颗粒物浓度超过排放标准。",
        "《中华人民共和国大气污染防治法》第九十九条第二项", ("ordinary", "serious"),
    ),
    Violation(
        "eco", "未批先建", "当事人建设项目环境影响报告表未经批准，于{d}擅自开工建设。",
        "《中华人民共和国环境影响评价法》第三十一条第一款", ("ordinary",),
    ),
    Violation(
        "safety", "未按规定开展安全生产教育和培训",
        "当事人未对{d}新入职从业人员进行安全生产教育和培训。",
        "《中华人民共和国安全生产法》第九十七条第三项", ("minor", "ordinary"),
    ),
    Violation(
        "safety", "未对重大危险源登记建档",
        "当事人未对其储罐区重大危险源登记建档，于{d}检查发现。",
        "《中华人民共和国安全生产法》第一百零一条第二项", ("ordinary", "serious"),
    ),
    Violation(
        "health", "公共场所卫生检测不合格",
        "当事人经营场所于{d}经检测空气质量不符合卫生标准。",
        "《公共场所卫生管理条例实施细则》第三十六条", ("minor", "ordinary"),
    ),
)


class ListKind(NamedTuple):
    """A list of seriously untrustworthy subjects (CONTRACTS section 5 list entries)."""

    agency: str
    list_name: str
    reason: str  # placeholders: {f} a violation, {d} a date, {v} an amount of yuan
    years: int | None  # listed period; None: until the authority removes it (no scheduled end)


LISTS: tuple[ListKind, ...] = (
    ListKind(
        "samr", "严重违法失信名单",
        "当事人因{f}于{d}受到较重行政处罚，"
        "依据《市场监督管理严重违法失信名单管理办法》第二条列入。",
        3,
    ),
    ListKind(
        "tax", "重大税收违法失信主体",
        "当事人采取虚假申报手段少缴税款{v}元，"
        "依据《重大税收违法失信主体信息公布管理办法》第六条确定。",
        3,
    ),
    ListKind(
        "safety", "安全生产严重失信主体名单",
        "当事人于{d}发生生产安全事故造成人员死亡，"
        "依据《安全生产严重失信主体名单管理办法》第五条列入。",
        1,
    ),
    ListKind(
        "hrss", "拖欠农民工工资失信联合惩戒对象名单",
        "当事人拒不支付农民工工资{v}元，经责令限期支付逾期未支付，"
        "依据《拖欠农民工工资失信联合惩戒对象名单管理暂行办法》第五条列入。",
        None,
    ),
)


class LicenceKind(NamedTuple):
    """A licence: category XK_XKLB (DOMAIN.md: 01 ordinary … 06 other) and certificate."""

    category: str
    agency: str
    licence_name: str  # XK_XKZS
    content: str  # XK_NR
    number_style: str  # the issuing system's number format, see records._licence_number
    years: int | None  # validity; None: indefinite, written 2099-12-31 as the standard does


LICENCES: tuple[LicenceKind, ...] = (
    LicenceKind(
        "01", "samr", "食品经营许可证",
        "经营项目：预包装食品销售（含冷藏冷冻食品）；热食类食品制售", "JY", 5,
    ),
    LicenceKind(
        "01", "eco", "排污许可证",
        "管理类别：简化管理；排放口：废气排放口2个、废水排放口1个", "PW", 5,
    ),
    LicenceKind(
        "01", "transport", "道路运输经营许可证",
        "经营范围：道路普通货物运输、货物专用运输（集装箱）", "DY", 4,
    ),
    LicenceKind("01", "housing", "建筑施工企业安全生产许可证", "许可范围：建筑施工", "AX", 3),
    LicenceKind(
        "02", "housing", "燃气经营许可证", "经营类别：瓶装燃气供应；气种：液化石油气", "RQ", 3,
    ),
    LicenceKind(
        "03", "samr", "检验检测机构资质认定证书",
        "检验检测能力范围：环境监测、食品及食品添加剂检测", "CMA", 6,
    ),
    LicenceKind(
        "04", "samr", "特种设备生产许可证", "许可项目：压力容器制造（含安装、修理、改造）", "TS", 4,
    ),
    LicenceKind("05", "samr", "营业执照", "准予变更登记", "YZ", None),
    LicenceKind(
        "06", "health", "公共场所卫生许可证", "许可项目：住宿场所、美容美发场所", "WS", 4,
    ),
)
