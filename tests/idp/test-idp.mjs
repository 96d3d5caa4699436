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
// Per-client metadata: tenant_id, domain, env, role, purpose (strings, copied into the token)
// and access_token_ttl (seconds, default 300).
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
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
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
    const client = ctx.oidc.client;
    if (!client) return undefined;
    const m = client.metadata();
    return Object.fromEntries(claimNames.filter((c) => m[c] !== undefined).map((c) => [c, m[c]]));
  },
});
server.on('request', provider.callback());
console.log(`ISSUER=${issuer}`);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
