// SMART App Launch 2.2, standalone launch, as a public client of Hearth's own authorization
// server: authorization code + PKCE S256 (RFC 7636), state checked, the access token kept in
// sessionStorage (this tab only, gone when it closes). See docs/webapp.md.

const PENDING = "hearth.smart.pending"; // the verifier and state between redirect and return
const SESSION = "hearth.smart.session"; // the token and who signed in

function base64url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(size) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

async function s256(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return base64url(new Uint8Array(digest));
}

// The claims of a JWT, unchecked: the id_token comes straight from the token endpoint of this
// same origin (OpenID Connect Core 3.1.3.7: TLS to the token endpoint stands in for the
// signature); it only names who signed in, the server checks the access token on every call.
function jwtClaims(token) {
  const part = (token || "").split(".")[1];
  if (!part) return {};
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
}

export async function discover(fhirBase) {
  const resp = await fetch(`${fhirBase}/.well-known/smart-configuration`, {
    headers: { Accept: "application/json" },
  });
  if (!resp.ok) throw new Error(`The server's SMART configuration could not be read (${resp.status}).`);
  const config = await resp.json();
  if (!(config.code_challenge_methods_supported || []).includes("S256")) {
    throw new Error("The server does not offer PKCE S256; this app will not sign in without it.");
  }
  return config;
}

// Go to the authorization endpoint; the user comes back to redirectUri with ?code&state.
export async function beginSignIn({ clientId, fhirBase, redirectUri, scope }) {
  const config = await discover(fhirBase);
  const verifier = randomString(48);
  const state = randomString(24);
  sessionStorage.setItem(
    PENDING,
    JSON.stringify({ verifier, state, tokenEndpoint: config.token_endpoint,
                     revocationEndpoint: config.revocation_endpoint }),
  );
  const url = new URL(config.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: redirectUri,
    scope,
    state,
    aud: fhirBase,
    code_challenge: await s256(verifier),
    code_challenge_method: "S256",
  }).toString();
  window.location.assign(url.toString());
}

// Back from the authorization server: check state, exchange the code for a token.
export async function completeSignIn(params, { clientId, redirectUri }) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  if (params.get("error")) {
    throw new Error(`Sign-in was not completed: ${params.get("error_description") || params.get("error")}.`);
  }
  if (!pending || !params.get("state") || params.get("state") !== pending.state) {
    throw new Error("This sign-in answer does not belong to a sign-in started here. Please sign in again.");
  }
  const resp = await fetch(pending.tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code") || "",
      redirect_uri: redirectUri,
      client_id: clientId,
      code_verifier: pending.verifier,
    }),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok || !body.access_token) {
    throw new Error(`Sign-in failed: ${body.error_description || body.error || resp.status}.`);
  }
  const claims = jwtClaims(body.id_token);
  const fhirUser = String(claims.fhirUser || "");
  const session = {
    accessToken: body.access_token,
    scope: body.scope || "",
    expiresAt: Date.now() + (Number(body.expires_in) || 0) * 1000,
    username: claims.sub || "",
    role: claims.hearth_role || "",
    // "https://host/fhir/Practitioner/1" -> "Practitioner/1": what Task.owner holds
    fhirUser: fhirUser.split("/").slice(-2).join("/"),
    revocationEndpoint: pending.revocationEndpoint,
  };
  sessionStorage.setItem(SESSION, JSON.stringify(session));
  return session;
}

export function currentSession() {
  const session = JSON.parse(sessionStorage.getItem(SESSION) || "null");
  if (!session || session.expiresAt <= Date.now()) {
    sessionStorage.removeItem(SESSION);
    return null;
  }
  return session;
}

export function forget() {
  sessionStorage.removeItem(SESSION);
  sessionStorage.removeItem(PENDING);
}

// Revoke the access token (RFC 7009, public client: client_id in the form), then forget it.
export async function signOut(clientId) {
  const session = currentSession();
  forget();
  if (!session || !session.revocationEndpoint) return;
  try {
    await fetch(session.revocationEndpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: session.accessToken, client_id: clientId }),
    });
  } catch {
    // The token is gone from this browser either way; it expires on the server by itself.
  }
}
