// A real OpenID provider (npm oidc-provider) for Keyward's social login tests, on loopback.
//   node server.mjs PORT    (or PORT in the environment)
// Issuer http://localhost:PORT; open dynamic registration; PKCE S256 required for every client;
// the dev login form accepts any login (the password is ignored) and consent is skipped.
// The login name is the account: `ann` → ann@example.com; a login with `@` is its own email;
// a login starting with `unverified` gets email_verified false. GET /avatar.png is its picture.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { deflateSync, crc32 } from 'node:zlib';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || process.env.PORT);
if (!port) { console.error('usage: node server.mjs PORT'); process.exit(2); }
const issuer = `http://localhost:${port}`;

// A 64x64 RGB PNG, one colour (Keyward's avatar pipeline takes sides of 32 and more).
function png() {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type), data])));
    return Buffer.concat([len, Buffer.from(type), data, crc]);
  };
  const ihdr = Buffer.from([0, 0, 0, 64, 0, 0, 0, 64, 8, 2, 0, 0, 0]); // 64x64, 8-bit RGB
  const row = Buffer.from([0, ...Array(64).fill([0x33, 0x66, 0x99]).flat()]); // filter 0, 64 pixels
  const raw = Buffer.concat(Array(64).fill(row));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
const avatar = png();

const account = (login) => {
  const email = login.includes('@') ? login : `${login}@example.com`;
  return {
    accountId: login,
    async claims() {
      return {
        sub: login,
        email,
        email_verified: !login.startsWith('unverified'),
        name: login.charAt(0).toUpperCase() + login.slice(1),
        picture: `${issuer}/avatar.png`,
      };
    },
  };
};

// A fresh signing key per run instead of the library's published development keys.
const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  jwks: { keys: [{ ...jwk, kid: randomBytes(6).toString('hex'), alg: 'RS256', use: 'sig' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  findAccount: async (_ctx, sub) => account(sub),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'picture'],
  },
  // Release scope claims in the id_token too, not only at userinfo.
  conformIdTokenClaims: false,
  // The library's default requires PKCE only of public clients.
  pkce: { required: () => true },
  // Explicit, which also keeps the library's "default ttl called" notices out of the log.
  ttl: { AccessToken: 3600, AuthorizationCode: 60, Grant: 3600, IdToken: 3600, Interaction: 600, Session: 3600 },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
  },
  // No consent screen: every authorization grants what it asks for.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    const grant = (grantId && await oidc.provider.Grant.find(grantId))
      || new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
    grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
    grant.addOIDCClaims([...oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
});

provider.on('server_error', (_ctx, err) => console.log('server_error', err));
for (const event of ['grant.error', 'registration_create.error', 'userinfo.error', 'authorization.error']) {
  provider.on(event, (_ctx, err) => console.log(event, err.message, err.error_detail || err.error_description || ''));
}

const app = provider.callback();
createServer((req, res) => {
  res.on('finish', () => {
    const location = res.getHeader('location');
    console.log(`${req.method} ${req.url.split('?')[0]} ${res.statusCode}${location ? ` -> ${String(location).split('?')[0]}` : ''}`);
  });
  if (req.method === 'GET' && req.url === '/__health') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  } else if (req.method === 'GET' && req.url === '/avatar.png') {
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': avatar.length }).end(avatar);
  } else {
    app(req, res);
  }
}).listen(port, '127.0.0.1', () => console.log(`oidc-provider ready, issuer ${issuer}`));
