// English, beside Chinese: the same keys as zh-CN.js.
export default {
  app: { name: 'Hongling', subtitle: 'Community co-governance', skip: 'Skip to main content', loading: 'Loading…', language: '中文', languageLabel: 'Switch language' },
  nav: {
    dashboard: 'Dashboard', map: 'Grid map', issues: 'Issues', whistles: 'Whistle board', tasks: 'Assignment',
    org: 'Organisation', approvals: 'Approvals', audit: 'Audit log', field: 'Field visits', menu: 'Menu',
  },
  login: {
    title: 'Log in', username: 'User name', password: 'Password', submit: 'Log in', busy: 'Logging in…',
    expired: 'Your session has expired; please log in again.', loggedOut: 'You have logged out.',
    hint: 'The session is kept only in this page’s memory: reloading or closing the page logs you out.',
    noPage: 'There is no page in this portal for your role.',
    waiting: '{n} field captures on this device wait to be sent; they go out once you log in.',
    required: 'Enter your {what}',
  },
  header: { tenant: 'Subdistrict / town', community: 'Community', allCommunities: 'All communities', logout: 'Log out', role: 'Role' },
  roles: {
    resident: 'Resident', community_worker: 'Community worker', subdistrict_admin: 'Subdistrict admin', member: 'Member',
    district_approver: 'District approver', district_department: 'District department', ops: 'Operations', public: 'Public',
  },
  status: {
    received: 'Received', classified: 'Classified', duplicate: 'Duplicate', whistle_blown: 'Whistle blown', assigned: 'Assigned',
    in_progress: 'In progress', done: 'Done', verified: 'Verified', published: 'Published', rated: 'Rated', cancelled: 'Cancelled',
  },
  urgency: { routine: 'Routine', major: 'Major', urgent: 'Urgent' },
  channel: {
    household_visit: 'Household visit', resident_report: 'Resident report', online: 'Online', grid_patrol: 'Grid patrol',
    hotline_12345: '12345 hotline', department_assistance: 'Department assistance',
  },
  common: {
    search: 'Search', reset: 'Reset', all: 'All', more: 'Load more', none: 'No data', retry: 'Retry', error: 'Something went wrong',
    refresh: 'Refresh', cancel: 'Cancel', save: 'Save', submit: 'Submit', back: 'Back', close: 'Close', total: '{n} in all',
    updated: 'Updated {time}', details: 'Details',
  },
  dashboard: {
    received: 'Received, last {n} days', inTime: 'Calls answered in time', toWhistle: 'Received to whistle (median)', toDone: 'Received to done (median)', median: 'median',
    window: 'Days shown', days: '{n} days', spanNote: '{n} in all; 90% within {p90}.',
    series: { issues_received: 'Received', whistles_blown: 'Calls blown', whistles_answered_in_time: 'Answered in time', tasks_done: 'Done', tasks_overdue: 'Overdue' },
    title: 'Dashboard', open: 'Open issues', total: 'All issues', overdue: 'Overdue tasks', byStatus: 'Issues by status',
    byClass: 'Open issues by class', whistles: 'Whistle response (last {days} days)', timeTo: 'Time to handle', scopeTenant: 'Whole subdistrict',
  },
  whistles: {
    open: 'Open', closed: 'Closed', none: 'No calls', summary: '{calls} calls; {silent} targets have not reported in',
    reportInBy: 'Report in by', completeBy: 'Complete by', overdueBy: 'Overdue by {d}', answered: 'Reported in', waiting: 'Not yet',
    late: 'late', silent: 'silent', issue: 'Open the issue',
    answer: { accept: 'Accepted', decline: 'Declined', propose: 'Proposed another' },
  },
  task: {
    open: 'Open the task', overdue: 'Overdue', overdueOnly: 'Overdue only', reportInBy: 'Report in by', completeBy: 'Complete by', needs: 'Skills, services, resources needed',
    crew: 'Crew', assignee: 'Assigned to', history: 'Task history', candidates: 'Candidates ({n} considered)', override: 'Assign someone else', assign: 'Assign',
    reportedIn: 'Reported in', score: 'Fit score', kindLabel: 'Kind', helperId: 'Id',
    kind: { person: 'Person', member_unit: 'Member unit', team: 'Team' },
    role: { lead: 'lead', assistant: 'assistant' },
    status: { open: 'Open', assigned: 'Assigned', accepted: 'Accepted', in_progress: 'In progress', done: 'Done', verified: 'Verified', rejected: 'Rejected', reopened: 'Reopened', cancelled: 'Cancelled' },
    action: { start: 'Start', done: 'Mark done', verify: 'Verify', reject: 'Reject', reopen: 'Reopen', cancel: 'Cancel task', accept: 'Accept', decline: 'Decline' },
  },
  map: {
    legend: 'Issue classes',
    label: 'Grid map: {grids} grids, {issues} open issues', thisMonth: 'issues this month', hot: 'Hot spots this month', more: 'More', fewer: 'Fewer',
    note: 'Showing the {placed} with coordinates of the newest {n} open issues (at most {max}); click a marker to open it.', hotNote: 'Grids by issues received this month (Asia/Shanghai).',
  },
  // Names of the organisation's codes (as services/org/domain.py names them).
  vocab: {
    property_company: 'Property-management company', owners_committee: "Owners' committee", resident_unit: 'Resident unit', dual_report_unit: 'Dual-report unit',
    law_enforcement: 'Law-enforcement team', new_economy_social_org: 'New-economy / social organisation', individual_business: 'Individual business', public_interest_org: 'Public-interest organisation',
    grassroots_association: 'Grassroots association', party_member: 'Party member', volunteer: 'Volunteer', community_worker: 'Full-time community worker',
    vehicle: 'Vehicle', venue: 'Venue', equipment: 'Equipment', funds: 'Funds', supplies: 'Supplies', other: 'Other', active: 'Active', left: 'Left',
  },
  org: {
    tabs: { 'member-units': 'Member units', people: 'People', 'volunteer-teams': 'Volunteer teams', 'talent-entries': 'Talent list', 'team-service-entries': 'Team services', 'unit-resource-entries': 'Unit resources' },
    col: { id: 'Id', name_zh: 'Name', kind: 'Kind', community_id: 'Community', contact_name: 'Contact', contact_phone: 'Phone', status: 'Status', roles: 'Roles', grid_id: 'Grid', phone: 'Phone', leader_id: 'Leader', person_id: 'Person', skill: 'Skill', level: 'Level', team_id: 'Team', service: 'Service', capacity: 'Capacity', hours_per_week: 'Hours a week', unit_id: 'Unit', resource: 'Resource', category: 'Category', quantity: 'Quantity', unit_of_measure: 'Unit of measure' },
    export: 'Export sheet', import: 'Import sheet', importTitle: 'Import {what}', file: 'Spreadsheet (xlsx or csv)', chooseFile: 'Choose a file first',
    importHint: 'Dry run first: every row is checked and each bad one listed (row, column, reason); nothing is stored. Import once every row passes.',
    dryRun: 'Dry run', run: 'Import', progress: 'Import progress', uploading: 'Uploading {p}%',
    stage: { checking: '{done}/{total} rows checked', writing: '{done}/{total} rows written' },
    job: { queued: 'Queued', running: 'Running', succeeded: 'Finished', failed: 'Failed' },
    notImported: 'Not imported: {errors} rows have problems; nothing was written.', moreErrors: '{n} rows have problems; the first 1,000 are listed.', recent: 'Recent imports',
    checked: '{rows} rows checked: {errors} with problems.', imported: '{rows} rows imported: {created} new, {updated} updated, {unchanged} unchanged, {errors} with problems.',
    row: 'Row', column: 'Column', reason: 'Reason',
  },
  approvals: {
    pending: 'Pending', approved: 'Approved', rejected: 'Rejected', filedAt: 'Filed', department: 'Department', kind: 'Kind', where: 'Subdistrict · community',
    purpose: 'Purpose', period: 'Period', tasks: 'Assistance tasks', operations: 'Operations', fields: 'Fields', endsOn: 'Ends on', quota: 'Quota',
    approve: 'Approve', approveNarrowed: 'Approve narrowed', reject: 'Reject', grant: 'Grant', valid: 'Valid {from} to {to}', use: 'Use',
    verify: 'Verify the audit chain', chainOk: 'The chain is whole: {n} entries checked', chainBroken: 'The chain breaks at entry {seq}', time: 'Time', actor: 'Actor', action: 'Action', outcome: 'Outcome', target: 'Target',
  },
  field: {
    online: 'Online', offline: 'Offline', waiting: '{n} waiting to be sent', sendNow: 'Send now', photos: '{n} photos', discard: 'Discard',
    title: 'Title', description: 'What is wrong', photo: 'Photos', remove: 'Remove', place: 'Place', locate: 'Use my position', address: 'Address (e.g. building 3, unit 2)',
    contact: 'Reported by (optional)', contactName: 'Name', contactPhone: 'Phone', capture: 'Save and send', required: 'Required',
    needPlace: 'Use your position or give an address', noGps: 'This device has no positioning; give an address', gpsFailed: 'Positioning failed ({why}); give an address',
    saved: 'Kept on this device; it is sent as soon as there is a connection.', notSaved: 'Could not keep it on this device: {why}',
  },
  issues: {
    from: 'Received from', to: 'Received to',
    title: 'Issues', text: 'Keyword', status: 'Status', category: 'Category', urgency: 'Urgency', channel: 'Channel',
    community: 'Community', created: 'Received', titleCol: 'Title', place: 'Place', noMatch: 'No issue matches',
  },
  issue: {
    history: 'History', classification: 'Class and reasons', duplicates: 'Duplicates', duplicateOf: 'Duplicate of', photos: 'Photos and files',
    contact: 'Reporter contact', reveal: 'Reveal contact', revealNote: 'Revealing is recorded in the audit log', task: 'Task',
    reclassify: 'Reclassify', reason: 'Reason', households: 'Households affected', hazards: 'Hazards',
  },
}
