// The administrators' area: Users, Schedules (with a doctor's day view) and Audit, each its own
// screen under #/admin/... (docs/webapp.md "Administration").
import { useEffect, useState } from "preact/hooks";
import { AuditScreen } from "./audit.jsx";
import { SchedulesScreen } from "./schedules.jsx";
import { at } from "./strings.js";
import { UsersScreen } from "./users.jsx";

export const ADMIN_ROUTES = {
  "#/admin/users": { label: "navUsers", Screen: UsersScreen },
  "#/admin/schedules": { label: "navSchedules", Screen: SchedulesScreen },
  "#/admin/audit": { label: "navAudit", Screen: AuditScreen },
};
const FIRST = "#/admin/users";

function useAdminRoute() {
  const pick = () => (location.hash in ADMIN_ROUTES ? location.hash : FIRST);
  const [hash, setHash] = useState(pick);
  useEffect(() => {
    const on = () => setHash(pick());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

/** The admin area's navigation and current screen. */
export function AdminScreens({ api, say }) {
  const hash = useAdminRoute();
  useEffect(() => say.clear(), [hash]);
  const { Screen } = ADMIN_ROUTES[hash];
  return (
    <>
      <nav aria-label={at("nav")} class="admin-nav">
        {Object.entries(ADMIN_ROUTES).map(([href, r]) => (
          <a href={href} key={href} aria-current={href === hash ? "page" : undefined}>{at(r.label)}</a>
        ))}
      </nav>
      <Screen api={api} say={say} />
    </>
  );
}
