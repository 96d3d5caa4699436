// The test identity provider for Fulcrum's identity tests: a real OpenID Provider (npm
// oidc-provider) issuing JWT access tokens (RFC 9068, `typ: at+jwt`) by client credentials,
// with the claims Fulcrum maps to a principal (tenant_id, domain, env, role, purpose).
//
// Environment:
//   IDP_PORT       port on 127.0.0.1 (0 = any; printed as ISSUER=http://127.0.0.1:<port>)
//   IDP_ALG        ES256 (default) or RS256
//   IDP_KEY_FILE   private JWK; created when missing, reused on restart (same kid)
//   IDP_AUDIENCE   the `aud` of every access token (default urn:fulcrum)
//   IDP_REG_TOKEN  initial access token for dynamic client registration (POST /reg)
//   IDP_CLIENTS    JSON array of client metadata registered at start
//   IDP_USERS      JSON object: account id → its claims (tenant_id, domain, env, role, purpose)
// Per-client metadata: tenant_id, domain, env, role, purpose (strings, copied into the token)
// and access_token_ttl (seconds, default 300).
//
// People log in with the device flow (RFC 8628): a public client asks /device/auth, the person
// approves the user code, the client polls /token and gets an access token carrying the
// person's claims (and a refresh token with offline_access). The person's step at the IdP (a
// browser, a login form) is replaced here by POST /test/device/approve {"user_code", "account"}.
//
// People also sign in to the web console with the authorization code flow and PKCE: the IdP's
// login page (/interaction/<uid>) asks for an account id (any of IDP_USERS; no password — this is
// a test IdP), consent to the registry's audience is given at once, and the access token carries
// the person's claims.
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const alg = process.env.IDP_ALG || 'ES256';
const audience = process.env.IDP_AUDIENCE || 'urn:fulcrum';
const keyFile = process.env.IDP_KEY_FILE;

function makeKey() {
  const { privateKey } = alg === 'RS256'
    ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
    : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: crypto.randomBytes(8).toString('hex') };
}

let key;
if (keyFile && fs.existsSync(keyFile)) {
  key = JSON.parse(fs.readFileSync(keyFile, 'utf8'));
} else {
  key = makeKey();
  if (keyFile) fs.writeFileSync(keyFile, JSON.stringify(key), { mode: 0o600 });
}

const claimNames = ['tenant_id', 'domain', 'env', 'role', 'purpose'];
const properties = [...claimNames, 'access_token_ttl'];
const clients = JSON.parse(process.env.IDP_CLIENTS || '[]');
const users = JSON.parse(process.env.IDP_USERS || '{}');

const port = Number(process.env.IDP_PORT || 0);
const server = (await import('node:http')).createServer();
await new Promise((ok) => server.listen(port, '127.0.0.1', ok));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [key] },
  clientDefaults: { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic', id_token_signed_response_alg: alg },
  extraClientMetadata: {
    properties,
    validator(ctx, name, value) {
      if (value === undefined) return;
      if (name === 'access_token_ttl') {
        if (!Number.isInteger(value) || value < 1) throw new errors.InvalidClientMetadata('access_token_ttl must be a positive integer');
      } else if (typeof value !== 'string') {
        throw new errors.InvalidClientMetadata(`${name} must be a string`);
      }
    },
  },
  async findAccount(ctx, id) {
    if (!users[id]) return undefined;
    return { accountId: id, async claims() { return { sub: id }; } };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    registration: { enabled: true, initialAccessToken: process.env.IDP_REG_TOKEN || 'test-registration-token' },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator, client) => ({
        scope: 'registry:read registry:write',
        audience: resourceIndicator,
        accessTokenTTL: client.metadata().access_token_ttl || 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg } },
      }),
    },
  },
  ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || 300 },
  async extraTokenClaims(ctx, token) {
    if (token.accountId && users[token.accountId]) {
      const u = users[token.accountId];
      return Object.fromEntries(claimNames.filter((c) => u[c] !== undefined).map((c) => [c, u[c]]));
    }
    const client = ctx.oidc.client;
    if (!client) return undefined;
    const m = client.metadata();
    return Object.fromEntries(claimNames.filter((c) => m[c] !== undefined).map((c) => [c, m[c]]));
  },
});
// The person's approval of a user code (what the IdP's pages would do after login and consent).
async function approve(req, res) {
  let body = '';
  for await (const chunk of req) body += chunk;
  const { user_code: userCode, account } = JSON.parse(body || '{}');
  const code = await provider.DeviceCode.findByUserCode(String(userCode).replace(/[^A-Za-z0-9]/g, '').toUpperCase());
  if (!code || !users[account]) {
    res.writeHead(404).end('{"error":"unknown user code or account"}');
    return;
  }
  const grant = new provider.Grant({ accountId: account, clientId: code.clientId });
  const scope = code.scope || code.params?.scope || 'openid';
  grant.addOIDCScope(scope);
  code.scope = scope;
  code.resource = audience;
  grant.addResourceScope(audience, 'registry:read registry:write');
  code.grantId = await grant.save();
  code.accountId = account;
  code.authTime = Math.floor(Date.now() / 1000);
  await code.save();
  res.writeHead(204).end();
}
const escape = (t) => String(t).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
// The IdP's login page and consent, for the authorization code flow.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const uid = details.uid;
  if (req.method === 'POST') {
    let body = '';
    for await (const chunk of req) body += chunk;
    const account = new URLSearchParams(body).get('account') || '';
    if (!users[account]) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page(uid, `No account ${escape(account)}.`));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: account } }, { mergeWithLastSubmission: false });
    return;
  }
  if (details.prompt.name === 'login') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page(uid, ''));
    return;
  }
  // Consent: the registry's scopes and audience, granted at once.
  const grant = details.grantId ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope || 'openid');
  grant.addResourceScope(audience, 'registry:read registry:write');
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}
function page(uid, error) {
  return `<!doctype html><html lang="en"><head><title>Test IdP sign-in</title><link rel="icon" href="data:,"></head><body><main>
<h1>Test IdP</h1>${error ? `<p role="alert">${error}</p>` : ''}
<form method="post" action="/interaction/${uid}"><label for="account">Account</label>
<input id="account" name="account" autocomplete="username" required><button id="signin" type="submit">Sign in</button></form>
</main></body></html>`;
}
const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.method === 'POST' && req.url === '/test/device/approve') {
    approve(req, res).catch((e) => res.writeHead(500).end(String(e)));
  } else if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((e) => { res.writeHead(400).end(String(e)); });
  } else {
    callback(req, res);
  }
});
console.log(`ISSUER=${issuer}`);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
