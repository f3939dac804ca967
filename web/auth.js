// DiscScope page login for AWS: Cognito Hosted UI, authorization code + PKCE, no library.
// config.js (generated at deploy time) says {auth: "cognito", cognito: {domain, clientId, scopes}}.
// Locally (auth: "api-key") this file does nothing. app.js reads window.DISCSCOPE_CONFIG.idToken
// when it calls the API, so the token must be there before app.js starts: a stored token is set at
// once; after the login redirect the code is exchanged synchronously; otherwise the page goes to
// the Hosted UI and comes back here.
(function () {
  "use strict";
  const CONFIG = window.DISCSCOPE_CONFIG || {};
  const C = CONFIG.cognito;
  if (CONFIG.auth !== "cognito" || !C || !C.domain || !C.clientId) return;

  const KEY = "discscope.tokens";
  const VERIFIER = "discscope.pkce";
  const RETURN_TO = "discscope.return";
  const redirectUri = location.origin + "/";

  const now = () => Math.floor(Date.now() / 1000);
  const b64url = (bytes) => btoa(String.fromCharCode.apply(null, Array.from(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const claims = (jwt) => {
    try { return JSON.parse(atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))); } catch (e) { return {}; }
  };

  function store(tokens, previous) {
    const saved = {
      id_token: tokens.id_token,
      refresh_token: tokens.refresh_token || (previous && previous.refresh_token),
      exp: claims(tokens.id_token).exp || now() + 3000,
    };
    sessionStorage.setItem(KEY, JSON.stringify(saved));
    CONFIG.idToken = saved.id_token;
    scheduleRefresh(saved);
    return saved;
  }

  function tokenRequest(body, sync, done) {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", C.domain + "/oauth2/token", !sync);
    xhr.setRequestHeader("Content-Type", "application/x-www-form-urlencoded");
    const finish = () => done(xhr.status === 200 ? JSON.parse(xhr.responseText) : null);
    if (!sync) xhr.onload = finish;
    if (!sync) xhr.onerror = () => done(null);
    try { xhr.send(new URLSearchParams(body).toString()); } catch (e) { return done(null); }
    if (sync) finish();
  }

  function scheduleRefresh(saved) {
    if (!saved.refresh_token) return;
    const wait = Math.max((saved.exp - now() - 300) * 1000, 5000);
    setTimeout(() => tokenRequest({ grant_type: "refresh_token", client_id: C.clientId, refresh_token: saved.refresh_token },
      false, (tokens) => { if (tokens && tokens.id_token) store(tokens, saved); }), wait);
  }

  async function login() {
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const challenge = b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
    sessionStorage.setItem(VERIFIER, verifier);
    sessionStorage.setItem(RETURN_TO, location.hash || "");
    const params = new URLSearchParams({
      response_type: "code", client_id: C.clientId, redirect_uri: redirectUri,
      scope: (C.scopes || ["openid", "email"]).join(" "), code_challenge_method: "S256", code_challenge: challenge,
    });
    location.replace(C.domain + "/oauth2/authorize?" + params.toString());
  }

  window.DiscScopeAuth = {
    logout() {
      sessionStorage.removeItem(KEY);
      location.assign(C.domain + "/logout?" + new URLSearchParams({ client_id: C.clientId, logout_uri: redirectUri }));
    },
  };

  const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
  if (saved && saved.id_token && saved.exp > now() + 60) {
    CONFIG.idToken = saved.id_token;
    scheduleRefresh(saved);
    return;
  }
  const code = new URLSearchParams(location.search).get("code");
  const verifier = sessionStorage.getItem(VERIFIER);
  if (code && verifier) {
    sessionStorage.removeItem(VERIFIER);
    let tokens = null;
    tokenRequest({ grant_type: "authorization_code", client_id: C.clientId, code, redirect_uri: redirectUri,
      code_verifier: verifier }, true, (t) => { tokens = t; });
    const back = sessionStorage.getItem(RETURN_TO) || "";
    sessionStorage.removeItem(RETURN_TO);
    history.replaceState(null, "", location.pathname + back);
    if (tokens && tokens.id_token) {
      store(tokens);
      return;
    }
  }
  login();
})();
