// A SMART-on-FHIR-ish authorization server for the tests, built on oauth2-mock-server@7.2.1
// (installed by .ci/peers.sh into target/peers/node). Loopback only.
//
//   node host/tests/peers/oauth-server.mjs [PORT]
//
// Prints exactly one line to stdout when ready: `listening http://127.0.0.1:PORT`. Everything
// else goes to stderr. Stops on SIGTERM/SIGINT.
//
// Environment (all optional):
//   PORT          port to listen on (or argv[2]); 0 or unset = any free port
//   PATIENT_ID    added as `patient` to every token response
//   SCOPE         `scope` of every token response; otherwise the scope asked for at /authorize
//                 (or in the token request), kept across refreshes
//   EXPIRES_IN    access token lifetime in seconds (default 3600): `expires_in` and the JWT's exp
//   CLIENT_ID     if set, token requests must come from this client (Basic or client_id field)
//   CLIENT_SECRET if set, token requests must carry it (client_secret_basic or client_secret_post)
//   FHIR_UPSTREAM e.g. http://127.0.0.1:8090/fhir: serve /fhir/* as a proxy to it (fhir-proxy.mjs) that answers 401
//                 unless `Authorization: Bearer` holds an unexpired access token issued here, and
//                 rewrites the upstream base URL to this server's /fhir in bodies and headers
//                 (GET /fhir/metadata needs no token)
//   NODE_PEERS    folder holding node_modules/oauth2-mock-server (default: target/peers/node)
//
// On top of the mock (which checks a PKCE code_verifier only when one is sent, and accepts any
// code and any refresh token), this server: only accepts codes its /authorize issued, once; asks
// for code_verifier when /authorize had a code_challenge; checks redirect_uri against /authorize;
// only accepts refresh tokens it issued (every one stays valid; each refresh issues a new one).
//
// Extra endpoints: GET /.well-known/smart-configuration (also under /fhir/), and GET /_log: a JSON
// array of what happened ({endpoint, grant_type, client_auth, status, ...}) for assertions.

import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { fhirProxy } from './fhir-proxy.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const peersDir = process.env.NODE_PEERS || path.resolve(here, '../../../target/peers/node');
const require = createRequire(path.join(peersDir, 'package.json'));
const { OAuth2Server } = require('oauth2-mock-server');

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const patient = process.env.PATIENT_ID || undefined;
const fixedScope = process.env.SCOPE || undefined;
const expiresIn = Number(process.env.EXPIRES_IN || 3600);
const clientId = process.env.CLIENT_ID || undefined;
const clientSecret = process.env.CLIENT_SECRET || undefined;
const upstream = (process.env.FHIR_UPSTREAM || '').replace(/\/+$/, '');

const codes = new Map(); // code -> {scope, redirect_uri, challenge, client_id}
const refreshTokens = new Map(); // refresh_token -> {scope}
const accessTokens = new Map(); // access_token -> expiry (ms since epoch)
const events = [];
const record = (e) => {
  events.push({ at: new Date().toISOString(), ...e });
  if (events.length > 10000) events.shift();
  process.stderr.write(`oauth-server: ${JSON.stringify(e)}\n`);
};

const oauth = new OAuth2Server();
await oauth.issuer.keys.generate('RS256');
const service = oauth.service;
let base = ''; // http://127.0.0.1:PORT, set once listening

// The scope a token request gets: SCOPE, else the one it asks for, else the one of its grant.
function grantedScope(b) {
  const grant = b.grant_type === 'authorization_code' ? codes.get(b.code)
    : b.grant_type === 'refresh_token' ? refreshTokens.get(b.refresh_token) : undefined;
  return fixedScope ?? b.scope ?? grant?.scope;
}

service.on('beforeTokenSigning', (token, req) => {
  token.payload.exp = token.payload.iat + expiresIn;
  if (patient) token.payload.patient = patient;
  if ('scope' in token.payload) token.payload.scope = grantedScope(req.body);
});

service.on('beforeAuthorizeRedirect', ({ url }, req) => {
  const code = url.searchParams.get('code');
  if (code) {
    codes.set(code, {
      scope: req.query.scope,
      redirect_uri: req.query.redirect_uri,
      challenge: Boolean(req.query.code_challenge),
      client_id: req.query.client_id,
    });
  }
  record({ endpoint: 'authorize', client_id: req.query.client_id, scope: req.query.scope,
    code_challenge_method: req.query.code_challenge && (req.query.code_challenge_method || 'plain'),
    redirect: url.href });
});

function clientAuth(req) {
  const h = req.headers.authorization || '';
  if (/^basic /i.test(h)) {
    const raw = Buffer.from(h.slice(6), 'base64').toString();
    const i = raw.indexOf(':');
    const dec = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
    return { method: 'basic', id: dec(raw.slice(0, i)), secret: dec(raw.slice(i + 1)) };
  }
  const b = req.body || {};
  if (b.client_secret !== undefined) return { method: 'post', id: b.client_id, secret: b.client_secret };
  return { method: 'none', id: b.client_id, secret: undefined };
}

service.on('beforeResponse', (resp, req) => {
  const b = req.body;
  const auth = clientAuth(req);
  const fail = (status, error, description) => {
    resp.statusCode = status;
    resp.body = { error, error_description: description };
  };
  const scope = grantedScope(b);
  if (clientId && auth.id !== clientId) {
    fail(401, 'invalid_client', `unknown client '${auth.id}'`);
  } else if (clientSecret && auth.secret !== clientSecret) {
    fail(401, 'invalid_client', 'client authentication failed');
  } else if (b.grant_type === 'authorization_code') {
    const c = codes.get(b.code);
    codes.delete(b.code);
    if (!c) fail(400, 'invalid_grant', 'unknown or already used code');
    else if (c.challenge && !b.code_verifier) fail(400, 'invalid_grant', 'code_verifier required');
    else if (c.redirect_uri !== b.redirect_uri) fail(400, 'invalid_grant', 'redirect_uri mismatch');
  } else if (b.grant_type === 'refresh_token') {
    const r = refreshTokens.get(b.refresh_token);
    if (!r) fail(400, 'invalid_grant', 'unknown refresh_token');
  }
  if (resp.statusCode === 200) {
    if (scope !== undefined) resp.body.scope = scope;
    else delete resp.body.scope;
    resp.body.expires_in = expiresIn;
    if (patient) resp.body.patient = patient;
    accessTokens.set(resp.body.access_token, Date.now() + expiresIn * 1000);
    if (resp.body.refresh_token) refreshTokens.set(resp.body.refresh_token, { scope });
  }
  req.outcome = { error: resp.body.error, scope: resp.body.scope, expires_in: resp.body.expires_in };
});

// Every token request is logged when its answer is sent, including the ones the mock itself
// refuses before beforeResponse (a code_verifier that does not match, an unknown grant_type).
function logToken(req, res) {
  res.on('finish', () => {
    const b = req.body || {};
    const auth = clientAuth(req);
    record({ endpoint: 'token', grant_type: b.grant_type, client_auth: auth.method, client_id: auth.id,
      code_verifier: b.code_verifier !== undefined, status: res.statusCode, ...req.outcome });
  });
}

const smartConfiguration = () => ({
  issuer: base,
  authorization_endpoint: `${base}/authorize`,
  token_endpoint: `${base}/token`,
  jwks_uri: `${base}/jwks`,
  revocation_endpoint: `${base}/revoke`,
  introspection_endpoint: `${base}/introspect`,
  grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
  token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
  response_types_supported: ['code'],
  code_challenge_methods_supported: ['S256'],
  scopes_supported: ['openid', 'fhirUser', 'launch/patient', 'offline_access', 'patient/*.read', 'patient/*.rs'],
  capabilities: ['launch-standalone', 'client-public', 'client-confidential-symmetric',
    'context-standalone-patient', 'permission-offline', 'permission-patient', 'permission-v1',
    'permission-v2'],
});

function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

const proxy = fhirProxy({
  upstream,
  base: () => base,
  rejects: async (token) => {
    const exp = accessTokens.get(token);
    return !exp ? 'unknown access token' : exp <= Date.now() ? 'access token expired' : null;
  },
  record,
});

const server = http.createServer((req, res) => {
  const p = req.url.split('?')[0];
  if (req.method === 'GET' && (p === '/.well-known/smart-configuration'
    || p === '/fhir/.well-known/smart-configuration')) {
    return sendJson(res, 200, smartConfiguration());
  }
  if (req.method === 'GET' && p === '/_log') return sendJson(res, 200, events);
  if (upstream && (p === '/fhir' || p.startsWith('/fhir/'))) return proxy(req, res);
  if (req.method === 'POST' && p === '/token') logToken(req, res);
  return service.requestHandler(req, res);
});

server.listen(port, '127.0.0.1', () => {
  base = `http://127.0.0.1:${server.address().port}`;
  oauth.issuer.url = base; // the mock would say http://localhost:PORT
  process.stdout.write(`listening ${base}\n`);
});
server.on('error', (e) => {
  process.stderr.write(`oauth-server: ${e.message}\n`);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
