// The benchmark's peer: panva's oidc-provider (the OpenID-certified reference implementation for
// Node.js) with the same client, scopes and lifetimes as servicekonto's demo client, its
// in-memory adapter (or Redis, see redis-adapter.mjs), RS256 ID tokens, PKCE,
// client_credentials and introspection. A login and consent interaction is completed
// automatically for one benchmark account, so that the single-sign-on scenario measures the
// protocol, not a form.
//
// Usage: PORT=<port> NODE_ENV=production [REDIS_URL=redis://…] [WORKERS=<n>] node provider.mjs <client_id> <client_secret> <redirect_uri>
//
// WORKERS=n (with REDIS_URL): Node's cluster mode, its way of running one provider on several
// processes — the primary forks n workers that share the port; all of them sign with one key
// and seal cookies with one secret, made by the primary, and keep their state in Redis.
import cluster from 'node:cluster';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const [clientId, clientSecret, redirectUri] = process.argv.slice(2);
const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const ACCOUNT = 'bench-citizen';

const claims = {
  sub: ACCOUNT,
  given_name: 'Erika',
  family_name: 'Mustermann',
  birthdate: '1964-08-12',
  email: 'erika@example.org',
  email_verified: true,
  address: { street_address: 'Heidestraße 17', postal_code: '51147', locality: 'Köln', country: 'DE' },
};

const workers = Number(process.env.WORKERS ?? 1);
if (workers > 1 && cluster.isPrimary) {
  if (!process.env.REDIS_URL) throw new Error('WORKERS needs REDIS_URL: the workers share their state through it');
  const shared = {
    SHARED_RSA_JWK: JSON.stringify(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' })),
    SHARED_COOKIE_KEY: randomBytes(32).toString('base64url'),
  };
  let listening = 0;
  for (let i = 0; i < workers; i += 1) {
    cluster.fork(shared).on('listening', () => {
      listening += 1;
      if (listening === workers) process.stdout.write(`${workers} workers listening on ${issuer}\n`);
    });
  }
  cluster.on('exit', (worker, code) => {
    process.stderr.write(`worker ${worker.process.pid} exited with ${code}\n`);
    process.exit(1);
  });
} else {
  await serve();
}

async function serve() {
  const rsa = process.env.SHARED_RSA_JWK
    ? JSON.parse(process.env.SHARED_RSA_JWK)
    : generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const cookieKey = process.env.SHARED_COOKIE_KEY ?? randomBytes(32).toString('base64url');

  // With REDIS_URL, its storage is Redis (the production shape); otherwise its in-memory adapter.
  const adapter = process.env.REDIS_URL ? (await import('./redis-adapter.mjs')).default : undefined;

  const provider = new Provider(issuer, {
    adapter,
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    }],
    jwks: { keys: [{ ...rsa, kid: 'bench-rs256', alg: 'RS256', use: 'sig' }] },
    cookies: { keys: [cookieKey] },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'address'],
    claims: {
      openid: ['sub'],
      profile: ['given_name', 'family_name', 'birthdate'],
      email: ['email', 'email_verified'],
      address: ['address'],
    },
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ ...claims, sub: id }) }),
    // Same rule as servicekonto: a client allowed the refresh_token grant gets a refresh token.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    ttl: { AccessToken: 300, AuthorizationCode: 60, ClientCredentials: 300, IdToken: 300, RefreshToken: 2592000, Interaction: 600, Session: 43200, Grant: 2592000 },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  });

  // The automatic interaction: log the benchmark account in, then grant what is asked.
  async function interact(req, res) {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params } = details;
    if (prompt.name === 'login') {
      await provider.interactionFinished(req, res, { login: { accountId: ACCOUNT } }, { mergeWithLastSubmission: false });
      return;
    }
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    const consent = details.grantId ? {} : { grantId };
    await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
  }

  const handle = provider.callback();
  http.createServer((req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interact(req, res).catch((error) => {
        res.statusCode = 500;
        res.end(String(error));
      });
      return;
    }
    handle(req, res);
  }).listen(port, '127.0.0.1', () => process.stdout.write(`listening on ${issuer}\n`));
}
