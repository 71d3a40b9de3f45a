/**
 * 012: the log's entries found by action and time. The kiosk's shift figures and the audit
 * screen ask for one action in a window of hours; without this index each such question read
 * the whole log (a year of a busy line is a million entries).
 */
export const migration = {
  version: 12,
  name: "events by action and time",
  sql: `
CREATE INDEX events_action_ts ON events (action, ts);
`,
};
