// 中文（简体）: the portal's first language. Keys are grouped by page; en.js mirrors every key.
export default {
  app: { name: '红领益家', subtitle: '社区共治平台', skip: '跳到主要内容', loading: '加载中…', language: 'English', languageLabel: '切换语言' },
  nav: {
    dashboard: '数据看板', map: '网格地图', issues: '诉求事项', whistles: '集结号看板', tasks: '点将台',
    org: '组织架构', approvals: '审核把关', audit: '审计日志', field: '网格走访', menu: '菜单',
  },
  login: {
    title: '登录', username: '账号', password: '密码', submit: '登录', busy: '正在登录…',
    expired: '登录已过期，请重新登录。', loggedOut: '您已退出登录。',
    hint: '会话只保存在本页内存中，刷新或关闭页面后需重新登录。',
    noPage: '您的角色在本门户中没有可用的页面。',
    waiting: '本机有 {n} 条走访记录待发送，登录后自动发送。',
    required: '请输入{what}',
  },
  header: { tenant: '街道/镇', community: '社区', allCommunities: '全部社区', logout: '退出登录', role: '角色' },
  roles: {
    resident: '居民', community_worker: '社区工作者', subdistrict_admin: '街道管理员', member: '成员单位/个人',
    district_approver: '区级审核人', district_department: '区直部门', ops: '运维', public: '公众',
  },
  status: {
    received: '已受理', classified: '已分类', duplicate: '重复事项', whistle_blown: '已吹号', assigned: '已派单',
    in_progress: '办理中', done: '已办结', verified: '已验收', published: '已公示', rated: '已评价', cancelled: '已撤销',
  },
  urgency: { routine: '日常', major: '重大', urgent: '紧急' },
  channel: {
    household_visit: '入户走访', resident_report: '居民反映', online: '线上接单', grid_patrol: '网格巡查',
    hotline_12345: '12345热线', department_assistance: '部门协助任务',
  },
  common: {
    search: '搜索', reset: '重置', all: '全部', more: '加载更多', none: '暂无数据', retry: '重试', error: '出错了',
    refresh: '刷新', cancel: '取消', save: '保存', submit: '提交', back: '返回', close: '关闭', total: '共 {n} 条',
    updated: '更新于 {time}', details: '详情',
  },
  dashboard: {
    received: '近{n}天受理', inTime: '按时报到率', toWhistle: '受理到吹号（中位数）', toDone: '受理到办结（中位数）', median: '中位数',
    window: '统计天数', days: '{n}天', spanNote: '共 {n} 件；90% 在 {p90} 以内。',
    series: { issues_received: '受理', whistles_blown: '吹号', whistles_answered_in_time: '按时报到', tasks_done: '办结', tasks_overdue: '逾期' },
    title: '数据看板', open: '在办事项', total: '事项总数', overdue: '逾期任务', byStatus: '事项状态分布',
    byClass: '在办事项类别', whistles: '吹号响应（近{days}天）', timeTo: '办理时长', scopeTenant: '全街道/镇',
  },
  whistles: {
    open: '进行中', closed: '已结束', none: '暂无集结号', summary: '{calls} 个集结号，{silent} 个对象尚未报到',
    reportInBy: '报到截止', completeBy: '完成截止', overdueBy: '已超时 {d}', answered: '已报到', waiting: '未报到',
    late: '迟报', silent: '未响应', issue: '查看事项',
    answer: { accept: '接受', decline: '婉拒', propose: '推荐他人' },
  },
  task: {
    open: '打开任务', overdue: '逾期', overdueOnly: '只看逾期', reportInBy: '报到截止', completeBy: '完成截止', needs: '所需专长/服务/资源',
    crew: '承办人员', assignee: '派单对象', history: '任务记录', candidates: '推荐人选（共评估 {n} 个）', override: '指定他人', assign: '派单',
    reportedIn: '已报到', score: '匹配得分', kindLabel: '类型', helperId: '编号',
    kind: { person: '个人', member_unit: '成员单位', team: '队伍' },
    role: { lead: '主办', assistant: '协办' },
    status: { open: '待认领', assigned: '已派单', accepted: '已接单', in_progress: '办理中', done: '已办结', verified: '已验收', rejected: '验收未通过', reopened: '重新办理', cancelled: '已取消' },
    action: { start: '开始办理', done: '办结', verify: '验收通过', reject: '验收不通过', reopen: '重新办理', cancel: '取消任务', accept: '接单', decline: '拒单' },
  },
  map: {
    legend: '事项类别图例',
    label: '网格地图：{grids} 个网格，{issues} 个在办事项', thisMonth: '本月事项', hot: '本月热点网格', more: '多', fewer: '少',
    note: '显示最新的 {n} 个在办事项中有坐标的 {placed} 个（最多 {max} 个）；点击标记查看事项。', hotNote: '按本月（北京时间）受理的事项数排列。',
  },
  // Names of the organisation's codes (as services/org/domain.py names them).
  vocab: {
    property_company: '物业服务企业', owners_committee: '业委会', resident_unit: '驻地单位', dual_report_unit: '"双报到"单位',
    law_enforcement: '执法力量', new_economy_social_org: '"两新"组织', individual_business: '个体业户', public_interest_org: '公益组织',
    grassroots_association: '草根社团', party_member: '党员', volunteer: '志愿者', community_worker: '专职社区工作者',
    vehicle: '车辆', venue: '场地', equipment: '设备', funds: '资金', supplies: '物资', other: '其他', active: '在册', left: '已退出',
  },
  org: {
    tabs: { 'member-units': '成员单位', people: '人员', 'volunteer-teams': '志愿队伍', 'talent-entries': '人才清单', 'team-service-entries': '队伍服务清单', 'unit-resource-entries': '单位资源清单' },
    col: { id: '编号', name_zh: '名称', kind: '类型', community_id: '社区', contact_name: '联系人', contact_phone: '联系电话', status: '状态', roles: '身份', grid_id: '网格', phone: '电话', leader_id: '队长', person_id: '人员', skill: '专长', level: '等级', team_id: '队伍', service: '服务', capacity: '服务人数', hours_per_week: '每周小时', unit_id: '单位', resource: '资源', category: '类别', quantity: '数量', unit_of_measure: '单位' },
    export: '导出表格', import: '导入表格', importTitle: '导入{what}', file: '选择表格文件（xlsx 或 csv）', chooseFile: '请先选择文件',
    importHint: '先试导入：逐行检查，列出有问题的行（行号、列、原因），不保存任何数据；全部通过后再正式导入。',
    dryRun: '试导入', run: '正式导入', progress: '导入进度', uploading: '正在上传 {p}%',
    stage: { checking: '已检查 {done}/{total} 行', writing: '已写入 {done}/{total} 行' },
    job: { queued: '排队中', running: '进行中', succeeded: '已完成', failed: '未成功' },
    notImported: '未导入：{errors} 行有问题，没有写入任何数据。', moreErrors: '共 {n} 行有问题，此处列出前 1000 行。', recent: '最近的导入',
    checked: '已检查 {rows} 行：{errors} 行有问题。', imported: '已导入 {rows} 行：新增 {created}，更新 {updated}，未变 {unchanged}，有问题 {errors}。',
    row: '行', column: '列', reason: '原因',
  },
  approvals: {
    pending: '待审核', approved: '已批准', rejected: '已驳回', filedAt: '提交时间', department: '申请部门', kind: '类型', where: '街道/镇 · 社区',
    purpose: '用途', period: '期限', tasks: '协助任务', operations: '数据操作', fields: '字段', endsOn: '截止日期', quota: '次数上限',
    approve: '批准', approveNarrowed: '收窄后批准', reject: '驳回', grant: '授权', valid: '有效期 {from} 至 {to}', use: '使用记录',
    verify: '校验审计链', chainOk: '审计链完整：已校验 {n} 条', chainBroken: '审计链在第 {seq} 条断开', time: '时间', actor: '操作人', action: '操作', outcome: '结果', target: '对象',
  },
  field: {
    online: '在线', offline: '离线', waiting: '待发送 {n} 条', sendNow: '立即发送', photos: '{n} 张照片', discard: '删除',
    title: '事项标题', description: '情况描述', photo: '现场照片', remove: '移除', place: '位置', locate: '获取定位', address: '地址（如 3号楼2单元）',
    contact: '反映人（可选）', contactName: '姓名', contactPhone: '电话', capture: '保存并发送', required: '请填写此项',
    needPlace: '请获取定位或填写地址', noGps: '本设备不支持定位，请填写地址', gpsFailed: '定位失败（{why}），请填写地址',
    saved: '已保存在本机，联网后自动发送。', notSaved: '未能保存在本机：{why}',
  },
  issues: {
    from: '受理起', to: '受理止',
    title: '诉求事项', text: '关键词', status: '状态', category: '类别', urgency: '分类', channel: '渠道',
    community: '社区', created: '受理时间', titleCol: '标题', place: '位置', noMatch: '没有符合条件的事项',
  },
  issue: {
    history: '办理记录', classification: '分类与依据', duplicates: '重复事项', duplicateOf: '重复于', photos: '照片与附件',
    contact: '报告人联系方式', reveal: '查看联系方式', revealNote: '查看将被记录在审计日志中', task: '任务',
    reclassify: '改分类', reason: '理由', households: '受影响户数', hazards: '隐患',
  },
}
