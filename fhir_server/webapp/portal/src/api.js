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

function errorOf(status, detail) {
  const key = {
    403: "errForbidden", 404: "errNotFound", 409: "errConflict", 412: "errConflict", 413: "errTooLarge",
    400: "errRefused", 415: "errRefused", 422: "errRefused",
  }[status];
  return new ApiError(t(key || "errOther", { detail, status }), status);
}

export function makeApi(token, onExpired) {
  /** fetch `url` with the token; the response, or an ApiError (the network, the session, a
   *  refusal in words). */
  async function fetched(url, init = {}) {
    let resp;
    try {
      resp = await fetch(url, { ...init, headers: { Authorization: `Bearer ${token}`, ...init.headers } });
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
      throw errorOf(resp.status, detail);
    }
    return resp;
  }

  async function call(path, { method = "GET", body, accept = "application/fhir+json" } = {}) {
    const resp = await fetched(`${BASE}/${path}`, {
      method,
      headers: { Accept: accept, ...(body ? { "Content-Type": "application/fhir+json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
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

  /** POST a resource (or an operation's Parameters, `type` then being its path) with upload
   *  progress (XMLHttpRequest: fetch reports none); the answer, or the same errors as `call`;
   *  `headers` e.g. If-None-Exist. */
  function upload(type, resource, onProgress, headers = {}) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `${BASE}/${type}`);
      xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      xhr.setRequestHeader("Accept", "application/fhir+json");
      xhr.setRequestHeader("Content-Type", "application/fhir+json");
      Object.entries(headers).forEach(([k, v]) => xhr.setRequestHeader(k, v));
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onerror = () => reject(new ApiError(t("errNetwork"), 0));
      xhr.onload = () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = null;
        }
        if (xhr.status === 401) {
          onExpired();
          reject(new ApiError(t("errSession"), 401));
        } else if (xhr.status >= 200 && xhr.status < 300) {
          onProgress(1);
          resolve(body);
        } else {
          reject(errorOf(xhr.status, outcomeText(body) || xhr.statusText));
        }
      };
      xhr.send(JSON.stringify(resource));
    });
  }

  /** A Hearth endpoint outside the FHIR base (`/dev/…`): JSON, or a Blob with `as` "blob". */
  async function dev(path, as = "json") {
    const resp = await fetched(`${location.origin}/dev/${path}`);
    return as === "blob" ? resp.blob() : resp.json();
  }

  return { call, search, op, upload, dev };
}
