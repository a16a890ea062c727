// panva's openid-client (OpenID-certified) as an independent, non-Rust relying party for
// integration-tests/tests/rp_node.rs. The Rust test plays the citizen's browser; this script
// does what an authority's Node.js web app does, one step per call:
//
//   node rp.mjs start  '{"issuer":…,"client_id":…,"client_secret":…,"redirect_uri":…,"extra":{…},"par":true}'
//   node rp.mjs finish '{…, "callback":…, "verifier":…, "state":…, "nonce":…}'
//   node rp.mjs client_credentials '{…}'
//
// Each prints one JSON object; a protocol error is printed as {"error": …} (exit code 0), so the
// test can assert on what the library saw.
import * as client from 'openid-client';

const [command, input] = process.argv.slice(2);
const args = JSON.parse(input);

async function configuration() {
  return client.discovery(
    new URL(args.issuer),
    args.client_id,
    undefined,
    client.ClientSecretBasic(args.client_secret),
    { execute: [client.allowInsecureRequests] }, // loopback http only, as in the tests
  );
}

async function start(config) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const build = args.par ? client.buildAuthorizationUrlWithPAR : client.buildAuthorizationUrl;
  const url = await build(config, {
    redirect_uri: args.redirect_uri,
    scope: 'openid profile email address',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...(args.extra ?? {}),
  });
  return { url: url.href, verifier, state, nonce };
}

async function finish(config) {
  const tokens = await client.authorizationCodeGrant(config, new URL(args.callback), {
    pkceCodeVerifier: args.verifier,
    expectedState: args.state,
    expectedNonce: args.nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  const introspection = await client.tokenIntrospection(config, refreshed.access_token);
  await client.tokenRevocation(config, refreshed.access_token);
  const afterRevocation = await client.tokenIntrospection(config, refreshed.access_token);
  const endSession = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: args.post_logout_redirect_uri,
    state: 'tschuess',
  });
  return {
    id_token: claims,
    userinfo,
    rotated: typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== tokens.refresh_token,
    active: introspection.active,
    active_after_revocation: afterRevocation.active,
    end_session: endSession.href,
  };
}

async function clientCredentials(config) {
  const tokens = await client.clientCredentialsGrant(config);
  return { token_type: tokens.token_type, expires_in: tokens.expires_in };
}

try {
  const config = await configuration();
  const steps = { start, finish, client_credentials: clientCredentials };
  if (!steps[command]) throw new Error(`unknown command ${command}`);
  process.stdout.write(JSON.stringify(await steps[command](config)));
} catch (error) {
  // A 401 with WWW-Authenticate comes as a challenge error; the OAuth error is in its body.
  const body = error.code === 'OAUTH_WWW_AUTHENTICATE_CHALLENGE'
    ? await error.response?.json().catch(() => undefined)
    : undefined;
  process.stdout.write(JSON.stringify({
    error: body?.error ?? error.error ?? error.code ?? 'exception',
    error_description: body?.error_description ?? error.error_description ?? error.message,
    challenge: error.cause?.[0]?.scheme,
  }));
}
