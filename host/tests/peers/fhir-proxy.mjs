// The FHIR side of the test authorization servers (oauth-server.mjs, oidc-server.mjs): /fhir/* is
// proxied to FHIR_UPSTREAM (a sekmet) for requests whose `Authorization: Bearer` token the server
// issued and is still valid, and the upstream base URL is rewritten to the server's own /fhir in
// bodies and Location headers. GET /fhir/metadata needs no token. Each request is recorded.

import http from 'node:http';

// upstream: the FHIR base to forward to; base(): this server's origin once it listens;
// rejects(token): why a bearer token is refused (a promise of a string), or null when it is good;
// record(event): the server's log.
export function fhirProxy({ upstream, base, rejects, record }) {
  return async function proxy(req, res) {
    const m = /^Bearer\s+(\S+)/i.exec(req.headers.authorization || '');
    const open = req.method === 'GET' && req.url.split('?')[0] === '/fhir/metadata';
    const why = open ? null : !m ? 'no bearer token' : await rejects(m[1]);
    if (why) {
      record({ endpoint: 'fhir', method: req.method, path: req.url, status: 401, error: why });
      req.resume();
      res.writeHead(401, { 'content-type': 'application/fhir+json',
        'www-authenticate': `Bearer realm="fhir", error="invalid_token", error_description="${why}"` });
      res.end(JSON.stringify({ resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: 'login', diagnostics: why }] }));
      return;
    }
    const up = new URL(upstream);
    const headers = { ...req.headers, host: up.host, 'accept-encoding': 'identity' };
    const preq = http.request({ hostname: up.hostname, port: up.port, method: req.method,
      path: up.pathname + req.url.slice('/fhir'.length), headers }, (pres) => {
      const chunks = [];
      pres.on('data', (c) => chunks.push(c));
      pres.on('end', () => {
        const mine = `${base()}/fhir`;
        const body = Buffer.from(Buffer.concat(chunks).toString('utf8').split(upstream).join(mine));
        const h = { ...pres.headers, 'content-length': body.length };
        delete h['transfer-encoding'];
        for (const k of ['location', 'content-location']) {
          if (h[k]) h[k] = h[k].split(upstream).join(mine);
        }
        record({ endpoint: 'fhir', method: req.method, path: req.url, status: pres.statusCode });
        res.writeHead(pres.statusCode, h);
        res.end(body);
      });
    });
    preq.on('error', (e) => {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: `upstream: ${e.message}` }));
    });
    req.pipe(preq);
  };
}
