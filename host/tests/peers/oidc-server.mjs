// A SMART-on-FHIR authorization server for the tests that really verifies `private_key_jwt`: it is
// oidc-provider@8.8.1 (a certified OpenID Provider, installed by .ci/peers.sh into
// target/peers/node), not a mock. Loopback only.
//
//   node host/tests/peers/oidc-server.mjs
//
// Prints exactly one line to stdout when ready: `listening http://127.0.0.1:PORT`. Everything
// else goes to stderr. Stops on SIGTERM/SIGINT.
//
// Environment:
//   CLIENT_ID     required: the one registered client, confidential, authenticating at the token
//                 endpoint with private_key_jwt only
//   JWKS_URI      required: where that client's public keys are (Fasten's /.well-known/jwks.json);
//                 oidc-provider fetches it, caches it (at least 60 s, longer if the answer's
//                 Cache-Control says so) and fetches it again when an assertion names a key it
//                 does not have and its copy is older than that
//   REDIRECT_URI  required: the client's one redirect URI
//   SIGNING_ALG   the client's token_endpoint_auth_signing_alg (default: any of ES384, RS384)
//   PORT          port to listen on; 0 or unset = any free port
//   PATIENT_ID    added as SMART's `patient` to every token response
//   EXPIRES_IN    access token lifetime in seconds (default 3600)
//   FHIR_UPSTREAM serve /fhir/* as a proxy to it (fhir-proxy.mjs), for access tokens this server
//                 issued and has not seen expire
//   NODE_PEERS    folder holding node_modules/oidc-provider (default: target/peers/node)
//
// oidc-provider itself checks every client assertion: signature against the client's JWKS, `iss`,
// `aud` (the token endpoint, or the issuer), `exp`, and `jti` (an assertion is accepted once;
// its jti is remembered until it expires). Nothing here verifies by hand. What is added for SMART:
// the scopes SMART apps ask for, `patient` in the token response, refresh tokens for the
// registered client whether or not the sign-in asked for consent, discovery at
// {base}/fhir/.well-known/smart-configuration, and sign-in interactions completed at once (the
// test's "patient" approves everything).
//
// GET /_log: a JSON array of what happened, oldest first: authorizations, and every token request
// with its grant_type, status, error and error_detail (oidc-provider's reason) and the client
// assertion it carried, raw and decoded (header kid/alg, claims), for the tests' assertions.

import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { fhirProxy } from './fhir-proxy.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const peersDir = process.env.NODE_PEERS || path.resolve(here, '../../../target/peers/node');
const { default: Provider } = await import(
  path.join(peersDir, 'node_modules/oidc-provider/lib/index.js'));

const required = (name) => {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`oidc-server: ${name} is required\n`);
    process.exit(2);
  }
  return value;
};
const clientId = required('CLIENT_ID');
const jwksUri = required('JWKS_URI');
const redirectUri = required('REDIRECT_URI');
const signingAlg = process.env.SIGNING_ALG || undefined;
const port = Number(process.env.PORT || 0);
const patient = process.env.PATIENT_ID || undefined;
const expiresIn = Number(process.env.EXPIRES_IN || 3600);
const upstream = (process.env.FHIR_UPSTREAM || '').replace(/\/+$/, '');

const SMART_SCOPES = ['openid', 'fhirUser', 'offline_access', 'launch/patient', 'patient/*.read',
  'patient/*.rs', 'user/*.read'];

const events = [];
const record = (e) => {
  events.push({ at: new Date().toISOString(), ...e });
  if (events.length > 10000) events.shift();
  process.stderr.write(`oidc-server: ${JSON.stringify(e)}\n`);
};

// The claims of a JWT, unverified: only for the log (oidc-provider has verified it, or refused).
function decodeJwt(jwt) {
  try {
    const [header, payload] = jwt.split('.').slice(0, 2)
      .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8')));
    return { header, payload };
  } catch {
    return {};
  }
}

let base = ''; // http://127.0.0.1:PORT, set once listening
let provider;
let proxy;

const server = http.createServer((req, res) => {
  const p = req.url.split('?')[0];
  if (req.method === 'GET' && (p === '/.well-known/smart-configuration'
    || p === '/fhir/.well-known/smart-configuration')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(smartConfiguration()));
    return undefined;
  }
  if (req.method === 'GET' && p === '/_log') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(events));
    return undefined;
  }
  if (upstream && (p === '/fhir' || p.startsWith('/fhir/'))) return proxy(req, res);
  if (req.method === 'GET' && p.startsWith('/interaction/')) {
    return interact(req, res).catch((e) => {
      record({ endpoint: 'interaction', error: e.message });
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(e.message);
    });
  }
  return provider.callback()(req, res);
});

const smartConfiguration = () => ({
  issuer: base,
  authorization_endpoint: `${base}/auth`,
  token_endpoint: `${base}/token`,
  jwks_uri: `${base}/jwks`,
  grant_types_supported: ['authorization_code', 'refresh_token'],
  token_endpoint_auth_methods_supported: ['private_key_jwt'],
  token_endpoint_auth_signing_alg_values_supported: ['ES384', 'RS384'],
  response_types_supported: ['code'],
  code_challenge_methods_supported: ['S256'],
  scopes_supported: SMART_SCOPES,
  capabilities: ['launch-standalone', 'client-confidential-asymmetric',
    'context-standalone-patient', 'permission-offline', 'permission-patient', 'permission-v1'],
});

// The test's patient signs in and approves whatever was asked, with no page in between.
async function interact(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: patient || 'patient' } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  record({ endpoint: 'interaction', prompt: prompt.name, client_id: params.client_id });
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

server.listen(port, '127.0.0.1', () => {
  base = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(base, {
    clients: [{
      client_id: clientId,
      token_endpoint_auth_method: 'private_key_jwt',
      ...(signingAlg ? { token_endpoint_auth_signing_alg: signingAlg } : {}),
      jwks_uri: jwksUri,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    }],
    scopes: SMART_SCOPES,
    claims: { openid: ['sub'], fhirUser: ['fhirUser'] },
    findAccount: (ctx, id) => ({
      accountId: id,
      claims: () => ({ sub: id, fhirUser: patient ? `Patient/${patient}` : undefined }),
    }),
    enabledJWA: { clientAuthSigningAlgValues: ['ES384', 'RS384'] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // SMART clients do not send prompt=consent, which OpenID Connect needs before it honours
    // offline_access; EHRs give a registered confidential client refresh tokens regardless.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    pkce: { required: () => true },
    ttl: {
      AccessToken: expiresIn,
      AuthorizationCode: 600,
      Grant: 14 * 24 * 3600,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
    },
    cookies: { keys: ['test-peer-cookie-key'] },
  });

  // oidc-provider's reason for refusing a token request (its answer only says invalid_client).
  provider.on('grant.error', (ctx, err) => {
    ctx.state.refusal = { error: err.error, error_detail: err.error_detail };
  });

  // SMART's `patient` in the token response, and the log of every token request.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/auth' || ctx.path.startsWith('/auth/')) {
      const location = ctx.response.get('location');
      if (location && location.startsWith(redirectUri)) {
        record({ endpoint: 'authorize', redirect: location });
      }
    }
    if (ctx.path !== '/token' || ctx.method !== 'POST') return;
    if (ctx.status === 200 && ctx.body && ctx.body.access_token && patient) {
      ctx.body.patient = patient;
    }
    const params = ctx.oidc?.params || ctx.request.body || {};
    const assertion = params.client_assertion;
    const { header, payload } = assertion ? decodeJwt(assertion) : {};
    record({
      endpoint: 'token',
      grant_type: params.grant_type,
      status: ctx.status,
      error: ctx.body?.error,
      error_detail: ctx.state.refusal?.error_detail,
      client_assertion_type: params.client_assertion_type,
      client_assertion: assertion,
      kid: header?.kid,
      alg: header?.alg,
      claims: payload,
      refresh_token: ctx.status === 200 ? Boolean(ctx.body?.refresh_token) : undefined,
    });
  });

  proxy = fhirProxy({
    upstream,
    base: () => base,
    rejects: async (token) => ((await provider.AccessToken.find(token))
      ? null : 'unknown or expired access token'),
    record,
  });

  process.stdout.write(`listening ${base}\n`);
});
server.on('error', (e) => {
  process.stderr.write(`oidc-server: ${e.message}\n`);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
