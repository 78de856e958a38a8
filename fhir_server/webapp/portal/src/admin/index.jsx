// The administrators' screens of the staff area: Users, Schedules (with a doctor's day view)
// and Audit, each under #/admin/... (docs/webapp.md "Administration"); main.jsx adds these routes
// to the staff area's, for the admin role only.
import { AuditScreen } from "./audit.jsx";
import { SchedulesScreen } from "./schedules.jsx";
import { UsersScreen } from "./users.jsx";

/** A screen in the `admin` box its styles are scoped to (portal.css). */
const boxed = (Screen) => (props) => (
  <div class="admin">
    <Screen {...props} />
  </div>
);

export const ADMIN_ROUTES = {
  "#/admin/users": { label: "navUsers", Screen: boxed(UsersScreen), roles: ["admin"] },
  "#/admin/schedules": { label: "navSchedules", Screen: boxed(SchedulesScreen), roles: ["admin"] },
  "#/admin/audit": { label: "navAudit", Screen: boxed(AuditScreen), roles: ["admin"] },
};
