// SMART App Launch with the SMART JS client (fhirclient): standalone launch, public client
// `hearth-portal`, authorization code + PKCE S256 (required), patient context. fhirclient keeps
// its state and the token in sessionStorage (this tab only). Sign-out revokes the token
// (RFC 7009) at the revocation endpoint Hearth's discovery names, then forgets the session.
import FHIR from "fhirclient";

export const CLIENT_ID = "hearth-portal";
// Read the patient's record; write what the patient may write (the role's ceiling narrows
// `patient/*.cruds`: messages; appointments change through $book/$accept/$cancel).
export const SCOPE = "openid fhirUser patient/*.cruds";
// A community health worker works across patients: user-level scopes, cut to the cadre's ceiling.
export const CADRE_SCOPE = "openid fhirUser user/*.cruds";
const FHIR_BASE = `${location.origin}/fhir`;
const REDIRECT = `${location.origin}/app/portal/`;

export function signIn(scope = SCOPE) {
  return FHIR.oauth2.authorize({
    clientId: CLIENT_ID,
    scope,
    redirectUri: REDIRECT,
    iss: FHIR_BASE,
    pkceMode: "required",
  });
}

/** The signed-in client, or null when nobody is signed in in this tab. */
export async function resume() {
  const q = new URLSearchParams(location.search);
  if (q.has("error")) throw new Error(q.get("error_description") || q.get("error"));
  const pending = q.has("code") && q.has("state");
  if (!pending && !sessionStorage.getItem("SMART_KEY")) return null;
  try {
    const client = await FHIR.oauth2.ready();
    // A sign-in left unfinished in this tab (the user went to "Create an account" or "Forgot
    // your password?" instead) leaves fhirclient's state without a token: nobody is signed in.
    if (!pending && !client.state.tokenResponse?.access_token) {
      sessionStorage.clear();
      return null;
    }
    return client;
  } catch (e) {
    if (!pending) {
      sessionStorage.clear();
      return null;
    }
    throw e;
  }
}

export function session(client) {
  const id = client.getIdToken() || {};
  return {
    token: client.state.tokenResponse?.access_token,
    patient: client.getState("tokenResponse.patient") || null,
    fhirUser: client.getFhirUser(),
    role: id.hearth_role,
    // user-level scopes granted (cadres, doctors, administrators working across patients)
    userScopes: /(^|\s)user\//.test(client.state.tokenResponse?.scope || ""),
  };
}

export async function signOut(client) {
  const token = client?.state?.tokenResponse?.access_token;
  try {
    const conf = await (await fetch(`${FHIR_BASE}/.well-known/smart-configuration`)).json();
    if (token && conf.revocation_endpoint) {
      await fetch(conf.revocation_endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token, client_id: CLIENT_ID }),
      });
    }
  } finally {
    sessionStorage.clear();
  }
}
