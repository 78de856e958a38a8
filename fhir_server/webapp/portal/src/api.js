// FHIR calls with the portal's own token. An OperationOutcome becomes a sentence (strings.js);
// a 401 (expired or revoked token) ends the session.
import { t } from "./strings.js";

const BASE = `${location.origin}/fhir`;

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function outcomeText(body) {
  const issues = body && body.resourceType === "OperationOutcome" ? body.issue || [] : [];
  return issues.map((i) => i.diagnostics || i.details?.text || i.code).filter(Boolean).join("; ");
}

export function makeApi(token, onExpired) {
  async function call(path, { method = "GET", body, accept = "application/fhir+json" } = {}) {
    let resp;
    try {
      resp = await fetch(`${BASE}/${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          Accept: accept,
          ...(body ? { "Content-Type": "application/fhir+json" } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch {
      throw new ApiError(t("errNetwork"), 0);
    }
    if (resp.status === 401) {
      onExpired();
      throw new ApiError(t("errSession"), 401);
    }
    if (!resp.ok) {
      let detail = "";
      try {
        detail = outcomeText(await resp.json());
      } catch {
        detail = resp.statusText;
      }
      const key = { 403: "errForbidden", 404: "errNotFound", 409: "errConflict", 412: "errConflict" }[resp.status];
      throw new ApiError(t(key || "errOther", { detail, status: resp.status }), resp.status);
    }
    if (accept !== "application/fhir+json") return resp.blob();
    return resp.status === 204 ? null : resp.json();
  }

  async function search(type, params) {
    const bundle = await call(`${type}?${new URLSearchParams(params)}`);
    return (bundle.entry || []).filter((e) => e.search?.mode !== "include").map((e) => e.resource);
  }

  function op(path, params = []) {
    return call(path, { method: "POST", body: { resourceType: "Parameters", parameter: params } });
  }

  return { call, search, op };
}
